"""The input: one bytewax source partition per Kafka partition, read with ``assign()``.

All input partitions a worker reads (of both topics) share one consumer (``ConsumerHub``):
one fetch request to the broker covers them all, where a consumer per partition sent one
each; on a loaded broker the requests, not the messages, were what cost.

Each partition resumes right after the offset its store says was applied (the store, not
bytewax recovery, is the source of truth for progress), so a restart re-reads nothing that was
committed. Besides messages it emits ``Tick`` items: one when the partition starts (so its
logic is built eagerly and re-sends its outbox and arms its timers without waiting for
traffic) and one whenever the partition is caught up (so wall-clock timers may fire).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from flows.kafka import client_config
from operators.decode import RawRecord

# A caught-up partition says so at most every TICK_EVERY_S after it had messages, and every
# QUIET_TICK_S when nothing changed: its logic keeps the status, and timers and
# acknowledgements wake it on their own (``notify_at``). Each tick is a batch of its own.
TICK_EVERY_S = 0.1
QUIET_TICK_S = 1.0
IDLE_POLL_S = 0.01
# A partition that had messages within ACTIVE_FOR_S polls again after BUSY_POLL_S when it
# finds none. Another partition's fetch may have queued its next messages meanwhile (one
# consumer serves them all), and they wait until it polls: at 10 ms, half of that was the
# median of Segue's own time per event under a steady load.
BUSY_POLL_S = 0.001
ACTIVE_FOR_S = 1.0


@dataclass(slots=True, frozen=True)
class Tick:
    """No message: the partition started (``eof=False``) or is caught up / at end of input."""

    part: str  # "topic#partition"
    caught_up: bool
    eof: bool = False
    offset: int = -1
    final: bool = False  # the last input of this partition has ended (flush, stop)
    drain: bool = False  # end of input: fire what is due up to the horizon, send the partials


def consumer_config(brokers: str) -> dict:
    return client_config(brokers, **{
        "group.id": "segue-assign",  # required by librdkafka; assign() never joins the group
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        # An offset outside the log (the broker or topic was reset while running) is an
        # error, never a silent jump to the end or the beginning (flows.input_check).
        "auto.offset.reset": "error",
        "fetch.queue.backoff.ms": 20,
        "queued.max.messages.kbytes": 2048,  # per partition: bounds memory, not speed
        "fetch.wait.max.ms": 25,
        "log.connection.close": False,
    })


def partition_count(brokers: str, topic: str, timeout: float = 10.0) -> int:
    md = AdminClient(client_config(brokers)).list_topics(topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise RuntimeError(f"topic {topic!r} not found on {brokers}")
    return len(t.partitions)


class EndOfInput:
    """When a run with ``--until-eof`` may stop (one per process).

    The input topic ends at its end. The repartition topic ends in two steps, each once
    every input partition of this process has ended, no partition logic has output awaiting
    Kafka, and nothing has happened for ``grace_s``: first every partition drains (fires what
    is due up to the horizon and sends its final analytics partials), then, once all have and
    all is quiet again, the internal topic ends. So what a drain sends to another partition
    (partials, merges) is still read there, as replay does. (Across several processes this
    is a grace period, not a proof; tailing runs, the production mode, never stop.)
    """

    def __init__(self, grace_s: float = 1.5) -> None:
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self.inputs_open = 0
        self.busy: dict[str, int] = {}
        self.last_activity = time.monotonic()
        self.phase = 0  # 0 reading, 1 draining, 2 done
        self.drained_parts: set[str] = set()

    def drained(self, part: str) -> None:
        with self._lock:
            self.drained_parts.add(part)
            self.last_activity = time.monotonic()

    def stage(self) -> int:
        """0 (keep reading), 1 (drain now), 2 (the internal topic may end)."""
        with self._lock:
            now = time.monotonic()
            idle = (self.inputs_open == 0 and not any(self.busy.values())
                    and now - self.last_activity >= self.grace_s)
            if self.phase == 0 and idle:
                self.phase, self.last_activity = 1, now
            elif self.phase == 1 and idle and set(self.busy) <= self.drained_parts:
                self.phase = 2
            return self.phase

    def input_opened(self) -> None:
        with self._lock:
            self.inputs_open += 1

    def input_ended(self) -> None:
        with self._lock:
            self.inputs_open -= 1
            self.last_activity = time.monotonic()

    def report(self, part: str, inflight: int, active: bool) -> None:
        """A partition logic ran: how much output awaits Kafka, and whether it had input."""
        with self._lock:
            self.busy[part] = inflight
            if active or inflight:
                self.last_activity = time.monotonic()



class ConsumerHub:
    """One consumer for every input partition of one worker thread.

    Partitions join with ``add`` (incremental assign) and leave with ``remove``. ``take``
    hands a partition its queued messages, fetching for all partitions when its queue is
    empty, unless ``max_queued`` messages already wait in the other queues: the broker is
    much faster than the flow, so fetching whenever a queue is empty would move a whole
    backlog into memory. A partition's end-of-partition flag holds until a message for it
    arrives.
    """

    _local = threading.local()

    @classmethod
    def for_thread(cls, brokers: str, max_queued: int) -> ConsumerHub:
        hub = getattr(cls._local, "hub", None)
        if hub is None or hub.closed:
            hub = cls._local.hub = cls(brokers, max_queued)
        return hub

    def __init__(self, brokers: str, max_queued: int = 4000) -> None:
        self.consumer = Consumer(consumer_config(brokers))
        self.max_queued = max_queued
        self.queued = 0  # messages in all queues
        self.queues: dict[tuple[str, int], deque[tuple[int, Message]]] = {}  # (read ns, message)
        self.at_end: dict[tuple[str, int], bool] = {}
        self.closed = False

    def add(self, topic: str, partition: int, start: int) -> None:
        self.queues[(topic, partition)] = deque()
        self.at_end[(topic, partition)] = False
        self.consumer.incremental_assign([TopicPartition(topic, partition, start)])

    def remove(self, topic: str, partition: int) -> None:
        q = self.queues.pop((topic, partition), None)
        if q is None:
            return
        self.queued -= len(q)
        self.at_end.pop((topic, partition), None)
        if not self.queues:
            self.consumer.close()
            self.closed = True
        else:
            self.consumer.incremental_unassign([TopicPartition(topic, partition)])

    def take(self, topic: str, partition: int, max_n: int) -> tuple[list, bool]:
        """Up to ``max_n`` messages of the partition, and whether it is at its end."""
        stamped, at_end = self.take_stamped(topic, partition, max_n)
        return [m for _, m in stamped], at_end

    def take_stamped(self, topic: str, partition: int, max_n: int
                     ) -> tuple[list[tuple[int, Message]], bool]:
        """``take``, each message with the monotonic time (ns) the consumer returned it: where
        Segue's own time per event starts (``segue_consume_to_produce_seconds``)."""
        tp = (topic, partition)
        q = self.queues[tp]
        fetched = not q and self.queued < self.max_queued
        if fetched:
            self._fetch(min(max_n, self.max_queued - self.queued))
        n = min(len(q), max_n)
        out = [q.popleft() for _ in range(n)]
        self.queued -= n
        # At its end only if just looked at: with the fetch held back, its news may be waiting.
        return out, fetched and not q and self.at_end[tp]

    def _fetch(self, max_n: int) -> None:
        queues, at_end = self.queues, self.at_end
        msgs = self.consumer.consume(max_n, 0)
        now = time.monotonic_ns()
        for m in msgs:
            tp = (m.topic(), m.partition())
            q = queues.get(tp)
            if q is None:
                continue  # from a partition removed meanwhile
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end[tp] = True
                    continue
                if err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
                    input_reset(tp, err)
                raise RuntimeError(f"Kafka error on {tp[0]}[{tp[1]}]: {err}")
            at_end[tp] = False
            q.append((now, m))
            self.queued += 1


def input_reset(tp: tuple[str, int], err: KafkaError) -> None:
    """The log under a running partition went away: stop the process with one line. State
    is committed per batch, so stopping here loses nothing; the start-up check then tells
    what happened and the ``--on-reset`` choices."""
    import os
    import sys

    print(f"[segue] error: {tp[0]}[{tp[1]}]: the next offset is outside the log ({err.str()}"
          "): the broker or topic was reset while running. Nothing was skipped; restart to "
          "see the recovery choices (--on-reset).", file=sys.stderr, flush=True)
    os._exit(3)


class _Partition(StatefulSourcePartition[RawRecord | Tick, int]):
    def __init__(
        self, brokers: str, topic: str, partition: int, start: int, batch_size: int,
        until_eof: bool, end: EndOfInput | None = None, follows: bool = False,
        on_lag: Callable[[str, int, int], None] | None = None,
    ) -> None:
        # Room for about a batch in each of 8 partitions (a few MB).
        self._hub = ConsumerHub.for_thread(brokers, max_queued=8 * batch_size)
        self._hub.add(topic, partition, start)
        self._on_lag = on_lag
        self._topic = topic
        self._partition = partition
        self._part = f"{topic}#{partition}"
        self._batch_size = batch_size
        self._until_eof = until_eof
        self._next = start
        self._started = False
        self._last_tick = 0.0
        self._last_data = 0.0  # monotonic time it last returned messages
        self._done = False
        self._awake: datetime | None = None
        self._lag_checked = 0.0
        self._lag_gauge = None
        self._end = end
        self._follows = follows  # ends only when the inputs have (the repartition topic)
        self._drain_sent = False
        if end is not None and not follows:
            end.input_opened()

    def next_batch(self) -> list[RawRecord | Tick]:
        if self._done:
            raise StopIteration
        if not self._started:
            self._started = True
            return [Tick(self._part, caught_up=False)]
        self._awake = None
        msgs, at_end = self._hub.take_stamped(self._topic, self._partition, self._batch_size)
        topic, partition = self._topic, self._partition
        out: list[RawRecord | Tick] = [
            RawRecord(topic, partition, m.offset(), m.key(), m.value(), m.headers() or [],
                      m.timestamp()[1], read_ns)
            for read_ns, m in msgs
        ]
        if msgs:
            self._next = msgs[-1][1].offset() + 1
            self._last_data = time.monotonic()
        self._report_lag()
        stage = self._end.stage() if at_end and self._until_eof and self._follows \
            and self._end is not None else None
        if stage == 1 and not self._drain_sent:
            self._drain_sent = True
            out.append(Tick(self._part, caught_up=True, eof=True, drain=True))
        elif at_end and self._until_eof and (not self._follows or self._end is None
                                             or stage == 2):
            self._done = True
            if self._end is not None and not self._follows:
                self._end.input_ended()
            out.append(Tick(self._part, caught_up=True, eof=True, final=self._follows))
        elif not out:
            # Idle: poll again shortly instead of spinning on an empty partition (sooner if it
            # had messages a moment ago: a steady stream has gaps between takes).
            now = time.monotonic()
            self._awake = utc_in(BUSY_POLL_S if now - self._last_data < ACTIVE_FOR_S
                                 else IDLE_POLL_S)
            since = now - self._last_tick
            if since >= QUIET_TICK_S or (since >= TICK_EVERY_S
                                          and self._last_data > self._last_tick):
                self._last_tick = now
                out.append(Tick(self._part, caught_up=True))
        return out

    def _report_lag(self) -> None:
        """Input lag gauge (end offset - next offset), at most once a second."""
        now = time.monotonic()
        if now - self._lag_checked < 1.0:
            return
        self._lag_checked = now
        try:
            _, high = self._hub.consumer.get_watermark_offsets(
                TopicPartition(self._topic, self._partition), cached=True)
        except Exception:  # noqa: BLE001 - a metric must never stop the input
            return
        if high is None or high < 0 or self._next < 0:
            return
        if self._lag_gauge is None:
            from flows.metrics import INPUT_LAG

            self._lag_gauge = INPUT_LAG.labels(self._topic, str(self._partition))
        lag = max(high - self._next, 0)
        self._lag_gauge.set(lag)
        if self._on_lag is not None:
            self._on_lag(self._topic, self._partition, lag)

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._hub.remove(self._topic, self._partition)


class KafkaPartitionSource(FixedPartitionedSource[RawRecord | Tick, int]):
    """Reads ``topic``; ``resume_offset(partition)`` says where each partition starts.

    Args:
        brokers: bootstrap servers.
        topic: input topic.
        resume_offset: next offset to read per partition, or None for the beginning.
        batch_size: max messages per poll.
        until_eof: stop at the end of the topic (demo, tests) instead of tailing it.
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        resume_offset: Callable[[int], int | None],
        batch_size: int = 2000,
        until_eof: bool = False,
        end: EndOfInput | None = None,
        follows: bool = False,
        on_lag: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self._on_lag = on_lag
        self._end = end
        self._follows = follows
        self._brokers = brokers
        self._topic = topic
        self._resume_offset = resume_offset
        self._batch_size = batch_size
        self._until_eof = until_eof

    def list_parts(self) -> list[str]:
        n = partition_count(self._brokers, self._topic)
        return [f"{self._topic}#{i}" for i in range(n)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        partition = int(for_part.rsplit("#", 1)[1])
        start = self._resume_offset(partition)
        if start is None:
            start = resume_state if resume_state is not None else OFFSET_BEGINNING
        return _Partition(
            self._brokers, self._topic, partition, start, self._batch_size, self._until_eof,
            self._end, self._follows, self._on_lag,
        )


def utc_in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
