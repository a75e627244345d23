import dataclasses

import orjson
import pytest

from models.events import InEvent
from operators.decode import RawRecord, Rejected, decode


def raw(value, offset=1, ts=1_767_225_600_000):
    return RawRecord("segue.events", 2, offset, b"k", value, [("h", b"v")], ts)


def dec(value, **kw):
    return decode(raw(value, **kw), max_bytes=65536, max_future_skew_ms=86_400_000)


def test_valid_track_event_becomes_in_event_with_event_time():
    ev = dec(orjson.dumps({"type": "track", "messageId": "m1", "userId": "u1",
                           "event": "Order Completed", "properties": {"revenue": 3},
                           "timestamp": "2026-01-01T00:00:01Z",
                           "context": {"timezone": "Europe/Berlin"}}))
    assert isinstance(ev, InEvent)
    assert (ev.customer_id, ev.key, ev.ts_ms) == ("u1", "Order Completed", 1_767_225_601_000)
    assert ev.timezone == "Europe/Berlin"
    assert ev.part == "segue.events#2" and ev.offset == 1


def test_anonymous_page_event_and_missing_timestamp_uses_kafka_time():
    ev = dec(orjson.dumps({"type": "page", "messageId": "m", "anonymousId": "a1",
                           "name": "Pricing"}))
    assert isinstance(ev, InEvent)
    assert (ev.customer_id, ev.key, ev.ts_ms) == ("a1", "page:Pricing", 1_767_225_600_000)


@pytest.mark.parametrize("value,code,field", [
    (b"nope", "json.invalid", None),
    (b"[]", "json.not_object", None),
    (b'{"type":"track","userId":"u","event":"x"}', "id.missing", "messageId"),
    (b'{"type":"track","messageId":"m","event":"x"}', "id.missing", None),
    (b'{"type":"blink","messageId":"m","userId":"u"}', "type.unknown", "type"),
    (b'{"type":"track","messageId":"m","userId":["u"],"event":"x"}', "schema.invalid", "userId"),
    (b'{"type":"alias","messageId":"m","userId":"u"}', "schema.invalid", None),
    (b'{"type":"track","messageId":"m","userId":"u","event":"x","timestamp":"2999-01-01"}',
     "timestamp.future", "timestamp"),
    (b'{"type":"track","messageId":"m","userId":"u","event":"Consent Updated",'
     b'"properties":{"channel":"email"}}', "schema.invalid", None),
])
def test_invalid_input_is_rejected_with_reason(value, code, field):
    r = dec(value)
    assert isinstance(r, Rejected), r
    assert r.reason["code"] == code
    assert r.reason["detail"]
    if field:
        assert any(f.startswith(field) for f in r.reason["fields"]), r.reason
    assert r.record["source"] == {"topic": "segue.events", "partition": 2, "offset": 1,
                                  "timestamp_ms": 1_767_225_600_000}
    assert r.record["headers"] == [("h", "dg==")]


def test_oversized_and_tombstone():
    big = b'{"type":"track","messageId":"m","userId":"u","event":"x","p":"' + b"a" * 70_000 + b'"}'
    assert dec(big).reason["code"] == "too_large"
    assert dec(None).reason["code"] == "value.missing"


def test_dead_letter_key_depends_on_position_only():
    a, b = dec(b"nope", offset=5), dec(b"other garbage", offset=5)
    assert a.record["idempotency_key"] == b.record["idempotency_key"]
    assert dec(b"nope", offset=6).record["idempotency_key"] != a.record["idempotency_key"]


# ----- the msgspec fast path gives what the pydantic path gives ------------------------------
_BASE = {"type": "track", "messageId": "m1", "userId": "u1", "event": "Signed In"}
_VARIANTS = {
    "timestamp": ["2026-01-01T10:00:00Z", "2026-01-01T10:00:00", "2026-01-01 10:00:00Z",
                  "2026-01-01t10:00:00z", "2026-01-01T10:00:00.123456789Z",
                  "2026-01-01T10:00:00.9999999Z", "2026-01-01T10:00:00+05:30",
                  "2026-01-01T10:00:00-0800", "2026-01-01", "1700000000", 1700000000, 1.5,
                  "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-02-30T10:00:00Z",
                  "2026-01-01T24:00:00Z", "2026-01-01T10:00Z", "", True,
                  " 2026-01-01T10:00:00Z"],
    "receivedAt": ["2026-01-01T11:00:00Z", "bad", ""],
    "userId": ["", 5, "x" * 256, "x" * 257, True, "é" * 256],
    "anonymousId": ["a1", "", 0],
    "event": ["", 5, "x" * 200, "x" * 201, "Consent Updated"],
    "type": ["page", "identify", "alias", "group", "screen", "TRACK", 1],
    "name": ["", "Pricing", 3, "x" * 201],
    "properties": [None, [], {"a": 12345678901234567890}, {"a": -(2**63)}, "x"],
    "traits": [None, {"email": "A@b.c"}],
    "context": [None, {"timezone": 5}, {"timezone": "x" * 65}, {"device": {"id": 42}},
                {"device": {"id": True}}, {"device": {"id": 4.5}}, {"device": "d"}, []],
    "previousId": ["", "p"],
    "groupId": ["", "g", 7],
    "messageId": ["", None, 3],
}
_CASES = [dict(_BASE, **{f: v}) for f, vs in _VARIANTS.items() for v in vs]
_CASES += [dict(c, type=t) for c in list(_CASES) for t in ("page", "identify", "alias", "group")]
_CASES += [dict(_BASE, timestamp=t, receivedAt=r) for t in _VARIANTS["timestamp"]
           for r in _VARIANTS["receivedAt"]]
_FIELDS = [f.name for f in dataclasses.fields(InEvent) if f.name not in ("raw", "raw_json")]


def _view(r):
    if isinstance(r, Rejected):
        return ("rejected", r.reason)
    return ("event", {f: getattr(r, f) for f in _FIELDS})


def test_fast_and_full_decoding_agree_on_every_variant():
    from operators.decode import _slow

    fast_taken = 0
    for case in _CASES:
        value = orjson.dumps({k: v for k, v in case.items() if v is not None})
        got = dec(value)
        full = _slow(raw(value), value, 86_400_000)
        assert _view(got) == _view(full), case
        fast_taken += isinstance(got, InEvent) and got.raw is None
    assert fast_taken > 50  # the ordinary cases do take the fast path


@pytest.mark.parametrize("value", [
    b'{"type":"track","messageId":"m","userId":"u","event":"x","event":"y"}',
    b'{"type":"track","messageId":"m","userId":"u","event":"x","properties":{"a":1,"a":2}}',
    b'{"type":"track","messageId":"m","userId":"u","event":"x","properties":'
    b'{"a":123456789012345678901234567890}}',
    b'{"type":"track","messageId":"m","userId":"u","event":"x","properties":{"a":NaN}}',
    b'{"type":"track","messageId":"m","userId":"u","event":"x\\ud800"}',
    b'{"type":"track","messageId":"m","userId":"u","event":"\xff"}',
    b'{"type":"track","messageId":"m","userId":"u","event":"x"} trailing',
    b' {"type":"track","messageId":"m","userId":"u","event":"x"} ',
    b'{"type":"track","messageId":"m","userId":"u","event":"x","properties":{"b":1E400}}',
])
def test_fast_and_full_decoding_agree_on_odd_bytes(value):
    from operators.decode import _slow

    assert _view(dec(value)) == _view(_slow(raw(value), value, 86_400_000))


def test_a_fast_decoded_event_forwards_the_document_it_came_from():
    value = orjson.dumps(dict(_BASE, properties={"plan": "pro"}, extra={"kept": True}))
    ev = dec(value)
    assert isinstance(ev, InEvent) and ev.raw is None
    assert ev.document() == orjson.loads(value)
