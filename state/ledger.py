"""The frequency ledger: a customer's recent sends, kept in the profile under ``ledger``.

Each entry is ``[at_ms, channel, journey_id, dispatch_hash]`` (event time), sorted by time,
pruned to the longest window (7 days). A dispatch is counted once, by the hash of its id, so
replays and retries never count a send twice; merged customers' ledgers add up (by hash).

>>> from models.profile import new_profile
>>> p = new_profile("user:u1", 0)
>>> record_send(p, "email", "j1", "d1", 1000), record_send(p, "email", "j1", "d1", 1000)
(True, False)
>>> send_times(p, 2000, 86_400_000, "email", None)
[1000]
"""

from __future__ import annotations

import hashlib

from models.profile import Profile

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


def send_hash(dispatch_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(dispatch_id.encode(), digest_size=6).digest())


def record_send(p: Profile, channel: str, journey: str, dispatch_id: str, at: int) -> bool:
    """Count a send; False if this dispatch was already counted."""
    ledger = p.ledger
    h = send_hash(dispatch_id)
    if any(e[3] == h for e in ledger):
        return False
    ledger.append([at, channel, journey, h])
    horizon = max(e[0] for e in ledger) - WEEK_MS
    p.ledger = sorted((e for e in ledger if e[0] > horizon), key=lambda e: (e[0], e[3]))
    return True


def send_times(p: Profile, at: int, span_ms: int, channel: str | None,
               journey: str | None) -> list[int]:
    """Times of the sends in the window ``(at - span, at]``, oldest first: on ``channel``
    (None: any) of ``journey`` (None: any).

    >>> from models.profile import new_profile
    >>> p = new_profile("user:u1", 0)
    >>> _ = record_send(p, "email", "j1", "d1", 1000), record_send(p, "push", "j2", "d2", 1500)
    >>> send_times(p, 2000, 86_400_000, None, None), send_times(p, 2000, 86_400_000, "push", None)
    ([1000, 1500], [1500])
    >>> send_times(p, 2000, 86_400_000, None, "j1"), send_times(p, 2000, 800, None, None)
    ([1000], [1500])
    """
    lo = at - span_ms
    out = [e[0] for e in p.ledger if lo < e[0] <= at
           and (channel is None or e[1] == channel) and (journey is None or e[2] == journey)]
    out.sort()
    return out


def merge_ledgers(into: Profile, frm: Profile) -> None:
    seen = {e[3] for e in into.ledger}
    into.ledger = sorted([*into.ledger,
                             *(e for e in frm.ledger if e[3] not in seen)],
                            key=lambda e: (e[0], e[3]))
