"""Bounds on one customer's state (``limits`` in the settings): distinct counters, traits and
sum keys, the size of a trait value, and the stored profile's size.

A limit keeps new names out (the names a customer has keep counting); a merge or an
oversized profile is trimmed deterministically: the least recently active counters first,
then the largest traits. What is kept out or trimmed is counted under the profile's
``dropped`` (``segue profile`` shows it) and the run's ``limits_dropped``.

Example:
    >>> from models.profile import new_profile
    >>> from models.settings import ProfileLimits
    >>> p = new_profile("user:u1", 0)
    >>> p.counters = {f"e{i}": [1, 0, 0, 1, i, 1] for i in range(5)}
    >>> enforce(p, ProfileLimits(max_counters=3))
    2
    >>> sorted(p.counters), p.dropped
    (['e2', 'e3', 'e4'], {'counters': 2})
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from models.profile import Profile
from models.settings import ProfileLimits
from state.windows import last_counted_ms


def dropped(p: Profile, kind: str, n: int = 1) -> None:
    d = p.dropped
    d[kind] = d.get(kind, 0) + n


def trait_too_big(v: object, limit: int) -> bool:
    if isinstance(v, str):
        return len(v) > limit // 4 and len(v.encode()) > limit
    if isinstance(v, dict | list):
        return len(orjson.dumps(v)) > limit
    return False


def enforce(p: Profile, limits: ProfileLimits) -> int:
    """Trim ``p`` to the count limits (after a merge joined two customers' names); returns
    how many entries went."""
    gone = 0
    counters = p.counters
    extra = len(counters) - limits.max_counters
    if extra > 0:
        for k in sorted(counters, key=lambda k: (last_counted_ms(counters[k]), k))[:extra]:
            del counters[k]
        dropped(p, "counters", extra)
        gone += extra
    traits, ts = p.traits, p.trait_ts
    extra = len(traits) - limits.max_traits
    if extra > 0:
        for k in sorted(traits, key=lambda k: (ts.get(k, 0), k))[:extra]:
            del traits[k]
            ts.pop(k, None)
        dropped(p, "traits", extra)
        gone += extra
    for name, sums in p.sums.items():
        extra = len(sums) - limits.max_sum_keys
        if extra > 0:
            for k in sorted(sums, key=lambda k: (abs(sums[k]), k))[:extra]:
                del sums[k]
            p.top[name] = min(sums, key=lambda k: (-sums[k], k))
            dropped(p, "sum_keys", extra)
            gone += extra
    return gone


def shrink(p: Profile, raw: bytes, limit: int, encode: Callable[[Profile], bytes]) -> bytes:
    """``raw`` (``p`` encoded) trimmed until it fits ``limit`` bytes: counters least recently
    active first, a tenth at a time, then traits largest first. Returns the new encoding."""
    counters = p.counters
    while len(raw) > limit and counters:
        n = max(len(counters) // 10, 1)
        for k in sorted(counters, key=lambda k: (last_counted_ms(counters[k]), k))[:n]:
            del counters[k]
        dropped(p, "counters", n)
        raw = encode(p)
    traits = p.traits
    while len(raw) > limit and traits:
        k = max(traits, key=lambda k: (len(orjson.dumps(traits[k])), k))
        del traits[k]
        p.trait_ts.pop(k, None)
        dropped(p, "traits")
        raw = encode(p)
    return raw
