"""The outbox: outputs a committed batch emitted that Kafka has not acknowledged yet.

An ``Output`` is one message to produce. A batch puts its outputs in the outbox in the same
WriteBatch as the state they follow from, as **one entry** (``o|<seq>``, see ``state.keys``):
a batch of N outputs writes one key and deletes it once, where an entry per output wrote and
deleted N (measured: 6 % less CPU per live event of seven outputs). Each output has an
id, its entry's sequence number and its place in it (``output_id``); the entry is deleted by
the first batch after Kafka has acknowledged (or the partition has parked) all of its outputs.
After a crash, every output of the entries still in the outbox is produced again: the same
bytes, so the same idempotency key (outputs of such an entry that Kafka had already
acknowledged go twice: at least once, as before). ``Unacked`` keeps, in memory, which entry
holds each output not yet acknowledged.

An output that cannot be produced (larger than ``max_output_bytes``, or refused by the broker
for good) is *parked* (``x|<digest>``) with the reason instead, so that one output never stops
a partition; ``parked`` lists them.

At rest an entry is msgpack behind a format version; entries of one output each, as earlier
versions wrote (msgpack or JSON), still read: such an output's id is its entry's number.

Example:
    >>> o = Output("segue.decisions", "u1", b'{"type":"decision"}')
    >>> Output.decode(o.encode()) == o
    True
    >>> Output.decode(b'["segue.dlq",null,"{}",null]')    # an entry of an earlier version
    Output(topic='segue.dlq', key=None, value=b'{}', partition=None, src=None)
    >>> [(hex(i), x.value) for i, x in rows(3, Entry([o, o]).encode())]
    [('0x30000', b'{"type":"decision"}'), ('0x30001', b'{"type":"decision"}')]
    >>> rows(2, o.encode()) == [(2, o)]                   # one output, as earlier versions wrote
    True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
import orjson

from state import keys
from state.store import PartitionStore

FORMAT_V1 = b"\x01"  # one output (an entry of earlier versions; a parked output)
ENTRY_V2 = b"\x02"   # a batch's outputs
# An output's id is its entry's sequence number shifted by this, plus its place in the entry.
ID_BITS = 16
MAX_PER_ENTRY = 1 << ID_BITS
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[str, str | None, bytes, int | None])
_rows = msgspec.msgpack.Decoder(list[tuple[str, str | None, bytes, int | None]])


@dataclass(slots=True, init=False)
class Output:
    """One message to produce (never changed once made; not frozen, since a frozen dataclass
    costs three times as much to build, and several are built per event; its own
    ``__init__``, since the generated one stays interpreted under mypyc)."""

    topic: str
    key: str | None
    value: bytes
    partition: int | None  # explicit for the repartition topic; else by key
    # (event time, Kafka time, monotonic ns read) of the event that caused it, for latency
    # metrics; not stored.
    src: tuple[int, int, int] | None = field(compare=False)

    def __init__(self, topic: str, key: str | None, value: bytes, partition: int | None = None,
                 src: tuple[int, int, int] | None = None) -> None:
        self.topic, self.key, self.value, self.partition, self.src = (
            topic, key, value, partition, src)

    def encode(self) -> bytes:
        return FORMAT_V1 + _encoder.encode((self.topic, self.key, self.value, self.partition))

    @staticmethod
    def decode(raw: bytes) -> Output:
        if raw[:1] == FORMAT_V1:
            topic, key, value, partition = _decoder.decode(memoryview(raw)[1:])
            return Output(topic, key, value, partition)
        topic, key, text, partition = orjson.loads(raw)  # JSON, as earlier versions wrote
        return Output(topic, key, text.encode(), partition)


def output_id(seq: int, place: int) -> int:
    """The id of the output at ``place`` in outbox entry ``seq``."""
    return (seq << ID_BITS) | place


@dataclass(slots=True, init=False)
class Entry:
    """One batch's outputs as one outbox entry (at most ``MAX_PER_ENTRY``: see ``entries``)."""

    outputs: list[Output]

    def __init__(self, outputs: list[Output]) -> None:
        self.outputs = outputs

    def encode(self) -> bytes:
        return ENTRY_V2 + _encoder.encode(
            [(o.topic, o.key, o.value, o.partition) for o in self.outputs])


def entries(outputs: list[Output]) -> list[Entry]:
    """A batch's outputs as outbox entries: one, unless there are more than an entry numbers."""
    return [Entry(outputs[i:i + MAX_PER_ENTRY]) for i in range(0, len(outputs), MAX_PER_ENTRY)]


def rows(seq: int, raw: bytes) -> list[tuple[int, Output]]:
    """The outputs of outbox entry ``seq``, with their ids."""
    if raw[:1] != ENTRY_V2:  # one output, as earlier versions wrote: its id is the entry's
        return [(seq, Output.decode(raw))]
    base = seq << ID_BITS
    return [(base | i, Output(topic, key, value, partition))
            for i, (topic, key, value, partition) in enumerate(_rows.decode(memoryview(raw)[1:]))]


def entry_seq(key: bytes) -> int:
    return int(key[len(keys.OUTBOX):], 16)


def unacknowledged(store: PartitionStore) -> list[tuple[int, Output]]:
    """Every output of the entries still in the outbox, in id order."""
    return [r for k, v in store.scan(keys.OUTBOX) for r in rows(entry_seq(k), v)]


class Unacked:
    """Which outbox entry holds each output Kafka has not acknowledged yet, and how many each
    entry still holds: the outbox in memory, by id (built from the store at start).

    Changed only once a batch has committed: ``resolve`` says what a batch's
    acknowledgements would empty, ``resolved`` records them after the commit.

    Example:
        >>> u = Unacked()
        >>> u.added(5, 2)
        >>> found, emptied = u.resolve([output_id(5, 0), 99])
        >>> found, emptied
        ({327680: 5}, [])
        >>> u.resolved(found)
        >>> u.resolve([output_id(5, 1)])[1]
        [5]
    """

    __slots__ = ("entry", "left")

    def __init__(self) -> None:
        self.entry: dict[int, int] = {}  # output id -> its entry's sequence number
        self.left: dict[int, int] = {}   # entry -> its outputs not acknowledged yet

    @staticmethod
    def load(store: PartitionStore) -> Unacked:
        u = Unacked()
        for k, v in store.scan(keys.OUTBOX):
            seq = entry_seq(k)
            ids = [i for i, _ in rows(seq, v)]
            for i in ids:
                u.entry[i] = seq
            u.left[seq] = len(ids)
        return u

    def __contains__(self, ident: int) -> bool:
        return ident in self.entry

    def resolve(self, ids: list[int]) -> tuple[dict[int, int], list[int]]:
        """Of ``ids`` (acknowledged, or parked), those still unacknowledged with their entries,
        and the entries they would leave empty. Changes nothing."""
        entry = self.entry
        found: dict[int, int] = {}
        for i in ids:
            seq = entry.get(i)
            if seq is not None:
                found[i] = seq
        hits: dict[int, int] = {}
        for seq in found.values():
            hits[seq] = hits.get(seq, 0) + 1
        left = self.left
        return found, [seq for seq, n in hits.items() if n >= left[seq]]

    def resolved(self, found: dict[int, int]) -> None:
        """The outputs ``found`` by ``resolve`` are acknowledged (the batch committed)."""
        entry, left = self.entry, self.left
        for i, seq in found.items():
            if entry.pop(i, None) is None:
                continue
            n = left[seq] - 1
            if n:
                left[seq] = n
            else:
                del left[seq]

    def added(self, seq: int, n: int) -> None:
        """Entry ``seq`` with ``n`` outputs committed."""
        base = seq << ID_BITS
        entry = self.entry
        for i in range(n):
            entry[base | i] = seq
        self.left[seq] = n

    def dropped(self, seq: int) -> None:
        """Entry ``seq`` left the outbox whole (an erasure: the erased customer's outputs
        went, the others into a new entry)."""
        if self.left.pop(seq, None) is not None:
            for i in [i for i, s in self.entry.items() if s == seq]:
                del self.entry[i]

    def output(self, store: PartitionStore, ident: int) -> Output | None:
        """The unacknowledged output ``ident``, from the store (None: acknowledged)."""
        seq = self.entry.get(ident)
        if seq is None:
            return None
        raw = store.get(keys.outbox(seq))
        if raw is None:
            return None
        return next((o for i, o in rows(seq, raw) if i == ident), None)


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
