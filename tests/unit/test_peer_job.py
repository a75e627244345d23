"""Segue configured for the Quix peer's job (``benchmarks/peer_job/``) sends exactly the
peer's dispatches: the throughput benchmark's like-for-like ratio rests on that."""

from collections import defaultdict
from pathlib import Path

import orjson

from benchmarks.peers.quix_core import rule
from segue.config import load_settings
from segue.kafka_io import customer_key
from segue.replay import replay
from segue.simulator import simulate

JOB = Path(__file__).resolve().parents[2] / "benchmarks" / "peer_job"


class _State:
    """One customer's state as the peer's rule sees it (Quix's ``State``: get and set)."""

    def __init__(self) -> None:
        self.values: dict = {}

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    def set(self, key: str, value: object) -> None:
        self.values[key] = value


def test_segue_doing_the_peers_job_sends_the_peers_dispatches(tmp_path):
    # Few customers for many events, so that caps refuse sends as well as pass them.
    events = list(simulate(1_000, 20_000, seed=3))
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))

    states: dict[str, _State] = defaultdict(_State)
    peer, triggers = set(), 0
    for e in events:  # the peer sees each customer's events in order, keyed as produced
        out = rule(e, states[customer_key(e)])
        triggers += (e.get("event") or e.get("type")) in {"Product Added", "Checkout Started",
                                                          "Trial Started", "Cart Viewed"}
        if out is not None:
            peer.add((out["customer_id"], out["at_ms"], out["channel"], out["template"]))

    settings = load_settings(JOB / "segue.yaml")
    summary = replay(settings, JOB / "journeys", path, tmp_path / "out",
                     state_dir=tmp_path / "state")
    assert summary["dead_lettered"] == 0
    lines = (tmp_path / "out" / "dispatches.jsonl").read_bytes().splitlines()
    segue = [orjson.loads(x) for x in lines]
    got = {(d["customer_id"], d["at_ms"], d["channel"], d["template"]) for d in segue}

    assert len(segue) == len(got)                  # no dispatch twice
    assert 0 < len(peer) < triggers * 0.8          # the caps did refuse sends
    assert got == peer
    # The peer's outputs and no others: no audit log, journey events, analytics or
    # customer events (identity stitching is off, as the peer keys customers by their ids).
    for name in ("decisions", "journey-events", "analytics", "customer-events"):
        assert (tmp_path / "out" / f"{name}.jsonl").read_bytes() == b"", name
