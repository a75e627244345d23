"""The hostile corpus and seeded mutations among valid events, through the live flow on the
real broker (issue 15, fuzz suite): the flow never exits, every bad message is in the
dead-letter topic exactly once with a documented reason, every valid one is applied, and the
valid customers' counters are exact."""

from __future__ import annotations

import base64
import hashlib
import random
from collections import Counter

import orjson
import pytest
from confluent_kafka import Producer

from models.settings import Settings
from operators.decode import REASON_CODES, RawRecord, Rejected, decode
from segue.kafka_io import consume_all
from state.inspect import iter_profiles
from tests.conftest import wait_for
from tests.fuzzing import corpus, odd_valid

pytestmark = pytest.mark.integration


def mutate(rng: random.Random, body: bytes) -> bytes:
    how = rng.randrange(5)
    if how == 0:
        return body[:rng.randrange(len(body))]
    if how == 1:
        i = rng.randrange(len(body))
        return body[:i] + bytes([rng.randrange(256)]) + body[i + 1:]
    if how == 2:
        return body.replace(b'"userId"', b'"userId":7,"x"', 1)
    if how == 3:
        return body.replace(b'"2026-01-01T10:00:00Z"', b'"2026-02-30T25:61:00Z"')
    return rng.randbytes(rng.randrange(1, 64))


def digest(value: bytes | None) -> str:
    return hashlib.sha256(value or b"").hexdigest()


def test_hostile_input_through_the_live_flow(job_factory):
    job = job_factory()
    rng = random.Random(15)
    valid: list[tuple[str, bytes]] = []
    for c in range(300):
        cid = f"fz-c{c}"
        valid += [(cid, orjson.dumps(odd_valid(i, cid))) for i in range(8)]
    bad: list[tuple[str | None, bytes | None]] = [
        (None if i % 3 == 0 else f"bad-{i}", v) for i, (_, v) in enumerate(corpus())]
    bad += [(f"mut-{i}", mutate(rng, orjson.dumps(odd_valid(i, f"mut-{i}")))) for i in range(400)]
    stream = valid + bad
    rng.shuffle(stream)
    # What the edge rejects, decided offline by the same decoder (the live flow must agree).
    s = Settings()
    skew = s.max_future_skew_s * 1000
    rejected = Counter(digest(v) for _, v in stream if isinstance(decode(
        RawRecord("e", 0, 0, None, v, [], 1 << 41), max_bytes=s.max_event_bytes,
        max_future_skew_ms=skew), Rejected))
    assert sum(rejected.values()) >= 300  # most of the hostile part is rejected

    run = job.start_run()  # tailing, as in production
    try:
        p = Producer({"bootstrap.servers": job.broker.bootstrap, "linger.ms": 5,
                      "message.max.bytes": 10_000_000, "partitioner": "murmur2_random"})
        for key, value in stream:
            p.produce(job.topics.events, key=key, value=value)
            p.poll(0)
        assert p.flush(60) == 0
        n_dead = sum(rejected.values())
        dlq = wait_for(lambda: (m := consume_all(job.broker.bootstrap, job.topics.dlq))
                       and len(m) >= n_dead and m, timeout=120, what=f"{n_dead} dead letters")
        counts = wait_for(
            lambda: (c := {pr["id"]: pr["events"] for pr in iter_profiles(job.state_dir)
                           if pr["id"].startswith("fz-c")})
            and sum(c.values()) == len(valid) and c, timeout=60, what="every valid event")
        assert run.poll() is None, "the flow must still be running"
    finally:
        run.terminate()
        run.wait(20)
    records = [orjson.loads(m.value()) for m in dlq]
    assert len(records) == n_dead  # exactly once each
    assert {r["reason"]["code"] for r in records} <= set(REASON_CODES)
    got = Counter(r.get("value_sha256") or digest(base64.b64decode(r["value_b64"]))
                  for r in records)
    assert got == rejected
    assert counts == {f"fz-c{c}": 8 for c in range(300)}
