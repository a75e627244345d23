"""``segue replay``: the flow's own operators over an event file, offline, in event time.

No Kafka: lines are decoded exactly as the live flow decodes messages, applied by the same
``Partition`` with the same journeys, and timers fire as event time passes, then (end
of input) up to ``horizon`` after each customer's last event. Outputs go to JSON-lines files;
the same input gives byte-identical files on every run, and the same records the live flow
emits for that input (``segue run --until-eof --horizon`` with the same horizon).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson

from flows.local import LocalFlow
from flows.tuning import batch_gc
from models.settings import Settings
from operators.decode import RawRecord, decode_all
from operators.identity.routing import home_partition
from operators.journeys import journey_registry
from segue.progress import Bar
from state.outbox import Output

FILES = ("dispatches", "decisions", "journey-events", "customer-events", "dlq", "alerts",
         "analytics")
BATCH = 5000


def _partition_of(line: bytes, partitions: int) -> int:
    """The partition upstream's producer would pick: the customer id (userId, else
    anonymousId) through Kafka's default partitioner; unreadable lines go to 0."""
    try:
        d = orjson.loads(line)
        key = (d.get("userId") or d.get("anonymousId")) if isinstance(d, dict) else None
    except orjson.JSONDecodeError:
        key = None
    return home_partition(key, partitions) if isinstance(key, str) and key else 0


def _files_by_topic(settings: Settings) -> Callable[[str], str]:
    """Which output file a topic's records go to."""
    t = settings.topics
    dispatch = f"{t.prefix}dispatch."
    files = {t.decisions: "decisions", t.journey_events: "journey-events",
             t.customer_events: "customer-events", t.dlq: "dlq", t.alerts: "alerts",
             t.analytics: "analytics"}

    def file_for(topic: str) -> str:
        return "dispatches" if topic.startswith(dispatch) else files[topic]

    return file_for


class ReplayError(Exception):
    """Replay cannot start; the message says why."""


def replay(
    settings: Settings,
    journeys_dir: str | Path | None,
    events_path: str | Path,
    out_dir: str | Path,
    state_dir: str | Path | None = None,
    horizon_ms: int = 35 * 86_400_000,
    progress: bool = False,
    now_ms: int | None = None,
) -> dict:
    """Run the replay; returns the summary (also written to ``out_dir/summary.json``).
    ``now_ms`` is the clock reading the input (default: now): later event times are
    dead-lettered (``timestamp.future``)."""
    events = Path(events_path)
    # A file, a pipe (`--events <(zcat …)`) or `-` for standard input: read once, in order.
    if str(events_path) != "-" and not (events.is_file() or events.is_fifo()
                                        or events.is_char_device()):
        raise ReplayError(f"{events}: no such file" if not events.exists()
                          else f"{events}: not a file or a pipe")
    state = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="segue-replay-"))
    if state.exists() and any(state.iterdir()):
        raise ReplayError(f"{state}: state dir is not empty (replay starts from nothing)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    registry = journey_registry(settings, journeys_dir, state / "journey-versions")
    # One Partition per partition, as the live flow has: each event goes to its key's home
    # partition (Kafka's default partitioner), so timers follow the same per-partition
    # event-time watermark as live, and identity messages between partitions are delivered
    # through in-memory queues instead of the repartition topic.
    n_parts = settings.partitions
    files = {name: open(out / f"{name}.jsonl", "wb") for name in FILES}  # noqa: SIM115
    counts: Counter[str] = Counter()
    journey_rows: dict[tuple, Counter] = defaultdict(Counter)
    skew_ms = settings.max_future_skew_s * 1000
    keep = settings.dead_letter_keep_bytes
    # The clock reading the input: no event time may be later than it (plus the skew), so a
    # forged time cannot fire every timer. One reading for the whole replay (deterministic).
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    file_for = _files_by_topic(settings)

    def write(o: Output) -> None:
        name = file_for(o.topic)
        files[name].write(o.value + b"\n")
        counts[name] += 1
        if name == "journey-events":
            r = orjson.loads(o.value)
            j = r["journey"]
            kind = r["type"].removeprefix("journey.")
            if kind == "step":
                journey_rows[(j["id"], j["version"], j["node"])]["visits"] += 1
            elif kind == "exited":
                journey_rows[(j["id"], j["version"], "")][f"exited:{r['reason']}"] += 1
            else:
                journey_rows[(j["id"], j["version"], "")][kind] += 1

    flow = LocalFlow(settings, registry, state, write)

    def run_all(batches: list[list], **kw: int) -> None:
        for i in range(n_parts):
            if batches[i] or kw:
                flow.step(i, batches[i], **kw)
        flow.settle()

    t0 = time.monotonic()
    n = read = 0
    offsets = [0] * n_parts
    # A bar over the file's bytes (a pipe has no size: events and rate only).
    size = events.stat().st_size if str(events_path) != "-" and events.is_file() else None
    bar = Bar("replay", size, "bytes") if progress else None
    with batch_gc():  # see flows.tuning
        try:
            with (contextlib.nullcontext(sys.stdin.buffer) if str(events_path) == "-"
                  else events.open("rb")) as f:
                batches: list[list] = [[] for _ in range(n_parts)]
                for line in f:
                    line = line.rstrip(b"\n")
                    if not line.strip():
                        continue
                    part = _partition_of(line, n_parts)
                    offsets[part] += 1
                    raw = RawRecord("replay", part, offsets[part], None, line, [], 0)
                    batches[part].append(decode_all(
                        raw, max_bytes=settings.max_event_bytes, max_future_skew_ms=skew_ms,
                        keep_bytes=keep, max_batch_bytes=settings.max_batch_bytes,
                        now_ms=now_ms))
                    n += 1
                    read += len(line) + 1
                    if n % BATCH == 0:
                        run_all(batches)
                        batches = [[] for _ in range(n_parts)]
                        if bar is not None:
                            rate = n / (time.monotonic() - t0)
                            bar.update(read, f"{n:,} events, {rate:,.0f}/s")
                run_all(batches)
            t_events = time.monotonic() - t0
            for part in flow.partitions:  # all input read: claims are answered at once
                part.input_done = True
            if bar is not None:
                bar.update(size or read, f"{n:,} events; now the timers up to the horizon")
            empty: list[list] = [[] for _ in range(n_parts)]
            run_all(empty, drain_horizon_ms=horizon_ms)
            while flow.drain_pending:
                run_all(empty, drain_horizon_ms=horizon_ms)
            for i in range(n_parts):
                flow.step(i, [])
        finally:
            if bar is not None:
                bar.close()
            for fh in files.values():
                fh.close()
            flow.close()
    stats: Counter[str] = Counter()
    decided: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for part in flow.partitions:
        stats.update(part.stats)
        for key, c in part.counts.items():  # the counts the live flow's metrics show
            if key[0] == "decision":
                decided[key[1]] += c
            elif key[0] == "decision_reason":
                reasons[f"{key[1]}:{key[2]}"] += c
    secs = time.monotonic() - t0
    summary = {
        "events": n,
        "seconds": round(secs, 2),
        "events_per_s": round(n / secs) if secs else None,
        "events_seconds": round(t_events, 2),
        "drain_seconds": round(secs - t_events, 2),
        "partitions": n_parts,
        "applied": stats["applied"],
        "deduplicated": stats["deduplicated"],
        "dead_lettered": stats["dead_lettered"],
        "outputs": dict(counts),
        "outputs_parked": stats["outputs_parked"],
        "decisions": dict(sorted(decided.items())),
        "decision_reasons": dict(sorted(reasons.items())),
        "limits_dropped": stats["limits_dropped"],
        "journey_events": settings.outputs.journey_events,  # off: no per-journey rows
        "journeys": [
            {"journey": jid, "version": v, "step": step or None, **dict(c)}
            for (jid, v, step), c in sorted(journey_rows.items())
        ],
    }
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return summary


def summary_table(summary: dict) -> str:
    """The per-journey, per-step table a person reads after a replay."""
    lines = [f"{summary['events']:,} events in {summary['seconds']}s "
             f"({summary['events_per_s'] or 0:,}/s): applied {summary['applied']:,}, "
             f"duplicates {summary['deduplicated']:,}, dead-lettered "
             f"{summary['dead_lettered']:,}",
             "outputs: " + ", ".join(f"{k} {v:,}" for k, v in sorted(summary["outputs"].items()))
             + (f" (and {summary['outputs_parked']:,} parked: too large to produce, see "
                "alerts.jsonl)" if summary.get("outputs_parked") else ""),
             ""]
    rows = summary["journeys"]
    if not rows:
        if summary.get("journey_events") is False:
            return "\n".join([*lines, "(journey events are off: outputs.journey_events)"])
        return "\n".join([*lines, "(no journey activity)"])
    lines.append(f"{'journey':<24} {'v':>3} {'step':<22} {'entered':>8} {'visits':>8} "
                 f"{'converted':>9}  exits")
    for r in rows:
        exits = ", ".join(f"{k.removeprefix('exited:')} {v}" for k, v in r.items()
                          if k.startswith("exited:"))
        lines.append(f"{r['journey']:<24} {r['version']:>3} {(r['step'] or '(journey)'):<22} "
                     f"{r.get('entered', 0):>8,} {r.get('visits', 0):>8,} "
                     f"{r.get('converted', 0):>9,}  {exits}")
    return "\n".join(lines)
