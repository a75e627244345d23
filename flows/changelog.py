"""The changelog topic: mirror of every partition store, and the store rebuilt from it.

``state.changelog`` says what is written (one record per changed key, then a marker). Here:

- ``ChangelogWriter`` sends a committed batch's changes, in order (an idempotent producer);
  Kafka's acknowledgement of the marker lets the batch's pending entry go.
- ``read_tails`` finds, per partition, the last marker: the changelog's newest complete batch
  and the input offsets applied after it.
- ``open_store`` is what a partition does before it processes anything:

  ========================================  =================================================
  local store          changelog            then
  ========================================  =================================================
  none                 none                 a new partition: start empty
  none                 batch C              **restore** C from the changelog
  batch S, S ≥ C       batch C              use the local store (batches after C are still
                                            pending in it and go out first)
  batch S < C          batch C              stale (the partition moved on elsewhere): move it
                                            aside and **restore**
  any                  none (empty topic)   **seed**: the whole local store as one batch
  not mirrored         batch C              refuse: which is newer cannot be told
  ========================================  =================================================

  A restore writes into ``<store>.restoring`` and takes the store's place only once complete,
  so a crash during it leaves the old store (or none), never half of one.

Where an input starts reading (``resume_from``) is the smaller of the local store's applied
offset and the changelog's: the partition's owner may be another process (or host) whose
store is ahead of both, and resuming early is safe (applied offsets are skipped) where
resuming late would lose input.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from rocksdict import WriteBatch

from flows.kafka import client_config
from flows.source import consumer_config
from state import changelog, keys
from state.changelog import MARKER
from state.store import PartitionStore, StateError
from state.transaction import Progress

APPLY_EVERY = 20_000  # records per WriteBatch while restoring
TAIL_WINDOW = 4_096   # records read back from the end to find the last marker (doubled)
READ_TIMEOUT_S = 30.0


class ChangelogError(StateError):
    """The changelog cannot be written or does not fit the local store; says what to do."""


@dataclass(slots=True, frozen=True)
class Tail:
    """The last complete batch of one changelog partition."""

    low: int            # first offset in the log
    marker_offset: int  # offset of the last marker
    seq: int            # its batch sequence number
    applied: dict[str, int]  # input offsets applied after it


@dataclass(slots=True)
class RestoreStats:
    """What one restore or seed moved, for the log line, the test and the benchmark."""

    partition: int
    records: int = 0
    keys: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def line(self, what: str) -> str:
        rate = self.bytes / 2**20 / self.seconds if self.seconds else 0.0
        per_s = self.records / self.seconds if self.seconds else 0.0
        return (f"{what} partition {self.partition}: {self.records:,} records ({self.keys:,} "
                f"keys, {self.bytes / 2**20:.1f} MB) in {self.seconds:.2f}s ({rate:.1f} MB/s, "
                f"{per_s:,.0f} records/s)")


def _consumer(brokers: str) -> Consumer:
    return Consumer({**consumer_config(brokers), "auto.offset.reset": "earliest",
                     "fetch.max.bytes": 64 * 2**20, "max.partition.fetch.bytes": 16 * 2**20,
                     "queued.max.messages.kbytes": 64 * 1024})


def _read(c: Consumer, topic: str, partition: int, start: int,
          until: int | None = None) -> Iterator[Message]:
    """Messages of one partition from ``start`` to its end (or offset ``until``)."""
    c.assign([TopicPartition(topic, partition, start)])
    quiet_since = time.monotonic()
    while True:
        # A short wait: consume returns early only once it has the whole count.
        batch = c.consume(10_000, 0.1)
        if not batch:
            if time.monotonic() - quiet_since > READ_TIMEOUT_S:
                raise ChangelogError(f"changelog {topic}[{partition}] sent nothing for "
                                     f"{READ_TIMEOUT_S:.0f}s while being read (broker "
                                     "unreachable?)")
            continue
        quiet_since = time.monotonic()
        for m in batch:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return
                raise ChangelogError(f"changelog {topic}[{partition}]: {err.str()}")
            yield m
            if until is not None and m.offset() >= until:
                return


def read_tails(brokers: str, topic: str, partitions: int) -> dict[int, Tail | None]:
    """The last complete batch of each changelog partition (None: no marker there)."""
    c = _consumer(brokers)
    try:
        out: dict[int, Tail | None] = {}
        for p in range(partitions):
            try:
                low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            except KafkaException as e:
                raise ChangelogError(f"changelog {topic}[{p}] cannot be read: "
                                     f"{e.args[0].str()}") from None
            out[p] = None
            window = TAIL_WINDOW
            start = high
            while start > low:
                start = max(low, high - window)
                last = None
                for m in _read(c, topic, p, start):
                    if m.key() == MARKER:
                        last = m
                if last is not None:
                    seq, applied = changelog.decode_marker(last.value())
                    out[p] = Tail(low, last.offset(), seq, applied)
                    break
                window *= 2
        return out
    finally:
        c.close()


def _local_state(path: Path) -> tuple[bool, int | None, list[int]]:
    """(store exists, its changelog sequence, its pending changelog batches)."""
    if not (path / "CURRENT").exists():
        return False, None, []
    ro = PartitionStore(path, read_only=True)
    try:
        seq = Progress.load(ro).changelog_seq
        pending = [int(k[len(keys.CHANGELOG):], 16) for k, _ in ro.scan(keys.CHANGELOG)]
        has_data = ro.first(b"") is not None
    finally:
        ro.close()
    return has_data, seq, pending


def resume_from(store_applied: int | None, tail: Tail | None, topic: str) -> int | None:
    """The last applied offset of ``topic`` to resume after (see the module docstring)."""
    logged = tail.applied.get(topic) if tail is not None else None
    if store_applied is None or logged is None:
        return logged if store_applied is None else store_applied
    return min(store_applied, logged)


def open_store(brokers: str, topic: str, partition: int, path: Path, tail: Tail | None,
               open_: Callable[[Path], PartitionStore],
               say: Callable[[str], None] | None = None,
               writer: ChangelogWriter | None = None,
               ) -> tuple[PartitionStore, RestoreStats | None]:
    """The partition's store, restored or seeded as the table in the module docstring says."""
    say = say or (lambda line: print(f"[segue] {line}", file=sys.stderr, flush=True))
    exists, seq, pending = _local_state(path)
    where = f"changelog {topic}[{partition}]"
    if tail is None:
        store = open_(path)
        if not exists:
            return store, None
        stats = seed(writer or ChangelogWriter(brokers, topic), partition, store)
        say(stats.line(f"{where}: seeded from the local store,"))
        return store, stats
    if not _restore_needed(where, path, tail, exists, seq, pending):
        return open_(path), None
    if exists:
        say(f"{where}: the local store {path} is at batch {seq}, the changelog at "
            f"{tail.seq} (the partition moved on elsewhere): restoring")
    stats = restore(brokers, topic, partition, tail, path, open_)
    say(stats.line(f"{where}: restored"))
    return open_(path), stats


def _restore_needed(where: str, path: Path, tail: Tail, exists: bool, seq: int | None,
                    pending: list[int]) -> bool:
    """Whether the store at ``path`` must be rebuilt from the changelog ending at ``tail``;
    raises ``ChangelogError`` for a pair that cannot be told apart (see the table above)."""
    if not exists:
        return True
    if seq is None:
        raise ChangelogError(
            f"{where} ends at batch {tail.seq}, but the local store {path} was changed without "
            "a changelog: which is newer cannot be told. Delete the store to restore it from "
            "the changelog, or delete the changelog topic to seed it from this store")
    if seq < tail.seq:
        return True
    oldest = min(pending, default=seq + 1)
    if tail.seq < oldest - 1:
        raise ChangelogError(
            f"{where} ends at batch {tail.seq}, but the local store {path} is at batch {seq} "
            f"and no longer holds batches {tail.seq + 1}..{oldest - 1}: the topic lost "
            "records. Delete the changelog topic to seed it from this store")
    return False


def check_stores(state_dir: Path, events: str, topic: str,
                 tails: dict[int, Tail | None]) -> None:
    """Before the flow starts: refuse (``ChangelogError``, one clear line) a local store
    that does not fit its changelog, rather than fail inside a worker."""
    from state.store import store_dir

    for p, tail in tails.items():
        path = store_dir(state_dir, events, p)
        if tail is not None and (path / "CURRENT").exists():
            _restore_needed(f"changelog {topic}[{p}]", path, tail, *_local_state(path))


def restore(brokers: str, topic: str, partition: int, tail: Tail, path: Path,
            open_: Callable[[Path], PartitionStore]) -> RestoreStats:
    """Rebuild the store at ``path`` from the changelog up to ``tail``'s marker."""
    started = time.monotonic()
    stats = RestoreStats(partition)
    work = path.with_name(path.name + ".restoring")
    shutil.rmtree(work, ignore_errors=True)
    store = open_(work)
    c = _consumer(brokers)
    seen: set[bytes] = set()
    try:
        batch = WriteBatch(raw_mode=True)
        n = 0
        for m in _read(c, topic, partition, tail.low, until=tail.marker_offset):
            k, v = m.key(), m.value()
            stats.records += 1
            if k == MARKER or k is None:
                continue
            seen.add(k)
            if v is None:
                batch.delete(k)
            else:
                batch.put(k, v)
                stats.bytes += len(k) + len(v)
            n += 1
            if n >= APPLY_EVERY:
                store.write(batch)
                batch, n = WriteBatch(raw_mode=True), 0
        if n:
            store.write(batch)
        stats.keys = len(seen)
    finally:
        c.close()
        store.close()
    shutil.rmtree(path, ignore_errors=True)
    work.rename(path)
    stats.seconds = time.monotonic() - started
    return stats


def seed(writer: ChangelogWriter, partition: int, store: PartitionStore) -> RestoreStats:
    """Write the whole store to an empty changelog partition as one batch, marker last.

    Not waited for: the records go out in order before any newer batch's, so the marker
    arrives only after all of them; a crash before it leaves no marker, and the next start
    seeds again. A record Kafka refuses stops the flow (``ChangelogWriter.check``)."""
    started = time.monotonic()
    stats = RestoreStats(partition)
    progress = Progress.load(store)
    seq = (progress.changelog_seq or 0) + 1
    changes: changelog.Changes = []
    for k, v in store.scan(b""):
        if changelog.mirrored(k) and k != keys.CHANGELOG_SEQ:
            changes.append((k, v))
            stats.bytes += len(k) + len(v)
    changes.append((keys.CHANGELOG_SEQ, b"%d" % seq))
    writer.send(partition, seq, progress.applied, changes, lambda _seq: None)
    batch = WriteBatch(raw_mode=True)
    batch.put(keys.CHANGELOG_SEQ, b"%d" % seq)
    for k, _ in store.scan(keys.CHANGELOG):  # their changes are in the seed
        batch.delete(k)
    store.write(batch)
    stats.keys = len(changes)
    stats.records = len(changes) + 1
    stats.seconds = time.monotonic() - started
    return stats


# Ordered, no duplicates from retries (a stale value after a newer one would be kept by
# compaction); librdkafka retries until ``message.timeout.ms`` and then reports the error.
WRITER_CONFIG = {
    "enable.idempotence": True,
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 256 * 1024,
    "message.timeout.ms": 120_000,
    "compression.type": "lz4",
    "message.max.bytes": 16 * 2**20,
    "log.connection.close": False,
}


def _produce(producer: Producer, topic: str, partition: int, key: bytes, value: bytes | None,
             report: Callable) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=partition,
                             on_delivery=report)
            return
        except BufferError:
            producer.poll(0.05)


_local = threading.local()


class ChangelogWriter:
    """Sends committed batches' changes to the changelog topic (one producer per thread).

    ``add`` holds a partition's batches for up to ``LINGER_S`` (or ``MAX_HELD_BYTES``) and
    ``send_due`` sends them as one coalesced batch (``state.changelog.Unsent``): a key
    rewritten meanwhile goes once, an output that entered and left the outbox not at all.
    Holding costs nothing in safety: every held batch is committed locally with its pending
    entry (``l|<seq>``), sent again after a crash; a host that loses its disk restores from
    the last marker sent and reads its input again from that marker's offsets.
    """

    # A host that loses its disk redoes at most about this much of its input.
    LINGER_S = 1.0
    MAX_HELD_BYTES = 8 * 2**20  # per partition

    def __init__(self, brokers: str, topic: str) -> None:
        self.topic = topic
        self._producer = Producer(client_config(brokers, **WRITER_CONFIG))
        self.error: str | None = None  # the first failure: the flow stops with it
        # Per partition: its batches not sent yet, and what to call once Kafka has them.
        self._held: dict[int, tuple[changelog.Unsent, Callable[[int], None]]] = {}
        self._sent: set[int] = set()  # partitions this writer has sent a batch of

    def add(self, partition: int, seq: int, applied: dict[str, int],
            changes: changelog.Changes, on_done: Callable[[int], None]) -> None:
        """Batch ``seq`` of ``partition`` committed: hold it for ``send_due``."""
        held = self._held.get(partition)
        if held is None:
            held = self._held[partition] = (changelog.Unsent(), on_done)
        held[0].add(seq, applied, changes, time.monotonic())

    def send_due(self, force: bool = False) -> None:
        """Send every partition's held batches that waited long enough (all: ``force``).
        A partition's first batch goes at once: from then on the changelog has a restore
        point for it, so a host lost in its first second restores instead of reading again."""
        now = time.monotonic()
        for partition, (unsent, on_done) in self._held.items():
            if unsent.batches and (force or partition not in self._sent
                                   or now - unsent.since >= self.LINGER_S
                                   or unsent.bytes >= self.MAX_HELD_BYTES):
                seq, applied, changes, _ = unsent.take()
                self.send(partition, seq, applied, changes, on_done)

    @classmethod
    def for_thread(cls, brokers: str, topic: str) -> ChangelogWriter:
        w = getattr(_local, "writer", None)
        if w is None:
            w = _local.writer = cls(brokers, topic)
        return w

    def send(self, partition: int, seq: int, applied: dict[str, int],
             changes: changelog.Changes, on_done: Callable[[int], None]) -> None:
        """Send batch ``seq``'s changes; ``on_done(seq)`` once Kafka has its marker."""
        self._sent.add(partition)

        def record(err: KafkaError | None, _msg: object) -> None:
            if err is not None and self.error is None:
                self.error = f"{err.name()}: {err.str()}"

        def marker(err: KafkaError | None, msg: object) -> None:
            record(err, msg)
            if err is None:
                on_done(seq)

        producer, topic, produce = self._producer, self.topic, self._producer.produce
        for k, v in changes:  # the common case in one loop; a full queue waits for room
            try:
                produce(topic, value=v, key=k, partition=partition, on_delivery=record)
            except BufferError:
                _produce(producer, topic, partition, k, v, record)
        _produce(producer, topic, partition, MARKER, changelog.encode_marker(seq, applied),
                 marker)

    def check(self) -> None:
        """Raise ``ChangelogError`` if a changelog record could not be written: the state
        must not run ahead of its only copy elsewhere (the local store is intact; a restart
        sends the pending batches again, in order)."""
        if self.error is not None:
            raise ChangelogError(f"changelog {self.topic} could not be written ({self.error});"
                                 " stopping: restart once the broker takes writes again")

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)

    def flush(self, timeout: float = 60) -> int:
        """Send what is held, then wait for Kafka to have all of it."""
        self.send_due(force=True)
        return self._producer.flush(timeout)


def close_thread_writer(timeout: float = 30) -> None:
    w = getattr(_local, "writer", None)
    if w is not None:
        w.flush(timeout)  # held batches too: out before the process ends
        del _local.writer


def check_changelog(brokers: str, topic: str, partitions: int) -> None:
    """Refuse a changelog topic with fewer partitions than the input (partition p mirrors
    store p)."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient(client_config(brokers)).list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise ChangelogError(f"changelog topic {topic} does not exist: segue run creates it "
                             "at start; create it compacted with "
                             f"{partitions} partitions")
    if len(md.partitions) < partitions:
        raise ChangelogError(f"changelog topic {topic} has {len(md.partitions)} partitions, "
                             f"the input {partitions}: give it {partitions} (partition p "
                             "mirrors the store of input partition p)")
