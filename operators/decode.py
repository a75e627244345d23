"""Decode at the edge: bytes in, a validated ``InEvent`` or a ``Rejected`` dead letter out.

Nothing invalid reaches state, and nothing here raises: every failure becomes a reason.

Example:
    >>> from operators.decode import RawRecord, decode
    >>> bad = decode(RawRecord("segue.events", 0, 7, b"k", b"{not json", [], 0), max_bytes=65536,
    ...              max_future_skew_ms=0)
    >>> bad.reason["code"]
    'json.invalid'
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from models.events import Event, InEvent, to_in_event
from models.outputs import SCHEMA_VERSION, idempotency_key

MAX_DEPTH = 64  # state is JSON too: what cannot be stored must not get in


def _too_deep(value: object, budget: int) -> bool:
    if budget <= 0:
        return True
    if isinstance(value, dict):
        return any(_too_deep(v, budget - 1) for v in value.values())
    if isinstance(value, list):
        return any(_too_deep(v, budget - 1) for v in value)
    return False


@dataclass(slots=True, frozen=True)
class RawRecord:
    """One Kafka message as read from an input partition."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int

    @property
    def part_key(self) -> str:
        return f"{self.topic}#{self.partition}"


@dataclass(slots=True)
class Rejected:
    """An input message that goes to the dead-letter topic instead of state."""

    offset: int
    key: bytes | None
    record: dict
    reason: dict
    part: str = ""  # input "topic#partition" it came from


def _reject(raw: RawRecord, code: str, detail: str, fields: list[str] | None = None) -> Rejected:
    reason = {"code": code, "detail": detail[:500], "fields": fields or []}
    record = {
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": idempotency_key("dlq", raw.topic, raw.partition, raw.offset),
        "reason": reason,
        "source": {
            "topic": raw.topic,
            "partition": raw.partition,
            "offset": raw.offset,
            "timestamp_ms": raw.timestamp_ms,
        },
        "key_b64": base64.b64encode(raw.key).decode() if raw.key is not None else None,
        "value_b64": base64.b64encode(raw.value or b"").decode(),
        "headers": [(k, base64.b64encode(v or b"").decode()) for k, v in raw.headers],
    }
    return Rejected(raw.offset, raw.key, record, reason, raw.part_key)


def _schema_reason(err: ValidationError) -> tuple[str, str, list[str]]:
    errors = err.errors(include_url=False)
    fields = [".".join(str(x) for x in e["loc"]) for e in errors]
    first = errors[0]
    loc = fields[0]
    if first["loc"] == ("type",):
        return "type.unknown", f"unknown type: {first.get('input')!r}", fields
    if "userId or anonymousId" in first["msg"]:
        return "id.missing", "one of userId or anonymousId is required", fields
    if loc == "messageId" and first["type"] == "missing":
        return "id.missing", "messageId is required", fields
    detail = "; ".join(f"{f or '(event)'}: {e['msg']}" for f, e in zip(fields, errors, strict=True))
    return "schema.invalid", detail, fields


def decode(raw: RawRecord, *, max_bytes: int, max_future_skew_ms: int) -> InEvent | Rejected:
    """Validate one message; never raises."""
    value = raw.value
    if value is None:
        return _reject(raw, "value.missing", "message has no value (tombstone)")
    if len(value) > max_bytes:
        return _reject(raw, "too_large", f"{len(value)} bytes > limit {max_bytes}")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        return _reject(raw, "json.invalid", str(e))
    if not isinstance(data, dict):
        return _reject(raw, "json.not_object", f"expected a JSON object, got {type(data).__name__}")
    if value.count(b"{") + value.count(b"[") >= MAX_DEPTH and _too_deep(data, MAX_DEPTH):
        return _reject(raw, "json.too_deep", f"nested deeper than {MAX_DEPTH} levels")
    try:
        event = Event.model_validate(data)
    except ValidationError as e:
        code, detail, fields = _schema_reason(e)
        return _reject(raw, code, detail, fields)
    except (ValueError, TypeError, OverflowError) as e:  # defensive: a validator bug is a reason
        return _reject(raw, "schema.invalid", str(e))
    try:
        ev = to_in_event(event, raw.timestamp_ms, raw.offset)
    except (OverflowError, OSError, ValueError) as e:
        return _reject(raw, "timestamp.invalid", str(e), ["timestamp"])
    if ev.ts_ms <= 0:
        return _reject(raw, "timestamp.missing", "no timestamp or receivedAt, and no Kafka "
                       "timestamp to fall back on", ["timestamp"])
    if raw.timestamp_ms > 0 and ev.ts_ms > raw.timestamp_ms + max_future_skew_ms:
        skew_s = (ev.ts_ms - raw.timestamp_ms) / 1000
        return _reject(
            raw,
            "timestamp.future",
            f"event time is {skew_s:.0f}s after its Kafka timestamp (limit "
            f"{max_future_skew_ms // 1000}s)",
            ["timestamp"],
        )
    ev.part = raw.part_key
    ev.raw = data
    return ev


@dataclass(slots=True)
class Routed:
    """A message between partitions (``segue.repartition``): identity claims and merges."""

    kind: str
    body: dict
    offset: int
    part: str


def decode_routed(raw: RawRecord, *, max_future_skew_ms: int) -> InEvent | Routed | Rejected:
    """Messages on the internal repartition topic; a forwarded event is validated again."""
    try:
        body = orjson.loads(raw.value or b"")
        kind = body["kind"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _reject(raw, "internal.invalid", "not a Segue repartition message")
    if kind != "event":
        return Routed(kind, body, raw.offset, raw.part_key)
    inner = RawRecord(raw.topic, raw.partition, raw.offset, raw.key,
                      orjson.dumps(body["event"]), [], body.get("kafka_ts", 0))
    ev = decode(inner, max_bytes=1 << 30, max_future_skew_ms=max_future_skew_ms)
    if isinstance(ev, InEvent):
        ev.canonical = body.get("canonical")
        ev.hops = body.get("hops", 0)
    return ev
