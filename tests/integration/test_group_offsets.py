"""Lag that standard tools see (issue 16): after a run, the consumer group named by the
application id holds, for every input partition, one past the last offset the flow applied,
which is the end of the log once the input is drained."""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from segue.kafka_io import consume_all, produce_records

pytestmark = pytest.mark.integration


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in got}


def ends(bootstrap: str, topic: str) -> dict[int, int]:
    """One past the last offset of each partition, by reading it (Tansu's watermarks are not
    reliable: tansu.md)."""
    last: dict[int, int] = {}
    for m in consume_all(bootstrap, topic):
        last[m.partition()] = max(last.get(m.partition(), -1), m.offset())
    return {p: off + 1 for p, off in last.items()}


def test_the_application_group_shows_what_the_flow_applied(job_factory):
    job = job_factory()
    events = [(f"c{i % 40}", orjson.dumps({
        "type": "track", "messageId": f"m{i}", "userId": f"c{i % 40}", "event": "Signed In",
        "timestamp": "2026-03-01T10:00:00Z"})) for i in range(400)]
    produce_records(job.broker.bootstrap, job.topics.events, events)
    bs, topic, n = job.broker.bootstrap, job.topics.events, job.settings.partitions
    group = job.settings.application_id
    before = committed(bs, group, topic, n)
    assert all(off < 0 for off in before.values())  # nothing committed before the run
    job.run_until_eof()
    end = ends(bs, topic)
    assert sum(end.values()) == 400 and len(end) == n
    assert committed(bs, group, topic, n) == end
