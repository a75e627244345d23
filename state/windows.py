"""Sliding-window event counters kept inside the profile.

A counter is one flat list of ints, ``[total, m, h, d, b, n, b, n, …]``: the events counted in
all, how many buckets each level holds (minutes, hours, days), then the buckets of each level
in that order, each as a bucket index (event time // bucket width) and its count, sorted by
index. A window of length W with bucket width G counts the events whose bucket lies in the last
W/G buckets up to and including the bucket of the reference time:

=========  ===========  =======
window     bucket (G)   buckets
=========  ===========  =======
``1h``     1 minute     60
``24h``    1 hour       24
``7d``     1 hour       168
``30d``    1 day        30
=========  ===========  =======

Counting is in event time, so out-of-order events land in their own buckets and replays give
the same numbers. Buckets older than the longest window they serve are pruned.

Flat, because a profile holds a counter per event name and every cached profile is in memory:
the earlier shape (profile format 2, still read: ``upgrade``), ``[total, [[b, n], …], […],
[…]]``, took a list object per bucket: 3.5 of a simulated profile's 7.7 KB in memory, and 35
objects (4 now) for each load and store to walk.

Example:
    >>> c = new_counter()
    >>> for t in (0, 30_000, 3_600_000):
    ...     add(c, t)
    >>> window_counts(c, 3_600_000)
    {'1h': 1, '24h': 3, '7d': 3, '30d': 3, 'total': 3}
    >>> c       # 3 in all; 1 minute bucket (minute 0 is an hour old), 2 hour ones, 1 day one
    [3, 1, 2, 1, 60, 1, 0, 2, 1, 1, 0, 3]
    >>> buckets(c, 2), last_counted_ms(c)
    ([(0, 2), (1, 1)], 3600000)
"""

from __future__ import annotations

from typing import Any

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
# (name, level in the counter, bucket width, number of buckets)
WINDOWS = (("1h", 1, MINUTE, 60), ("24h", 2, HOUR, 24), ("7d", 2, HOUR, 168), ("30d", 3, DAY, 30))
# (level, bucket width, buckets kept)
LEVELS = ((1, MINUTE, 60), (2, HOUR, 168), (3, DAY, 30))
_SPANS = {name: (level, width, n) for name, level, width, n in WINDOWS}
_HEAD = 4  # total and the three levels' bucket counts


def new_counter() -> list[int]:
    return [0, 0, 0, 0]


def _start(c: list[int], level: int) -> int:
    """Where ``level``'s buckets begin in counter ``c``."""
    if level == 1:
        return _HEAD
    if level == 2:
        return _HEAD + 2 * c[1]
    return _HEAD + 2 * (c[1] + c[2])


def _bump(c: list[int], level: int, idx: int, keep: int) -> None:
    start = _start(c, level)
    end = start + 2 * c[level]
    if end > start and c[end - 2] == idx:
        c[end - 1] += 1
        return  # the newest bucket is the same: nothing new to prune
    if end == start or c[end - 2] < idx:
        c[end:end] = (idx, 1)
        c[level] += 1
        end += 2
    else:  # out of order: rare, keep the buckets sorted
        for i in range(start, end, 2):
            if c[i] == idx:
                c[i + 1] += 1
                break
            if c[i] > idx:
                c[i:i] = (idx, 1)
                c[level] += 1
                end += 2
                break
    oldest_kept = c[end - 2] - keep
    cut = start
    while cut < end and c[cut] <= oldest_kept:
        cut += 2
    if cut > start:
        del c[start:cut]
        c[level] -= (cut - start) // 2


def add(counter: list[int], ts_ms: int) -> None:
    """Count one event at ``ts_ms``."""
    counter[0] += 1
    for level, width, keep in LEVELS:
        _bump(counter, level, ts_ms // width, keep)


def count(counter: list[int], window: str, at_ms: int) -> int:
    """Events in ``window`` ending at ``at_ms`` (see the module table)."""
    if window == "total":
        return counter[0]
    level, lo, hi = span(window, at_ms)
    return in_window(counter, level, lo, hi)


def span(window: str, at_ms: int) -> tuple[int, int, int]:
    """``(level, lo, hi)``: ``window`` ending at ``at_ms`` counts the buckets of the counter's
    ``level`` in ``(lo, hi]`` (``in_window``); for a caller that counts one window of many
    counters, worked out once."""
    spec = _SPANS.get(window)
    if spec is None:
        raise KeyError(window)
    level, width, n = spec
    hi = at_ms // width
    return level, hi - n, hi


def in_window(c: list[int], level: int, lo: int, hi: int) -> int:
    """The events of counter ``c`` whose ``level`` bucket lies in ``(lo, hi]`` (``span``)."""
    start = _start(c, level)
    total = 0
    i = start + 2 * c[level] - 2
    while i >= start:  # sorted by bucket: the newest first, stop at the oldest
        b = c[i]
        if b <= lo:
            break
        if b <= hi:
            total += c[i + 1]
        i -= 2
    return total


def window_counts(counter: list[int], at_ms: int) -> dict[str, int]:
    out = {name: count(counter, name, at_ms) for name, *_ in WINDOWS}
    out["total"] = counter[0]
    return out


def buckets(c: list[int], level: int) -> list[tuple[int, int]]:
    """``level``'s ``(bucket index, count)`` pairs, oldest first."""
    start = _start(c, level)
    return [(c[i], c[i + 1]) for i in range(start, start + 2 * c[level], 2)]


def last_counted_ms(c: list[int]) -> int:
    """When the counter last counted (ms, to its finest bucket that holds any); 0 if never."""
    for level, width, _keep in LEVELS:
        if c[level]:
            return c[_start(c, level) + 2 * c[level] - 2] * width
    return 0


def merge(a: list[int], b: list[int]) -> list[int]:
    """One counter of two customers' (an identity merge): counts add bucket by bucket, and each
    level keeps what one counter would have kept of all the events."""
    out = [a[0] + b[0], 0, 0, 0]
    for level, _width, keep in LEVELS:
        counts: dict[int, int] = {}
        for c in (a, b):
            for idx, n in buckets(c, level):
                counts[idx] = counts.get(idx, 0) + n
        if counts:
            oldest_kept = max(counts) - keep
            for idx in sorted(counts):
                if idx > oldest_kept:
                    out += (idx, counts[idx])
                    out[level] += 1
    return out


def upgrade(counters: dict[str, Any]) -> None:
    """Counters stored by profile format 2 or earlier (``[total, [[b, n], …], […], […]]``),
    rewritten in place in today's flat shape; today's are left as they are."""
    for key, c in counters.items():
        if type(c) is list and len(c) == _HEAD and type(c[1]) is list:
            flat = [c[0], len(c[1]), len(c[2]), len(c[3])]
            for level in (1, 2, 3):
                for idx, n in c[level]:
                    flat += (idx, n)
            counters[key] = flat
