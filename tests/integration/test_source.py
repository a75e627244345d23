"""The input source's shared consumer, on the real broker: one consumer, many partitions."""

from __future__ import annotations

import time

import pytest

from flows.source import ConsumerHub
from segue.kafka_io import produce_records

pytestmark = pytest.mark.integration


def _take_all(hub: ConsumerHub, topic: str, partition: int, want: int) -> tuple[list, bool]:
    got: list = []
    at_end = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (len(got) < want or not at_end):
        msgs, at_end = hub.take(topic, partition, 7)  # small takes: queues hold the rest
        assert len(msgs) <= 7
        got += msgs
        if not msgs:
            time.sleep(0.01)
    return got, at_end


def test_one_consumer_hands_each_partition_its_own_messages_in_order(job_factory):
    job = job_factory()
    bs, t = job.broker.bootstrap, job.topics
    # Keys chosen per partition (Kafka's default partitioner), on two topics.
    from operators.identity.routing import home_partition

    n = job.settings.partitions
    assert n >= 4
    keys = {p: [k for k in (f"k{i}" for i in range(400)) if home_partition(k, n) == p][:5]
            for p in (1, 3)}
    for p, ks in keys.items():
        produce_records(bs, t.events, [(k, f"e-{p}-{i}".encode()) for i, k in enumerate(ks)])
    produce_records(bs, t.repartition, [(keys[1][0], b"r-1-0")])

    hub = ConsumerHub(bs)
    for topic in (t.events, t.repartition):
        for p in (1, 2, 3):
            hub.add(topic, p, 0)

    for p in (1, 3):
        msgs, at_end = _take_all(hub, t.events, p, 5)
        assert [m.value() for m in msgs] == [f"e-{p}-{i}".encode() for i in range(5)]
        assert {(m.topic(), m.partition()) for m in msgs} == {(t.events, p)}
        assert [m.offset() for m in msgs] == sorted(m.offset() for m in msgs)
        assert at_end
    msgs, at_end = _take_all(hub, t.repartition, 1, 1)
    assert [m.value() for m in msgs] == [b"r-1-0"] and at_end
    empty, at_end = _take_all(hub, t.events, 2, 0)
    assert empty == [] and at_end  # an empty partition reports its end too

    # A new message clears the end flag until it has been taken.
    produce_records(bs, t.events, [(keys[3][0], b"late")])
    hub.remove(t.events, 1)  # another partition leaving does not disturb partition 3
    deadline = time.monotonic() + 20
    late: list = []
    while not late and time.monotonic() < deadline:
        late, at_end = hub.take(t.events, 3, 10)
        time.sleep(0.01)
    assert [m.value() for m in late] == [b"late"]
    for topic, p in ((t.events, 2), (t.events, 3), (t.repartition, 1), (t.repartition, 2),
                     (t.repartition, 3)):
        hub.remove(topic, p)
    assert hub.closed  # the last partition out closes the consumer


def test_the_shared_consumer_holds_a_bounded_number_of_messages(job_factory):
    """The broker is faster than the flow: a partition asking while the others' queues are
    full gets nothing now (and is not told it is at its end), so memory stays bounded."""
    job = job_factory()
    bs, t = job.broker.bootstrap, job.topics
    produce_records(bs, t.events, [(f"k{i}", b"x") for i in range(3000)])
    hub = ConsumerHub(bs, max_queued=100)
    for p in range(job.settings.partitions):
        hub.add(t.events, p, 0)
    hub.add(t.repartition, 0, 0)
    taken = 0
    deadline = time.monotonic() + 20
    while taken < 3000 and time.monotonic() < deadline:
        # The idle repartition partition asks first every round, as bytewax would.
        idle, at_end = hub.take(t.repartition, 0, 2000)
        assert idle == []
        assert hub.queued <= 100
        if hub.queued >= 100:
            assert not at_end  # could not look: not known to be at its end
        for p in range(job.settings.partitions):
            msgs, _ = hub.take(t.events, p, 10)
            taken += len(msgs)
            assert hub.queued <= 100
    assert taken == 3000


def test_an_active_partition_polls_again_sooner_than_an_idle_one(job_factory):
    """Messages the shared consumer fetched for a partition wait until that partition polls:
    one that just had messages polls again after BUSY_POLL_S, an idle one after IDLE_POLL_S.
    Each message carries the time the consumer returned it (Segue's own time starts there)."""
    from datetime import UTC, datetime

    from flows.source import BUSY_POLL_S, IDLE_POLL_S, _Partition

    job = job_factory()
    bs, t = job.broker.bootstrap, job.topics
    from operators.identity.routing import home_partition

    key = next(k for k in (f"k{i}" for i in range(400))
               if home_partition(k, job.settings.partitions) == 1)
    produce_records(bs, t.events, [(key, b"a"), (key, b"b")])
    busy = _Partition(bs, t.events, 1, 0, batch_size=10, until_eof=False)
    idle = _Partition(bs, t.events, 2, 0, batch_size=10, until_eof=False)
    for part in (busy, idle):
        part.next_batch()  # the first call only says "not caught up"
    got: list = []
    deadline = time.monotonic() + 20
    before = time.monotonic_ns()
    while len(got) < 2 and time.monotonic() < deadline:
        got += [r for r in busy.next_batch() if hasattr(r, "value")]
        time.sleep(0.01)
    assert [r.value for r in got] == [b"a", b"b"]
    assert all(before <= r.read_ns <= time.monotonic_ns() for r in got)

    def wait_s(part: _Partition) -> float:
        """Poll once more (nothing is left to read) and say how long it will sleep."""
        assert not [r for r in part.next_batch() if hasattr(r, "value")]
        return (part.next_awake() - datetime.now(UTC)).total_seconds()

    assert BUSY_POLL_S == 0.001 and IDLE_POLL_S == 0.01
    assert wait_s(busy) <= 0.005       # 1 ms, less the time the poll took
    assert 0.006 <= wait_s(idle) <= 0.01
    for part in (busy, idle):
        part.close()
