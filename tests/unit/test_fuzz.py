"""Property-based fuzzing of the edge and the partition step (issue 15, fuzz suite): any bytes
decode to an event or a dead letter with a documented reason, never an exception; any mix of
them applies without a processing error, every dead letter emitted exactly once."""

from __future__ import annotations

import tempfile

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.events import InEvent
from models.settings import Settings
from operators.decode import REASON_CODES, RawRecord, Rejected, decode
from operators.partition import Partition
from state.store import PartitionStore
from tests.fuzzing import corpus, messages

T0 = 1_767_225_600_000
S = Settings()

# Where the reason is certain; the rest of the corpus may be valid (then it is applied).
EXPECTED = {
    "random bytes": "json.invalid", "empty": "json.invalid", "whitespace": "json.invalid",
    "truncated json": "json.invalid", "truncated string": "json.invalid",
    "tombstone": "value.missing", "json null": "json.not_object",
    "json array": "json.not_object", "nested 100k arrays": "too_large",
    "nested 100k objects": "too_large", "nested 70 in properties": "json.too_deep",
    "bad utf-8": "json.invalid", "overlong utf-8": "json.invalid", "nan": "json.invalid",
    "infinity": "json.invalid", "type number": "type.unknown", "type unknown": "type.unknown",
    "messageId object": "schema.invalid", "userId list": "schema.invalid",
    "userId bool": "schema.invalid", "event number": "schema.invalid",
    "no ids": "id.missing", "no messageId": "id.missing", "year 10000": "schema.invalid",
    "timestamp garbage": "schema.invalid", "timestamp month 13": "schema.invalid",
    "far future": "timestamp.future", "consent bad channel": "schema.invalid",
    "lone surrogate": "json.invalid", "oversize 65 KB": "too_large",
    "oversize 1 MB": "too_large", "oversize 3 MB": "too_large",
}


def dec(value: bytes | None, off: int = 0, key: bytes | None = b"k") -> InEvent | Rejected:
    return decode(RawRecord("segue.events", 0, off, key, value, [], T0),
                  max_bytes=S.max_event_bytes, max_future_skew_ms=S.max_future_skew_s * 1000,
                  keep_bytes=S.dead_letter_keep_bytes)


def check(out: InEvent | Rejected) -> None:
    if isinstance(out, Rejected):
        assert out.reason["code"] in REASON_CODES, out.reason
        assert out.reason["detail"]
        assert len(orjson.dumps(out.record)) < S.max_output_bytes
    else:
        assert isinstance(out, InEvent)
        assert out.customer_id and out.message_id and out.ts_ms > 0
        orjson.dumps(out.document())  # forwarding and state take what the edge accepted


@settings(max_examples=1500, deadline=None)
@given(messages(), st.one_of(st.none(), st.binary(max_size=40)))
def test_any_bytes_decode_to_an_event_or_a_documented_dead_letter(value, key):
    check(dec(value, key=key))


def test_the_hostile_corpus_decodes_to_documented_reasons():
    got = {}
    for what, value in corpus():
        out = dec(value)
        check(out)
        got[what] = out.reason["code"] if isinstance(out, Rejected) else None
    assert {k: got[k] for k in EXPECTED} == EXPECTED


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=40))
def test_any_mix_applies_without_a_processing_error(values):
    with tempfile.TemporaryDirectory() as d:
        # Partition 0 of 4: customers homed elsewhere are forwarded (their document encoded).
        proc = Partition(PartitionStore(d), S, partition=0, partitions=4)
        items = [dec(v, off=i) for i, v in enumerate(values)]
        for it in items:
            it.part = "segue.events#0"
        out = proc.process(items)
        rejected = [it for it in items if isinstance(it, Rejected)]
        events = len(items) - len(rejected)
        n = proc.stats
        assert n["processing_errors"] == 0
        assert n["dead_lettered"] == len(rejected)
        dlq = [orjson.loads(o.value) for _, o in out if o.topic == S.topics.dlq]
        assert sorted(r["source"]["offset"] for r in dlq) == [r.offset for r in rejected]
        assert n["applied"] + n["deduplicated"] + n["dropped_erased"] + n["erasures"] \
            + n["erasure_repeated"] + n["forwarded"] == events
        proc.store.close()
