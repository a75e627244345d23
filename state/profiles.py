"""Customer profiles at rest and in memory.

At rest (``c|<customer ref>``) a profile is msgpack behind a one-byte format version; profiles
written as JSON by earlier versions still read (they begin with ``{``) and are rewritten in
the current format the next time they change. In memory, a bounded cache keeps the decoded
profiles of recently active customers, so a customer seen again soon is neither read nor
decoded again; idle customers stay on disk only. The cache is write-through: every committed
batch writes the profiles it changed, so the store alone is always complete (crash safety and
read-only ``segue profile`` rest on that).

Example:
    >>> raw = encode_profile({"id": "u1", "events": 3})
    >>> raw[:1] == FORMAT_V1, decode_profile(raw)
    (True, {'id': 'u1', 'events': 3})
    >>> decode_profile(b'{"id": "u1", "events": 3}')     # written by an earlier version
    {'id': 'u1', 'events': 3}
    >>> cache = ProfileCache(max_bytes=10_000)
    >>> cache.put("user:u1", {"id": "u1"}, encoded_size=100)
    >>> cache.get("user:u1"), cache.get("user:u2")
    ({'id': 'u1'}, None)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec
import orjson

FORMAT_V1 = b"\x01"
# A decoded profile takes about this many times its msgpack size in Python objects (measured
# on simulated customers: 7.4×); the cache budget is charged by this estimate.
DECODED_PER_ENCODED_BYTE = 8

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class ProfileFormatError(ValueError):
    """Stored bytes that are no profile format this version knows."""


def encode_profile(profile: dict[str, Any]) -> bytes:
    return FORMAT_V1 + _encoder.encode(profile)


def decode_profile(raw: bytes) -> dict[str, Any]:
    head = raw[:1]
    if head == FORMAT_V1:
        return _decoder.decode(memoryview(raw)[1:])
    if head == b"{":
        return orjson.loads(raw)
    raise ProfileFormatError(f"unknown profile format {head!r}")


class ProfileCache:
    """Decoded profiles by customer reference, least recently used out first, bounded by an
    estimate of their memory."""

    __slots__ = ("max_bytes", "bytes", "_entries", "hits", "misses")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ref: str) -> dict[str, Any] | None:
        entry = self._entries.get(ref)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(ref)
        self.hits += 1
        return entry[0]

    def put(self, ref: str, profile: dict[str, Any], encoded_size: int) -> None:
        size = encoded_size * DECODED_PER_ENCODED_BYTE
        old = self._entries.pop(ref, None)
        if old is not None:
            self.bytes -= old[1]
        if size > self.max_bytes:
            return
        self._entries[ref] = (profile, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, freed) = self._entries.popitem(last=False)
            self.bytes -= freed

    def evict(self, ref: str) -> None:
        old = self._entries.pop(ref, None)
        if old is not None:
            self.bytes -= old[1]
