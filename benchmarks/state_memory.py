"""State scale: N distinct customers in one ``segue run`` process (state on disk).

1. **Build**: one event per distinct customer (each creates a profile, a timer and a
   lifecycle output: the memory worst case), ``segue run --until-eof``: peak RSS, disk bytes
   per customer, events/s.
2. **Restart-to-ready**: ``segue run`` (tailing) on that state, a probe event for a new customer
   produced before it starts: seconds from the process start to the probe's output on
   ``segue.customer-events`` (stores opened, outboxes checked, input resumed, first event
   applied and produced).
3. **Beyond the block cache**: ``--revisit`` events for customers picked at random among the N
   (their profiles are on disk, mostly not in the 64 MB cache), ``segue run --until-eof``:
   events/s and peak RSS.

Run: ``python -m benchmarks.state_memory [--customers 1000000]``. Writes
``benchmarks/results/state_memory.json`` (``state_memory_5m.json`` for 5M, and so on).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from benchmarks.common import write_result
from models.settings import Settings
from segue.broker import EmbeddedBroker, ensure_topics
from segue.kafka_io import produce_records
from state.inspect import iso, partition_stores


def one_event_per_customer(n: int, t0: int):
    """n distinct customers, one Signed Up event each, 1 ms apart from ``t0`` (recent: no
    customer's inactivity timer is due by the wall clock when the flow restarts tailing)."""
    for i in range(n):
        cid = f"user-{(i * 7919) % n}"
        ev = {"type": "track", "messageId": f"m{i}", "userId": cid, "event": "Signed Up",
              "timestamp": iso(t0 + i), "properties": {"plan": "pro"},
              "context": {"timezone": "Europe/Berlin"}}
        yield cid, orjson.dumps(ev)


def revisits(n: int, k: int, t0: int):
    """k events of customers picked at random among the n (seeded)."""
    rng = random.Random(11)
    for i in range(k):
        cid = f"user-{rng.randrange(n)}"
        ev = {"type": "track", "messageId": f"r{i}", "userId": cid, "event": "Feature Used",
              "timestamp": iso(t0 + i), "properties": {"feature": "reports"}}
        yield cid, orjson.dumps(ev)


def run_until_eof(bs: str, state: Path, env: dict) -> tuple[float, float, float] | None:
    """``segue run --until-eof``: (seconds, peak RSS MB, final RSS MB), or None if it failed."""
    t = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "segue.cli", "run", "--brokers", bs,
                             "--state-dir", str(state), "--until-eof", "--progress-every", "10"],
                            env=env)
    ps = psutil.Process(proc.pid)
    peak, last = 0, 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss
        except psutil.NoSuchProcess:
            break
        if rss:  # 0 once the process has exited (a zombie until reaped)
            last = rss
            peak = max(peak, rss)
        time.sleep(0.25)
    if proc.returncode != 0:
        print(f"segue run failed with {proc.returncode}", file=sys.stderr)
        return None
    return time.monotonic() - t, peak / 2**20, last / 2**20


def restart_to_ready(bs: str, state: Path, settings: Settings, env: dict,
                     log: Path | None = None) -> float | None:
    """Seconds from starting a tailing ``segue run`` on ``state`` to the probe's output
    (what the run prints on stderr goes to ``log``, if given)."""
    topic = settings.topics.customer_events
    c = Consumer({"bootstrap.servers": bs, "group.id": "bench-ready",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, OFFSET_END) for p in range(settings.partitions)])
    c.consume(1000, 2.0)  # positions resolved at the end before the probe is produced
    probe = f"probe-{time.time_ns()}"
    ev = {"type": "track", "messageId": probe, "userId": probe, "event": "Signed Up",
          "timestamp": iso(int(time.time() * 1000))}
    produce_records(bs, settings.topics.events, [(probe, orjson.dumps(ev))])
    t = time.monotonic()
    err = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "segue.cli", "run", "--brokers", bs,
                             "--state-dir", str(state), "--progress-every", "0"], env=env,
                            stderr=err)
    ready = None
    try:
        while time.monotonic() - t < 300 and ready is None and proc.poll() is None:
            for m in c.consume(100, 0.05):
                if not m.error() and orjson.loads(m.value()).get("customer_id") == probe:
                    ready = time.monotonic() - t
    finally:
        proc.terminate()
        proc.wait(60)
        c.close()
        if log is not None:
            err.close()  # type: ignore[union-attr]
    return ready


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--revisit", type=int, default=300_000,
                    help="events of existing customers in phase 3 (0: skip)")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for segue run")
    args = ap.parse_args()
    n = args.customers
    settings = Settings()
    state = Path(tempfile.mkdtemp(prefix="segue-bench-mem-"))
    env = {**os.environ, **dict(e.split("=", 1) for e in args.env)}
    result: dict = {"customers": n, "events": n, "target_peak_rss_mb": 1024 if n > 1_000_000
                    else 600}
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap
        ensure_topics(bs, settings)
        t = time.monotonic()
        t0 = int(time.time() * 1000) - n - 3_600_000
        produce_records(bs, settings.topics.events, one_event_per_customer(n, t0))
        print(f"produced {n:,} events in {time.monotonic() - t:.1f}s", flush=True)
        built = run_until_eof(bs, state, env)
        if built is None:
            return 1
        secs, peak, final = built
        disk = sum(dir_bytes(p) for p in partition_stores(state))
        result.update({
            "peak_rss_mb": round(peak, 1), "final_rss_mb": round(final, 1),
            "run_seconds": round(secs, 1),
            "events_per_s_including_startup": round(n / secs),
            "state_disk_mb": round(disk / 2**20, 1),
            "disk_bytes_per_customer": round(disk / n),
            "block_cache_mb": settings.store.block_cache_mb,
        })
        print(f"[state] built: {result}", flush=True)
        ready = restart_to_ready(bs, state, settings, env)
        result["restart_to_ready_s"] = round(ready, 2) if ready is not None else None
        result["target_restart_to_ready_s"] = 10
        print(f"[state] restart to ready: {ready}", flush=True)
        if args.revisit:
            produce_records(bs, settings.topics.events,
                            revisits(n, args.revisit, int(time.time() * 1000) - args.revisit))
            again = run_until_eof(bs, state, env)
            if again is None:
                return 1
            secs, peak, _ = again
            result["beyond_cache"] = {
                "events": args.revisit, "seconds_including_startup": round(secs, 1),
                "events_per_s": round(args.revisit / secs), "peak_rss_mb": round(peak, 1),
                "state_disk_mb": round(sum(dir_bytes(p) for p in partition_stores(state))
                                       / 2**20, 1)}
            print(f"[state] beyond the block cache: {result['beyond_cache']}", flush=True)
    shutil.rmtree(state, ignore_errors=True)
    suffix = "" if n == 1_000_000 else (f"_{n // 1_000_000}m" if n % 1_000_000 == 0
                                        else f"_{n}")
    write_result(f"state_memory{suffix}", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
