"""Deduplication: a customer remembers the hashes of its last messageIds, so a producer's
retry of an event already applied is counted once (``dedup_recent_ids`` of them).

Example:
    >>> from models.profile import new_profile
    >>> p = new_profile("user:u1", 0)
    >>> seen_before(p, "m1", keep=2), seen_before(p, "m1", keep=2)
    (False, True)
"""

from __future__ import annotations

import hashlib

from models.profile import Profile


def message_hash(message_id: str) -> int:
    """The 63-bit hash a profile remembers a messageId by (deduplication)."""
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=8).digest()) >> 1


def seen_before(p: Profile, message_id: str, keep: int) -> bool:
    """Whether the customer had this messageId among its last ``keep``; remembers it if not."""
    h = message_hash(message_id)
    recent = p.recent_ids
    if h in recent:
        return True
    recent.append(h)
    if len(recent) > keep:
        del recent[0]
    return False
