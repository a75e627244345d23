"""State restore from the changelog: a new host (or a lost disk) rebuilds N customers' state.

1. **Build**: one event per distinct customer (``benchmarks.state_memory``'s stream: each
   makes a profile, a timer and a lifecycle output), ``segue run --until-eof`` with the
   changelog on (the default): every store is mirrored to ``segue.changelog``.
2. **Restore**: the state dir deleted, ``segue run --until-eof`` on an empty one: each
   partition's store is rebuilt from the changelog before it processes anything. Reported
   from the run's own restore lines: records, distinct keys, MB (keys + values) and seconds
   per partition; rates over the partitions' summed restore time (they restore one after
   another on one worker).
3. **Restart-to-ready on a new host**: the state dir deleted again, a tailing ``segue run``
   and a probe event for a new customer: seconds from the process start to the probe's
   output (restore included).

Run: ``python -m benchmarks.restore [--customers 1000000]``. Writes
``benchmarks/results/restore.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_result
from benchmarks.state_memory import dir_bytes, one_event_per_customer, restart_to_ready
from models.settings import Settings
from segue.broker import EmbeddedBroker, ensure_topics
from segue.kafka_io import produce_records
from state.inspect import partition_stores

LINE = re.compile(r"restored partition (\d+): ([\d,]+) records \(([\d,]+) keys, ([\d.]+) MB\) "
                  r"in ([\d.]+)s")


def run_logged(bs: str, state: Path, log: Path) -> float:
    """``segue run --until-eof`` (stderr to ``log``); its wall seconds."""
    import subprocess

    t = time.monotonic()
    with open(log, "wb") as err:
        rc = subprocess.call([sys.executable, "-m", "segue.cli", "run", "--brokers", bs,
                              "--state-dir", str(state), "--until-eof", "--progress-every",
                              "0"], stderr=err)
    if rc != 0:
        raise SystemExit(f"segue run failed ({rc}): {log.read_text()[-2000:]}")
    return time.monotonic() - t


def parse(log: Path) -> dict:
    parts = [(int(m[2].replace(",", "")), int(m[3].replace(",", "")), float(m[4]), float(m[5]))
             for m in LINE.finditer(log.read_text())]
    records = sum(p[0] for p in parts)
    keys = sum(p[1] for p in parts)
    mb = sum(p[2] for p in parts)
    secs = sum(p[3] for p in parts)
    return {"partitions": len(parts), "records": records, "keys": keys, "mb": round(mb, 1),
            "seconds": round(secs, 2), "mb_per_s": round(mb / secs, 1) if secs else None,
            "keys_per_s": round(keys / secs) if secs else None,
            "records_per_s": round(records / secs) if secs else None,
            "slowest_partition_s": max((p[3] for p in parts), default=None)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.customers
    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="segue-bench-restore-"))
    state = work / "state"
    result: dict = {"customers": n, "partitions": settings.partitions,
                    "load_before": os.getloadavg()}
    with EmbeddedBroker() as broker:
        bs = broker.bootstrap
        ensure_topics(bs, settings)
        produce_records(bs, settings.topics.events,
                        one_event_per_customer(n, int(time.time() * 1000) - n - 3_600_000))
        built = run_logged(bs, state, work / "build.log")
        disk = sum(dir_bytes(p) for p in partition_stores(state))
        result["build"] = {"seconds": round(built, 1), "events_per_s": round(n / built),
                           "state_disk_mb": round(disk / 2**20, 1)}
        print(f"[restore] built {n:,} customers in {built:.1f}s", flush=True)

        shutil.rmtree(state)
        secs = run_logged(bs, state, work / "restore.log")
        result["restore"] = {**parse(work / "restore.log"), "run_seconds": round(secs, 1)}
        print(f"[restore] {result['restore']}", flush=True)

        shutil.rmtree(state)
        ready = restart_to_ready(bs, state, settings, dict(os.environ), log=work / "ready.log")
        result["new_host_restart_to_ready_s"] = round(ready, 2) if ready is not None else None
        result["target_restart_to_ready_s"] = 10
        print(f"[restore] new host ready in {ready}s", flush=True)
    result["load_after"] = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)
    write_result("restore", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
