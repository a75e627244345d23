"""``python -m benchmarks``: run every benchmark, write ``benchmarks/results/``."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ["benchmarks.state_memory", "benchmarks.replay_throughput", "benchmarks.nba_cost",
              "benchmarks.nba_hillstrom", "benchmarks.nba_policy"]

if __name__ == "__main__":
    failed = [b for b in BENCHMARKS if subprocess.call([sys.executable, "-m", b]) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1 if failed else 0)
