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
