"""100k simulated events through the real broker: every counter equals the exact count."""

from __future__ import annotations

import pytest

from segue.kafka_io import event_records, produce_records
from segue.simulator import simulate
from state.inspect import iter_profiles, profile_view
from tests.expected import expected_counters

pytestmark = pytest.mark.integration


def test_counters_equal_exact_counts_from_input(job_factory):
    job = job_factory()
    events = list(simulate(customers=3_000, events=100_000, seed=11))
    assert len(events) > 100_000  # plus retried duplicates
    produce_records(job.broker.bootstrap, job.topics.events, event_records(events))

    job.run_until_eof()

    expected = expected_counters(events)
    got = {p["id"]: profile_view(p)["counters"] for p in iter_profiles(job.state_dir)}
    assert set(got) == set(expected)
    mismatches = [cid for cid in expected if got[cid] != expected[cid]]
    assert not mismatches, (mismatches[:3], [got[c] for c in mismatches[:1]],
                            [expected[c] for c in mismatches[:1]])
    dupes = len(events) - sum(c["total"] for e in expected.values() for c in e.values())
    assert dupes > 0  # the input really had duplicates to drop
    assert sum(p["events"] for p in iter_profiles(job.state_dir)) == len(events) - dupes


def test_two_processes_share_the_partitions_and_count_exactly(job_factory):
    import subprocess
    import sys

    import orjson

    job = job_factory()
    events = list(simulate(customers=800, events=20_000, seed=12))
    produce_records(job.broker.bootstrap, job.topics.events, event_records(events))
    r = subprocess.run(
        job.cli("run", "--brokers", job.broker.bootstrap, "--state-dir", str(job.state_dir),
                "--config", str(job.config), "--processes", "2", "--until-eof",
                "--progress-every", "0"),
        capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    expected = expected_counters(events)
    got = {p["id"]: profile_view(p)["counters"] for p in iter_profiles(job.state_dir)}
    assert got == expected
    # `segue profile` shows the same numbers, from whichever partition store holds them.
    cid = max(expected, key=lambda c: sum(v["total"] for v in expected[c].values()))
    shown = subprocess.run([sys.executable, "-m", "segue.cli", "profile", cid, "--state-dir",
                            str(job.state_dir)], capture_output=True, text=True, check=True)
    assert orjson.loads(shown.stdout)["counters"] == expected[cid]
