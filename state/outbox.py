"""The outbox: outputs a committed batch emitted that Kafka has not acknowledged yet.

An ``Output`` is one message to produce. A batch puts its outputs in the outbox in the same
WriteBatch as the state they follow from (``o|<seq>``, see ``state.keys``); they are produced
after the commit and deleted by the next batch once Kafka has acknowledged them. After a
crash, what is still in the outbox is produced again: the same bytes, so the same idempotency
key.

An output that cannot be produced (larger than ``max_output_bytes``, or refused by the broker
for good) is *parked* (``x|<digest>``) with the reason instead, so that one output never stops
a partition; ``parked`` lists them.

At rest an entry is msgpack behind a format version; entries written as JSON by earlier
versions still read.

Example:
    >>> o = Output("segue.decisions", "u1", b'{"type":"decision"}')
    >>> Output.decode(o.encode()) == o
    True
    >>> Output.decode(b'["segue.dlq",null,"{}",null]')    # an entry of an earlier version
    Output(topic='segue.dlq', key=None, value=b'{}', partition=None, src=None)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import orjson

from state import keys
from state.store import PartitionStore

FORMAT_V1 = b"\x01"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[str, str | None, bytes, int | None])


@dataclass(slots=True)
class Output:
    """One message to produce (never changed once made; not frozen, since a frozen dataclass
    costs three times as much to build, and one or two are built per event)."""

    topic: str
    key: str | None
    value: bytes
    partition: int | None = None  # explicit for the repartition topic; else by key
    # (event time, Kafka time, monotonic ns read) of the event that caused it, for latency
    # metrics; not stored.
    src: tuple[int, int, int] | None = field(default=None, compare=False)

    def encode(self) -> bytes:
        return FORMAT_V1 + _encoder.encode((self.topic, self.key, self.value, self.partition))

    @staticmethod
    def decode(raw: bytes) -> Output:
        if raw[:1] == FORMAT_V1:
            topic, key, value, partition = _decoder.decode(memoryview(raw)[1:])
            return Output(topic, key, value, partition)
        topic, key, text, partition = orjson.loads(raw)  # JSON, as earlier versions wrote
        return Output(topic, key, text.encode(), partition)


def unacknowledged(store: PartitionStore) -> list[tuple[int, Output]]:
    """Every entry still in the outbox, in sequence order."""
    return [(int(k[len(keys.OUTBOX):], 16), Output.decode(v)) for k, v in store.scan(keys.OUTBOX)]


def entry(store: PartitionStore, seq: int) -> Output | None:
    raw = store.get(keys.outbox(seq))
    return Output.decode(raw) if raw is not None else None


@dataclass(slots=True, frozen=True)
class Parked:
    """An output that could not be produced, and why."""

    ident: str
    reason: str
    at_ms: int      # event time (or wall clock) of the batch that parked it
    output: Output


_parked_decoder = msgspec.msgpack.Decoder(tuple[str, int, bytes])


def park(txn: Writer, out: Output, reason: str, at_ms: int) -> str:
    """Park ``out`` in the transaction with ``reason``; returns its id (a digest of the
    output, so the same output parked twice is one entry)."""
    raw = out.encode()
    ident = hashlib.blake2b(raw, digest_size=8).hexdigest()
    txn.put(keys.parked(ident), FORMAT_V1 + _encoder.encode((reason, at_ms, raw)))
    return ident


def parked(store: PartitionStore) -> list[Parked]:
    """Every parked output of a partition store, by id."""
    out = []
    for k, v in store.scan(keys.PARKED):
        reason, at_ms, raw = _parked_decoder.decode(memoryview(v)[1:])
        out.append(Parked(k[len(keys.PARKED):].decode(), reason, at_ms, Output.decode(raw)))
    return out


class Writer(Protocol):
    def put(self, key: bytes, value: bytes) -> None: ...
