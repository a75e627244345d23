"""Right to erasure: everything held on a customer goes, before any later event of theirs;
what remains is an audit record (``privacy.erased``) without personal data."""

from __future__ import annotations

import hashlib

import orjson
from mypy_extensions import trait

from models.envelope import SCHEMA_VERSION, idempotency_key
from models.identifiers import value_of
from models.profile import mark_gone
from operators.partition_parts import PartitionParts
from state import keys, outbox
from state.outbox import Output


@trait
class Erasure(PartitionParts):
    """The partition's erasure of a customer (a part of ``Partition``)."""

    def _index_dead_letter(self, key: bytes, topic: str, offset: int) -> None:
        """Remember that a message with this key was dead-lettered here, so that erasing the
        customer can say where their raw payloads are (``segue.dlq`` is not rewritten)."""
        k = keys.dead_letters(key)
        raw = self.txn.get(k)
        entry: dict = orjson.loads(raw) if raw else {
            "n": 0, "topic": topic, "partition": self.partition, "first": offset}
        entry["n"] += 1
        entry["last"] = offset
        self.txn.put(k, orjson.dumps(entry))

    def _dead_letters_of(self, refs: set[str]) -> dict | None:
        """The dead letters keyed by any of the customer's ids on this partition (forgotten
        here: the erasure record is where they are listed)."""
        found = []
        for ref in sorted(refs):
            k = keys.dead_letters(value_of(ref).encode())
            raw = self.txn.get(k)
            if raw is not None:
                e = orjson.loads(raw)
                found.append({"key_sha256": k[len(keys.DEAD_LETTERS):].decode(), "count": e["n"],
                              "source": {"topic": e["topic"], "partition": e["partition"],
                                         "first_offset": e["first"], "last_offset": e["last"]}})
                self.txn.delete(k)
        if not found:
            return None
        return {"topic": self.topics.dlq, "count": sum(f["count"] for f in found),
                "by_key": found}

    # ----- erasure ---------------------------------------------------------------------------
    def _erased_since(self, ref: str, at: int) -> bool:
        """Was this customer erased at or after ``at``? (Then data from ``at`` is stale.)"""
        raw = self.txn.get(keys.erased(ref))
        return raw is not None and at <= int(raw)

    def _erase(self, ref: str, at: int, message_id: str, event: str) -> None:
        """Right to erasure: everything held on the customer goes, before any later event of
        theirs; what remains is an audit record without personal data."""
        txn = self.txn
        assert txn is not None
        if self._erased_since(ref, at):
            self.txn.stats["erasure_repeated"] += 1  # a retried (or older) request: done already
            return
        p = self._existing_profile(ref)
        deleted = {"profile": 0, "timers": 0, "links": 0, "held": 0}
        ids = {ref} | (set(p.links) | set(p.merged_from) if p is not None else set())
        dead = self._dead_letters_of({i for i in ids if ":" in i})
        if p is not None:
            deleted["profile"] = 1
            deleted["timers"], deleted["held"] = self._unindex(p, ref)
            for x in sorted(set(p.links) | set(p.merged_from)):
                if x != ref:
                    deleted["links"] += 1
                    self._route(x, {"kind": "unlink", "id": x, "ref": ref, "at": at,
                                    "cause": message_id, "event": event})
            # Outputs decided before the request still go out (they are already on their way),
            # but their copies in the outbox go now instead of on Kafka's acknowledgement. An
            # entry holding any leaves whole; its other unacknowledged outputs go into this
            # batch's entry (and so are sent once more: at least once).
            for k, v in list(txn.scan(keys.OUTBOX)):
                seq = outbox.entry_seq(k)
                outs = outbox.rows(seq, v)
                mine = sum(1 for _, o in outs if o.key == p.id)
                if not mine:
                    continue
                txn.delete(k)
                self._dropped.append(seq)
                txn.stats["erased_outbox_entries"] += mine
                for i, o in outs:
                    if o.key != p.id and i in self.unacked and i not in self._resolving:
                        txn.emit(o)
            mark_gone(p)
        for k, _ in list(txn.scan(keys.waiting(ref))):  # events held for a merge: gone too
            txn.delete(k)
            self.held_decoded.pop(k, None)
        self.txn.objects.setdefault(ref, mark_gone())
        txn.delete(keys.profile(ref))
        txn.delete(keys.link(ref))
        txn.delete(keys.redirect(ref))
        txn.put(keys.erased(ref), b"%d" % at)  # late data from before this is dropped
        self.txn.stats["erasures"] += 1
        digest = hashlib.sha256(ref.encode()).hexdigest()
        record = {"schema_version": SCHEMA_VERSION, "type": "privacy.erased",
                  "idempotency_key": idempotency_key("erased", digest, message_id),
                  "customer_id": None, "customer_ref_sha256": digest, "journey": None,
                  "at_ms": at, "cause": {"event": event}, "deleted": deleted}
        if dead is not None:  # where this customer's raw payloads are, to purge them there
            record["dead_letters"] = dead
        self.txn.emit(Output(self.topics.customer_events, digest, orjson.dumps(record)))
