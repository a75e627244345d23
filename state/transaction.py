"""One micro-batch of one partition: every change it makes, committed at once or not at all.

A ``BatchTransaction`` owns, for one batch:

- the staged writes, with read-your-writes ``get``, ``put``, ``delete`` and a prefix ``scan``
  that sees them;
- the partition's ``Progress`` (applied input offsets, outbox sequence, event-time watermark,
  timers pending), a copy the batch moves forward;
- the outbox: outputs in the order the batch emitted them;
- the timers the batch armed (so timers due within the batch fire in the same batch);
- the decoded objects (profiles) it touched, written back once at ``prepare``;
- the counts of what happened, folded into the partition's totals only on ``commit``.

Its status runs STARTED → PREPARED → COMMITTED, or → FAILED from either of the first two. A
failed transaction is thrown away whole: the batch is done again from the committed state, so
nothing is snapshotted or restored by hand. A call in the wrong status raises
``TransactionStateError`` (a bug, never data).

Example:
    >>> import tempfile
    >>> from state.store import PartitionStore
    >>> store = PartitionStore(tempfile.mkdtemp())
    >>> txn = BatchTransaction(store, Progress.load(store))
    >>> txn.put(b"c|u1", b"{}")
    >>> txn.get(b"c|u1"), store.get(b"c|u1")    # read-your-writes; nothing stored yet
    (b'{}', None)
    >>> [k for k, _ in txn.scan(b"c|")]
    [b'c|u1']
    >>> _ = txn.prepare(); txn.commit(); store.get(b"c|u1")
    b'{}'
    >>> txn.put(b"c|u2", b"{}")
    Traceback (most recent call last):
    ...
    state.transaction.TransactionStateError: put needs a STARTED transaction, this one is COMMITTED
"""

from __future__ import annotations

import enum
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from mypy_extensions import mypyc_attr
from rocksdict import WriteBatch

from state import changelog, keys
from state.changelog import CREATED_BY_PUT, Changes
from state.store import PartitionStore


class Encodable(Protocol):
    """What the outbox stores: anything that encodes itself to bytes."""

    def encode(self) -> bytes: ...


class TransactionStatus(enum.Enum):
    STARTED = "started"
    PREPARED = "prepared"
    COMMITTED = "committed"
    FAILED = "failed"


@mypyc_attr(native_class=False)  # an exception: a Python class
class TransactionStateError(RuntimeError):
    """A transaction was used in a status that does not allow the call."""


# The two classes below write their own ``__init__`` (``init=False``): the one ``dataclasses``
# generates stays interpreted under mypyc, and one of each is made per batch.
@dataclass(slots=True, init=False)
class Progress:
    """How far a partition has got, as stored under ``m|…`` (see ``state.keys``)."""

    applied: dict[str, int]   # last applied offset per input topic
    outbox_seq: int           # last outbox sequence number handed out
    watermark: int            # highest event time applied (ms)
    timers_pending: int       # durable timers waiting (a metric)
    changelog_seq: int | None  # changelog sequence of the last batch (None: none)
    # Kept in memory only (a restart starts them afresh):
    timer_floor: int          # no timer is due before this: timer scans start here
    # No stored timer from the floor on is due before this (None: not known): a batch whose
    # clock is earlier needs no scan (a scan is a RocksDB seek past every timer key deleted
    # since the last compaction, 0.6 ms a batch measured after a replay).
    timer_next: int | None
    journeys_generation: int  # the journey registry generation held sends were synced to
    drained: set[str]         # customers drained at end of input
    drain_pending: bool       # the end-of-input drain needs another batch

    def __init__(self, applied: dict[str, int], outbox_seq: int, watermark: int,
                 timers_pending: int, changelog_seq: int | None = None, timer_floor: int = 0,
                 timer_next: int | None = None, journeys_generation: int = -1,
                 drained: set[str] | None = None, drain_pending: bool = False) -> None:
        self.applied, self.outbox_seq, self.watermark = applied, outbox_seq, watermark
        self.timers_pending, self.changelog_seq = timers_pending, changelog_seq
        self.timer_floor, self.timer_next = timer_floor, timer_next
        self.journeys_generation = journeys_generation
        self.drained = drained if drained is not None else set()
        self.drain_pending = drain_pending

    @classmethod
    def load(cls, store: PartitionStore) -> Progress:
        return cls(
            applied={k[len(keys.APPLIED):].decode(): int(v) for k, v in store.scan(keys.APPLIED)},
            outbox_seq=int(store.get(keys.OUTBOX_SEQ) or b"0"),
            watermark=int(store.get(keys.WATERMARK) or b"0"),
            timers_pending=int(store.get(keys.TIMERS_PENDING) or b"0"),
            changelog_seq=int(seq) if (seq := store.get(keys.CHANGELOG_SEQ)) else None,
        )

    def copy(self) -> Progress:
        return Progress(dict(self.applied), self.outbox_seq, self.watermark, self.timers_pending,
                        self.changelog_seq, self.timer_floor, self.timer_next,
                        self.journeys_generation, set(self.drained), self.drain_pending)


_DELETED = object()
FAMILY = 2  # a key's family: its first two bytes, the letter and the '|' (``state.keys``)
STARTED = TransactionStatus.STARTED
PREPARED = TransactionStatus.PREPARED


@dataclass(slots=True, eq=False, init=False)
class BatchTransaction:
    """See the module docstring."""

    store: PartitionStore
    committed: Progress                 # as of the start of the batch (read only)
    changelog: bool                     # mirror the batch's changes (``state.changelog``)
    progress: Progress
    status: TransactionStatus
    outbox: list[Any]
    # (due_ms, timer key) armed in this batch, in arming order.
    armed: list[tuple[int, bytes]]
    # Decoded objects by reference (profiles), written back at prepare.
    objects: dict[str, Any]
    object_sizes: dict[str, int]        # encoded bytes
    # Timers each touched customer had when first read (for ``timers_pending``).
    timers_before: dict[str, int]
    # What each touched customer's scores were computed from when first read (see
    # ``operators.customer.scores.stale``).
    score_inputs: dict[str, tuple]
    stats: Counter[str]
    counts: Counter[tuple]
    # The input item (or timer) being applied, and who first touched each object: when
    # something raises, this names the item to dead-letter on the retry.
    culprit: tuple | None
    blame: dict[str, tuple]
    current: Any                        # the event being applied, if any
    wall_clock: bool                    # timers follow the wall clock
    # (due, lateness) of timers fired by the wall clock, ms
    lateness: list[tuple[int, int]]
    # (sequence, applied offsets, changes) of this batch for the changelog topic, set by
    # ``prepare`` (stored encoded under ``l|<seq>`` too).
    changelog_entry: tuple[int, dict[str, int], Changes] | None
    _staged: dict[bytes, object]
    # Keys this batch created and deleted again (``changelog.CREATED_BY_PUT``: a timer that
    # fired in the batch that armed it, an event held and released): the store and the
    # changelog never had them, so their deletes are written to neither.
    _unborn: set[bytes]
    # Such keys whose delete must be written: the store may have them (deleted by this batch
    # before it put them again, or not put by it at all).
    _kept: set[bytes]
    # The staged keys of each key family scanned (``c|``, ``k|``, ``w|``…: a key's first two
    # bytes) in order, built at the family's first scan and kept up to date after it: a scan
    # then costs a bisection, not a pass over every write of the batch, and the writes of
    # families nobody scans (the profiles written at ``prepare``) are not sorted in at all.
    _sorted: dict[bytes, list[bytes]]

    def __init__(self, store: PartitionStore, committed: Progress,
                 changelog: bool = False) -> None:
        self.store, self.committed, self.changelog = store, committed, changelog
        self.progress = committed.copy()
        self.status = STARTED
        self.outbox = []
        self.armed = []
        self.objects = {}
        self.object_sizes = {}
        self.timers_before = {}
        self.score_inputs = {}
        self.stats = Counter()
        self.counts = Counter()
        self.culprit = None
        self.blame = {}
        self.current = None
        self.wall_clock = False
        self.lateness = []
        self.changelog_entry = None
        self._staged = {}
        self._unborn = set()
        self._kept = set()
        self._sorted = {}

    def _check(self, want: TransactionStatus, what: str) -> None:
        if self.status is not want:
            raise TransactionStateError(
                f"{what} needs a {want.name} transaction, this one is {self.status.name}")

    # ----- reads and writes ---------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        v = self._staged.get(key)
        if v is None:
            return self.store.get(key)
        return None if v is _DELETED else v  # type: ignore[return-value]

    def deleted(self, key: bytes) -> bool:
        """Whether this transaction deleted ``key`` (a key it read from the store, or put
        itself, without a store read: ``get`` would ask RocksDB)."""
        return self._staged.get(key) is _DELETED

    def put(self, key: bytes, value: bytes) -> None:
        if self.status is not STARTED:
            self._check(STARTED, "put")
        if self._sorted and key not in self._staged:
            self._index(key)
        self._staged[key] = value
        if self._unborn:
            self._unborn.discard(key)

    def delete(self, key: bytes) -> None:
        if self.status is not STARTED:
            self._check(STARTED, "delete")
        staged = self._staged
        prev = staged.get(key)
        if self._sorted and prev is None:
            self._index(key)
        if key.startswith(CREATED_BY_PUT):
            if prev is not None and prev is not _DELETED and key not in self._kept:
                self._unborn.add(key)  # created by this batch's put: never written
            else:
                self._kept.add(key)
        staged[key] = _DELETED

    def _index(self, key: bytes) -> None:
        """Sort a newly staged key into its family's index, if the family has one."""
        order = self._sorted.get(key[:FAMILY])
        if order is not None:
            insort(order, key)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Keys with ``prefix`` in order from ``start``, as this transaction sees them: the
        store's, with this batch's puts and deletes applied. Writes made while iterating are
        not seen by the iteration."""
        lo = start if start is not None and start > prefix else prefix
        family = prefix[:FAMILY]
        kept = self._sorted.get(family)
        if kept is not None:
            order = kept
        elif len(family) < FAMILY:  # a scan across families (tools): sorted for this scan only
            order = sorted(self._staged)
        else:
            order = self._sorted[family] = sorted(
                k for k in self._staged if k[:FAMILY] == family)
        staged = []
        for j in range(bisect_left(order, lo), len(order)):
            k = order[j]
            if not k.startswith(prefix):
                break
            staged.append((k, self._staged[k]))
        stored = self.store.scan(prefix, start)
        i = 0
        for k, v in stored:
            while i < len(staged) and staged[i][0] < k:
                if staged[i][1] is not _DELETED:
                    yield staged[i]  # type: ignore[misc]
                i += 1
            if i < len(staged) and staged[i][0] == k:
                if staged[i][1] is not _DELETED:
                    yield staged[i]  # type: ignore[misc]
                i += 1
                continue
            yield k, v
        for rest in staged[i:]:
            if rest[1] is not _DELETED:
                yield rest  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self._staged)

    # ----- outputs --------------------------------------------------------------------------
    def emit(self, output: Encodable) -> None:
        """Put ``output`` in the outbox (given a sequence number at ``prepare``)."""
        if self.status is not STARTED:
            self._check(STARTED, "emit")
        self.outbox.append(output)

    # ----- the end of the batch ---------------------------------------------------------------
    def prepare(self) -> list[tuple[int, Any]]:
        """Stage the outbox and the progress; returns the outbox entries (sequence, output).

        After this nothing more can be written; ``commit`` makes it durable.
        """
        self._check(STARTED, "prepare")
        p, before = self.progress, self.committed
        entries = []
        for out in self.outbox:
            p.outbox_seq += 1
            self._staged[keys.outbox(p.outbox_seq)] = out.encode()
            entries.append((p.outbox_seq, out))
        if entries:
            self._staged[keys.OUTBOX_SEQ] = b"%d" % p.outbox_seq
        if p.applied != before.applied:
            for topic, off in p.applied.items():
                if before.applied.get(topic) != off:
                    self._staged[keys.applied(topic)] = b"%d" % off
            self._staged[keys.WATERMARK] = b"%d" % p.watermark
        if p.timers_pending != before.timers_pending:
            self._staged[keys.TIMERS_PENDING] = b"%d" % p.timers_pending
        if self.changelog:
            self._stage_changelog(p)
        elif p.changelog_seq is not None:
            # Changes from now on are not mirrored: a changelog that ends here must not pass
            # for this store's (``flows.changelog`` refuses the pair once it is on again).
            self._staged[keys.CHANGELOG_SEQ] = _DELETED
            p.changelog_seq = None
        self.status = PREPARED
        return entries

    def _stage_changelog(self, p: Progress) -> None:
        staged, unborn, kept = self._staged, self._unborn, self._kept
        changes: Changes = []
        for k, v in staged.items():
            if not changelog.mirrored(k) or k in unborn:
                continue
            if v is _DELETED:
                changes.append((k, None))
                continue
            if k in kept:
                # Deleted and put again by this batch: said as both, so that the changelog's
                # coalescing does not take the put for a creation (``changelog.Unsent``).
                changes.append((k, None))
            changes.append((k, cast(bytes, v)))
        if not changes:
            return  # only pending changelog entries leave: nothing to mirror
        p.changelog_seq = (p.changelog_seq or 0) + 1
        seq = staged[keys.CHANGELOG_SEQ] = b"%d" % p.changelog_seq
        changes.append((keys.CHANGELOG_SEQ, seq))
        staged[keys.changelog(p.changelog_seq)] = changelog.encode_pending(
            p.applied, [k for k, _ in changes])
        self.changelog_entry = (p.changelog_seq, dict(p.applied), changes)

    def commit(self) -> None:
        """Write everything in one WriteBatch: after a crash the store holds all of this
        batch or none of it. Reads and scans go to the store from then on."""
        self._check(PREPARED, "commit")
        if self._staged:
            batch = WriteBatch(raw_mode=True)
            unborn = self._unborn
            for k, v in self._staged.items():
                if v is _DELETED:
                    if not unborn or k not in unborn:
                        batch.delete(k)
                else:
                    batch.put(k, v)  # type: ignore[arg-type]
            self.store.write(batch)
            # The store has them now (reads go there): let them go before the collector
            # would walk them between batches.
            self._staged, self._sorted = {}, {}
            self._unborn, self._kept = set(), set()
        self.status = TransactionStatus.COMMITTED

    def fail(self) -> None:
        """Throw the batch away; the store keeps its committed state."""
        self.status = TransactionStatus.FAILED
        self._staged.clear()
        self._unborn.clear()
        self._kept.clear()
        self._sorted.clear()
        self.changelog_entry = None
        self.outbox.clear()
        self.objects.clear()
