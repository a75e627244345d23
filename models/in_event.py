"""A validated event as the hot path carries it (``InEvent``), and the rules that shape it from
a Segment call: its counter name, its event time and its device id.

Compiled with the hot path (``native-modules.txt``): every step reads the event's fields,
and a compiled class's fields are read in place instead of looked up by name. The edge
contract (the pydantic ``Event`` model) stays in ``models.events``, which re-exports these.

Example:
    >>> ev = InEvent("track", "m1", "u1", "Order Completed", 1_000, user_id="u1")
    >>> ev.key, ev.properties, ev.offset
    ('Order Completed', {}, -1)
    >>> event_key("page", None, "Pricing")
    'page:Pricing'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson


@dataclass(slots=True, init=False)
class InEvent:
    """A validated event on the hot path (a plain class: cheaper than a model). Its
    ``__init__`` is written out: the one ``dataclasses`` generates stays interpreted under
    mypyc."""

    type: str
    message_id: str
    customer_id: str
    key: str
    ts_ms: int
    user_id: str | None
    anonymous_id: str | None
    properties: dict[str, Any]
    traits: dict[str, Any]
    timezone: str | None
    offset: int
    kafka_ts_ms: int
    part: str                  # input "topic#partition" it came from
    device_id: str | None
    raw: dict | None           # the validated JSON, when it was parsed as a whole
    raw_json: bytes | None     # else the message bytes it came from
    canonical: str | None      # set when forwarded: the customer it belongs to
    hops: int                  # times it was forwarded (loop guard)
    previous_id: str | None    # alias: the id it joins to user_id
    group_id: str | None       # group: the account (group) the customer belongs to
    sub: int                   # its index in a batch payload (Segment's batch API)
    read_ns: int               # monotonic ns when the consumer returned it (metrics)

    def __init__(self, type: str, message_id: str, customer_id: str, key: str, ts_ms: int,
                 user_id: str | None = None, anonymous_id: str | None = None,
                 properties: dict[str, Any] | None = None,
                 traits: dict[str, Any] | None = None, timezone: str | None = None,
                 offset: int = -1, kafka_ts_ms: int = 0, part: str = "",
                 device_id: str | None = None, raw: dict | None = None,
                 raw_json: bytes | None = None, canonical: str | None = None, hops: int = 0,
                 previous_id: str | None = None, group_id: str | None = None, sub: int = 0,
                 read_ns: int = 0) -> None:
        self.type, self.message_id, self.customer_id, self.key = type, message_id, \
            customer_id, key
        self.ts_ms, self.user_id, self.anonymous_id = ts_ms, user_id, anonymous_id
        self.properties = {} if properties is None else properties
        self.traits = {} if traits is None else traits
        self.timezone, self.offset, self.kafka_ts_ms, self.part = timezone, offset, \
            kafka_ts_ms, part
        self.device_id, self.raw, self.raw_json, self.canonical = device_id, raw, raw_json, \
            canonical
        self.hops, self.previous_id, self.group_id = hops, previous_id, group_id
        self.sub, self.read_ns = sub, read_ns

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Pickled between the workers of a cluster; a compiled class is rebuilt through its
        # ``__init__``, so it says how.
        return InEvent, (self.type, self.message_id, self.customer_id, self.key, self.ts_ms,
                         self.user_id, self.anonymous_id, self.properties, self.traits,
                         self.timezone, self.offset, self.kafka_ts_ms, self.part,
                         self.device_id, self.raw, self.raw_json, self.canonical, self.hops,
                         self.previous_id, self.group_id, self.sub, self.read_ns)

    def document(self) -> dict | None:
        """The event as received (JSON object), for forwarding to another partition."""
        if self.raw is None and self.raw_json is not None:
            self.raw = orjson.loads(self.raw_json)
        return self.raw


def event_key(kind: str, event: str | None, name: str | None) -> str:
    """An event's counter name: the track event, ``page:<name>``/``screen:<name>``, or the
    call type."""
    if kind == "track":
        return event or ""
    if kind in ("page", "screen"):
        return f"{kind}:{name}" if name else kind
    return kind


def event_time_ms(timestamp: datetime | None, original: datetime | None,
                  received: datetime | None, sent: datetime | None, kafka_ts_ms: int) -> int:
    """Segment's rule: ``timestamp``; else ``originalTimestamp`` corrected for the device's
    clock skew by ``receivedAt - sentAt``; else ``receivedAt``; else the Kafka timestamp."""
    if timestamp is not None:
        return int(timestamp.timestamp() * 1000)
    if original is not None:
        skew = (received - sent).total_seconds() if received is not None and sent is not None \
            else 0.0
        return int((original.timestamp() + skew) * 1000)
    if received is not None:
        return int(received.timestamp() * 1000)
    return kafka_ts_ms


def device_id(device: object) -> str | None:
    """``context.device.id`` as a string, if the event has one (Segment sends str or int)."""
    if isinstance(device, dict) and isinstance(device.get("id"), (str, int)):
        return str(device["id"])
    return None
