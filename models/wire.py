"""A Segment call as the fast decoder reads it: msgspec structs for the subset of
``models.events.Event`` that ``operators.decode`` takes without pydantic (the same values for
it; anything else goes down the pydantic path, which words every dead-letter reason).

Kept apart from ``operators.decode``, which is compiled: msgspec structs are not compiled
classes.

Example:
    >>> e = fast_decoder.decode(b'{"type":"track","messageId":"m1","userId":"u1","event":"A"}')
    >>> e.event, e.properties, e.context.timezone
    ('A', {}, None)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from models.events import ID_MAX

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX)]


class FastContext(msgspec.Struct, frozen=True):
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    locale: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    device: Any = None


class FastEvent(msgspec.Struct):
    type: Literal["track", "identify", "page", "screen", "alias", "group"]
    messageId: _Id
    userId: _Id | None = None
    anonymousId: _Id | None = None
    event: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    previousId: Annotated[str, msgspec.Meta(max_length=ID_MAX)] | None = None
    groupId: Annotated[str, msgspec.Meta(max_length=ID_MAX)] | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    context: FastContext = FastContext()
    timestamp: datetime | None = None
    receivedAt: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None


fast_decoder = msgspec.json.Decoder(FastEvent)
