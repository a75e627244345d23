"""Key encoding for the partition store (see ``state.store`` for the layout)."""

from __future__ import annotations

PROFILE = b"c|"
LINK = b"i|"        # i|<identifier> -> the customer reference it belongs to
REDIRECT = b"r|"    # r|<reference>  -> the customer it was merged into
ERASED = b"e|"      # e|<sha256 of reference> -> when it was erased (no personal data)
TIMER = b"t|"
OUTBOX = b"o|"
APPLIED = b"m|applied|"  # + input topic
OUTBOX_SEQ = b"m|seq"
WATERMARK = b"m|watermark"
ALERTS = b"m|alerts"
TIMERS_PENDING = b"m|timers"
ANALYTICS = b"m|analytics"   # this partition's cumulative analytics partials
TOTALS = b"a|"               # a|<scope>|<id>|<version> -> newest partial of every partition


def profile(ref: str) -> bytes:
    return PROFILE + ref.encode()


def link(identifier: str) -> bytes:
    return LINK + identifier.encode()


def redirect(ref: str) -> bytes:
    return REDIRECT + ref.encode()


def erased(ref: str) -> bytes:
    import hashlib

    return ERASED + hashlib.sha256(ref.encode()).hexdigest().encode()


def applied(topic: str) -> bytes:
    return APPLIED + topic.encode()


def timer(due_ms: int, customer: str, kind: str) -> bytes:
    """Fixed-width hex due time first, so a scan returns timers in due order.

    >>> timer(5, "u1", "inactivity")
    b't|0000000000000005|u1|inactivity'
    """
    return b"%s%016x|%s|%s" % (TIMER, max(due_ms, 0), customer.encode(), kind.encode())


def parse_timer(key: bytes) -> tuple[int, str, str]:
    """Inverse of ``timer``: (due_ms, customer, kind). Customer ids may contain ``|``."""
    body = key[len(TIMER):]
    due = int(body[:16], 16)
    customer, _, kind = body[17:].decode().rpartition("|")
    return due, customer, kind


def outbox(seq: int) -> bytes:
    return b"%s%016x" % (OUTBOX, seq)


def totals(scope: str, name: str, version: int | None) -> bytes:
    return b"a|%s|%s|%d" % (scope.encode(), name.encode(), version or 0)
