"""Is the input the one the state was built from? Checked before a run starts.

Each partition store records the identity of its input topics (``m|source``: topic id and
partition count of ``<prefix>events`` and ``<prefix>repartition``) and their applied offsets.
When the broker was replaced (Tansu's memory storage after a restart) or a topic deleted and
recreated, those offsets point into a log that no longer exists: resuming there would read
nothing, then skip as many new messages as the old log had. So before the flow starts, every
store is compared with the cluster:

- the topic's id differs from the recorded one (a new topic under the old name);
- the partition count differs from the recorded one, or from the number of stores;
- the message at the applied offset is not in the log any more (the log is shorter, or
  starts later than the next offset: deleted before it was read).

Any of these stops the run with one message, unless ``--on-reset`` says what to do:
``from-start`` reads the new log of each affected partition from its beginning (state kept;
messageIds seen before are still deduplicated), ``from-end`` starts after its last message
(what is skipped is printed, per partition). A changed partition count has no automatic
recovery: customers would hash to other partitions than their state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaError, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from flows.kafka import client_config
from state import keys
from state.store import PartitionStore, store_dir

ON_RESET = ("fail", "from-start", "from-end")


class InputResetError(RuntimeError):
    """The input is not the one the state was built from; the message says what to do."""


@dataclass(frozen=True, slots=True)
class TopicIdentity:
    id: str | None
    partitions: int


def cluster_identity(brokers: str, topics: list[str], timeout_s: float = 10) -> dict:
    """{topic: TopicIdentity} of the topics as the cluster has them now."""
    admin = AdminClient(client_config(brokers))
    out = {}
    for name, fut in admin.describe_topics(TopicCollection(topics)).items():
        try:
            d = fut.result(timeout_s)
        except Exception:  # noqa: BLE001 - a missing topic is judged below, by count
            continue
        tid = str(d.topic_id) if d.topic_id is not None else None
        out[name] = TopicIdentity(tid, len(d.partitions))
    return out


def encode_source(ids: dict) -> bytes:
    return orjson.dumps({t: {"id": i.id, "partitions": i.partitions} for t, i in ids.items()})


def check_input(brokers: str, state_dir: str | Path, events: str, repartition: str,
                on_reset: str = "fail") -> tuple[dict, dict[tuple[str, int], int], list[str]]:
    """Compare the stores under ``state_dir`` with the cluster.

    Returns (the cluster's identities, the start offset per (topic, partition) that
    ``on_reset`` chose for affected partitions, a line per affected partition saying what was
    found and done). Raises ``InputResetError`` for ``fail`` or a problem no choice can mend.
    """
    now = cluster_identity(brokers, [events, repartition])
    root = Path(state_dir)
    stores = sorted(int(p.name.rpartition("-")[2]) for p in root.glob(f"{events}-*")
                    if (p / "CURRENT").exists()) if root.is_dir() else []
    if not stores:
        return now, {}, []
    n = now[events].partitions if events in now else 0
    if max(stores) >= n:
        raise InputResetError(
            f"{events} has {n} partitions, but {root} holds state for partition {max(stores)}: "
            "the topic was recreated with fewer partitions. Customers hash to other partitions "
            "now; there is no automatic recovery: restore the topic's partition count, or "
            "start from an empty --state-dir.")
    problems: list[str] = []
    done: list[str] = []
    starts: dict[tuple[str, int], int] = {}
    last_applied: dict[tuple[str, int], int] = {}
    for p in stores:
        store = PartitionStore(store_dir(root, events, p), read_only=True)
        try:
            raw = store.get(keys.SOURCE)
            recorded = orjson.loads(raw) if raw else {}
            applied = {t: store.get(keys.applied(t)) for t in (events, repartition)}
        finally:
            store.close()
        for topic in (events, repartition):
            rec, cur = recorded.get(topic), now.get(topic)
            if cur is not None and rec is not None and rec["partitions"] != cur.partitions:
                raise InputResetError(
                    f"{topic} had {rec['partitions']} partitions when {root} was built and has "
                    f"{cur.partitions} now; there is no automatic recovery: restore the "
                    "partition count, or start from an empty --state-dir.")
            if applied[topic] is None or int(applied[topic]) < 0:  # nothing applied yet
                continue
            if cur is not None and rec is not None and rec.get("id") and cur.id \
                    and rec["id"] != cur.id:
                problems.append((topic, p, f"is a different topic now (id {cur.id}, was "
                                 f"{rec['id']})"))
            else:
                last_applied[(topic, p)] = int(applied[topic])
    problems += _probe(brokers, last_applied)
    for topic, p, why in problems:
        low, high = log_ends(brokers, topic, [p])[p]
        done.append(f"{topic}[{p}] {why}; " + (
            f"--on-reset=from-start: reading it from offset {low}"
            if on_reset == "from-start" else
            f"--on-reset=from-end: starting at offset {high}, skipping {high - low} "
            f"message(s) (offsets {low}..{high - 1})"))
        starts[(topic, p)] = low if on_reset == "from-start" else high
    if problems and on_reset == "fail":
        raise InputResetError(
            "the input is not the log the state in " f"{root} was built from:\n  "
            + "\n  ".join(f"{t}[{p}] {why}" for t, p, why in problems)
            + "\nNothing was read or skipped. Restart with "
            "--on-reset=from-start (read each of these partitions' new log from its beginning; "
            "state is kept) or --on-reset=from-end (skip what is in them now), or start from "
            "an empty --state-dir.")
    return now, starts, done


def _consumer(brokers: str) -> Consumer:
    return Consumer(client_config(brokers, **{"group.id": "segue-check",
                                              "enable.auto.commit": False,
                                              "auto.offset.reset": "error",
                                              "enable.partition.eof": True, "log_level": 0}))


def _probe(brokers: str, last: dict[tuple[str, int], int],
           timeout_s: float = 5.0) -> list[tuple[str, int, str]]:
    """Which partitions no longer hold the message the state applied last: on the same log
    it is there (or, deleted by retention, the log goes on after it); on a new or shorter
    log the fetch reaches the end first, fails, or (Tansu, past the end) returns nothing."""
    if not last:
        return []
    c = _consumer(brokers)
    found: list[tuple[str, int, str]] = []
    try:
        c.assign([TopicPartition(t, p, off) for (t, p), off in last.items()])
        pending = dict(last)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for m in c.consume(1000, 0.2):
                tp = (m.topic(), m.partition())
                off = pending.get(tp)
                if off is None:
                    continue
                err = m.error()
                if err is None:
                    del pending[tp]
                    if m.offset() > off + 1:
                        found.append((*tp, f"starts at offset {m.offset()}: offsets "
                                      f"{off + 1}..{m.offset() - 1} were deleted before they "
                                      "were read"))
                elif err.code() == KafkaError._PARTITION_EOF:
                    del pending[tp]
                    found.append((*tp, f"ends at offset {m.offset()}, but the state applied up "
                                  f"to {off} (the broker or topic was reset)"))
                elif err.code() in (KafkaError._AUTO_OFFSET_RESET,
                                    KafkaError.OFFSET_OUT_OF_RANGE):
                    del pending[tp]
                    found.append((*tp, f"has no offset {off} (the broker or topic was reset)"))
        for (t, p), off in pending.items():
            found.append((t, p, f"returns nothing at offset {off}, which the state applied "
                          "(the broker or topic was reset)"))
    finally:
        c.close()
    return sorted(found)


def watch_identity(brokers: str, identity: dict, every_s: float = 10.0) -> None:
    """While running, look every ``every_s`` at whether the input topics are still the ones
    the run started on. A replaced broker or recreated topic stops the process with one line
    (state is committed per batch: nothing is lost); the restart's check then says what
    happened and offers ``--on-reset``. Without this, a consumer past the new log's end
    waits silently until the log grows past it, skipping everything before."""
    import os
    import sys
    import threading

    def run() -> None:
        while True:
            time.sleep(every_s)
            try:
                now = cluster_identity(brokers, list(identity), timeout_s=5)
            except Exception:  # noqa: BLE001 - a broker away is not a reset
                continue
            for topic, was in identity.items():
                cur = now.get(topic)
                if cur is not None and was.id and cur.id and cur.id != was.id:
                    print(f"[segue] error: {topic} was replaced while running (topic id "
                          f"{was.id} -> {cur.id}; the broker restarted empty or the topic was "
                          "recreated). Stopping; nothing was skipped. Restart to see the "
                          "recovery choices (--on-reset).", file=sys.stderr, flush=True)
                    os._exit(3)

    threading.Thread(target=run, name="segue-input-watch", daemon=True).start()


STARTS_FILE = "repartition-starts.json"


def log_ends(brokers: str, topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    """(first offset, log end) of each partition, the end read from its end-of-partition
    event (Tansu's reported high watermark can lag its log)."""
    if not partitions:
        return {}
    c = _consumer(brokers)
    out: dict[int, tuple[int, int]] = {}
    try:
        marks = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                 for p in partitions}
        c.assign([TopicPartition(topic, p, max(hi - 1, lo)) for p, (lo, hi) in marks.items()])
        deadline = time.monotonic() + 15
        while len(out) < len(partitions) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.2):
                err = m.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    out.setdefault(m.partition(), (marks[m.partition()][0], m.offset()))
        for p, (lo, hi) in marks.items():
            out.setdefault(p, (lo, hi))
    finally:
        c.close()
    return out


def fresh_starts(brokers: str, state_dir: str | Path, events: str, repartition: str,
                 partitions: int, taken: dict, tails: dict | None = None,
                 ) -> tuple[dict[tuple[str, int], int], list[str]]:
    """Where a partition without state starts reading the internal topic: at its end as of
    the first start, not its beginning. What is there already was sent to a state that no
    longer exists (a rebuilt state dir) or by another deployment; this state's own partitions
    re-derive it from the input. The offsets are written to ``repartition-starts.json`` before
    the flow runs, so that a crash before the first commit starts at the same place. A
    partition whose state the changelog holds (``tails``, see ``flows.changelog``) is not
    new."""
    root = Path(state_dir)
    path = root / STARTS_FILE
    known = {int(k): v for k, v in orjson.loads(path.read_bytes()).items()} \
        if path.exists() else {}
    fresh = []
    for p in range(partitions):
        if (repartition, p) in taken:
            continue
        tail = (tails or {}).get(p)
        if tail is not None and repartition in tail.applied:
            continue
        store = store_dir(root, events, p)
        if (store / "CURRENT").exists():
            ro = PartitionStore(store, read_only=True)
            try:
                if ro.get(keys.applied(repartition)) is not None:
                    continue
            finally:
                ro.close()
        fresh.append(p)
    ends = log_ends(brokers, repartition, [p for p in fresh if p not in known])
    lines = []
    for p, (low, end) in sorted(ends.items()):
        known[p] = end
        if end > low:
            lines.append(f"{repartition}[{p}]: this state starts at offset {end}; the "
                         f"{end - low} message(s) before it (offsets {low}..{end - 1}) were sent "
                         "to an earlier state or another deployment and are not applied")
    if ends:
        path.write_bytes(orjson.dumps({str(k): v for k, v in sorted(known.items())}))
    return {(repartition, p): known[p] for p in fresh}, lines
