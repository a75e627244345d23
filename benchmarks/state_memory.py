"""Memory with many customers: RSS of ``segue run`` after N distinct customers (state on disk).

Run: ``python -m benchmarks.state_memory [--customers 1000000]``. Writes
``benchmarks/results/state_memory.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil

from benchmarks.common import write_result
from segue.broker import EmbeddedBroker, ensure_topics
from segue.config import Settings
from segue.kafka_io import produce_records
from state.inspect import partition_stores

T0 = 1_767_225_600_000


def one_event_per_customer(n: int):
    """n distinct customers, one Signed Up event each, interleaved in time."""
    for i in range(n):
        cid = f"user-{(i * 7919) % n}"
        ts = T0 + i * 10
        ev = {"type": "track", "messageId": f"m{i}", "userId": cid, "event": "Signed Up",
              "timestamp": f"2026-01-01T00:{(ts - T0) // 60000 % 60:02d}:00Z",
              "properties": {"plan": "pro"}, "context": {"timezone": "Europe/Berlin"}}
        yield cid, orjson.dumps(ev)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for segue run")
    args = ap.parse_args()
    settings = Settings()
    state = Path(tempfile.mkdtemp(prefix="segue-bench-mem-"))
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, settings)
        t = time.monotonic()
        produce_records(broker.bootstrap, settings.topics.events,
                        one_event_per_customer(args.customers))
        print(f"produced {args.customers:,} events in {time.monotonic() - t:.1f}s", flush=True)
        t = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "segue.cli", "run", "--brokers",
                                 broker.bootstrap, "--state-dir", str(state), "--until-eof",
                                 "--progress-every", "10"],
                                env={**os.environ, **dict(e.split("=", 1) for e in args.env)})
        ps = psutil.Process(proc.pid)
        peak = 0
        samples = []
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss
            except psutil.NoSuchProcess:
                break
            peak = max(peak, rss)
            samples.append(rss)
            time.sleep(0.25)
        secs = time.monotonic() - t
        if proc.returncode != 0:
            print(f"segue run failed with {proc.returncode}", file=sys.stderr)
            return 1
    disk = sum(dir_bytes(p) for p in partition_stores(state))
    result = {
        "customers": args.customers,
        "events": args.customers,
        "peak_rss_mb": round(peak / 2**20, 1),
        "final_rss_mb": round(samples[-1] / 2**20, 1) if samples else None,
        "target_peak_rss_mb": 600,
        "run_seconds": round(secs, 1),
        "events_per_s_including_startup": round(args.customers / secs),
        "state_disk_mb": round(disk / 2**20, 1),
        "disk_bytes_per_customer": round(disk / args.customers),
    }
    write_result("state_memory", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
