"""The input contract: Segment/RudderStack-spec events on ``segue.events``.

Upstream teams emit what they already emit for Segment. The pydantic ``Event`` model is the
edge contract (and the source of ``schemas/event.schema.json``); once validated, an event is
carried through the hot path as the slim ``InEvent`` (``models.in_event``).

Example:
    >>> e = Event.model_validate({"type": "track", "messageId": "m1", "userId": "u1",
    ...     "event": "Order Completed", "timestamp": "2026-01-01T10:00:00Z"})
    >>> e.event_key()
    'Order Completed'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

# The hot path's event and the rules that shape it (compiled): here too, for the edge's users.
from models.in_event import InEvent as InEvent
from models.in_event import device_id as device_id
from models.in_event import event_key as event_key
from models.in_event import event_time_ms as event_time_ms

EventType = Literal["track", "identify", "page", "screen", "alias", "group"]
CHANNELS = ("email", "sms", "push", "in_app", "webhook", "ads")
PURPOSES = ("marketing", "transactional")

# Reserved track events: Segment spec names where one exists, "Object Action" names otherwise.
CONSENT_UPDATED = "Consent Updated"
ERASURE_REQUESTED = "Erasure Requested"
DELIVERY_FEEDBACK = (
    "Dispatch Delivered",
    "Dispatch Failed",
    "Email Delivered",
    "Email Opened",
    "Email Link Clicked",
    "Email Bounced",
    "Email Marked as Spam",
    "Unsubscribed",
    "Push Notification Received",
    "Push Notification Tapped",
    "Push Notification Bounced",
    "SMS Delivered",
    "SMS Failed",
)
ID_MAX = 256


class Context(BaseModel):
    """Segment ``context``; only ``timezone`` is read today, the rest is kept as sent."""

    model_config = ConfigDict(extra="allow")
    timezone: str | None = Field(default=None, max_length=64, description="IANA time zone name")
    locale: str | None = Field(default=None, max_length=64)


class ConsentProperties(BaseModel):
    """Properties of a ``Consent Updated`` track event."""

    model_config = ConfigDict(extra="allow")
    channel: Literal["email", "sms", "push", "in_app", "webhook", "ads", "all"]
    purpose: Literal["marketing", "transactional", "all"] = "marketing"
    status: Literal["opted_in", "opted_out"]


class Event(BaseModel):
    """One Segment-spec call. Unknown top-level fields are kept (Segment sends many)."""

    model_config = ConfigDict(extra="allow")

    type: EventType
    messageId: str = Field(min_length=1, max_length=ID_MAX)
    userId: str | None = Field(default=None, min_length=1, max_length=ID_MAX)
    anonymousId: str | None = Field(default=None, min_length=1, max_length=ID_MAX)
    event: str | None = Field(default=None, min_length=1, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    previousId: str | None = Field(default=None, max_length=ID_MAX)
    groupId: str | None = Field(default=None, max_length=ID_MAX)
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: Context = Field(default_factory=Context)
    timestamp: AwareDatetime | datetime | None = None
    receivedAt: AwareDatetime | datetime | None = None
    originalTimestamp: AwareDatetime | datetime | None = None
    sentAt: AwareDatetime | datetime | None = None

    @field_validator("userId", "anonymousId", "previousId", "groupId", mode="before")
    @classmethod
    def _decimal(cls, v: object) -> object:
        # Segment libraries send numeric ids; they are their decimal string.
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v

    @field_validator("timestamp", "receivedAt", "originalTimestamp", "sentAt", mode="before")
    @classmethod
    def _iso_only(cls, v: object) -> object:
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError("a time must be an ISO 8601 string, not a number")
        return v

    @field_validator("timestamp", "receivedAt", "originalTimestamp", "sentAt")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        # Naive timestamps are read as UTC, as Segment does.
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=UTC)
        return v

    @model_validator(mode="after")
    def _shape(self) -> Event:
        if self.userId is None and self.anonymousId is None:
            raise ValueError("one of userId or anonymousId is required")
        if self.type == "track" and self.event is None:
            raise ValueError("a track call needs 'event'")
        if self.type == "alias" and not self.previousId:
            raise ValueError("an alias call needs 'previousId'")
        if self.type == "group" and not self.groupId:
            raise ValueError("a group call needs 'groupId'")
        if self.type == "track" and self.event == CONSENT_UPDATED:
            ConsentProperties.model_validate(self.properties)
        return self

    def event_key(self) -> str:
        """The name its counters are kept under: ``Order Completed``, ``page:Pricing``, …"""
        return event_key(self.type, self.event, self.name)


def to_in_event(e: Event, kafka_ts_ms: int, offset: int) -> InEvent:
    """Event time: see ``event_time_ms``."""
    ts_ms = event_time_ms(e.timestamp, e.originalTimestamp, e.receivedAt, e.sentAt,
                          kafka_ts_ms)
    return InEvent(
        type=e.type,
        message_id=e.messageId,
        customer_id=e.userId or e.anonymousId or "",
        key=e.event_key(),
        ts_ms=ts_ms,
        user_id=e.userId,
        anonymous_id=e.anonymousId,
        properties=e.properties,
        traits=e.traits,
        timezone=e.context.timezone,
        offset=offset,
        kafka_ts_ms=kafka_ts_ms,
        device_id=device_id((e.context.model_extra or {}).get("device")),
        previous_id=e.previousId or None,
        group_id=e.groupId or None,
    )
