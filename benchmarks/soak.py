"""Soak: ≥ 1M mixed messages (valid simulated events with a share of hostile ones) through
``segue run`` on the embedded broker while it is SIGKILLed 20 times and the broker is
SIGSTOPped for 30 s; then the flow runs to the end of the input and the outcome is checked
against what the edge decides offline.

Figures (``benchmarks/results/soak.json``): messages sent, dead-lettered by reason (distinct
and with the at-least-once duplicates a kill causes), applied, lost (must be 0), kills, the
broker stop, restart-to-first-batch times, the final run's summary line.

    python -m benchmarks.soak [--events 1000000] [--kills 20] [--broker-stop 30]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
import yaml
from confluent_kafka import Producer

from benchmarks.common import write_result
from models.settings import Settings
from operators.decode import RawRecord, Rejected, decode
from segue.broker import EmbeddedBroker, ensure_topics
from segue.kafka_io import consume_all, event_records
from segue.simulator import simulate
from state.inspect import iter_profiles

ROOT = Path(__file__).resolve().parent.parent


def stream(n_valid: int, bad_share: float, seed: int) -> list[tuple[str | None, bytes | None]]:
    from tests.fuzzing import corpus, odd_valid

    rng = random.Random(seed)
    out: list[tuple[str | None, bytes | None]] = list(event_records(simulate(
        customers=max(n_valid // 20, 1), events=n_valid, seed=seed, duplicate_rate=0)))
    hostile = [v for what, v in corpus() if "MB" not in what]  # big ones: a few, below
    n_bad = int(len(out) * bad_share)
    for i in range(n_bad):
        if i % 2:
            value = hostile[i % len(hostile)]
        else:
            body = orjson.dumps(odd_valid(i, f"mut-{i}"))
            cut = rng.randrange(len(body))
            value = body[:cut] + bytes([rng.randrange(256)]) + body[cut + 1:]
        out.insert(rng.randrange(len(out)), (None if i % 7 == 0 else f"bad-{i}", value))
    for what, v in corpus():
        if "MB" in what:
            out.insert(rng.randrange(len(out)), (f"big-{what}", v))
    return out


def expected(msgs: list, s: Settings) -> tuple[int, Counter]:
    """(events to apply, dead letters by reason), decided offline: what the edge accepts,
    less retried messageIds of a customer (the hostile part repeats some valid ones)."""
    from collections import deque

    accepted, dead = 0, Counter()
    recent: dict[str, deque] = {}
    for _key, value in msgs:
        out = decode(RawRecord(s.topics.events, 0, 0, None, value, [], int(time.time() * 1000)),
                     max_bytes=s.max_event_bytes, max_future_skew_ms=s.max_future_skew_s * 1000)
        if isinstance(out, Rejected):
            dead[out.reason["code"]] += 1
            continue
        seen = recent.setdefault(out.customer_id, deque(maxlen=s.dedup_recent_ids))
        if out.message_id not in seen:
            seen.append(out.message_id)
            accepted += 1
    return accepted, dead


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="valid simulated events")
    ap.add_argument("--bad-share", type=float, default=0.05)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--broker-stop", type=float, default=30.0, metavar="SECONDS")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--name", default="soak")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="segue-soak-"))
    cfg = work / "segue.yaml"
    cfg.write_text(yaml.safe_dump({"prefix": "soak.", "partitions": 4}))
    s = Settings(prefix="soak.", partitions=4)
    msgs = stream(args.events, args.bad_share, args.seed)
    want_applied, want_dead = expected(msgs, s)
    print(f"[soak] {len(msgs):,} messages: {want_applied:,} to apply, "
          f"{sum(want_dead.values()):,} hostile", flush=True)

    broker = EmbeddedBroker(log_path=work / "tansu.log").start()
    ensure_topics(broker.bootstrap, s)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20,
                  "queue.buffering.max.messages": 2_000_000, "message.max.bytes": 10_000_000,
                  "partitioner": "murmur2_random"})
    for key, value in msgs:
        while True:
            try:
                p.produce(s.topics.events, key=key, value=value)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0
    state = work / "state"
    cmd = [sys.executable, "-m", "segue.cli", "run", "--brokers", broker.bootstrap,
           "--state-dir", str(state), "--config", str(cfg), "--journeys",
           str(ROOT / "journeys"), "--progress-every", "0"]
    rng = random.Random(args.seed)
    kills, stop_at, stopped_s = 0, args.kills // 2, 0.0
    t0 = time.monotonic()
    logs = work / "logs"
    logs.mkdir()
    try:
        while kills < args.kills:
            log = open(logs / f"run-{kills}.log", "wb")  # noqa: SIM115
            run = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            time.sleep(rng.uniform(3, 9))
            if kills == stop_at and args.broker_stop > 0:
                os.kill(broker.pid, signal.SIGSTOP)
                t_stop = time.monotonic()
                time.sleep(args.broker_stop)
                os.kill(broker.pid, signal.SIGCONT)
                stopped_s = time.monotonic() - t_stop
                time.sleep(rng.uniform(2, 5))
            if run.poll() is not None:
                print((logs / f"run-{kills}.log").read_text()[-3000:], file=sys.stderr)
                raise SystemExit(f"[soak] the flow exited by itself (code {run.returncode})")
            os.kill(run.pid, signal.SIGKILL)
            run.wait(30)
            kills += 1
            print(f"[soak] kill {kills}/{args.kills} at {time.monotonic() - t0:.0f}s",
                  flush=True)
        final = subprocess.run([*cmd, "--until-eof"], capture_output=True, text=True,
                               cwd=ROOT, timeout=3600)
        if final.returncode != 0:
            print(final.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"[soak] the final run failed (code {final.returncode})")
        applied = sum(pr["events"] for pr in iter_profiles(state))
        dlq = [orjson.loads(m.value()) for m in consume_all(broker.bootstrap, s.topics.dlq)]
    finally:
        broker.stop()
    distinct = {r["idempotency_key"]: r["reason"]["code"] for r in dlq}
    by_reason = Counter(distinct.values())
    result = {
        "command": "python -m benchmarks.soak " + " ".join(sys.argv[1:]),
        "messages_sent": len(msgs),
        "valid": want_applied,
        "applied": applied,
        "dead_lettered_expected": dict(sorted(want_dead.items())),
        "dead_lettered": dict(sorted(by_reason.items())),
        "dead_letter_duplicates_after_kills": len(dlq) - len(distinct),
        "lost": (want_applied - applied) + (sum(want_dead.values()) - len(distinct)),
        "kills": kills,
        "broker_stopped_s": round(stopped_s, 1),
        "seconds": round(time.monotonic() - t0, 1),
        "final_run": final.stderr.strip().splitlines()[-1],
    }
    write_result(args.name, result)
    ok = result["lost"] == 0 and applied == want_applied and by_reason == want_dead
    print("[soak] " + ("exact: nothing lost" if ok else "MISMATCH"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
