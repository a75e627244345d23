"""The changelog of a partition store: what each committed batch changed, to rebuild the store
elsewhere (a new host, a lost disk, a rescaled cluster).

Every batch that changes the store (Kafka Streams' and Quix Streams' design) is mirrored to
partition p of the compacted changelog topic (``<app-id>.changelog``) as

- one record per changed key: the store key, and its new value (``None``, a tombstone, for a
  deleted key), then
- one **marker** record (key ``MARKER``): the batch's changelog sequence number and the input
  offsets the store had applied after it.

Compaction keeps the newest record of each key, and of the marker the last one. The records up
to the last marker are therefore a complete store, as of that batch: a restore applies
them in order and ignores whatever follows the last marker (a batch cut off by a crash, sent
again in full once the process is back).

Each batch's pending entry rides in the same WriteBatch as its state (``l|<seq>``, see
``state.keys``): the keys it changed and the input offsets applied after it. It leaves the
store once Kafka has the marker. A crash after the commit sends the pending batches again,
before anything newer (the outbox's rule, for the changelog), as one batch: their keys with
the values the store holds now, which are the newest, and the last one's marker. So an entry
holds keys only: writing each batch's values twice would double what the store writes. The
``l|`` entries themselves are not mirrored.

Example:
    >>> raw = encode_pending({"segue.events": 41}, [b"c|u1", b"o|01"])
    >>> decode_pending(raw)
    ({'segue.events': 41}, [b'c|u1', b'o|01'])
    >>> decode_marker(encode_marker(7, {"segue.events": 41}))
    (7, {'segue.events': 41})
"""

from __future__ import annotations

import msgspec

from state import keys

FORMAT_V1 = b"\x01"  # markers; pending entries of earlier versions (keys and values)
FORMAT_V2 = b"\x02"  # pending entries: keys only
# State keys are ``<letter>|…``: no state key starts with ``#``.
MARKER = b"#batch"

_encoder = msgspec.msgpack.Encoder()
_pending_v1 = msgspec.msgpack.Decoder(tuple[dict[str, int], list[tuple[bytes, bytes | None]]])
_pending = msgspec.msgpack.Decoder(tuple[dict[str, int], list[bytes]])
_marker = msgspec.msgpack.Decoder(tuple[int, dict[str, int]])


def mirrored(key: bytes) -> bool:
    """Whether a store key goes to the changelog (all but the pending changelog entries)."""
    return not key.startswith(keys.CHANGELOG)


Changes = list[tuple[bytes, bytes | None]]


def encode_pending(applied: dict[str, int], changed: list[bytes]) -> bytes:
    """A batch's pending changelog entry: the offsets applied after it, and the keys it
    changed."""
    return FORMAT_V2 + _encoder.encode((applied, changed))


def decode_pending(raw: bytes) -> tuple[dict[str, int], list[bytes]]:
    """(applied offsets, changed keys) of a pending entry, in either format."""
    if raw[:1] == FORMAT_V1:  # written by an earlier version, with the values
        applied, changes = _pending_v1.decode(memoryview(raw)[1:])
        return applied, [k for k, _ in changes]
    return _pending.decode(memoryview(raw)[1:])


def encode_marker(seq: int, applied: dict[str, int]) -> bytes:
    return FORMAT_V1 + _encoder.encode((seq, applied))


def decode_marker(raw: bytes) -> tuple[int, dict[str, int]]:
    return _marker.decode(memoryview(raw)[1:])


# Keys whose put is always their creation, so the changelog cannot have them yet: outbox
# entries and events held for a merge (their names carry a sequence number never given out
# twice), and timers (``DueTimers._arm`` writes a timer's key only when it is not there).
CREATED_BY_PUT = (keys.OUTBOX, keys.WAITING, keys.TIMER)


class Unsent:
    """Committed batches' changes not sent yet, coalesced into one changelog batch.

    Most keys a batch writes are rewritten or deleted a few batches later: an output enters
    the outbox and leaves it once Kafka has it, an event held for a merge is released, a
    busy customer's profile is written again. Sent batch by batch, each of those is a record
    (5.2 records per event on the simulated stream); coalesced, only the newest value of a key
    goes, and a key created and deleted again meanwhile (``CREATED_BY_PUT``) not at all, since
    the changelog never had it. The marker carries the last batch's sequence number and
    offsets, so the records up to it are still a complete store.

    Example:
        >>> u = Unsent()
        >>> u.add(1, {"e": 10}, [(b"o|01", b"out"), (b"c|u1", b"v1")], now=0.0)
        >>> u.add(2, {"e": 12}, [(b"o|01", None), (b"c|u1", b"v2"), (b"t|9", None)], now=0.1)
        >>> u.take()
        (2, {'e': 12}, [(b'c|u1', b'v2'), (b't|9', None)], 2)
        >>> u.batches
        0
    """

    __slots__ = ("_values", "_created", "seq", "applied", "batches", "since", "bytes")

    def __init__(self) -> None:
        # key -> newest value (None: deleted); and the keys created within these batches.
        # Two containers, not a (value, created) tuple per key: a second's worth of keys
        # would be that many more objects for the garbage collector to walk.
        self._values: dict[bytes, bytes | None] = {}
        self._created: set[bytes] = set()
        self.seq = 0
        self.applied: dict[str, int] = {}
        self.batches = 0
        self.since = 0.0    # when the oldest batch held here was committed (monotonic s)
        self.bytes = 0      # keys and newest values held

    def add(self, seq: int, applied: dict[str, int], changes: Changes, now: float) -> None:
        """Batch ``seq`` committed with ``changes`` and the offsets ``applied`` after it."""
        held, created = self._values, self._created
        if not self.batches:
            self.since = now
        size = self.bytes
        for k, v in changes:
            if k not in held:
                if v is not None and k.startswith(CREATED_BY_PUT):
                    created.add(k)
                size += len(k)
            else:
                prev = held[k]
                if prev is not None:
                    size -= len(prev)
            held[k] = v
            if v is not None:
                size += len(v)
        self.bytes = size
        self.seq, self.applied = seq, applied
        self.batches += 1

    def take(self) -> tuple[int, dict[str, int], Changes, int]:
        """(last sequence, its applied offsets, the coalesced changes, batches covered);
        empties this."""
        created = self._created
        out = [(k, v) for k, v in self._values.items() if v is not None or k not in created]
        taken = (self.seq, self.applied, out, self.batches)
        self._values, self._created, self.batches, self.bytes = {}, set(), 0, 0
        return taken
