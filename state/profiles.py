"""Customer profiles at rest and in memory.

At rest (``c|<customer ref>``) a profile is the ``models.profile.Profile`` struct as a msgpack
array (its fields in order) behind a one-byte format version: format 3, whose window counters
are flat lists (``state.windows``). Profiles stored by earlier versions still read: format 2
(the same array with a list per counter bucket), format 1 (a msgpack map) and JSON (it begins
with ``{``); they are rewritten in the current format the next time they change. In memory, a
bounded cache keeps the decoded profiles of recently active customers, so a customer seen
again soon is neither read nor decoded again; idle customers stay on disk only. The cache is
write-through: every committed batch writes the profiles it changed, so the store alone is
always complete (crash safety and read-only ``segue profile`` rest on that).

Example:
    >>> from models.profile import new_profile
    >>> raw = encode_profile(new_profile("user:u1", 0))
    >>> raw[:1] == FORMAT, load_profile(raw).id, decode_profile(raw)["events"]
    (True, 'u1', 0)
    >>> load_profile(b'{"id": "u1", "ref": "user:u1", "links": [], "events": 3}').events
    3
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

from models.profile import Profile, from_plain, plain
from state.windows import upgrade as upgrade_counters

FORMAT_V1 = b"\x01"  # earlier versions: a msgpack map (read, never written)
FORMAT_V2 = b"\x02"  # the Profile struct as a msgpack array, counters with a list per bucket
FORMAT_V3 = b"\x03"  # the same with flat counters (``state.windows``)
FORMAT = FORMAT_V3  # what this version writes
# What a decoded profile takes in Python objects, from its stored size: the cache budget is
# charged by this estimate. Measured with tracemalloc on format 3 over the 9.8k profiles of
# 100k simulated events: 5.8 KB for 872 bytes stored on average (the smallest fifth 3.1 KB for
# 316, the largest 11.4 KB for 1,861); a customer of one event 2.3 KB for 135. The fixed part
# is the struct and its empty containers. (Format 2's counters took 7.7 KB for 888 bytes.)
PROFILE_BASE_BYTES = 1_500
DECODED_PER_ENCODED_BYTE = 5


def decoded_size(encoded_size: int) -> int:
    """The estimated memory of a decoded profile stored in ``encoded_size`` bytes."""
    return PROFILE_BASE_BYTES + encoded_size * DECODED_PER_ENCODED_BYTE

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Profile)
_plain_decoder = msgspec.msgpack.Decoder()


class ProfileFormatError(ValueError):
    """Stored bytes that are no profile format this version knows."""


def encode_profile(profile: Profile) -> bytes:
    return FORMAT + _encoder.encode(profile)


def load_profile(raw: bytes) -> Profile:
    """The stored profile, typed (the hot path)."""
    head = raw[:1]
    try:
        if head == FORMAT_V3:
            return _decoder.decode(memoryview(raw)[1:])
        if head == FORMAT_V2:
            p = _decoder.decode(memoryview(raw)[1:])
        elif head == FORMAT_V1:
            p = from_plain(_plain_decoder.decode(memoryview(raw)[1:]))
        elif head == b"{":
            p = from_plain(orjson.loads(raw))
        else:
            p = None
        if p is not None:
            upgrade_counters(p.counters)
            return p
    except (msgspec.DecodeError, orjson.JSONDecodeError, ValueError, TypeError) as e:
        raise ProfileFormatError(f"profile bytes do not decode: {e}") from e
    raise ProfileFormatError(f"unknown profile format {head!r}")


def decode_profile(raw: bytes) -> dict[str, Any]:
    """The stored profile as plain data (``models.profile.plain``): for tools and tests."""
    return plain(load_profile(raw))


class ProfileCache:
    """Decoded profiles by customer reference, least recently used out first, bounded by an
    estimate of their memory."""

    __slots__ = ("max_bytes", "bytes", "_entries", "hits", "misses")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[Profile, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ref: str) -> Profile | None:
        entry = self._entries.get(ref)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(ref)
        self.hits += 1
        return entry[0]

    def put(self, ref: str, profile: Profile, encoded_size: int) -> None:
        size = decoded_size(encoded_size)
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
