"""The Segue dataflow: Kafka partitions → decode → one stateful logic per partition → Kafka.

```
segue.events  (KafkaPartitionSource: one source partition per Kafka partition)
   ▼ decode (orjson + pydantic; invalid → dead letter, still in offset order)
   ▼ key by "topic#partition"
   ▼ orchestrate (stateful_batch → Partition on that partition's RocksDB store)
   ▼ outputs via the outbox → segue.dlq, segue.customer-events, …
   ▼ progress sink (counts for the console and the run summary)
```

Checkpoint order, per micro-batch (the reason for each step in brackets):
1. commit the WriteBatch: state + applied offset + the batch's     [atomic progress]
   outputs (one outbox entry)
2. produce the outputs                                              [after 1: never emit
   what state does not know it emitted]
3. once Kafka has acknowledged all of an entry's outputs, delete   [after 2: an output
   the entry in the next batch                                      leaves the outbox only
   once Kafka has it; a crash in between re-sends it, same key]
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from confluent_kafka import KafkaError, Message

from flows.changelog import ChangelogWriter, Tail, open_store, resume_from
from flows.metrics import (
    ALERTS,
    BATCH,
    LATENCY,
    OWN_TIME,
    STATE_BYTES,
    STATE_KEYS,
    TIMER_CATCHUP,
    TIMER_LATENESS,
    PartitionMetrics,
    observe_nba,
)
from flows.producer import is_permanent, producer_for_thread
from flows.progress import ProgressSink
from flows.source import EndOfInput, KafkaPartitionSource, RawRecord, Tick
from flows.tuning import settle_garbage
from models.envelope import envelope, idempotency_key
from models.events import InEvent
from models.settings import Settings
from operators.analytics.alerts import LagWatch
from operators.decode import Rejected, decode_all, decode_routed
from operators.journeys import JourneyRegistry
from operators.partition import Partition
from state import keys
from state.outbox import Output
from state.store import PartitionStore, store_dir

OUTBOX_POLL_S = 0.2
_LATENCY_EVENT = LATENCY.labels("event")
_LATENCY_KAFKA = LATENCY.labels("kafka")


@dataclass
class FlowContext:
    """What every partition logic of a run shares."""

    settings: Settings
    brokers: str
    state_dir: Path
    until_eof: bool = False
    journeys: JourneyRegistry | None = None
    drain_horizon_ms: int | None = None
    partitions: int = 1
    end: EndOfInput = field(default_factory=EndOfInput)
    metrics: bool = False
    wall_ms: object = field(default=lambda: int(time.time() * 1000))
    source: bytes | None = None  # the input topics' identity (flows.input_check)
    # Where an input partition starts after a reset (--on-reset): (topic, partition) -> offset
    restarts: dict[tuple[str, int], int] = field(default_factory=dict)
    # The changelog's last complete batch per partition as the run started (flows.changelog);
    # None when the changelog is off.
    tails: dict[int, Tail | None] | None = None
    _locks: dict[int, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @property
    def changelog(self) -> bool:
        return self.tails is not None

    def lock(self, partition: int) -> threading.Lock:
        """Held while partition ``partition``'s store is opened, restored or read for where
        to resume (the sources and the logic of one process may do so on other threads)."""
        with self._guard:
            return self._locks.setdefault(partition, threading.Lock())

    def _open(self, path: Path) -> PartitionStore:
        s = self.settings.store
        return PartitionStore(path, block_cache_mb=s.block_cache_mb,
                              write_buffer_mb=s.write_buffer_mb)

    def store(self, topic: str, partition: int) -> PartitionStore:
        """The partition's store; with the changelog on, restored or seeded first."""
        path = store_dir(self.state_dir, topic, partition)
        if self.tails is None:
            return self._open(path)
        topic = self.settings.topics.changelog
        with self.lock(partition):
            store, _ = open_store(self.brokers, topic, partition, path,
                                  self.tails.get(partition), self._open,
                                  writer=ChangelogWriter.for_thread(self.brokers, topic))
        return store

    def resume_offset(self, topic: str, partition: int) -> int | None:
        """The next offset of ``topic`` to read: one past what the partition's store applied.

        Partition p of the input and of the repartition topic share the store of the input's
        partition p.
        """
        if (topic, partition) in self.restarts:
            return self.restarts[(topic, partition)]
        path = store_dir(self.state_dir, self.settings.topics.events, partition)
        applied = None
        with self.lock(partition):
            if (path / "CURRENT").exists():
                ro = PartitionStore(path, read_only=True)
                try:
                    raw = ro.get(keys.applied(topic))
                finally:
                    ro.close()
                applied = int(raw) if raw is not None else None
        if self.tails is not None:  # the owner may be elsewhere: see flows.changelog
            applied = resume_from(applied, self.tails.get(partition), topic)
        return applied + 1 if applied is not None else None


class PartitionLogic(StatefulBatchLogic):
    """bytewax's handle on one input partition: feeds its ``Partition``, produces its outbox.

    bytewax builds a logic without telling it its key, so it attaches to its partition's
    store on the first item (every item names the partition it came from; the source's
    first item for a partition is a start ``Tick``, so this happens before any traffic).
    """

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.part_key = ""
        self.proc: Partition | None = None
        self.producer = producer_for_thread(ctx.brokers, ctx.settings.max_output_bytes)
        # Output ids produced but not yet acknowledged. The bytes stay in the outbox
        # (on disk), not here, so memory does not grow with what Kafka has not confirmed.
        self.inflight: set[int] = set()
        self.retry: list[int] = []  # refused at produce time for now: sent again next batch
        self.src: dict[int, tuple[int, int, int]] = {}  # dispatch id -> causing event's times
        self.metrics: PartitionMetrics | None = None
        self._state_checked = 0.0
        self.caught_up = False
        self._caught_up_inputs: dict[str, bool] = {}
        self._live_since: int | None = None  # wall clock (ms) when it last caught up
        self._next_due: int | None = None
        self._drained = False
        self._events_done = False  # the events input ended (--until-eof)
        self._dispatch_prefix = f"{ctx.settings.topics.prefix}dispatch."
        self.changelog = ChangelogWriter.for_thread(ctx.brokers, ctx.settings.topics.changelog) \
            if ctx.changelog else None

    def _attach(self, part_key: str) -> Partition:
        part = int(part_key.rpartition("#")[2])
        self.part_key = f"{self.ctx.settings.topics.events}#{part}"
        self.proc = proc = Partition(
            self.ctx.store(self.ctx.settings.topics.events, part), self.ctx.settings,
            self.ctx.journeys, partition=part, partitions=self.ctx.partitions,
            source=self.ctx.source,
            restarts={t: off for (t, p), off in self.ctx.restarts.items() if p == part},
            changelog=self.changelog is not None)
        if self.ctx.metrics:
            self.metrics = PartitionMetrics(str(part))
        # Whatever a previous run committed but Kafka never acknowledged goes out again: the
        # changelog's first, in order, before any newer batch.
        if self.changelog is not None:
            for seq, applied, changes in proc.unsent_changelog():
                self.changelog.send(part, seq, applied, changes, proc.acknowledge_changelog)
        resend = proc.unacknowledged()
        proc.stats["outbox_resent"] += len(resend)
        self._send(resend)
        return proc

    def _delivered(self, seq: int, err: KafkaError | None, msg: Message | None) -> None:
        self.inflight.discard(seq)
        proc = self.proc
        assert proc is not None
        src = self.src.pop(seq, None)
        if err is None:
            proc.acknowledge(seq)
            if src is not None and msg is not None:
                out_ms = msg.timestamp()[1]
                _LATENCY_EVENT.observe(max(out_ms - src[0], 0) / 1000)
                _LATENCY_KAFKA.observe(max(out_ms - src[1], 0) / 1000)
            return
        if is_permanent(err):  # no retry mends it: park it, raise an alert, go on
            proc.refuse(seq, f"produce.refused: {err.name()}: {err.str()}")
            return
        proc.stats["produce_retries"] += 1
        if msg is None:  # refused before it left (unknown topic, …): again at the next batch
            self.retry.append(seq)
            return
        # librdkafka gave up retrying: send it again, same bytes, from the outbox.
        out = proc.outbox_entry(seq)
        if out is not None:
            self._send([(seq, out)])

    def _send(self, entries: list[tuple[int, Output]]) -> None:
        dispatch = self._dispatch_prefix
        measured = self.metrics is not None
        inflight, read_ns = self.inflight, []
        for seq, out in entries:
            inflight.add(seq)
            src = out.src
            if measured and src is not None and out.topic.startswith(dispatch):
                self.src[seq] = src
                if src[2]:  # 0: not read by this consumer (an event held for a merge, from state)
                    read_ns.append(src[2])
        self.producer.send_all(entries, self._delivered)
        if read_ns:  # handed over: read after the whole batch went (an upper bound)
            now = time.monotonic_ns()
            for t in read_ns:
                OWN_TIME.observe((now - t) / 1e9)

    def _clock(self) -> int | None:
        # Catching up: timers follow event time (deterministic). Caught up and tailing: they
        # follow the wall clock, so a wait fires on time even if the customer stays silent.
        if self.caught_up and not self.ctx.until_eof:
            return self.ctx.wall_ms()  # type: ignore[operator]
        return None

    def _run(self, events: list[InEvent | Rejected], drain: int | None = None,
             flush_analytics: bool = False) -> list:
        proc = self.proc
        assert proc is not None
        if self.retry:
            again, self.retry = self.retry, []
            self._send([(seq, out) for seq in again
                        if (out := proc.outbox_entry(seq)) is not None])
        if self.changelog is not None:
            self.changelog.poll(0)
            self.changelog.check()
        started = time.perf_counter()
        # The outputs go first: the delivery reports of earlier ones and the changelog's
        # records (a second's worth of coalesced keys at a time) would only delay them.
        # Acknowledgements polled now are applied by the next batch either way. (Not kept
        # in a variable: sent, they are garbage before the collector settles below.)
        self._send(proc.process(events, self._clock(), drain_horizon_ms=drain,
                                flush_analytics=flush_analytics))
        self.producer.poll(0)
        if self.changelog is not None:
            if proc.changelog_out is not None:
                seq, applied, changes = proc.changelog_out
                self.changelog.add(proc.partition, seq, applied, changes,
                                   proc.acknowledge_changelog)
            self.changelog.send_due()
        if self.metrics is not None:
            self._observe(proc, time.perf_counter() - started, bool(events))
        settle_garbage()  # after the sends: no output waits on the collector
        self._next_due = proc.timer_wakeup()  # a bound kept in memory, not a scan
        self.ctx.end.report(self.part_key, len(self.inflight), active=bool(events))
        return [(self.part_key, dict(proc.stats), proc.applied, len(self.inflight))]

    def _observe(self, proc: Partition, seconds: float, had_events: bool) -> None:
        assert self.metrics is not None
        if had_events:
            BATCH.observe(seconds)
        self.metrics.add(proc.batch_counts)  # the journey engine's counts among them
        if proc.engine is not None:
            nba = proc.engine.nba
            model = nba.model()
            observe_nba(nba.timings, model.version if model is not None else None)
        # Live timers fell due once the partition was caught up; those due before it (a
        # backfill, a stop) fire late by design and are reported apart.
        live_from = self._live_since
        for due, ms in proc.timer_lateness:
            (TIMER_LATENESS if live_from is not None and due >= live_from
             else TIMER_CATCHUP).observe(max(ms, 0) / 1000)
        proc.timer_lateness.clear()
        self.metrics.outbox.set(len(self.inflight))
        self.metrics.timers_pending.set(proc.timers_pending)
        now = time.monotonic()
        if now - self._state_checked > 5:
            self._state_checked = now
            keys_n, size = proc.store.approximate_size()
            part = self.metrics.partition
            STATE_KEYS.labels(part).set(keys_n)
            STATE_BYTES.labels(part).set(size)

    def on_batch(self, items: list) -> tuple[list, bool]:
        if self.proc is None:
            first = items[0]
            self._attach((first[0] if type(first) is list else first).part)
        events: list[InEvent | Rejected] = []
        eof = False
        drain = False
        events_ended = False
        inputs = self._caught_up_inputs
        for it in items:
            if isinstance(it, Tick):
                inputs[it.part] = it.caught_up
                eof = eof or it.final
                drain = drain or it.drain
                events_ended = events_ended or (it.eof and not it.final and not it.drain)
            else:
                events.append(it)  # an event, a dead letter, or a batch payload's list of them
                inputs[(it[0] if type(it) is list else it).part] = False
        # Caught up only when every input of this partition (events, repartition) is.
        was = self.caught_up
        self.caught_up = len(inputs) >= 2 and all(inputs.values())
        if self.caught_up and not was and self._live_since is None:
            self._live_since = self.ctx.wall_ms()  # type: ignore[operator]
        self._events_done = self._events_done or events_ended or eof or drain
        assert self.proc is not None
        # Nothing of its own input left unread: claims of identifiers are answered at once.
        self.proc.input_done = self.caught_up or self._events_done
        self.proc.events_ended = self._events_done
        out = self._run(events, flush_analytics=events_ended)
        if (drain or eof) and not self._drained:
            # End of input: timers up to the horizon and the final partials, while the other
            # partitions still read what this sends them (see ``EndOfInput``).
            self._drained = True
            if self.ctx.drain_horizon_ms:
                out = self._run([], drain=self.ctx.drain_horizon_ms)
                while self.proc.drain_pending:  # type: ignore[union-attr]
                    out = self._run([], drain=self.ctx.drain_horizon_ms)
            self.ctx.end.drained(self.part_key)
        if eof:
            self.producer.flush()
            if self.changelog is not None:  # held batches too
                self.changelog.flush()
            out = self._run([])  # drop what Kafka acknowledged from the outbox
            if self.changelog is not None:  # the acknowledgements' own batch, too
                self.changelog.flush()
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list, bool]:
        if self.proc is None:
            return [], StatefulBatchLogic.RETAIN
        return self._run([]), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        times = []
        if self.inflight or self.retry or (self.proc is not None and (
                self.proc.has_acks or self.proc.changelog_pending)):
            times.append(datetime.now(UTC) + timedelta(seconds=OUTBOX_POLL_S))
        if self._next_due is not None and self._clock() is not None:
            times.append(datetime.fromtimestamp(self._next_due / 1000, UTC))
        return min(times) if times else None

    def snapshot(self) -> None:
        return None  # progress lives in the partition store, not in bytewax snapshots


class LagAlerts:
    """Input lag growing check by check → an alert on ``segue.alerts`` (and the metric)."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.watches: dict[tuple[str, int], LagWatch] = {}

    def __call__(self, topic: str, partition: int, lag: int) -> None:
        a = self.ctx.settings.alerts
        w = self.watches.get((topic, partition))
        if w is None:
            w = self.watches[(topic, partition)] = LagWatch(a.lag_growth_checks,
                                                            a.lag_min_messages)
        alert = w.observe(lag, time.monotonic())
        if alert is None:
            return
        now_ms = int(time.time() * 1000)
        subject = f"{topic}[{partition}]"
        record = envelope("alert.lag_growing",
                          idempotency_key("alert", "lag_growing", subject, now_ms),
                          customer_id=None, journey=None, at_ms=now_ms,
                          cause={"partition": partition}, subject=subject, partition=partition,
                          rate=None, **alert)
        ALERTS.labels("lag_growing").inc()
        producer_for_thread(self.ctx.brokers).send(
            Output(self.ctx.settings.topics.alerts, subject, orjson.dumps(record)),
            lambda err, msg: None)


def build_flow(ctx: FlowContext, progress: ProgressSink | None = None) -> Dataflow:
    """Wire the dataflow; ``flows.run`` runs it."""
    s = ctx.settings
    topic = s.topics.events
    max_bytes = s.max_event_bytes
    skew_ms = s.max_future_skew_s * 1000
    keep = s.dead_letter_keep_bytes
    app_id = s.application_id

    internal = s.topics.repartition

    def keyed_decode(item: RawRecord | Tick) -> tuple[str, object]:
        # Keyed by partition number: partition p of the input and of the repartition topic
        # feed the same logic and store.
        if isinstance(item, Tick):
            return item.part.rpartition("#")[2], item
        if item.topic == internal:
            return str(item.partition), decode_routed(item, max_future_skew_ms=skew_ms,
                                                      keep_bytes=keep, app_id=app_id)
        return str(item.partition), decode_all(item, max_bytes=max_bytes,
                                               max_future_skew_ms=skew_ms, keep_bytes=keep,
                                               max_batch_bytes=s.max_batch_bytes,
                                               now_ms=int(time.time() * 1000))

    flow = Dataflow("segue")
    streams = []
    for step, name in (("in_events", topic), ("in_repartition", internal)):
        source = KafkaPartitionSource(
            ctx.brokers,
            name,
            resume_offset=lambda p, t=name: ctx.resume_offset(t, p),
            batch_size=s.batch_size,
            until_eof=ctx.until_eof,
            end=ctx.end,
            follows=name == internal,
            on_lag=LagAlerts(ctx) if name == topic else None,
        )
        streams.append(op.input(step, flow, source))
    raw = op.merge("inputs", *streams)
    keyed = op.map("decode", raw, keyed_decode)
    stats = op.stateful_batch("orchestrate", keyed, lambda _resume: PartitionLogic(ctx))
    op.output("progress", stats, progress or ProgressSink())
    return flow
