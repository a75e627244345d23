"""Durable timers of the partition's customers: arming, firing in due order at the clock
(event time while catching up, wall clock once caught up), and the end-of-input drain.

A timer is a key ``t|<due>|<customer>|<kind>`` (``state.keys``) and an entry in the
customer's profile; all of a customer's timers due at the same moment fire together."""

from __future__ import annotations

import heapq

from mypy_extensions import trait

from models.profile import Profile
from operators.customer import lifecycle
from operators.effects import Effects
from operators.partition_parts import PartitionParts
from state import keys
from state.transaction import Progress

MAX_TIMERS_PER_PASS = 20_000
NO_TIMER = 1 << 62  # "no timer at all" as a due time, later than any
DRAIN_CUSTOMERS = 5_000  # customers drained per transaction at end of input


@trait
class DueTimers(PartitionParts):
    """The partition's timers (a part of ``Partition``)."""

    def next_timer_due(self) -> int | None:
        """The due time of the earliest stored timer (a scan)."""
        for k, _ in self.store.scan(keys.TIMER, start=self._floor_key(self.progress)):
            return keys.parse_timer(k)[0]
        return None

    def timer_wakeup(self) -> int | None:
        """When to look at the timers next: the earliest stored timer's due time or before
        it (the bound the last batch left, which needs no scan; waking early costs one
        batch that fires nothing and finds the next one). None: no timer."""
        nxt = self.progress.timer_next
        if nxt is None:
            return self.next_timer_due()
        return None if nxt >= NO_TIMER else nxt

    @staticmethod
    def _floor_key(progress: Progress) -> bytes:
        return b"%s%016x" % (keys.TIMER, progress.timer_floor)

    # ----- timers --------------------------------------------------------------------------
    def _arm(self, p: Profile, kind: str, due_ms: int) -> None:
        progress = self.txn.progress
        if due_ms < progress.timer_floor:
            progress.timer_floor = max(due_ms, 0)
        if progress.timer_next is not None and due_ms < progress.timer_next:
            progress.timer_next = due_ms
        key = keys.timer(due_ms, p.ref, kind)
        # Armed again for the same moment: its key is there already. So a put of a timer key
        # always creates it, which lets the changelog drop one that comes and goes between
        # two sends (``state.changelog.CREATED_BY_PUT``).
        if p.timers.get(kind) != due_ms:
            self.txn.put(key, b"")
        p.timers[kind] = due_ms
        self.txn.armed.append((due_ms, key))
        self.waiting_timers.arm(p.ref, key, due_ms)

    def _fire_customer(self, p: Profile, upto: int) -> None:
        """Fire this customer's timers due at or before ``upto``, earliest first."""
        for _ in range(1000):
            due_now = [(d, k) for k, d in p.timers.items() if d <= upto]
            if not due_now:
                return
            first = min(d for d, _ in due_now)
            kinds = [k for d, k in due_now if d == first]
            for kind in kinds:
                del p.timers[kind]
                self.txn.delete(keys.timer(first, p.ref, kind))
            self.txn.stats["timers_fired"] += len(kinds)
            outer = self.txn.culprit
            self.txn.culprit = ("timer", p.ref, first)
            why = self._poisoned.get(self.txn.culprit)
            if why is None:
                self._on_timers(p, first, kinds)
            else:  # it raised before: dropped, and said so
                self._emit_identity("timer.error", p.id, p.ref, first,
                                    {"timer": ",".join(kinds), "due_ms": first}, reason=why)
            self.txn.culprit = outer

    def _drain(self, horizon_ms: int) -> None:
        """End of input: fire every timer due within ``horizon_ms`` of its customer's last
        event (and what those timers arm in turn), customer by customer, at most
        ``DRAIN_CUSTOMERS`` per transaction; ``drain_pending`` says whether to call again."""
        done = self.txn.progress.drained
        n = 0
        self.txn.progress.drain_pending = False
        for k, _ in self.store.scan(keys.TIMER):
            _, cid, _ = keys.parse_timer(k)
            if cid in done:
                continue
            if n >= DRAIN_CUSTOMERS:
                self.txn.progress.drain_pending = True
                break
            done.add(cid)
            n += 1
            p = self._peek(cid)
            if p is None:
                continue
            upto = p.last_seen + horizon_ms
            if any(d <= upto for d in p.timers.values()):
                self._fire_customer(self._take(cid, p), upto)
        for cid, p in list(self.txn.objects.items()):
            if cid not in done:
                done.add(cid)
                self._fire_customer(p, p.last_seen + horizon_ms)

    def _fire_timers(self, clock_ms: int) -> None:
        txn = self.txn
        assert txn is not None
        heap: list[tuple[int, bytes]] = []
        truncated = False
        waiting: int | None = None  # the earliest timer left for a customer awaiting a merge
        held = self.waiting_timers
        kept = held.keys
        scanned = False
        nxt = txn.progress.timer_next
        if nxt is None or nxt <= clock_ms:  # else no stored timer is due yet: no scan
            scanned = True
            nxt = NO_TIMER
            start = self._floor_key(txn.progress)
            budget = MAX_TIMERS_PER_PASS
            if kept is not None:
                n_kept = sum(len(ks) for ks in kept.values())
                if n_kept >= MAX_TIMERS_PER_PASS:  # rare: scan them as they are stored
                    held.forget()
                    kept = None
                else:
                    # The stored timers up to held.upto are these: the scan goes on after
                    # them. A customer taken since is looked at again; the others still wait
                    # (their profile is as it was), as the scan would have found.
                    budget -= n_kept
                    dirty = held.dirty
                    for ref in list(kept):
                        ks = kept[ref]
                        if ref in dirty or ref in txn.objects:
                            heap.extend([(d, k) for k, d in ks.items()])
                            del kept[ref]  # back below if it still waits
                            continue
                        for k in [k for k in ks if txn.deleted(k)]:
                            del ks[k]
                        for d in ks.values():
                            if waiting is None or d < waiting:
                                waiting = d
                        if not ks:
                            del kept[ref]
                    held.dirty = set()
                    after = b"%s%016x" % (keys.TIMER, held.upto + 1)
                    if after > start:
                        start = after
            for k, _ in self.store.scan(keys.TIMER, start=start):
                due = int(k[2:18], 16)
                if due > clock_ms:
                    nxt = due
                    break
                if budget <= 0:
                    truncated = True
                    break
                budget -= 1
                heap.append((due, k))
            # Timers armed in this batch are not in the store yet: the earliest of those
            # not due now counts too (what this pass arms or leaves lowers it again).
            txn.progress.timer_next = None if truncated else min(
                [nxt, *(d for d, _ in txn.armed if d > clock_ms)])
        heap.extend(t for t in self.txn.armed if t[0] <= clock_ms)
        self.txn.armed = []
        heapq.heapify(heap)
        fired = 0
        still: list[tuple[str, bytes, int]] = []  # found waiting by this pass
        while heap and fired < MAX_TIMERS_PER_PASS:
            due, k = heapq.heappop(heap)
            # Every key here was scanned from the store or armed by this batch: only a
            # delete by this batch (fired or replaced) can have removed it since.
            if txn.deleted(k):
                continue
            _, cid, kind = keys.parse_timer(k)
            # Looked at, not yet taken into the batch: a profile the batch takes is written
            # back at its end, and most timers found here for a waiting customer change
            # nothing (they are found again by every pass until its merge is answered).
            p = self._peek(cid)
            if p is None or p.timers.get(kind) != due:  # gone (erased), or replaced
                txn.delete(k)
                continue
            if p.awaiting:
                # Its events wait for a merge: its timers wait with them, and fire in event
                # order as those events are applied (or at a later pass), never ahead of
                # events older than they are.
                waiting = due if waiting is None else min(waiting, due)
                still.append((cid, k, due))
                continue
            p = self._take(cid, p)
            if self.txn.wall_clock and len(self.txn.lateness) < 10_000:
                self.txn.lateness.append((due, clock_ms - due))
            # All of this customer's timers due now fire together (one moment).
            before = self.txn.stats["timers_fired"]
            armed = len(self.txn.armed)
            self._fire_customer(p, due)
            fired += self.txn.stats["timers_fired"] - before
            for t in self.txn.armed[armed:]:  # what firing armed, if already due
                if t[0] <= clock_ms:
                    heapq.heappush(heap, t)
        self.txn.armed = []
        progress = self.txn.progress
        if heap or truncated:  # stopped early: what is left starts the next scan
            rest = [d for d, _ in heap]
            progress.timer_floor = min(rest) if rest else progress.timer_floor
            progress.timer_next = None
        else:
            progress.timer_floor = max(progress.timer_floor, clock_ms + 1)
        if waiting is not None:  # the next scan starts at the timers left waiting
            progress.timer_floor = min(progress.timer_floor, waiting)
            progress.timer_next = None
        if scanned:
            if heap or truncated:  # what is stored up to the clock is not all known
                held.forget()
            else:  # every stored timer due by now fired or waits: remember those
                kept = held.keys if held.keys is not None else {}
                for ref, k, due in still:
                    kept.setdefault(ref, {})[k] = due
                held.keys, held.upto = kept, clock_ms

    def _on_timers(self, p: Profile, due: int, kinds: list[str]) -> None:
        journey_kinds = [k for k in kinds if k.startswith(("j:", "jx:", "jd:"))]
        for kind in kinds:
            if kind not in journey_kinds:
                fx = Effects()
                lifecycle.on_timer(fx, self.stages, p, kind, due)
                self._effects(fx)
        if journey_kinds and self.engine is not None:
            self._effects(self.engine.on_timers(p, due, journey_kinds))
