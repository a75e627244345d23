"""Always-valid experiment verdicts (issue 18, item 5): 1,000 A/A experiments, each looked at
every hour for two days, are called significant at some look no more than 5 % of the time,
where the fixed-horizon z-test used before calls far more; a real lift is still found."""

from __future__ import annotations

import numpy as np

from benchmarks.experiments_aa import z_test  # the fixed-horizon test verdicts used before
from operators.analytics.partials import compare

HOURS = 48
PER_HOUR = 60  # customers per arm and hour


def ever_significant(rate_t: float, rate_c: float, experiments: int, seed: int,
                     judge=compare) -> float:
    """Share of experiments with a "significant" verdict at any hourly look."""
    rng = np.random.default_rng(seed)
    conv_t = rng.binomial(PER_HOUR, rate_t, size=(experiments, HOURS)).cumsum(axis=1)
    conv_c = rng.binomial(PER_HOUR, rate_c, size=(experiments, HOURS)).cumsum(axis=1)
    hits = 0
    for e in range(experiments):
        for h in range(HOURS):
            n = PER_HOUR * (h + 1)
            if judge(n, int(conv_t[e, h]), n, int(conv_c[e, h]))["verdict"] == "significant":
                hits += 1
                break
    return hits / experiments


def test_a_a_experiments_looked_at_hourly_are_rarely_called_significant():
    assert ever_significant(0.10, 0.10, 1000, seed=1) <= 0.05
    assert ever_significant(0.10, 0.10, 1000, seed=1, judge=z_test) > 0.15  # peeking


def test_a_real_lift_is_still_found_within_two_days():
    assert ever_significant(0.13, 0.10, 300, seed=2) >= 0.7


def test_the_confidence_sequence_covers_zero_lift_at_every_look_of_most_a_a_tests():
    rng = np.random.default_rng(3)
    bad = 0
    for _ in range(300):
        ct = rng.binomial(PER_HOUR, 0.2, HOURS).cumsum()
        cc = rng.binomial(PER_HOUR, 0.2, HOURS).cumsum()
        for h in range(HOURS):
            n = PER_HOUR * (h + 1)
            lo, hi = compare(n, int(ct[h]), n, int(cc[h]))["ci"]
            if not lo <= 0 <= hi:
                bad += 1
                break
    assert bad / 300 <= 0.05


def test_sample_size_needed_is_where_the_lift_becomes_significant():
    r = compare(1000, 120, 1000, 100)
    need = r["customers_per_arm_needed"]
    assert need > 1000 and r["verdict"] == "not significant (needs more data)"
    above = int(need * 1.05)  # a little over: whole conversions make the lift a hair smaller
    assert compare(above, round(0.12 * above), above, round(0.10 * above))["verdict"] == \
        "significant"
    below = int(need * 0.8)
    assert compare(below, round(0.12 * below), below, round(0.10 * below))["verdict"] != \
        "significant"
