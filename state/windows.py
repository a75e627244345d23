"""Sliding-window event counters kept inside the profile.

A counter is ``[total, minutes, hours, days]``; each of the last three is a sorted list of
``[bucket_index, count]`` pairs (bucket index = event time // bucket width). A window of length
W with bucket width G counts the events whose bucket lies in the last W/G buckets up to and
including the bucket of the reference time:

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

Example:
    >>> c = new_counter()
    >>> for t in (0, 30_000, 3_600_000):
    ...     add(c, t)
    >>> window_counts(c, 3_600_000)
    {'1h': 1, '24h': 3, '7d': 3, '30d': 3, 'total': 3}
"""

from __future__ import annotations

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
# (name, level in the counter, bucket width, number of buckets)
WINDOWS = (("1h", 1, MINUTE, 60), ("24h", 2, HOUR, 24), ("7d", 2, HOUR, 168), ("30d", 3, DAY, 30))
_LEVELS = ((1, MINUTE, 60), (2, HOUR, 168), (3, DAY, 30))
_SPANS = {name: (level, width, n) for name, level, width, n in WINDOWS}


def new_counter() -> list:
    return [0, [], [], []]


def _bump(pairs: list, idx: int, keep: int) -> None:
    if pairs and pairs[-1][0] == idx:
        pairs[-1][1] += 1
    elif not pairs or pairs[-1][0] < idx:
        pairs.append([idx, 1])
    else:  # out of order: rare, keep the list sorted
        for i, p in enumerate(pairs):
            if p[0] == idx:
                p[1] += 1
                break
            if p[0] > idx:
                pairs.insert(i, [idx, 1])
                break
    newest = pairs[-1][0]
    cut = 0
    while cut < len(pairs) and pairs[cut][0] <= newest - keep:
        cut += 1
    if cut:
        del pairs[:cut]


def add(counter: list, ts_ms: int) -> None:
    """Count one event at ``ts_ms``."""
    counter[0] += 1
    for level, width, keep in _LEVELS:
        _bump(counter[level], ts_ms // width, keep)


def count(counter: list, window: str, at_ms: int) -> int:
    """Events in ``window`` ending at ``at_ms`` (see the module table)."""
    if window == "total":
        return counter[0]
    level, lo, hi = span(window, at_ms)
    return in_buckets(counter[level], lo, hi)


def span(window: str, at_ms: int) -> tuple[int, int, int]:
    """``(level, lo, hi)``: ``window`` ending at ``at_ms`` counts the buckets of the counter's
    ``level`` in ``(lo, hi]`` (``in_buckets``); for a caller that counts one window of many
    counters, worked out once."""
    spec = _SPANS.get(window)
    if spec is None:
        raise KeyError(window)
    level, width, n = spec
    hi = at_ms // width
    return level, hi - n, hi


def in_buckets(pairs: list[list[int]], lo: int, hi: int) -> int:
    """The events of one level's ``pairs`` whose bucket lies in ``(lo, hi]`` (``span``)."""
    total = 0
    for pair in reversed(pairs):  # sorted by bucket: the newest first, stop at the oldest
        i = pair[0]
        if i <= lo:
            break
        if i <= hi:
            total += pair[1]
    return total


def window_counts(counter: list, at_ms: int) -> dict[str, int]:
    out = {name: count(counter, name, at_ms) for name, *_ in WINDOWS}
    out["total"] = counter[0]
    return out
