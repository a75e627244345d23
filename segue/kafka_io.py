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


def consume_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list:
    """Every message of ``topic`` from the beginning to its current end, in partition order.

    Reads with ``assign()`` until each partition reports EOF (Tansu's watermarks can be off,
    so messages are counted, not inferred from offsets).
    """
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    md = AdminClient(client_config(bootstrap)).list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions) if topic in md.topics else []
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
