"""Replay throughput: ``segue replay`` with the shipped journeys over N simulated events.

Run: ``python -m benchmarks.replay_throughput [--events 1000000 --customers 100000]``.
Writes ``benchmarks/results/replay_throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.common import write_result
from models.settings import Settings
from segue.replay import replay
from segue.simulator import simulate

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="segue-bench-replay-"))
    events = tmp / "events.jsonl"
    t = time.monotonic()
    with events.open("wb") as f:
        for ev in simulate(args.customers, args.events, seed=7):
            f.write(orjson.dumps(ev) + b"\n")
    print(f"simulated {args.events:,} events in {time.monotonic() - t:.0f}s", flush=True)
    summary = replay(Settings(), ROOT / "journeys", events, tmp / "out", tmp / "state",
                     progress=True)
    result = {
        "events": summary["events"],
        "customers": args.customers,
        "journeys": sorted(p.stem for p in (ROOT / "journeys").glob("*.yaml")),
        "seconds": summary["seconds"],
        "events_per_s": summary["events_per_s"],
        "events_phase_seconds": summary["events_seconds"],
        "drain_phase_seconds": summary["drain_seconds"],
        "note": "events_per_s counts the whole run: the event phase plus the end-of-input "
                "drain that fires every timer due within 35 days of each customer's last event",
        "outputs": summary["outputs"],
    }
    write_result("replay_throughput", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
