"""A state dir in use or not writable is one line saying what and what to do, not a RocksDB
traceback; ``segue profile`` reads a read-only state dir (issue 15, item 6)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest

from segue.kafka_io import event_records, produce_records
from segue.simulator import simulate
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration


def as_other_user() -> list[str]:
    """A command prefix that drops root (root ignores file permissions)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot test permissions")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_a_second_run_on_a_state_dir_in_use_says_who_holds_it(job_factory):
    job = job_factory()
    produce_records(job.broker.bootstrap, job.topics.events,
                    event_records(simulate(customers=20, events=100, seed=1)))
    first = job.start_run()
    try:
        wait_for(lambda: any((p / "LOCK").exists() for p in job.state_dir.glob("*")), 60,
                 what="the first run's stores")
        second = subprocess.run(
            job.cli("run", "--brokers", job.broker.bootstrap, "--state-dir",
                    str(job.state_dir), "--config", str(job.config), "--until-eof"),
            capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert first.poll() is None, "the first run must be unharmed"
    finally:
        first.terminate()
        first.wait(20)
    assert second.returncode == 2
    err = second.stderr.strip().splitlines()
    assert "Traceback" not in second.stderr
    assert f"is in use by another process (pid {first.pid}" in err[-1]
    assert "--state-dir" in err[-1]


def test_a_read_only_state_dir_is_a_clear_error_and_profile_still_reads_it(job_factory):
    prefix = as_other_user()
    job = job_factory()
    base = Path(tempfile.mkdtemp(prefix="segue-ro-test-"))
    try:
        events = base / "events.jsonl"
        events.write_bytes(b"".join(orjson.dumps(e) + b"\n"
                                    for e in simulate(customers=20, events=200, seed=2)))
        state = base / "state"
        subprocess.run([sys.executable, "-m", "segue.cli", "replay", "--journeys",
                        str(ROOT / "journeys"), "--events", str(events), "--out",
                        str(base / "out"), "--state-dir", str(state)],
                       check=True, capture_output=True, cwd=ROOT, timeout=120)
        customer = orjson.loads(events.read_bytes().splitlines()[0])
        who = customer.get("userId") or customer["anonymousId"]
        config = base / "segue.yaml"
        shutil.copy(job.config, config)
        subprocess.run(["chmod", "-R", "a+rX,a-w", str(base)], check=True)

        run = subprocess.run(
            prefix + job.cli("run", "--brokers", job.broker.bootstrap, "--state-dir",
                             str(state), "--config", str(config), "--until-eof"),
            capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert run.returncode == 2, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
        assert run.stderr.strip().splitlines()[-1].startswith(
            f"error: state dir {state} is not writable")

        profile = subprocess.run(prefix + job.cli("profile", "--state-dir", str(state), who),
                                 capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert profile.returncode == 0, profile.stderr[-2000:]
        assert orjson.loads(profile.stdout)["events"] > 0
        assert not (state / "partition-0" / "LOCK").stat().st_mode & 0o222  # untouched
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
