"""Outputs that cannot be produced are parked, not fatal: one output too large for Kafka, or
refused by the broker for good, must never stop a partition (a refused output left in the
outbox would be refused again at every start).

A parked output stays in the partition store (``x|<digest>``, see ``state.outbox``) with the
reason; an ``alert.output_parked`` on ``segue.alerts`` says which, and ``outputs_parked``
counts them.
"""

from __future__ import annotations

import orjson
from mypy_extensions import trait

from models.envelope import envelope, idempotency_key
from operators.partition_parts import PartitionParts
from state import outbox
from state.outbox import Output


@trait
class Parking(PartitionParts):
    """The partition's parking of outputs (a part of ``Partition``)."""

    def refuse(self, seq: int, why: str) -> None:
        """Kafka refused the output with this sequence number for good (too large, invalid):
        the next batch parks it with ``why`` and raises an alert, and the flow goes on."""
        self._refused.append((seq, why))

    def parked(self) -> list[outbox.Parked]:
        """Outputs parked in this partition's store."""
        return outbox.parked(self.store)

    def _park_oversized(self) -> None:
        """No output larger than ``max_output_bytes`` reaches the outbox: the producer would
        refuse it, and a refused output in the outbox would be refused again at every start."""
        limit = self.max_output_bytes
        big = [o for o in self.txn.outbox if len(o.value) + 4 * len(o.key or "") > limit
               and len(o.value) + len((o.key or "").encode()) > limit]
        if not big:
            return
        self.txn.outbox = [o for o in self.txn.outbox if all(o is not b for b in big)]
        for o in big:
            size = len(o.value) + len((o.key or "").encode())
            self._park(o, f"output.too_large: {size} bytes > max_output_bytes {limit}")

    def _park(self, out: Output, why: str) -> None:
        """Keep ``out`` in the store instead of producing it, and say so on the alerts topic."""
        at = self.txn.progress.watermark
        ident = outbox.park(self.txn, out, why, at)
        self.txn.stats["outputs_parked"] += 1
        self.txn.counts[("alert", "output_parked")] += 1
        record = envelope("alert.output_parked", idempotency_key("alert", "output_parked", ident),
                          customer_id=None, journey=None, at_ms=at,
                          cause={"parked_id": ident}, partition=self.partition,
                          subject=out.topic, topic=out.topic, key=(out.key or "")[:256],
                          bytes=len(out.value), reason=why)
        self.txn.emit(Output(self.topics.alerts, out.topic, orjson.dumps(record)))
