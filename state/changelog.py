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

The batch's changes ride in the same WriteBatch as its state (``l|<seq>``, see
``state.keys``): a crash after the commit sends them again, in order, before anything newer
(the outbox's rule, for the changelog). They leave the store once Kafka has the marker. The
``l|`` entries themselves are not mirrored.

Example:
    >>> raw = encode_batch({"segue.events": 41}, [(b"c|u1", b"{}"), (b"o|01", None)])
    >>> decode_batch(raw)
    ({'segue.events': 41}, [(b'c|u1', b'{}'), (b'o|01', None)])
    >>> decode_marker(encode_marker(7, {"segue.events": 41}))
    (7, {'segue.events': 41})
"""

from __future__ import annotations

import msgspec

from state import keys

FORMAT_V1 = b"\x01"
# State keys are ``<letter>|…``: no state key starts with ``#``.
MARKER = b"#batch"

_encoder = msgspec.msgpack.Encoder()
_batch = msgspec.msgpack.Decoder(tuple[dict[str, int], list[tuple[bytes, bytes | None]]])
_marker = msgspec.msgpack.Decoder(tuple[int, dict[str, int]])


def mirrored(key: bytes) -> bool:
    """Whether a store key goes to the changelog (all but the pending changelog entries)."""
    return not key.startswith(keys.CHANGELOG)


Changes = list[tuple[bytes, bytes | None]]


def encode_batch(applied: dict[str, int], changes: Changes) -> bytes:
    """A batch's pending changelog entry: the offsets applied after it, and its changes."""
    return FORMAT_V1 + _encoder.encode((applied, changes))


def decode_batch(raw: bytes) -> tuple[dict[str, int], Changes]:
    return _batch.decode(memoryview(raw)[1:])


def encode_marker(seq: int, applied: dict[str, int]) -> bytes:
    return FORMAT_V1 + _encoder.encode((seq, applied))


def decode_marker(raw: bytes) -> tuple[int, dict[str, int]]:
    return _marker.decode(memoryview(raw)[1:])
