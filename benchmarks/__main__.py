"""``python -m benchmarks [NAME ...]``: run benchmarks (default: all), write
``benchmarks/results/``. ``segue bench`` and ``make bench`` call this."""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = ["state_memory", "restore", "replay_throughput", "throughput", "latency", "nba_cost",
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
    runs = [(b, args) for b in names or BENCHMARKS for args in RUNS.get(b, [[]])]
    done: list[tuple[str, float, int]] = []
    t_all = time.monotonic()
    for i, (b, args) in enumerate(runs, 1):
        label = " ".join([b, *args])
        print(f"[bench {i}/{len(runs)}] {label} (after {_mins(time.monotonic() - t_all)})",
              file=sys.stderr, flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{b}", *args])
        done.append((label, time.monotonic() - t0, rc))
    print(f"\nbenchmarks: {len(runs)} runs in {_mins(time.monotonic() - t_all)}; results in "
          "benchmarks/results/", file=sys.stderr)
    for label, secs, rc in done:
        print(f"  {'ok  ' if rc == 0 else 'FAIL'} {label:<60} {_mins(secs):>8}", file=sys.stderr)
    failed = [label for label, _, rc in done if rc != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _mins(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
