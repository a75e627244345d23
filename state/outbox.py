"""The outbox: outputs a committed batch emitted that Kafka has not acknowledged yet.

An ``Output`` is one message to produce. A batch puts its outputs in the outbox in the same
WriteBatch as the state they follow from (``o|<seq>``, see ``state.keys``); they are produced
after the commit and deleted by the next batch once Kafka has acknowledged them. After a
crash, what is still in the outbox is produced again: the same bytes, so the same idempotency
key.

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

from dataclasses import dataclass, field

import msgspec
import orjson

from state import keys
from state.store import PartitionStore

FORMAT_V1 = b"\x01"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[str, str | None, bytes, int | None])


@dataclass(slots=True, frozen=True)
class Output:
    """One message to produce."""

    topic: str
    key: str | None
    value: bytes
    partition: int | None = None  # explicit for the repartition topic; else by key
    # (event time, Kafka time) of the event that caused it, for latency metrics; not stored.
    src: tuple[int, int] | None = field(default=None, compare=False)

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
