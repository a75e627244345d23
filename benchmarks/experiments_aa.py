"""Experiment verdicts looked at every hour: false "significant" calls and power.

1,000 A/A experiments (10 % conversion in both arms) and lifts of 1, 2 and 3 points, 60
customers per arm per hour, looked at every hour for 48 hours, judged by the always-valid
mSPRT (``operators.analytics.partials.compare``) and by the fixed-horizon two-proportion
z-test the verdicts used before. Reported: the share of experiments called significant at
some look (for A/A: false positives; else: power), and the median hours to that call.

Run: ``python -m benchmarks.experiments_aa``. Writes ``benchmarks/results/experiments_aa.json``.
"""

from __future__ import annotations

import math
import statistics
import sys

import numpy as np

from benchmarks.common import write_result
from operators.analytics.partials import SEQUENTIAL_TAU, compare

HOURS, PER_HOUR, BASE = 48, 60, 0.10


def z_test(n_t: int, c_t: int, n_c: int, c_c: int) -> dict:
    """The fixed-horizon two-proportion z-test the verdicts used before (p < 0.05)."""
    pooled = (c_t + c_c) / (n_t + n_c)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    p = math.erfc(abs(c_t / n_t - c_c / n_c) / se / math.sqrt(2)) if se else 1.0
    ok = min(n_t, n_c) >= 100 and min(c_t + c_c, n_t + n_c - c_t - c_c) >= 10
    return {"verdict": "significant" if ok and p < 0.05 else "not significant"}


def run(lift: float, experiments: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ct = rng.binomial(PER_HOUR, BASE + lift, size=(experiments, HOURS)).cumsum(axis=1)
    cc = rng.binomial(PER_HOUR, BASE, size=(experiments, HOURS)).cumsum(axis=1)
    out = {}
    for name, judge in (("msprt", compare), ("z_test_peeking", z_test)):
        hours = []
        for e in range(experiments):
            for h in range(HOURS):
                n = PER_HOUR * (h + 1)
                if judge(n, int(ct[e, h]), n, int(cc[e, h]))["verdict"] == "significant":
                    hours.append(h + 1)
                    break
        out[name] = {"called_significant": round(len(hours) / experiments, 4),
                     "median_hours_to_call": statistics.median(hours) if hours else None}
    return out


def main() -> int:
    result = {"hours": HOURS, "customers_per_arm_per_hour": PER_HOUR, "base_rate": BASE,
              "tau": SEQUENTIAL_TAU, "alpha": 0.05,
              "a_a": run(0.0, 1000, seed=1),
              "lifts": {f"+{round(lift * 100)}pt": run(lift, 300, seed=2 + i)
                        for i, lift in enumerate((0.01, 0.02, 0.03))}}
    write_result("experiments_aa", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
