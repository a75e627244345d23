"""The output producer: one confluent-kafka producer per worker thread.

Delivery reports run inside ``poll``/``flush`` on the thread that called them, so each worker
owns its producer and its partition logics are only ever called back on their own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import KafkaError, Message, Producer

from state.outbox import Output

_local = threading.local()

PRODUCER_CONFIG = {
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 32 * 1024,
    "acks": "all",
    "message.timeout.ms": 60_000,
    "log.connection.close": False,
    "partitioner": "murmur2_random",  # Kafka's default: customers stay on their home partition
}


class OutputProducer:
    """Produces ``Output`` records, calling ``on_delivery(err)`` once Kafka has answered."""

    def __init__(self, brokers: str) -> None:
        self._producer = Producer({"bootstrap.servers": brokers, **PRODUCER_CONFIG})

    def send(self, out: Output, on_delivery: Callable[[KafkaError | None, Message], None]) -> None:
        while True:
            try:
                if out.partition is None:
                    self._producer.produce(
                        out.topic, value=out.value, key=out.key, on_delivery=on_delivery
                    )
                else:
                    self._producer.produce(out.topic, value=out.value, key=out.key,
                                           partition=out.partition, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)

    def flush(self, timeout: float = 60) -> int:
        return self._producer.flush(timeout)


def producer_for_thread(brokers: str) -> OutputProducer:
    p = getattr(_local, "producer", None)
    if p is None:
        p = _local.producer = OutputProducer(brokers)
    return p


def close_thread_producer(timeout: float = 10) -> None:
    """Flush and drop this thread's producer (end of a run in this thread)."""
    p = getattr(_local, "producer", None)
    if p is not None:
        p.flush(timeout)
        del _local.producer
