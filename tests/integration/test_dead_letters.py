"""1,000 malformed messages among 10,000 good ones: all 1,000 in the DLQ with reasons, all
10,000 applied, and the flow keeps running."""

from __future__ import annotations

import base64
from collections import Counter

import orjson
import pytest

from segue.kafka_io import consume_all, event_records, produce_records
from segue.simulator import simulate
from state.inspect import iter_profiles
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

MALFORMED: list[tuple[bytes | None, str]] = [
    (b"{not json", "json.invalid"),
    (b"\xff\xfe\x00garbage", "json.invalid"),
    (b"[1, 2, 3]", "json.not_object"),
    (b'"just a string"', "json.not_object"),
    (b'{"type": "track", "event": "Signed In", "userId": "u1"}', "id.missing"),
    (b'{"type": "track", "messageId": "b1", "event": "Signed In"}', "id.missing"),
    (b'{"type": "teleport", "messageId": "b2", "userId": "u1"}', "type.unknown"),
    (b'{"type": "track", "messageId": "b3", "userId": [42], "event": "Signed In"}',
     "schema.invalid"),
    (b'{"type": "track", "messageId": "b4", "userId": "u1"}', "schema.invalid"),
    (b'{"type": "track", "messageId": "b5", "userId": "u1", "event": "Signed In", '
     b'"timestamp": "yesterday"}', "schema.invalid"),
    (b'{"type": "track", "messageId": "b6", "userId": "u1", "event": "Signed In", '
     b'"timestamp": "2999-01-01T00:00:00Z"}', "timestamp.future"),
    (b'{"type": "track", "messageId": "b7", "userId": "u1", "event": "Consent Updated", '
     b'"properties": {"channel": "pigeon", "status": "opted_out"}}', "schema.invalid"),
    (b'{"type": "track", "messageId": "b8", "userId": "u1", "event": "x", "properties": '
     + b'{"blob": "' + b"x" * 70_000 + b'"}}', "too_large"),
    (None, "value.missing"),
]


def test_malformed_go_to_dlq_with_reasons_and_flow_keeps_running(job_factory):
    job = job_factory()
    good = list(event_records(simulate(customers=500, events=10_000, seed=5,
                                       duplicate_rate=0)))
    assert len(good) == 10_000
    stream: list[tuple[str, bytes | None]] = []
    bad_sent: list[tuple[bytes | None, str]] = []
    for i, rec in enumerate(good):
        stream.append(rec)
        if i % 10 == 3:
            value, code = MALFORMED[len(bad_sent) % len(MALFORMED)]
            stream.append((f"bad-{len(bad_sent)}", value))
            bad_sent.append((value, code))
    assert len(bad_sent) == 1_000

    run = job.start_run()  # tailing, as in production
    try:
        produce_records(job.broker.bootstrap, job.topics.events, stream)
        dlq = wait_for(lambda: (m := consume_all(job.broker.bootstrap, job.topics.dlq))
                       and len(m) >= 1_000 and m, timeout=120, what="1,000 dead letters")
        applied = wait_for(
            lambda: (n := sum(p["events"] for p in iter_profiles(job.state_dir))) == 10_000
            and n, timeout=60, what="10,000 applied events")
        assert run.poll() is None, "the flow must still be running"
    finally:
        run.terminate()
        run.wait(20)

    assert applied == 10_000
    assert len(dlq) == 1_000
    records = [orjson.loads(m.value()) for m in dlq]
    # Every reason is the one expected for that input, and the original bytes are kept.
    by_value = Counter(
        (base64.b64decode(r["value_b64"]), r["reason"]["code"]) for r in records
    )
    want = Counter(((v or b""), code) for v, code in bad_sent)
    assert by_value == want
    for r in records:
        assert r["schema_version"] == 1
        assert r["reason"]["detail"]
        assert r["source"]["topic"] == job.topics.events
        assert r["source"]["offset"] >= 0
        assert r["idempotency_key"]
    assert len({r["idempotency_key"] for r in records}) == 1_000
