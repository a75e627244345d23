"""Timers found due while their customer awaited a merge, kept in memory between timer
passes (``operators.customer.timers``)."""

from __future__ import annotations

from state.transaction import BatchTransaction


class WaitingTimers:
    """Stored timers found due while their customer awaited a merge, remembered between
    passes so that a pass does not scan and look at them again and again (a busy flow holds
    many customers waiting at once: most of a pass's work was those).

    While ``keys`` is not None, the stored timers due from the timer floor up to ``upto`` are
    exactly those in ``keys`` (customer -> key -> due). A customer some batch has taken since
    (``dirty``, or in the batch's objects) may have changed: its timers are looked at again.
    In memory only: a restart or a failed batch forgets them (``forget``), and the next pass
    scans from the floor, as it always may.
    """

    def __init__(self) -> None:
        self.keys: dict[str, dict[bytes, int]] | None = None
        self.upto = -1
        self.dirty: set[str] = set()
        # Timers this batch armed due by ``upto``: they join once it commits.
        self.armed: list[tuple[str, bytes, int]] = []

    def forget(self) -> None:
        self.keys, self.upto, self.dirty, self.armed = None, -1, set(), []

    def arm(self, ref: str, key: bytes, due_ms: int) -> None:
        if self.keys is not None and due_ms <= self.upto:
            self.armed.append((ref, key, due_ms))

    def committed(self, txn: BatchTransaction) -> None:
        """After ``txn`` committed: its timers armed due by ``upto`` join; the customers it
        took are dirty, and their timers it deleted leave."""
        kept = self.keys
        if kept is None:
            self.armed = []
            return
        for ref, key, due in self.armed:
            if not txn.deleted(key):
                kept.setdefault(ref, {})[key] = due
                self.dirty.add(ref)
        self.armed = []
        for ref in txn.objects:
            ks = kept.get(ref)
            if ks is None:
                continue
            for k in [k for k in ks if txn.deleted(k)]:
                del ks[k]
            if ks:
                self.dirty.add(ref)
            else:
                del kept[ref]
