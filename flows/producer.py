"""The output producer: one confluent-kafka producer per worker thread.

Delivery reports run inside ``poll``/``flush`` on the thread that called them, so each worker
owns its producer and its partition logics are only ever called back on their own thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from flows.kafka import client_config
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


# Errors no retry can mend: the output is parked (see ``state.outbox``), not sent again.
PERMANENT = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError._INVALID_ARG, KafkaError._BAD_MSG,
})
# librdkafka refuses a message over its own ``message.max.bytes`` before Segue's guard
# (``max_output_bytes``, key + value) could: leave room for the record's framing.
FRAMING_MARGIN = 64 * 1024


def is_permanent(err: KafkaError) -> bool:
    return err.code() in PERMANENT


class OutputProducer:
    """Produces ``Output`` records, calling ``on_delivery(err, msg)`` once Kafka has answered.

    ``send`` never raises for a message Kafka refuses: a refusal at produce time (too large,
    unknown topic) is reported through ``on_delivery`` like one from the broker (``msg`` is
    then ``None``)."""

    def __init__(self, brokers: str, max_output_bytes: int = 1_000_000) -> None:
        self._producer = Producer(client_config(
            brokers, **PRODUCER_CONFIG, **{"message.max.bytes": max_output_bytes + FRAMING_MARGIN}))

    def send(self, out: Output,
             on_delivery: Callable[[KafkaError | None, Message | None], None]) -> None:
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
            except KafkaException as e:
                on_delivery(e.args[0], None)
                return

    def send_all(self, entries: list[tuple[int, Output]],
                 on_delivery: Callable[[int, KafkaError | None, Message | None], None]
                 ) -> None:
        """``send`` each (id, output), ``on_delivery(id, err, msg)`` answering for it: the
        common case in one loop, without a call and a retry loop per output."""
        produce = self._producer.produce
        for seq, out in entries:
            report = partial(on_delivery, seq)
            try:
                if out.partition is None:
                    produce(out.topic, value=out.value, key=out.key, on_delivery=report)
                else:
                    produce(out.topic, value=out.value, key=out.key,
                            partition=out.partition, on_delivery=report)
            except (BufferError, KafkaException):  # nothing went: waits for room, or says no
                self.send(out, report)

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)

    def flush(self, timeout: float = 60) -> int:
        return self._producer.flush(timeout)


def producer_for_thread(brokers: str, max_output_bytes: int = 1_000_000) -> OutputProducer:
    p = getattr(_local, "producer", None)
    if p is None:
        p = _local.producer = OutputProducer(brokers, max_output_bytes)
    return p


def close_thread_producer(timeout: float = 10) -> None:
    """Flush and drop this thread's producer (end of a run in this thread)."""
    p = getattr(_local, "producer", None)
    if p is not None:
        p.flush(timeout)
        del _local.producer
