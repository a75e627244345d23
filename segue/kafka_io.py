"""Write events to Kafka (simulator, tests, tools): key = customer id, value = JSON bytes."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import Producer

from flows.kafka import client_config
from segue.simulator import customer_key


def produce_records(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | str | None, bytes]],
    rate: float | None = None,
) -> int:
    """Produce (key, value) pairs; ``rate`` caps messages per second. Returns the count."""
    p = Producer(client_config(bootstrap, **{
        "linger.ms": 5, "queue.buffering.max.messages": 1_000_000, "acks": "all",
        "partitioner": "murmur2_random", "log.connection.close": False}))
    errors: list[str] = []

    def on_delivery(err, _msg) -> None:  # noqa: ANN001
        if err is not None:
            errors.append(str(err))

    n = 0
    t0 = time.monotonic()
    for key, value in records:
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        if n % 10_000 == 0:
            p.poll(0)
        if rate:
            ahead = n / rate - (time.monotonic() - t0)
            if ahead > 0.002:
                p.poll(0)
                time.sleep(ahead)
    left = p.flush(60)
    if left or errors:
        raise RuntimeError(f"{left} messages not delivered; errors: {errors[:3]}")
    return n


def event_records(events: Iterable[dict]) -> Iterable[tuple[str, bytes]]:
    import orjson

    for ev in events:
        yield customer_key(ev), orjson.dumps(ev)


def _partitions(admin, topic: str, timeout_s: float = 10.0) -> list[int]:  # noqa: ANN001
    """The topic's partitions; [] only when the broker says the topic does not exist.

    A metadata answer without partitions or with an error (a busy broker, a leader not yet
    known) is asked again rather than read as an empty topic."""
    from confluent_kafka import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        t = admin.list_topics(topic, timeout=10).topics.get(topic)
        err = t.error if t is not None else None
        if t is None or (err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return []
        if err is None and t.partitions:
            return sorted(t.partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"no partitions for {topic} in {timeout_s}s: {err}")
        time.sleep(0.2)


def consume_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list:
    """Every message of ``topic`` from the beginning to its current end, in partition order.

    Reads with ``assign()`` until each partition reports EOF (Tansu's watermarks can be off,
    so messages are counted, not inferred from offsets).
    """
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    parts = _partitions(AdminClient(client_config(bootstrap)), topic)
    if not parts:
        return []
    c = Consumer(client_config(bootstrap, **{
        "group.id": "segue-reader", "enable.auto.commit": False, "enable.partition.eof": True,
        "fetch.queue.backoff.ms": 20, "log.connection.close": False}))
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out = []
    done: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(done) < len(parts):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(set(parts) - done)} "
                                   f"did not reach their end in {timeout_s}s")
            for m in c.consume(10_000, 0.2):
                if m.error():
                    if m.error().code() == m.error()._PARTITION_EOF:
                        done.add(m.partition())
                        continue
                    raise RuntimeError(str(m.error()))
                out.append(m)
    finally:
        c.close()
    return out
