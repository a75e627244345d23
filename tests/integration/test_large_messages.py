"""Inputs of 750 KB to 3 MB while tailing: each is one bounded dead letter, the good events
around them are applied, the flow keeps running and starts again cleanly (issue 15, item 1).
And an output the producer refuses comes back as a delivery error, never an exception."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest
from confluent_kafka import KafkaError, Producer

from flows.producer import OutputProducer, is_permanent
from segue.kafka_io import consume_all, event_records
from segue.simulator import simulate
from state.inspect import iter_profiles
from state.outbox import Output
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

SIZES = (750_000, 1_100_000, 2_000_000, 3_000_000)


def produce(bootstrap: str, topic: str, records) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 10_000_000,
                  "partitioner": "murmur2_random", "linger.ms": 5})
    errors: list = []
    for key, value in records:
        p.produce(topic, key=key, value=value,
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
        p.poll(0)
    assert p.flush(30) == 0 and not errors, errors


def big_event(i: int, size: int) -> bytes:
    return orjson.dumps({"type": "track", "messageId": f"big{i}", "userId": f"big-{i}",
                         "event": "Huge", "properties": {"blob": "x" * size}})


def test_large_inputs_never_stop_the_flow(job_factory):
    job = job_factory()
    good = list(event_records(simulate(customers=50, events=400, seed=3, duplicate_rate=0)))
    bigs = [(f"big-{i}", big_event(i, n)) for i, n in enumerate(SIZES)]
    run = job.start_run()  # tailing, as in production
    try:
        produce(job.broker.bootstrap, job.topics.events, good[:200] + bigs[:2])
        produce(job.broker.bootstrap, job.topics.events, bigs[2:] + good[200:])
        dlq = wait_for(lambda: (m := consume_all(job.broker.bootstrap, job.topics.dlq))
                       and len(m) >= len(SIZES) and m, timeout=90, what="4 dead letters")
        wait_for(lambda: sum(p["events"] for p in iter_profiles(job.state_dir)) == 400,
                 timeout=60, what="400 applied events")
        assert run.poll() is None, "the flow must still be running:\n" + job.last_log()[-2000:]
    finally:
        run.terminate()
        run.wait(20)
    records = sorted((orjson.loads(m.value()) for m in dlq), key=lambda r: r["value_bytes"])
    assert [r["reason"]["code"] for r in records] == ["too_large"] * len(SIZES)
    for (_, value), r in zip(sorted(bigs, key=lambda kv: len(kv[1])), records, strict=True):
        assert r["value_bytes"] == len(value) and r["value_truncated"] is True
        assert r["value_sha256"] == hashlib.sha256(value).hexdigest()
        assert value.startswith(base64.b64decode(r["value_b64"]))
        assert len(orjson.dumps(r)) < job.settings.max_output_bytes
    # A restart finds nothing stuck in the outbox and runs to the end of the input.
    out = job.run_until_eof()
    assert "Traceback" not in out
    assert len(consume_all(job.broker.bootstrap, job.topics.dlq)) == len(SIZES)


def test_the_producer_reports_a_refused_output_instead_of_raising(broker, job_factory):
    job = job_factory()
    prod = OutputProducer(broker.bootstrap, max_output_bytes=100_000)
    got: list = []
    prod.send(Output(job.topics.dlq, "k", b"v" * 1_000_000),
              lambda err, msg: got.append((err, msg)))
    prod.send(Output(job.topics.dlq, "k", b"small"), lambda err, msg: got.append((err, msg)))
    assert prod.flush(20) == 0
    (err, msg), (ok, delivered) = got
    assert msg is None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE and is_permanent(err)
    assert ok is None and delivered.value() == b"small"


def test_a_flood_of_new_names_then_merges_runs_through_live(job_factory):
    """The merge of four customers with 5,000 event names each once handed over 1.25 MB in
    one repartition message and stopped the flow; with the profile limits it fits."""
    from tests.unit.test_limits import flood

    job = job_factory()
    evs = flood()
    produce(job.broker.bootstrap, job.topics.events,
            [(e.get("anonymousId") or e["userId"], orjson.dumps(e)) for e in evs])
    out = job.run_until_eof()
    assert "outputs parked" not in out and "Traceback" not in out
    profiles = [p for p in iter_profiles(job.state_dir) if p["id"] == "alice"]
    (alice,) = profiles
    assert alice["events"] == len(evs)
    assert len(alice["counters"]) <= job.settings.limits.max_counters
    assert alice["dropped"]["counters"] >= 4 * 5_000 - job.settings.limits.max_counters
    assert "kept out by profile limits" in out
