"""Command-line input a person mistypes is refused with what was typed (issue 19, part):
a bad --brokers, a rate of -5; and a run without journeys says so."""

import subprocess
import sys

import orjson
import pytest

from tests.conftest import ROOT


def segue(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segue.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("brokers", ["localhost:19092x", "localhost", ":9092",
                                     "a:9092,b:notaport", "h:70000"])
def test_a_mistyped_brokers_list_is_refused(brokers):
    out = segue("simulate", "--customers", "2", "--events", "5", "--brokers", brokers)
    assert out.returncode == 2
    assert f"in --brokers {brokers!r}" in out.stderr and "Traceback" not in out.stderr


def test_a_rate_must_be_positive():
    out = segue("simulate", "--customers", "2", "--events", "5", "--out", "/dev/null",
                "--rate", "-5")
    assert out.returncode == 2 and "'-5': a rate must be above 0" in out.stderr


def test_replay_without_journeys_says_none_are_loaded(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_bytes(orjson.dumps({"type": "track", "messageId": "m1", "userId": "u1",
                                     "event": "Signed In",
                                     "timestamp": "2026-01-01T10:00:00Z"}) + b"\n")
    out = segue("replay", "--events", str(events), "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    assert "no journeys loaded (give --journeys DIR" in out.stderr
