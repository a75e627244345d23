"""``python -m benchmarks [NAME ...]``: run benchmarks (default: all), write
``benchmarks/results/``. ``segue bench`` and ``make bench`` call this."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ["state_memory", "replay_throughput", "throughput", "latency", "nba_cost",
              "nba_hillstrom", "nba_policy"]

# Benchmarks run more than once with different arguments: latency and timers apart, so a
# backlog left by a rate the flow cannot sustain does not delay the timers.
# Latency also in 20 s runs: Tansu's memory storage slows as it fills, so over 60 s the
# broker itself dominates (see the results README).
# The 20 s runs are repeated: their tails vary a lot from run to run on a shared 2-core machine.
RUNS = {"latency": [["--timers", "0"], ["--rates", "1000,2000", "--seconds", "20", "--timers",
                                        "0", "--name", "latency_20s", "--repeat", "3"],
                    ["--rates", "", "--timers", "100000"]],
        "state_memory": [[], ["--customers", "5000000"]]}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    failed = [b for b in names or BENCHMARKS for args in RUNS.get(b, [[]])
              if subprocess.call([sys.executable, "-m", f"benchmarks.{b}", *args]) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
