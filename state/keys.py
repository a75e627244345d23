"""The key layout of a partition store: every prefix, and the functions that build keys.

Keys are bytes; ``|`` separates parts. One store per input partition holds:

=====================================================  ==========================================
``c|<customer ref>``                                   the customer's profile
``i|<identifier>``                                     identity link: the customer ref it belongs to
``w|<customer ref>|<seq:016x>``                        an event of a customer waiting for a merge it
                                                       claimed (applied once the merge is)
``k|<at_ms:016x>|<identifier>|<claimant>``             a claim waiting until this partition has
                                                       read its own input up to the claim's time
``u|<identifier>``                                     the distinct user ids that claimed it (merge
                                                       protection: a shared email merges nobody)
``r|<customer ref>``                                   redirect: the customer it was merged into
``e|<sha256 of customer ref>``                         erased at (ms): later data from before it is
                                                       dropped; no personal data
``t|<due_ms:016x>|<customer ref>|<kind>``              durable timer (empty value), scanned in due
                                                       order
``h|<journey>|<held_ms:016x>|<customer ref>``          a send held while its journey is paused
``o|<seq:016x>``                                       outbox: a batch's outputs, until Kafka has
                                                       acknowledged them all (``state.outbox``)
``l|<seq:016x>``                                       the keys a batch changed, not yet in the
                                                       changelog topic (``state.changelog``; not
                                                       mirrored)
``d|<sha256 of a message key>``                        dead letters of messages with that key here
                                                       (count, offsets): erasure reports them
``x|<output digest>``                                   a parked output: one that cannot be produced
                                                       (too large, rejected by the broker), with why
``a|<scope>|<id>|<version>``                           analytics totals: the newest partial of every
                                                       partition
``m|applied|<topic>``                                  last applied offset of that input topic
``m|source``                                           identity of the input topics (id, partitions)
``m|seq``                                              last outbox sequence number
``m|watermark``                                        highest event time applied (ms)
``m|timers``                                           durable timers pending (a metric)
``m|alerts``                                           this partition's alert windows
``m|analytics``                                        this partition's analytics partials
``m|changelog``                                        changelog sequence number of the last batch
``m|bandit``                                           the cold-start bandit's counts per stage and
                                                       action (``operators.nba_bandit``)
=====================================================  ==========================================

All writes of one micro-batch, the applied offsets among them, go in one WriteBatch: after a
crash the store is at a batch boundary, never in between.
"""

from __future__ import annotations

PROFILE = b"c|"
LINK = b"i|"        # i|<identifier> -> the customer reference it belongs to
REDIRECT = b"r|"    # r|<reference>  -> the customer it was merged into
CLAIMANTS = b"u|"   # u|<identifier> -> the distinct user ids that claimed it
CLAIM = b"k|"       # k|<at:016x>|<identifier>|<claimant> -> [identifier, claimant, cause]
WAITING = b"w|"     # w|<reference>|<seq> -> an event held until the merges it awaits land
ERASED = b"e|"      # e|<sha256 of reference> -> when it was erased (no personal data)
TIMER = b"t|"
OUTBOX = b"o|"
CHANGELOG = b"l|"   # l|<seq> -> the keys a batch changed, until the changelog topic has them
CHANGELOG_SEQ = b"m|changelog"
DEAD_LETTERS = b"d|"  # d|<sha256 of the input key> -> {n, topic, partition, first, last}
PARKED = b"x|"      # x|<blake2b of the output> -> (why, when, the output)
APPLIED = b"m|applied|"  # + input topic
OUTBOX_SEQ = b"m|seq"
SOURCE = b"m|source"         # the input topics' ids and partition counts (flows.input_check)
WATERMARK = b"m|watermark"
ALERTS = b"m|alerts"
TIMERS_PENDING = b"m|timers"
ANALYTICS = b"m|analytics"   # this partition's cumulative analytics partials
BANDIT = b"m|bandit"         # the cold-start bandit's counts (operators.nba_bandit)
TOTALS = b"a|"               # a|<scope>|<id>|<version> -> newest partial of every partition
HELD = b"h|"                 # h|<journey>|<at:016x>|<customer> -> (empty)


def profile(ref: str) -> bytes:
    return PROFILE + ref.encode()


def link(identifier: str) -> bytes:
    return LINK + identifier.encode()


def waiting(ref: str, seq: int | None = None) -> bytes:
    """An event held for ``ref`` (``seq`` None: the prefix of all of them)."""
    base = b"%s%s|" % (WAITING, ref.encode())
    return base if seq is None else b"%s%016x" % (base, seq)


def claim(at_ms: int, identifier: str, claimant: str) -> bytes:
    """A claim waiting for this partition's input to reach its time, in time order.

    >>> claim(5, "anon:v1", "user:u1")
    b'k|0000000000000005|anon:v1|user:u1'
    """
    return b"%s%016x|%s|%s" % (CLAIM, max(at_ms, 0), identifier.encode(), claimant.encode())


def claimants(identifier: str) -> bytes:
    return CLAIMANTS + identifier.encode()


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


def changelog(seq: int) -> bytes:
    return b"%s%016x" % (CHANGELOG, seq)


def dead_letters(key: bytes) -> bytes:
    import hashlib

    return DEAD_LETTERS + hashlib.sha256(key).hexdigest().encode()


def parked(ident: str) -> bytes:
    return PARKED + ident.encode()


def totals(scope: str, name: str, version: int | None) -> bytes:
    return b"a|%s|%s|%d" % (scope.encode(), name.encode(), version or 0)


def held(journey: str, at_ms: int, customer: str) -> bytes:
    """A send held while ``journey`` is paused, ordered by when it was held.

    >>> held("cart", 5, "user:u1")
    b'h|cart|0000000000000005|user:u1'
    """
    return b"%s%s|%016x|%s" % (HELD, journey.encode(), at_ms, customer.encode())


def held_prefix(journey: str) -> bytes:
    return b"%s%s|" % (HELD, journey.encode())
