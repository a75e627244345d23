"""Throughput against the limit and a peer, in one run on one embedded broker.

1M simulated events (100k customers, seed 7) are produced once to an 8-partition topic; then,
over the same topic and broker:

* ``kafka_loop``: a plain confluent-kafka consume → produce loop (no state, no work): the
  ceiling Kafka and the client set on this machine.
* ``tight_loop``: Segue's per-event work without bytewax and without Kafka: the same raw
  records (fetched once beforehand) decoded and applied by one ``Partition`` per
  partition, outputs serialised but not produced; repartition messages (forwarded events,
  identity, analytics partials) are handed to their partition in memory, as replay does.
* ``segue``: ``segue run --until-eof`` in one process (one worker), shipped journeys, a promoted
  NBA model (always-on NBA off; the expansion journey's ``nba`` step scores), dispatches to
  Kafka. Its rate is from the first input message applied to the last (``[segue]`` summary
  line); start-up is reported apart, and start-to-exit too.
* ``peer``: the core of the job in Quix Streams (``benchmarks/peers/quix_core.py``), in its own
  virtualenv (Quix pins older confluent-kafka and pydantic than Segue's), rated the same way.
* ``peer_job``: ``segue run`` configured for the peer's job (``benchmarks/peer_job/``: one
  journey, the peer's caps and outputs (dispatch commands only), customers by their ids
  (identity stitching off), no lifecycle, sums, score refreshes or changelog), and its tight
  loop. Its outputs are the peer's dispatches (``tests/unit/test_peer_job.py`` checks that on
  a simulated stream); the tight loop's count is put beside the peer's in the result.

``segue``, ``peer`` and ``peer_job`` take turns ``--rounds`` times (default 3), each on fresh
state; the result is the median round with the spread, every round and the machine's load at
its end, and each ratio to the peer is the median of the per-round ratios.

With ``--profile``, the Segue run is sampled by py-spy and the top 10 functions (own time) go
into the result. Ratios are within this run; absolute numbers depend on the machine.

With ``--scaling``, ``segue run --processes 2`` (a two-process bytewax cluster, partitions
spread) runs too.

``python -m benchmarks.throughput [--events N --customers N --profile --scaling --no-peer]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.common import write_result
from models.settings import Settings
from segue.broker import EmbeddedBroker, ensure_topics
from segue.config import load_settings
from segue.kafka_io import event_records, produce_records
from segue.simulator import simulate

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / ".venv-peers"
PEER_REQUIREMENTS = ROOT / "benchmarks" / "peers" / "requirements.txt"
PEER_JOB = ROOT / "benchmarks" / "peer_job"  # Segue configured for the peer's job


def fetch_all(bootstrap: str, topic: str, partitions: int, total: int) -> list:
    """Every message of ``topic`` (counting to the end: Tansu's watermarks are unreliable)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-fetch",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.max.bytes": 64 << 20, "queued.max.messages.kbytes": 256 << 10})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, open_parts = [], set(range(partitions))
    while open_parts or len(out) < total:
        for m in c.consume(10_000, 1.0):
            if m.error():
                open_parts.discard(m.partition())
                continue
            out.append(m)
        if not open_parts and len(out) >= total:
            break
    c.close()
    return out


def kafka_loop(bootstrap: str, src: str, dst: str, partitions: int, total: int) -> float:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-loop",
                  "enable.auto.commit": False, "fetch.max.bytes": 64 << 20})
    c.assign([TopicPartition(src, p, 0) for p in range(partitions)])
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1 << 20,
                  "compression.type": "none", "partitioner": "murmur2_random"})
    t0 = time.monotonic()
    n = 0
    while n < total:
        msgs = c.consume(10_000, 1.0)
        for m in msgs:
            if m.error():
                continue
            while True:
                try:
                    p.produce(dst, m.value(), m.key())
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
        p.poll(0)
    p.flush(60)
    secs = time.monotonic() - t0
    c.close()
    return secs


def tight_loop(msgs: list, settings: Settings, state: Path, journeys: Path,
               models: Path | None) -> tuple[float, Counter]:
    """Decode and apply ``msgs`` partition by partition, a batch each in turn as the flow
    does; what a partition sends over the repartition topic (forwarded events, identity
    claims and merges, analytics partials) is handed to its target partition's next batch."""
    from flows.local import LocalFlow
    from flows.tuning import batch_gc
    from operators.decode import RawRecord, decode
    from operators.journeys import journey_registry

    s = settings.model_copy(update={"nba": settings.nba.model_copy(
        update={"models_dir": str(models) if models else None})})
    reg = journey_registry(s, journeys, state / "journey-versions")
    n = s.partitions
    by_part: dict[int, list] = {p: [] for p in range(n)}
    for m in msgs:
        by_part[m.partition()].append(m)
    outputs: Counter[str] = Counter()
    flow = LocalFlow(s, reg, state, lambda out: outputs.update((out.topic,)), "p{}")
    skew = s.max_future_skew_s * 1000
    topic = s.topics.events  # a property that builds the names: once, not per message
    t0 = time.monotonic()
    with batch_gc():  # as the flow runs
        start, longest = 0, max(len(v) for v in by_part.values())
        while start < longest or flow.queue:
            for p in range(n):
                ms = by_part[p][start:start + s.batch_size]
                items = [decode(RawRecord(topic, p, m.offset(), m.key(), m.value(),
                                          [], m.timestamp()[1]), max_bytes=s.max_event_bytes,
                                max_future_skew_ms=skew) for m in ms]
                # What other partitions sent arrives in the same batch, as in the live flow.
                items += flow.queue.take(p)
                if items:
                    flow.step(p, items)
            start += s.batch_size
    secs = time.monotonic() - t0
    flow.close()
    outputs[s.topics.repartition] = flow.queue.posted
    return secs, outputs


def train_model(models: Path) -> str:
    from benchmarks.nba_cost import synthetic
    from models.nba import promote
    from models.nba_train import train
    from models.settings import NbaSettings

    nba = NbaSettings()
    log = synthetic(20_000, nba)
    log.explored = [False] * len(log)  # a fixed 200 trees, as chosen on the simulator
    version = train(log, models, nba, source="synthetic", rounds=200).name
    promote(models, version)
    return version


def timed_segue_run(bs: str, state: Path, models: Path | None, extra: list[str],
                    profile: Path | None = None,
                    journeys: Path = ROOT / "journeys") -> tuple[float, str] | None:
    """``segue run --until-eof`` over the bench topics, start to exit: (seconds, its summary
    line), or None (printed why) when it failed. With ``profile``, under py-spy.

    Each run has an application id of its own: with one id, a later round would restore the
    earlier round's state from its changelog topic and have nothing left to do."""
    app_id = f"bench-{state.name}-{os.getpid()}"
    cmd = [sys.executable, "-m", "segue.cli", "run", "--brokers", bs, "--state-dir",
           str(state), "--until-eof", "--journeys", str(journeys), "--prefix", "bench.",
           "--app-id", app_id, *(["--models", str(models)] if models else []), *extra]
    if profile is not None:
        spy = str(Path(sys.executable).parent / "py-spy")
        cmd = [spy, "record", "--format", "raw", "-o", str(profile), "--rate", "50",
               "--subprocesses", "--", *cmd]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    secs = time.monotonic() - t0
    if out.returncode != 0:
        print(out.stdout[-2000:], out.stderr[-3000:], file=sys.stderr)
        return None
    lines = [x for x in out.stderr.strip().splitlines() if "first to last, start-up" in x]
    return secs, lines[-1] if lines else out.stderr.strip()[-500:]


def run_round(timed: tuple[float, str], n: int, label: str) -> dict:
    """One ``segue run`` round's record (from ``timed_segue_run``), printed as it ends."""
    secs, summary = timed
    steady, startup = parse_rates(summary)
    print(f"[throughput] {label}: {steady:,}/s first to last, start-up {startup}s", flush=True)
    return {"seconds": round(secs, 1), "events_per_s": round(n / secs),
            "first_to_last_events_per_s": steady, "startup_s": startup, "load": load(),
            "summary": summary}


def parse_rates(summary: str) -> tuple[int | None, float | None]:
    """(events/s from first to last message, start-up seconds) from ``segue run``'s summary."""
    m = re.search(r"\(([\d,]+)/s first to last, start-up ([\d.]+)s\)", summary)
    if m is None:
        return None, None
    return int(m.group(1).replace(",", "")), float(m.group(2))


def load() -> list[float]:
    """The machine's load averages (1, 5, 15 min) when a round ended."""
    return [round(x, 2) for x in os.getloadavg()]


def summarise(rounds: list[dict]) -> dict:
    """The median round's rates (by first-to-last rate), the spread and every round."""
    by_rate = sorted(rounds, key=lambda r: r["first_to_last_events_per_s"] or 0)
    mid = by_rate[len(by_rate) // 2]
    rates = [r["first_to_last_events_per_s"] for r in by_rate]
    return {"first_to_last_events_per_s": mid["first_to_last_events_per_s"],
            "events_per_s": mid["events_per_s"], "startup_s": mid["startup_s"],
            "spread": [rates[0], rates[-1]], "rounds": rounds}


def run_peer(bs: str, topic: str, n: int, state: Path) -> dict | None:
    """One run of the Quix Streams job (its own virtualenv), or None (printed why)."""
    py = peer_python()
    t0 = time.monotonic()
    peer = subprocess.run([str(py), str(ROOT / "benchmarks" / "peers" / "quix_core.py"),
                           "--brokers", bs, "--topic", topic, "--events", str(n),
                           "--state-dir", str(state), "--output", "bench.peer-dispatch"],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if peer.returncode != 0:
        print(peer.stdout[-2000:], peer.stderr[-3000:], file=sys.stderr)
        return None
    info = orjson.loads(peer.stdout.strip().splitlines()[-1])
    return {"seconds": info["seconds"], "events_per_s": info["events_per_s"],
            "first_to_last_events_per_s": info["first_to_last_events_per_s"],
            "startup_s": info["startup_s"], "wall_seconds": round(time.monotonic() - t0, 1),
            "dispatches": info["dispatches"], "quixstreams": info["version"], "load": load()}


def peer_python() -> Path:
    py = PEER_VENV / "bin" / "python"
    if not py.exists():
        print("[throughput] creating .venv-peers for Quix Streams", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(PEER_REQUIREMENTS)], check=True)
    return py


def top_functions(raw: Path, n: int = 10) -> list[dict]:
    """Own-time share per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        total += k
        own[stack.split(";")[-1]] += k
    return [{"function": f, "own_share": round(c / total, 4)} for f, c in own.most_common(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--profile", action="store_true", help="sample the Segue run with py-spy")
    ap.add_argument("--no-peer", action="store_true", help="skip the Quix Streams peer")
    ap.add_argument("--rounds", type=int, default=3,
                    help="segue run and the peer take turns this many times (default 3)")
    ap.add_argument("--scaling", action="store_true",
                    help="also run segue with --processes 2 (partitions spread)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segue-bench-tp-"))
    settings = Settings(prefix="bench.")
    t = settings.topics
    broker = EmbeddedBroker(log_path=work / "broker.log")
    broker.start()
    result: dict = {"events": args.events, "customers": args.customers}
    try:
        bs = broker.bootstrap
        ensure_topics(bs, settings)
        loop_out = "bench.loop-events"
        ensure_topics(bs, Settings(prefix="bench.loop-"))  # the loop's output topic
        t0 = time.monotonic()
        n = produce_records(bs, t.events, event_records(
            simulate(args.customers, args.events, seed=7)))
        result["events"] = n
        result["produce_s"] = round(time.monotonic() - t0, 1)
        print(f"[throughput] produced {n:,} events in {result['produce_s']}s", flush=True)

        secs = kafka_loop(bs, t.events, loop_out, settings.partitions, n)
        result["kafka_loop"] = {"seconds": round(secs, 1), "events_per_s": round(n / secs)}
        print(f"[throughput] kafka loop: {n / secs:,.0f}/s", flush=True)

        models = work / "models"
        result["nba_model"] = train_model(models)
        msgs = fetch_all(bs, t.events, settings.partitions, n)
        secs, outputs = tight_loop(msgs, settings, work / "tight-state", ROOT / "journeys",
                                   models)
        result["tight_loop"] = {"seconds": round(secs, 1), "events_per_s": round(n / secs),
                                "outputs": sum(outputs.values())}
        print(f"[throughput] tight loop: {n / secs:,.0f}/s", flush=True)
        if not args.no_peer:
            job = load_settings(PEER_JOB / "segue.yaml", prefix="bench.")
            secs, outputs = tight_loop(msgs, job, work / "tight-peer-job", PEER_JOB / "journeys",
                                       None)
            result["peer_job_tight_loop"] = {
                "seconds": round(secs, 1), "events_per_s": round(n / secs),
                "outputs": sum(outputs.values()),
                "dispatches": outputs[job.topics.dispatch("email")]}
            print(f"[throughput] tight loop, peer's job: {n / secs:,.0f}/s", flush=True)
        del msgs

        # segue run and the peer take turns, each round on fresh state: the machine is
        # shared and noisy, so one run says little. Rates are from the first input message to
        # the last (start-up apart); the median round is the result, all rounds are kept.
        seg_rounds: list[dict] = []
        peer_rounds: list[dict] = []
        job_rounds: list[dict] = []
        for r in range(args.rounds):
            raw = work / f"profile-{r}.txt"
            profile = raw if args.profile and r == 0 else None
            timed = timed_segue_run(bs, work / f"state-{r}", models,
                                    ["--progress-every", "10"], profile)
            if timed is None:
                return 1
            seg_rounds.append(run_round(timed, n, f"segue run {r + 1}/{args.rounds}"))
            if profile is not None and raw.exists():
                result["profile_top10"] = top_functions(raw)
            if not args.no_peer:
                info = run_peer(bs, t.events, n, work / f"quix-state-{r}")
                if info is None:
                    return 1
                peer_rounds.append(info)
                print(f"[throughput] quix peer {r + 1}/{args.rounds}: "
                      f"{info['first_to_last_events_per_s']:,}/s first to last", flush=True)
                timed = timed_segue_run(bs, work / f"job-state-{r}", None,
                                        ["--progress-every", "0", "--config",
                                         str(PEER_JOB / "segue.yaml")],
                                        journeys=PEER_JOB / "journeys")
                if timed is None:
                    return 1
                job_rounds.append(run_round(timed, n,
                                            f"segue run, peer's job {r + 1}/{args.rounds}"))
        result["segue"] = summarise(seg_rounds)
        result["segue"]["profiled"] = args.profile
        if peer_rounds:
            result["peer"] = summarise(peer_rounds)
            result["peer"]["quixstreams"] = peer_rounds[0]["quixstreams"]
            result["peer_job"] = summarise(job_rounds)

        if args.scaling:
            timed = timed_segue_run(bs, work / "state-2p", models,
                                    ["--progress-every", "0", "--processes", "2"])
            if timed is None:
                return 1
            secs2 = timed[0]
            result["segue_2_processes"] = {"seconds": round(secs2, 1),
                                           "events_per_s": round(n / secs2),
                                           "per_process_events_per_s": round(n / secs2 / 2)}
            print(f"[throughput] segue run, 2 processes: {n / secs2:,.0f}/s", flush=True)

        seg = result["segue"]["first_to_last_events_per_s"]
        result["ratios"] = {
            "segue_vs_kafka_loop": round(seg / result["kafka_loop"]["events_per_s"], 3),
            "segue_vs_tight_loop": round(seg / result["tight_loop"]["events_per_s"], 3),
            "tight_loop_vs_kafka_loop": round(result["tight_loop"]["events_per_s"] /
                                              result["kafka_loop"]["events_per_s"], 3),
        }
        if "segue_2_processes" in result:
            result["ratios"]["two_vs_one_process"] = round(
                result["segue_2_processes"]["events_per_s"] / seg, 3)
        if "peer" in result:
            # Round by round (each pair ran back to back), then the median of those ratios.
            pairs = sorted(a["first_to_last_events_per_s"] / b["first_to_last_events_per_s"]
                           for a, b in zip(seg_rounds, peer_rounds, strict=True))
            result["ratios"]["segue_vs_peer"] = round(pairs[len(pairs) // 2], 3)
            result["ratios"]["segue_vs_peer_rounds"] = [round(x, 3) for x in pairs]
            # The like-for-like claim: Segue doing the peer's job, against the peer.
            pairs = sorted(a["first_to_last_events_per_s"] / b["first_to_last_events_per_s"]
                           for a, b in zip(job_rounds, peer_rounds, strict=True))
            result["ratios"]["peer_job_vs_peer"] = round(pairs[len(pairs) // 2], 3)
            result["ratios"]["peer_job_vs_peer_rounds"] = [round(x, 3) for x in pairs]
    finally:
        broker.stop()
    write_result("throughput", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
