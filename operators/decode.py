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
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import orjson
from pydantic import ValidationError

from models.envelope import SCHEMA_VERSION, idempotency_key
from models.events import CONSENT_UPDATED, Event, to_in_event
from models.in_event import InEvent, device_id, event_key, event_time_ms
from models.wire import fast_decoder

MAX_DEPTH = 64  # state is JSON too: what cannot be stored must not get in


def _too_deep(value: object, budget: int) -> bool:
    if budget <= 0:
        return True
    if isinstance(value, dict):
        return any(_too_deep(v, budget - 1) for v in value.values())
    if isinstance(value, list):
        return any(_too_deep(v, budget - 1) for v in value)
    return False


# The classes below are compiled (native) and so write their own ``__init__`` (the one
# ``dataclasses`` generates stays interpreted under mypyc) and ``__reduce__`` (a compiled
# class is rebuilt through its ``__init__`` when pickled between the workers of a cluster).


@dataclass(slots=True, init=False)
class RawRecord:
    """One Kafka message as read from an input partition (not frozen: one is built per
    message, and a frozen dataclass costs three times as much to build)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_ms: int
    read_ns: int  # monotonic ns when the consumer returned it (0: not read from Kafka)

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, headers: list[tuple[str, bytes]], timestamp_ms: int,
                 read_ns: int = 0) -> None:
        self.topic, self.partition, self.offset, self.key = topic, partition, offset, key
        self.value, self.headers, self.timestamp_ms, self.read_ns = value, headers, \
            timestamp_ms, read_ns

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return RawRecord, (self.topic, self.partition, self.offset, self.key, self.value,
                           self.headers, self.timestamp_ms, self.read_ns)

    @property
    def part_key(self) -> str:
        return f"{self.topic}#{self.partition}"


@dataclass(slots=True, init=False)
class Rejected:
    """An input message that goes to the dead-letter topic instead of state."""

    offset: int
    key: bytes | None
    record: dict
    reason: dict
    part: str  # input "topic#partition" it came from
    sub: int   # its index in a batch payload

    def __init__(self, offset: int, key: bytes | None, record: dict, reason: dict,
                 part: str = "", sub: int = 0) -> None:
        self.offset, self.key, self.record, self.reason = offset, key, record, reason
        self.part, self.sub = part, sub

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return Rejected, (self.offset, self.key, self.record, self.reason, self.part,
                          self.sub)


# Every dead-letter reason code, with what it means (the README's table, kept equal by a test).
REASON_CODES = {
    "json.invalid": "not JSON, or not UTF-8",
    "json.not_object": "JSON, but not an object",
    "json.too_deep": f"nested deeper than {MAX_DEPTH} levels",
    "too_large": "over max_event_bytes (64 KiB)",
    "value.missing": "no value (a tombstone)",
    "id.missing": "no messageId, or neither userId nor anonymousId",
    "type.unknown": "a type other than track, identify, page, screen, alias, group",
    "schema.invalid": "wrong types, missing event on a track call, invalid consent "
                      "properties (fields names them)",
    "timestamp.invalid": "a timestamp that is no time (out of range)",
    "timestamp.missing": "no timestamp, no receivedAt and no Kafka timestamp",
    "timestamp.future": "event time more than max_future_skew_s (1 day) after the Kafka "
                        "timestamp or after the clock reading it (so a forged time cannot "
                        "fire everyone's timers)",
    "internal.invalid": "a message on the repartition topic that Segue did not write",
    "processing.error": "valid, but applying it raised (a bug): the batch was redone "
                        "without it",
}

DLQ_KEEP_BYTES = 256 * 1024  # the dlq_keep_bytes setting's default
KEY_KEEP_BYTES = 1024         # of a message key (also the dead letter's own key)
HEADERS_KEEP_BYTES = 16 * 1024


def _reject(raw: RawRecord, code: str, detail: str, fields: list[str] | None = None,
            keep: int = DLQ_KEEP_BYTES, sub: int = 0) -> Rejected:
    """The dead letter of ``raw``: its reason and its bytes, bounded so that the dead letter
    itself can always be produced. A value over ``keep`` bytes keeps its first ``keep`` bytes
    with its size and SHA-256 (``value_truncated``); keys and headers are bounded likewise."""
    reason = {"code": code, "detail": detail[:500], "fields": fields or []}
    value = raw.value or b""
    key = raw.key[:KEY_KEEP_BYTES] if raw.key is not None else None
    source: dict[str, object] = {"topic": raw.topic, "partition": raw.partition,
                                 "offset": raw.offset, "timestamp_ms": raw.timestamp_ms}
    if sub:
        source["batch_index"] = sub
    record: dict[str, object] = {
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": idempotency_key("dlq", raw.topic, raw.partition, raw.offset,
                                           *((sub,) if sub else ())),
        "reason": reason,
        "source": source,
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "value_b64": base64.b64encode(value[:keep]).decode(),
        "headers": _kept_headers(raw.headers),
    }
    if len(value) > keep:
        record.update(value_truncated=True, value_bytes=len(value),
                      value_sha256=hashlib.sha256(value).hexdigest())
    if raw.key is not None and len(raw.key) > KEY_KEEP_BYTES:
        record.update(key_truncated=True, key_bytes=len(raw.key))
    return Rejected(raw.offset, key, record, reason, raw.part_key, sub)


def _kept_headers(headers: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    out, size = [], 0
    for k, v in headers:
        size += len(k) + len(v or b"")
        if size > HEADERS_KEEP_BYTES:
            break  # the rest is dropped: a dead letter must stay producible
        out.append((k, base64.b64encode(v or b"").decode()))
    return out


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


# ----- the fast path ----------------------------------------------------------------------
# msgspec decodes the bytes straight into typed structs (``models.wire``; ≈ 5× cheaper than
# orjson + pydantic). It accepts a subset of what ``Event`` accepts and gives the same values
# for it; anything it does not take (a rare field, a type error, a reserved event with its
# own rules) goes down the pydantic path, which also words every dead-letter reason.
# ``tests/unit/test_decode.py`` holds both paths to the same results.
# What the full path must decide: integers of 19 digits or more (beyond 64 bits orjson reads
# them as floats, msgspec as ints) and times with more than 6 fractional digits (pydantic
# truncates them, msgspec rounds). Found on the bytes with every digit mapped to 0 (a
# substring search: a regex costs more than the decoding it guards).
_DIGITS_AS_0 = bytes(48 if 48 <= b <= 57 else b if b in b":." else 32 for b in range(256))
_LONG_NUMBER = b"0" * 19
_LONG_FRACTION = b"0:00.0000000"
_SEVEN_DIGITS = b"0" * 7  # in both: most events have no such run, one search rules both out


def _full_path_only(value: bytes) -> bool:
    # An escaped surrogate: msgspec takes a lone one, orjson (and so state, forwarding and
    # outputs) refuses it; the full path decides, as for every other event with one. (Most
    # events hold no backslash at all: one byte search, then the two escapes.)
    if b"\\" in value and (b"\\ud" in value or b"\\uD" in value):
        return True
    # msgspec skips the fields it does not know without checking their UTF-8; orjson (state,
    # forwarding, dead letters) refuses bad UTF-8 anywhere.
    if not value.isascii():
        try:
            value.decode()
        except UnicodeDecodeError:
            return True
    t = value.translate(_DIGITS_AS_0)
    return _SEVEN_DIGITS in t and (_LONG_NUMBER in t or _LONG_FRACTION in t)


def _aware(when: datetime | None) -> datetime | None:
    """``when`` with its time zone (naive: UTC, as Segment reads it); raises when it is no
    time."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when.timestamp()
    return when


def _fast(value: bytes, kafka_ts_ms: int, offset: int) -> InEvent | None:
    """The event, or None when only the full path can say (valid or not)."""
    try:
        e = fast_decoder.decode(value)
    except msgspec.DecodeError:
        return None
    kind: str = e.type
    uid: str | None = e.userId
    aid: str | None = e.anonymousId
    if uid is None and aid is None:
        return None
    # Rules the pydantic model checks: the full path words their reasons.
    name: str | None = e.event
    if (kind == "track" and (name is None or name == CONSENT_UPDATED)) \
            or (kind == "alias" and not e.previousId) or (kind == "group" and not e.groupId):
        return None
    try:  # every time given must be a time (``timestamp``'s is read by event_time_ms)
        ts: datetime | None = e.timestamp
        if ts is not None and ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        ts_ms = event_time_ms(ts, _aware(e.originalTimestamp), _aware(e.receivedAt),
                              _aware(e.sentAt), kafka_ts_ms)
    except (OverflowError, OSError, ValueError):
        return None
    context = e.context
    return InEvent(kind, e.messageId, uid or aid or "", event_key(kind, name, e.name), ts_ms,
                   uid, aid, e.properties, e.traits, context.timezone, offset, kafka_ts_ms, "",
                   device_id(context.device), None, None, None, 0, e.previousId or None,
                   e.groupId or None)


def decode(raw: RawRecord, *, max_bytes: int, max_future_skew_ms: int,
           keep_bytes: int = DLQ_KEEP_BYTES, now_ms: int | None = None) -> InEvent | Rejected:
    """Validate one message; never raises. A dead letter keeps at most ``keep_bytes`` of the
    value (see ``_reject``). Event time may be at most ``max_future_skew_ms`` after the Kafka
    timestamp (which the producer may set) and after ``now_ms`` (the clock reading the input),
    so no forged time can move a partition's clock past the present."""
    value = raw.value
    if value is None:
        return _reject(raw, "value.missing", "message has no value (tombstone)")
    if len(value) > max_bytes:
        return _reject(raw, "too_large", f"{len(value)} bytes > limit {max_bytes}",
                       keep=keep_bytes)
    out = _decode(raw, value, max_future_skew_ms)
    if isinstance(out, Rejected):
        if len(value) > keep_bytes:  # rare (max_event_bytes above dlq_keep_bytes)
            return _reject(raw, out.reason["code"], out.reason["detail"], out.reason["fields"],
                           keep=keep_bytes)
        return out
    if now_ms is not None and out.ts_ms > now_ms + max_future_skew_ms:
        return _reject(raw, "timestamp.future", f"event time is {(out.ts_ms - now_ms) / 1000:.0f}"
                       f"s after the time it was read (limit {max_future_skew_ms // 1000}s)",
                       ["timestamp"], keep=keep_bytes)
    return out


def _decode(raw: RawRecord, value: bytes, max_future_skew_ms: int) -> InEvent | Rejected:
    if value.count(b"{") + value.count(b"[") < MAX_DEPTH \
            and not _full_path_only(value):
        ev = _fast(value, raw.timestamp_ms, raw.offset)
        if ev is not None:
            return _checked(raw, ev, value, max_future_skew_ms)
    return _slow(raw, value, max_future_skew_ms)


def _slow(raw: RawRecord, value: bytes, max_future_skew_ms: int) -> InEvent | Rejected:
    """orjson and the pydantic edge model: every rule, every reason."""
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
    ev.raw = data
    return _checked(raw, ev, value, max_future_skew_ms)


def _checked(raw: RawRecord, ev: InEvent, value: bytes,
             max_future_skew_ms: int) -> InEvent | Rejected:
    """The checks on event time both paths share."""
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
    ev.read_ns = raw.read_ns
    if ev.raw is None:
        ev.raw_json = value
    return ev


def decode_all(raw: RawRecord, *, max_bytes: int, max_future_skew_ms: int,
               keep_bytes: int = DLQ_KEEP_BYTES, max_batch_bytes: int = 512 * 1024,
               now_ms: int | None = None) -> InEvent | Rejected | list[InEvent | Rejected]:
    """``decode``, and Segment's batch payload (``{"batch": [...], "sentAt": ...}``, what
    its HTTP batch API takes and many collectors forward as is): its events, in order, as
    one list (applied together: they share the message's offset). Each event is decoded on
    its own (its own dead letter, with ``source.batch_index``); the batch's ``sentAt`` and
    ``context`` are each event's defaults, as in Segment."""
    value = raw.value
    if value is None or b'"batch"' not in value or len(value) > max_batch_bytes:
        return decode(raw, max_bytes=max_bytes, max_future_skew_ms=max_future_skew_ms,
                      keep_bytes=keep_bytes, now_ms=now_ms)
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or "type" in data or not isinstance(data.get("batch"), list):
        return decode(raw, max_bytes=max_bytes, max_future_skew_ms=max_future_skew_ms,
                      keep_bytes=keep_bytes, now_ms=now_ms)
    if not data["batch"]:
        return _reject(raw, "schema.invalid", "an empty batch", ["batch"], keep=keep_bytes)
    defaults = {k: data[k] for k in ("sentAt", "context") if k in data}
    out: list[InEvent | Rejected] = []
    for i, item in enumerate(data["batch"]):
        if isinstance(item, dict):
            body = {**defaults, **item}
            if isinstance(defaults.get("context"), dict) and isinstance(item.get("context"), dict):
                body["context"] = {**defaults["context"], **item["context"]}
            item_bytes = orjson.dumps(body)
        else:
            item_bytes = orjson.dumps(item)
        one = RawRecord(raw.topic, raw.partition, raw.offset, raw.key, item_bytes, raw.headers,
                        raw.timestamp_ms, raw.read_ns)
        ev = decode(one, max_bytes=max_bytes, max_future_skew_ms=max_future_skew_ms,
                    keep_bytes=keep_bytes, now_ms=now_ms)
        if isinstance(ev, Rejected):
            ev = _reject(one, ev.reason["code"], ev.reason["detail"], ev.reason["fields"],
                         keep=keep_bytes, sub=i)
        else:
            ev.sub = i
        out.append(ev)
    return out


@dataclass(slots=True, init=False)
class Routed:
    """A message between partitions (``segue.repartition``): identity claims and merges."""

    kind: str
    body: dict
    offset: int
    part: str

    def __init__(self, kind: str, body: dict, offset: int, part: str) -> None:
        self.kind, self.body, self.offset, self.part = kind, body, offset, part

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return Routed, (self.kind, self.body, self.offset, self.part)


def decode_routed(raw: RawRecord, *, max_future_skew_ms: int,
                  keep_bytes: int = DLQ_KEEP_BYTES,
                  app_id: str | None = None) -> InEvent | Routed | Rejected:
    """Messages on the internal repartition topic; a forwarded event is validated again.
    One stamped by another application than ``app_id`` is a ``Routed("foreign")``: counted,
    never applied (messages of earlier versions carry no stamp and are taken)."""
    try:
        body = orjson.loads(raw.value or b"")
        kind = body["kind"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _reject(raw, "internal.invalid", "not a Segue repartition message",
                       keep=keep_bytes)
    if app_id is not None and body.get("app", app_id) != app_id:
        return Routed("foreign", {"app": body.get("app")}, raw.offset, raw.part_key)
    if kind != "event":
        return Routed(kind, body, raw.offset, raw.part_key)
    inner = RawRecord(raw.topic, raw.partition, raw.offset, raw.key,
                      orjson.dumps(body["event"]), [], body.get("kafka_ts", 0), raw.read_ns)
    ev = decode(inner, max_bytes=1 << 30, max_future_skew_ms=max_future_skew_ms,
                keep_bytes=keep_bytes)
    if isinstance(ev, InEvent):
        ev.canonical = body.get("canonical")
        ev.hops = body.get("hops", 0)
    return ev
