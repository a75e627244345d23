"""Process-wide settings for a long-running flow: how Python's cyclic garbage collector runs.

Python's collector is tuned for programs that make few objects. Two things go wrong in a flow.

* **Throughput.** A partition decodes thousands of profiles and events per micro-batch and
  keeps them until the commit, so with the defaults (a young collection every 700 net
  allocations) collections walk the same live batch again and again. Measured on the
  throughput benchmark's per-event work: about a fifth of the time. Hence a young collection
  only every 500k net allocations while the flow runs (``batch_gc``): more than a batch of
  2,000 events makes when most of its customers are not cached and their profiles are
  decoded (at 200k, 1M events of 100k customers saw 17 collections inside batches, 100 ms
  each, finding nothing).
* **Pauses.** What survives a batch (cached profiles: their ledgers and memories are lists
  and dicts, about 17 objects a new customer) piled up in the young generation until a
  collection walked all of it: 200k objects, 22 ms in which no event moved (measured at 2k
  events/s: one pause every 2.7 s). The older generations are worse: a full collection walks
  every cached profile, 165 ms for a million objects, and Python runs one whenever a quarter
  more objects survived since the last.

So between batches ``settle_garbage`` freezes what the young generations hold (``gc.freeze``:
the collector never walks it again), from ``SETTLE_AT`` net allocations on or
``SETTLE_EVERY_S`` after the last time (a full profile cache frees an old profile for each
new one, so the net count alone would not see the young ones pile up). Frozen objects are
still freed when their last reference goes (reference counting); only a reference cycle
among them stays, until the backstop below.

Collecting the young generations before each freeze was most of the collector's time:
walking the survivors (9–15k objects a settle on the throughput benchmark's 300k events) is
slow because they lie all over a large heap (4.6–8.7 ms a collection, 1.2–1.35 s of a 20–24
s loop). And it finds nothing: the hot path makes no cyclic garbage (the scorers' only
cycles, from LightGBM's ``ctypes.cast``, are gone: ``models.booster``). So a
settle collects before freezing only while it has to: from the start until
``CLEAN_BEFORE_SKIPPING`` collections in a row found nothing, and then, as an audit, once
every ``AUDIT_EVERY_S`` — and no sooner than its last audit's time over ``AUDIT_SHARE``
(within ``AUDIT_WAIT_MAX_S``), so while settles skip, audits stay about 1 % of the time
however much a batch decodes (1M events of 100k customers, a quarter of them cached: 4.8 s
of audits in a 100 s loop before, 1.0 s after). An audit (or a full collection) that finds
garbage starts the count again. An audit sees only what was made since the settle before it,
so it finds cycles made steadily (a workload that makes them is collected as before, after at
most an interval's worth was frozen); cycles made now and then (a model reload's) are mostly
frozen and wait for the backstop. As the backstop, a full
collection runs once the net allocations since the last one (an upper bound of what the frozen
objects grew by; counting them walks them all, 15 ms for 500k) reach the number of objects
the last one left, and ``FULL_EVERY_S`` after it at the soonest: a leak stays bounded and its
pause is rare.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

# A young collection every 500k net allocations (more than a micro-batch's worth of objects),
# the older generations after 20 and 100 of the younger: see the module docstring. Against 50k,
# 200k took the collector's time in a replay of 100k events from 0.60 s to 0.17 s (of 7.5 s);
# 500k took out the 17 collections inside batches (1.6 s) of the tight loop over 1M events of
# 100k customers.
GC_THRESHOLDS = (500_000, 20, 100)
# Between batches, the young generations are collected from this many net allocations on, or
# this long after the last time.
SETTLE_AT = 5_000
SETTLE_EVERY_S = 0.2
# Young collections in a row that found no garbage before settles only freeze; how often a
# settle still collects then (an audit).
CLEAN_BEFORE_SKIPPING = 8
AUDIT_EVERY_S = 1.0
# ... and no sooner than an audit's own time divided by this share after it: an audit walks
# everything made since the settle before it, which grows with the profiles a batch decodes
# (47 ms an audit with 100k customers of which a quarter stay cached), so while settles skip,
# audits take about this share of the flow's time (collecting settles, at the start and after
# garbage was found, are not paced). Never more than AUDIT_WAIT_MAX_S apart, though: one
# audit slowed by the machine (descheduled, throttled) must not put the next off for long.
AUDIT_SHARE = 0.01
AUDIT_WAIT_MAX_S = 30.0
# The backstop's full collection: after net allocations as many as the objects the last one
# left, and at least this many (start-up alone leaves a few hundred thousand).
FULL_FROM = 1_000_000
FULL_EVERY_S = 300.0
_clock = time.monotonic  # a name of its own, so tests can run the policy on their own clock


class _Pacer:
    """When the collector last ran, and how much may have grown since the last full run."""

    def __init__(self) -> None:
        self.active = False  # inside batch_gc
        self.settled = 0.0  # last settle (monotonic)
        self.full_last = 0.0  # last full collection (monotonic)
        self.full_after = FULL_FROM
        self.grown = 0  # net allocations since the last full collection
        self.clean = 0  # young collections in a row that found no garbage
        self.audited = 0.0  # last young collection (monotonic)
        self.audit_took = 0.0  # how long it took (s)

    def start(self) -> None:
        self.active = True
        self.settled = self.full_last = self.audited = _clock()
        self.full_after, self.grown, self.clean, self.audit_took = FULL_FROM, 0, 0, 0.0

    def settle(self) -> bool:
        if not self.active:
            return False
        now = _clock()
        young = gc.get_count()[0]
        if young < SETTLE_AT and now - self.settled < SETTLE_EVERY_S:
            return False
        self.settled = now
        self.grown += young
        if self.grown < self.full_after or now - self.full_last < FULL_EVERY_S:
            if self.clean < CLEAN_BEFORE_SKIPPING or now - self.audited >= max(
                    AUDIT_EVERY_S, min(self.audit_took / AUDIT_SHARE, AUDIT_WAIT_MAX_S)):
                self.audited = now
                self.clean = 0 if gc.collect(1) else self.clean + 1
                self.audit_took = _clock() - now
            gc.freeze()
            return True
        gc.unfreeze()
        if gc.collect():
            self.clean = 0  # cycles were frozen: collect before freezing again for a while
        gc.freeze()
        # Counting the frozen objects walks them, as the full collection just did.
        self.full_after = max(gc.get_freeze_count(), FULL_FROM)
        self.full_last, self.grown = now, 0
        return True


_pacer = _Pacer()


@contextmanager
def batch_gc() -> Iterator[None]:
    """While the block runs: collect cyclic garbage less often, and let ``settle_garbage``
    work. After it: the old thresholds, and nothing frozen."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    _pacer.start()
    try:
        yield
    finally:
        _pacer.active = False
        gc.set_threshold(*before)
        gc.unfreeze()


def settle_garbage() -> bool:
    """Call between batches: once the young generations hold ``SETTLE_AT`` objects (or
    ``SETTLE_EVERY_S`` after the last time), freezes them, collecting first while collections
    still find garbage and as an audit (see the module docstring). Returns whether it did;
    outside ``batch_gc`` (tests, a library user's own loop) it does nothing."""
    return _pacer.settle()
