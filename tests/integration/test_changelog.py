"""State that survives losing its disk, and follows partitions when the cluster is rescaled.

Every partition store is mirrored to the compacted changelog topic (``flows.changelog``); a
process that starts without a partition's store, or with a stale one, rebuilds it from there
before processing. Through the real broker:

- SIGKILL a run, delete its whole state dir, start again: counters exact, every output of a
  clean run present, duplicates byte-identical, the restore reported with its time;
- 2 → 3 → 1 processes, each process with a state dir of its own (as on separate hosts),
  input arriving between the runs: counters exact at the end.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flows.changelog import read_tails
from segue.kafka_io import event_records, produce_records
from segue.simulator import simulate
from state import keys
from state.inspect import iter_profiles, open_read_only, partition_stores, profile_view
from tests.conftest import kill9, wait_for
from tests.expected import expected_counters
from tests.integration.test_crash import applied_total, outputs

pytestmark = pytest.mark.integration

RESTORED = re.compile(r"restored partition (\d+): ([\d,]+) records \(([\d,]+) keys, "
                      r"([\d.]+) MB\) in ([\d.]+)s")


def restores(log: str) -> dict[int, tuple[int, float]]:
    """Partition -> (keys, seconds) of each restore a run reported."""
    return {int(m[1]): (int(m[3].replace(",", "")), float(m[5])) for m in RESTORED.finditer(log)}


def test_lost_state_dir_is_restored_from_the_changelog_exactly(job_factory):
    job = job_factory()
    events = list(simulate(customers=6_000, events=60_000, seed=31, link_anonymous=False))
    records = list(event_records(events)) + [(f"junk-{i}", b"{oops") for i in range(50)]
    produce_records(job.broker.bootstrap, job.topics.events, records)

    run = job.start_run("--until-eof")
    wait_for(lambda: applied_total(job.state_dir, job.topics.events) >= 0.4 * len(records)
             or run.poll() is not None, timeout=180, every=0.02, what="40% applied")
    assert run.poll() is None, f"run ended before the kill:\n{job.last_log()[-2000:]}"
    kill9(run)
    assert applied_total(job.state_dir, job.topics.events) < len(records)
    shutil.rmtree(job.state_dir)  # the disk is gone

    log = job.run_until_eof()
    restored = restores(log)
    assert set(restored) == set(range(4)), log[-3000:]  # every partition came back
    assert all(n > 0 for n, _ in restored.values())

    got = {p["id"]: profile_view(p)["counters"] for p in iter_profiles(job.state_dir)}
    assert got == expected_counters(events)

    clean = job_factory()
    produce_records(clean.broker.bootstrap, clean.topics.events, records)
    clean.run_until_eof()
    want, have = outputs(clean), outputs(job)
    assert len(want) > 1000 and sum(k.startswith("dlq:") for k in want) == 50
    assert not set(want) - set(have), f"{len(set(want) - set(have))} outputs lost"
    assert not set(have) - set(want)
    for key, values in have.items():
        assert len(set(values)) == 1, f"duplicates of {key} differ"
        assert values[0] == want[key][0]


def start_cluster(job, dirs: list[Path]) -> list[subprocess.Popen]:
    """``segue run`` as ``len(dirs)`` cooperating processes, each with its own state dir."""
    from flows.topics import free_port

    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in dirs)
    return [job.start_run("--until-eof", "--process-id", str(i), "--addresses", addresses,
                          state_dir=d) for i, d in enumerate(dirs)]


def test_rescaling_two_three_one_processes_keeps_exact_counts(job_factory, tmp_path):
    job = job_factory()
    events = list(simulate(customers=1_500, events=30_000, seed=32))
    chunks = [events[:10_000], events[10_000:20_000], events[20_000:]]
    hosts = [tmp_path / f"host{i}" for i in range(3)]
    logs = []
    for chunk, dirs in zip(chunks, ([hosts[0], hosts[1]], hosts, [hosts[1]]), strict=True):
        produce_records(job.broker.bootstrap, job.topics.events, event_records(chunk))
        procs = start_cluster(job, dirs)
        try:
            codes = [p.wait(300) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    kill9(p)
        logs.append("\n".join((job.logs / f"run-{n}.log").read_text()
                              for n in range(job._n - len(dirs) + 1, job._n + 1)))
        assert codes == [0] * len(dirs), logs[-1][-4000:]

    # The single last process held every partition: its state dir has all customers.
    got = {p["id"]: profile_view(p)["counters"] for p in iter_profiles(hosts[1])}
    assert got == expected_counters(events)
    # State moved: the third host and the last run rebuilt partitions they never had.
    assert restores(logs[1]), logs[1][-3000:]
    assert restores(logs[2]) or "moved on elsewhere" in logs[2], logs[2][-3000:]
    # The changelog ends where each store ends: a store lost now restores to the same place.
    tails = read_tails(job.broker.bootstrap, job.topics.changelog, 4)
    for path in partition_stores(hosts[1]):
        s = open_read_only(path)
        try:
            part = int(path.name.rpartition("-")[2])
            assert tails[part] is not None
            assert tails[part].seq == int(s.get(keys.CHANGELOG_SEQ))
        finally:
            s.close()


def test_a_store_without_a_changelog_is_seeded_and_a_diverged_one_refused(job_factory):
    """State made with the changelog off (or by an earlier version) seeds an empty changelog
    at the first start with it on, and restores exactly from there; a store that changed
    while the changelog was off again is refused with a clear error, not a traceback."""
    import yaml

    job = job_factory(store={"changelog": False})
    events = list(simulate(customers=800, events=8_000, seed=33, link_anonymous=False))
    produce_records(job.broker.bootstrap, job.topics.events, event_records(events[:5_000]))
    job.run_until_eof()

    def changelog(on: bool) -> None:
        data = yaml.safe_load(job.config.read_text())
        job.config.write_text(yaml.safe_dump({**data, "store": {"changelog": on}}))

    changelog(True)
    produce_records(job.broker.bootstrap, job.topics.events, event_records(events[5_000:]))
    log = job.run_until_eof()
    assert log.count(": seeded from the local store") == 4, log[-3000:]
    shutil.rmtree(job.state_dir)
    restored = restores(job.run_until_eof())
    assert set(restored) == set(range(4))
    got = {p["id"]: profile_view(p)["counters"] for p in iter_profiles(job.state_dir)}
    assert got == expected_counters(events)

    changelog(False)
    more = list(simulate(customers=50, events=500, seed=34, link_anonymous=False))
    produce_records(job.broker.bootstrap, job.topics.events, event_records(more))
    job.run_until_eof()
    changelog(True)
    p = job.start_run("--until-eof")
    assert p.wait(120) != 0
    out = job.last_log()
    assert "was changed without a changelog" in out and "Delete the store" in out, out[-2000:]
    assert "Traceback" not in out
