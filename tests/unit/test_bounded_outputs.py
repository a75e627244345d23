"""No output can exceed the output limit, and one that would is parked, not fatal (issue 15,
items 1: dead letters of large inputs, the size guard, outputs the broker refuses)."""

import base64
import hashlib

import orjson
import pytest

from models.events import InEvent
from models.outputs import DeadLetter
from models.settings import Settings
from operators.decode import KEY_KEEP_BYTES, RawRecord, _reject, decode
from operators.partition import Partition
from state import keys
from state.outbox import Output
from state.store import PartitionStore

T0 = 1_767_225_600_000


def raw(off: int, value: bytes, key: bytes | None = b"u1", headers=()) -> RawRecord:
    return RawRecord("segue.events", 0, off, key, value, list(headers), T0)


def good(off: int, cid: str = "u1") -> InEvent:
    ev = {"type": "track", "messageId": f"m{off}", "userId": cid, "event": "Signed In",
          "timestamp": "2026-01-01T10:00:00Z"}
    out = decode(raw(off, orjson.dumps(ev), cid.encode()), max_bytes=65536,
                 max_future_skew_ms=86_400_000)
    assert isinstance(out, InEvent)
    return out


@pytest.mark.parametrize("size", [750_000, 1_100_000, 2_000_000, 3_000_000])
def test_a_large_input_gives_a_dead_letter_that_fits(size):
    s = Settings()
    value = b'{"type":"track","blob":"' + b"x" * size + b'"}'
    rej = decode(raw(3, value), max_bytes=s.max_event_bytes, max_future_skew_ms=0,
                 keep_bytes=s.dead_letter_keep_bytes)
    assert rej.reason["code"] == "too_large"
    rec = rej.record
    DeadLetter.model_validate(rec)  # still the documented shape
    assert len(orjson.dumps(rec)) < s.max_output_bytes
    kept = base64.b64decode(rec["value_b64"])
    assert kept == value[:s.dead_letter_keep_bytes]
    assert rec["value_truncated"] is True and rec["value_bytes"] == len(value)
    assert rec["value_sha256"] == hashlib.sha256(value).hexdigest()


def test_a_small_dead_letter_is_unchanged_and_whole():
    rej = decode(raw(1, b"{not json"), max_bytes=65536, max_future_skew_ms=0)
    assert base64.b64decode(rej.record["value_b64"]) == b"{not json"
    assert "value_truncated" not in rej.record and "value_bytes" not in rej.record


def test_huge_keys_and_headers_are_bounded_too():
    key = b"k" * 500_000
    headers = [(f"h{i}", b"v" * 10_000) for i in range(50)]
    rej = decode(raw(1, b"{not json", key=key, headers=headers), max_bytes=65536,
                 max_future_skew_ms=0)
    rec = rej.record
    assert base64.b64decode(rec["key_b64"]) == key[:KEY_KEEP_BYTES]
    assert rec["key_truncated"] is True and rec["key_bytes"] == len(key)
    assert 0 < len(rec["headers"]) < 50
    assert len(rej.key) == KEY_KEEP_BYTES  # the dead letter's own message key
    assert len(orjson.dumps(rec)) < 100_000


def test_a_setting_above_the_limit_is_lowered_to_fit():
    s = Settings(max_output_bytes=100_000, dlq_keep_bytes=1_000_000)
    assert s.dead_letter_keep_bytes * 4 // 3 < s.max_output_bytes
    value = b"y" * 400_000
    rec = decode(raw(1, value), max_bytes=s.max_event_bytes, max_future_skew_ms=0,
                 keep_bytes=s.dead_letter_keep_bytes).record
    assert len(orjson.dumps(rec)) < s.max_output_bytes


def alerts(entries, s):
    return [orjson.loads(o.value) for _, o in entries if o.topic == s.topics.alerts]


def test_an_oversized_output_is_parked_with_an_alert_and_the_partition_goes_on(tmp_path):
    s = Settings(max_output_bytes=64 * 1024)
    proc = Partition(PartitionStore(tmp_path / "p"), s)
    # A dead letter built with a larger keep than this flow's limit allows: over the limit.
    big = _reject(raw(0, b"z" * 200_000), "too_large", "test", keep=1 << 20)
    big.part = "segue.events#0"
    out = proc.process([big, good(1)])
    assert all(len(o.value) <= s.max_output_bytes for _, o in out)
    assert not [o for _, o in out if o.topic == s.topics.dlq]
    (alert,) = alerts(out, s)
    assert alert["type"] == "alert.output_parked"
    assert alert["topic"] == s.topics.dlq and alert["bytes"] > s.max_output_bytes
    assert "output.too_large" in alert["reason"]
    assert proc.stats["outputs_parked"] == 1 and proc.stats["applied"] == 1
    (parked,) = proc.parked()
    assert parked.ident == alert["cause"]["parked_id"]
    assert parked.output.value == orjson.dumps(big.record)  # kept whole, to recover by hand
    # The partition goes on, and the parked output is not in the outbox to be re-sent.
    proc.process([good(2)])
    assert proc.stats["applied"] == 2
    assert all(o.topic != s.topics.dlq for _, o in proc.unacknowledged())


def test_an_output_the_broker_refuses_is_parked_at_the_next_batch(tmp_path):
    s = Settings()
    proc = Partition(PartitionStore(tmp_path / "p"), s)
    first = proc.process([good(0), good(1, "u2")])
    assert len(first) >= 2
    refused_seq, refused = first[0]
    for seq, _ in first[1:]:
        proc.acknowledge(seq)
    proc.refuse(refused_seq, "produce.refused: MSG_SIZE_TOO_LARGE: too big for the topic")
    assert proc.has_acks  # the partition must be woken to park it
    second = proc.process([])
    (alert,) = alerts(second, s)
    assert alert["reason"].startswith("produce.refused: MSG_SIZE_TOO_LARGE")
    assert proc.store.get(keys.outbox(refused_seq)) is None
    assert [p.output for p in proc.parked()] == [refused]
    # Parked, it is no longer waiting in the outbox: only the alert is.
    assert [o for _, o in proc.unacknowledged()] == [o for _, o in second]
    assert proc.outbox_entry(refused_seq) is None
    # Acknowledging the alert empties the outbox: nothing is re-sent after a restart.
    for seq, _ in second:
        proc.acknowledge(seq)
    proc.process([])
    assert proc.unacknowledged() == []


def test_parking_is_deterministic(tmp_path):
    s = Settings(max_output_bytes=64 * 1024)
    runs = []
    for name in ("a", "b"):
        proc = Partition(PartitionStore(tmp_path / name), s)
        big = _reject(raw(0, b"z" * 200_000), "too_large", "test", keep=1 << 20)
        big.part = "segue.events#0"
        runs.append([o.value for _, o in proc.process([big, good(1)])])
    assert runs[0] == runs[1]


def test_output_codec_round_trip_of_a_parked_entry(tmp_path):
    from state.outbox import park, parked

    store = PartitionStore(tmp_path / "p")
    from state.transaction import BatchTransaction, Progress

    txn = BatchTransaction(store, Progress.load(store))
    out = Output("segue.dlq", "k", b"v" * 10)
    ident = park(txn, out, "why", 5)
    txn.prepare()
    txn.commit()
    (p,) = parked(store)
    assert (p.ident, p.reason, p.at_ms, p.output) == (ident, "why", 5, out)
