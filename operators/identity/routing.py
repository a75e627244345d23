"""Which partition owns a customer: Kafka's default partitioner (murmur2 of the key).

Upstream producers key events by customer id with Kafka's default partitioner (the Java
client's, librdkafka's ``murmur2_random``), so a customer's events arrive at its home
partition. An event whose canonical customer lives elsewhere (an anonymous id merged into a
known customer, or a producer that partitioned differently) is forwarded there through the
internal repartition topic.

>>> home_partition("user-1", 8) == home_partition("user-1", 8)
True
>>> murmur2(b"21")  # the value Kafka's Java client computes
-973932308
"""

from __future__ import annotations

import functools

from mypy_extensions import i64


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed int32."""
    # i64 locals: compiled, this is machine arithmetic (every product stays below 2**63).
    m: i64 = 0x5BD1E995
    length: i64 = len(data)
    h: i64 = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4: i64 = length // 4
    i: i64 = 0
    while i < n4:
        j = i * 4
        k: i64 = data[j] | (data[j + 1] << 8) | (data[j + 2] << 16) | (data[j + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
        i += 1
    rest = length & 3
    tail = n4 * 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


@functools.lru_cache(maxsize=1 << 16)  # a customer's events come in runs: hashed once a run
def home_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
