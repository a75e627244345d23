import random

from state.windows import add, count, new_counter, window_counts
from tests.expected import BUCKETS


def reference(ts: list[int], at: int) -> dict[str, int]:
    out = {"total": len(ts)}
    for w, (g, n) in BUCKETS.items():
        out[w] = sum(1 for t in ts if at // g - n < t // g <= at // g)
    return out


def test_windows_match_reference_for_random_out_of_order_streams():
    rng = random.Random(1)
    for _ in range(50):
        c = new_counter()
        base = 1_700_000_000_000
        ts = [base + rng.randrange(0, 40 * 86_400_000) for _ in range(rng.randrange(1, 300))]
        for t in ts:  # arrival order is not time order
            add(c, t)
        last = max(ts)
        assert window_counts(c, last) == reference(ts, last)


def test_old_buckets_are_pruned_and_windows_slide():
    c = new_counter()
    day = 86_400_000
    for d in range(60):
        add(c, d * day)
    assert count(c, "30d", 59 * day) == 30
    assert count(c, "7d", 59 * day) == 7
    assert count(c, "total", 59 * day) == 60
    assert len(c[3]) <= 30  # day buckets older than 30 days are gone
    assert len(c[1]) <= 60
