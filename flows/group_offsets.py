"""Lag that standard tools see: what the flow applied, committed to a Kafka consumer group.

Segue reads its input with ``assign()`` and keeps the applied offsets in each partition's
store, committed with the state (the source of truth on restart). So that
``kafka-consumer-groups --describe --group <app-id>``, Burrow and cloud consoles show Segue's
lag, the applied offsets are also committed, every few seconds and at the end of a run, to
the consumer group named by the application id (``segue`` by default). These commits are
informational: nothing reads them back, and a failed one is retried at the next round.
"""

from __future__ import annotations

import sys
import threading

from confluent_kafka import Consumer, KafkaException, TopicPartition

from flows.kafka import client_config


class GroupOffsets:
    """Commits applied offsets (``{"<topic>#<partition>": {topic: last applied offset}}``) to
    consumer group ``group`` as the next offsets to read."""

    def __init__(self, brokers: str, group: str) -> None:
        self.group = group
        self._consumer = Consumer(client_config(brokers, **{
            "group.id": group, "enable.auto.commit": False, "log.connection.close": False}))
        self._committed: dict[tuple[str, int], int] = {}
        self._warned = False
        self._lock = threading.Lock()

    def commit(self, applied: dict[str, dict[str, int]]) -> int:
        """Commit what moved since the last call; returns how many partitions were committed."""
        with self._lock:
            moved = []
            for part_key, offsets in list(applied.items()):
                partition = int(part_key.rpartition("#")[2])
                for topic, offset in list(offsets.items()):
                    if self._committed.get((topic, partition)) != offset + 1:
                        moved.append(TopicPartition(topic, partition, offset + 1))
            if not moved:
                return 0
            try:
                self._consumer.commit(offsets=moved, asynchronous=False)
            except KafkaException as e:
                if not self._warned:  # informational: say it once, never stop the flow
                    self._warned = True
                    err = e.args[0].str() if e.args else str(e)
                    print(f"[segue] could not commit offsets to consumer group {self.group!r} "
                          f"({err}); lag tools will not see this run, the flow goes on",
                          file=sys.stderr, flush=True)
                return 0
            for tp in moved:
                self._committed[(tp.topic, tp.partition)] = tp.offset
            return len(moved)

    def close(self) -> None:
        self._consumer.close()


def every(seconds: float, offsets: GroupOffsets, applied: dict) -> threading.Event:
    """Commit ``applied`` (read live) every ``seconds`` in a daemon thread until the returned
    event is set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            offsets.commit(dict(applied))

    threading.Thread(target=loop, name="segue-group-offsets", daemon=True).start()
    return stop
