"""Crash safety: SIGKILL ``segue run`` at random moments, restart, drain.

After draining, every customer's counters equal the exact counts (no loss, no double count),
and every output a clean run emits is present at least once, duplicates sharing their key
and bytes.
"""

from __future__ import annotations

import random
from collections import defaultdict

import orjson
import pytest

from segue.kafka_io import consume_all, event_records, produce_records
from segue.simulator import simulate
from state import keys
from state.inspect import iter_profiles, open_read_only, partition_stores, profile_view
from tests.conftest import kill9, wait_for
from tests.expected import expected_counters

pytestmark = pytest.mark.integration


def applied_total(state_dir, topic) -> int:
    """Events applied so far, read from the stores' applied offsets (read-only, live)."""
    n = 0
    for path in partition_stores(state_dir):
        try:
            s = open_read_only(path)
        except Exception:  # noqa: BLE001 - store being created right now
            continue
        try:
            n += int(s.get(keys.applied(topic)) or b"-1") + 1
        finally:
            s.close()
    return n


def outputs(job) -> dict[str, list[bytes]]:
    """Output identity -> every value seen with it, across the job's output topics.

    Lifecycle changes are identified by their idempotency key. Dead letters by source
    partition and offset: their key also names the input topic, which differs between the
    two jobs of this test (each has its own topic prefix), and their Kafka timestamp, which
    differs because the input was produced twice.
    """
    seen: dict[str, list[bytes]] = defaultdict(list)
    for m in consume_all(job.broker.bootstrap, job.topics.customer_events):
        seen[orjson.loads(m.value())["idempotency_key"]].append(m.value())
    dlq = consume_all(job.broker.bootstrap, job.topics.dlq)
    keys_seen: dict[str, set[str]] = defaultdict(set)
    for m in dlq:
        r = orjson.loads(m.value())
        ident = f"dlq:{r['source']['partition']}:{r['source']['offset']}"
        keys_seen[ident].add(r["idempotency_key"])
        seen[ident].append(orjson.dumps({**r, "idempotency_key": None, "source": {
            **r["source"], "topic": None, "timestamp_ms": None}}))
    assert all(len(k) == 1 for k in keys_seen.values()), "a dead letter changed its key"
    return seen


def test_sigkill_three_times_then_drain_is_exact(job_factory):
    rng = random.Random(2026)
    crash = job_factory()
    # No identity links here: which merges a customer goes through depends on how partitions
    # interleave, so only a link-free stream has one exact set of outputs to compare against.
    # (test_identity.py crashes a merging stream and checks its state.)
    events = list(simulate(customers=20_000, events=200_000, seed=3, link_anonymous=False))
    records = list(event_records(events))
    records += [(f"junk-{i}", b"{oops") for i in range(200)]  # dead letters must survive too
    rng.shuffle(records[-5000:])
    produce_records(crash.broker.bootstrap, crash.topics.events, records)
    total = len(records)

    kills = 0
    for target in sorted(rng.uniform(lo, hi) for lo, hi in ((0.1, 0.3), (0.35, 0.6),
                                                              (0.65, 0.9))):
        run = crash.start_run("--until-eof")
        wait_for(lambda t=target, r=run: applied_total(crash.state_dir, crash.topics.events)
                 >= t * total or r.poll() is not None, timeout=180, every=0.02,
                 what=f"{target:.0%} applied")
        assert run.poll() is None, f"run ended before the kill:\n{crash.last_log()[-2000:]}"
        kill9(run)
        kills += 1
        # killed mid-run, not after
        assert applied_total(crash.state_dir, crash.topics.events) < total
    assert kills == 3
    crash.run_until_eof()

    # 1. Counters are exact.
    expected = expected_counters(events)
    got = {p["id"]: profile_view(p)["counters"] for p in iter_profiles(crash.state_dir)}
    assert got == expected

    # 2. Outputs: everything a clean run emits is there; duplicates are byte-identical.
    clean = job_factory()
    produce_records(clean.broker.bootstrap, clean.topics.events, records)
    clean.run_until_eof()
    want = outputs(clean)
    have = outputs(crash)
    assert sum(1 for k in want if k.startswith("dlq:")) == 200
    assert len(want) > 1000
    missing = set(want) - set(have)
    extra = set(have) - set(want)
    assert not missing, f"{len(missing)} outputs lost"
    assert not extra, f"{len(extra)} outputs a clean run does not emit"
    for key, values in have.items():
        assert len(set(values)) == 1, f"duplicates of {key} differ"
        assert values[0] == want[key][0]
