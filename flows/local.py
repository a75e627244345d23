"""The flow's partitions in one process, without Kafka: what ``segue replay`` and the
benchmarks' tight loop run.

Each partition is the same ``Partition`` the live flow runs, on its own store; what a
partition sends over the repartition topic (forwarded events, identity claims and merges,
analytics partials) waits in an in-memory queue for its target partition, numbered and decoded
as the live flow decodes that topic. Every other output goes to ``sink``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flows.tuning import settle_garbage
from models.settings import Settings
from operators.decode import RawRecord, decode_routed
from operators.journeys import JourneyRegistry
from operators.partition import Partition
from state.outbox import Output
from state.store import PartitionStore


class RepartitionQueue:
    """The repartition topic in memory: messages waiting for each partition, in order."""

    def __init__(self, partitions: int, skew_ms: int, topic: str) -> None:
        self.topic = topic
        self.skew_ms = skew_ms
        self.waiting: list[list] = [[] for _ in range(partitions)]
        self._offsets = [0] * partitions
        self.posted = 0

    def post(self, out: Output) -> None:
        part = out.partition or 0
        self.posted += 1
        self._offsets[part] += 1
        raw = RawRecord(self.topic, part, self._offsets[part], None, out.value, [], 0)
        self.waiting[part].append(decode_routed(raw, max_future_skew_ms=self.skew_ms))

    def __bool__(self) -> bool:
        """Whether any message waits."""
        return any(self.waiting)

    def take(self, part: int) -> list:
        """What waits for partition ``part``, in order; nothing waits for it after."""
        box, self.waiting[part] = self.waiting[part], []
        return box


class LocalFlow:
    """All partitions of a flow in this process; see the module docstring."""

    def __init__(self, settings: Settings, registry: JourneyRegistry | None, state_dir: Path,
                 sink: Callable[[Output], None], store_name: str = "partition-{}") -> None:
        n = settings.partitions
        self.repartition_topic = settings.topics.repartition
        self.partitions = [
            Partition(PartitionStore(state_dir / store_name.format(i),
                                     block_cache_mb=settings.store.block_cache_mb,
                                     write_buffer_mb=settings.store.write_buffer_mb),
                      settings, registry, partition=i, partitions=n)
            for i in range(n)
        ]
        self.queue = RepartitionQueue(n, settings.max_future_skew_s * 1000,
                                      self.repartition_topic)
        self.sink = sink

    def step(self, part: int, items: list, **kw: int) -> None:
        """One batch of partition ``part``: its outputs go to the sink or the queue, and are
        acknowledged at once (nothing is in flight without Kafka)."""
        p = self.partitions[part]
        for seq, out in p.process(items, **kw):
            p.acknowledge(seq)
            if out.topic == self.repartition_topic:
                self.queue.post(out)
            else:
                self.sink(out)
        settle_garbage()  # as the live flow does between batches

    def settle(self, rounds: int = 64) -> None:
        """Deliver what partitions sent each other, round by round, until nothing waits."""
        for _ in range(rounds):
            if not self.queue:
                return
            pending = [self.queue.take(i) for i in range(len(self.partitions))]
            for i, items in enumerate(pending):
                if items:
                    self.step(i, items)

    @property
    def drain_pending(self) -> bool:
        return any(p.drain_pending for p in self.partitions)

    def close(self) -> None:
        for p in self.partitions:
            p.store.close()
