import random

from state.windows import add, buckets, count, merge, new_counter, upgrade, window_counts
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
    assert len(buckets(c, 3)) <= 30  # day buckets older than 30 days are gone
    assert len(buckets(c, 1)) <= 60


def _random_times(rng: random.Random) -> list[int]:
    base = 1_700_000_000_000
    return [base + rng.randrange(0, 40 * 86_400_000) for _ in range(rng.randrange(0, 200))]


def test_a_merged_counter_counts_as_one_counter_of_all_the_events():
    rng = random.Random(2)
    for _ in range(50):
        ts_a, ts_b = _random_times(rng), _random_times(rng)
        a, b, both = new_counter(), new_counter(), new_counter()
        for t in ts_a:
            add(a, t)
        for t in ts_b:
            add(b, t)
        for t in ts_a + ts_b:
            add(both, t)
        last = max(ts_a + ts_b, default=0)
        for at in (last, last + 3_600_000, last + 86_400_000 + 1, last + 20 * 86_400_000):
            assert window_counts(merge(a, b), at) == window_counts(both, at)
            assert window_counts(merge(b, a), at) == window_counts(both, at)


def test_counters_of_the_earlier_shape_are_read_as_they_counted():
    rng = random.Random(3)
    for _ in range(20):
        c = new_counter()
        for t in _random_times(rng):
            add(c, t)
        # Profile format 2: [total, [[b, n], ...], [...], [...]].
        old = [c[0]] + [[[i, n] for i, n in buckets(c, level)] for level in (1, 2, 3)]
        counters = {"e": old, "today": list(c)}
        upgrade(counters)
        assert counters == {"e": c, "today": c}
