"""The counts behind the Prometheus metrics add up to the records on the topics (issue 18,
item 7): one ``segue_decisions_total`` per decision, its reason codes counted apart."""

from __future__ import annotations

from collections import Counter

import orjson

from models.settings import Settings
from segue.replay import replay
from segue.simulator import simulate
from tests.conftest import ROOT


def test_one_decision_count_per_decision_and_reasons_apart(tmp_path):
    stream = list(simulate(1500, 20_000, seed=21))
    (tmp_path / "in.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in stream))
    summary = replay(Settings(), ROOT / "journeys", tmp_path / "in.jsonl", tmp_path / "out",
                     now_ms=1 << 62)
    decisions = [orjson.loads(x) for x in (tmp_path / "out" / "decisions.jsonl")
                 .read_bytes().splitlines()]
    by_outcome = Counter(d["outcome"] for d in decisions)
    reasons = Counter(f"{d['outcome']}:{r.split(':', 1)[0]}" for d in decisions
                      for r in d["reasons"])
    assert summary["decisions"] == dict(by_outcome)
    assert summary["decision_reasons"] == dict(reasons)
    # The stream has decisions with more than one reason: counting per reason would differ.
    assert sum(reasons.values()) > sum(by_outcome.values())
