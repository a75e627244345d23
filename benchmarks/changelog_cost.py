"""What the changelog costs the flow: ``segue run`` with ``store.changelog`` off and on.

Same broker, same input topic, alternating order over 3 rounds; each run has its own
application id (so its own changelog and repartition topics) and a fresh state dir. Rates
are first message to last, start-up apart, as ``segue run`` reports them.

``python -m benchmarks.changelog_cost [--events N] [--new]``: simulated events with the
shipped journeys (default 150,000), or with ``--new`` one event per new customer and no
journeys (the write-heaviest stream). Writes ``benchmarks/results/changelog_cost[_new].json``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import write_result
from benchmarks.state_memory import one_event_per_customer
from segue.broker import EmbeddedBroker, ensure_topics
from segue.config import load_settings
from segue.kafka_io import event_records, produce_records
from segue.simulator import simulate

RATE = re.compile(r"([\d,]+) events \(([\d,]+)/s first to last, start-up ([\d.]+)s\)")


def one_run(bs: str, work: Path, base: dict, name: str, on: bool, journeys: bool) -> int:
    cfg = work / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({**base, "app_id": f"cost{name}",
                                   "store": {"changelog": on}}))
    ensure_topics(bs, load_settings(cfg))
    p = subprocess.run([sys.executable, "-m", "segue.cli", "run", "--brokers", bs,
                        "--state-dir", str(work / f"state-{name}"), "--config", str(cfg),
                        *(["--journeys", "journeys"] if journeys else []),
                        "--until-eof", "--progress-every", "0"],
                       capture_output=True, text=True)
    m = RATE.search(p.stderr)
    if p.returncode != 0 or m is None:
        raise SystemExit(f"segue run failed ({p.returncode}): {p.stderr[-2000:]}")
    return int(m[2].replace(",", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=150_000)
    ap.add_argument("--new", action="store_true", help="one event per new customer")
    args = ap.parse_args()
    n = args.events
    work = Path(tempfile.mkdtemp(prefix="segue-bench-changelog-"))
    base = {"prefix": "cost.", "partitions": 8}
    rounds = []
    with EmbeddedBroker() as b:
        cfg = work / "base.yaml"
        cfg.write_text(yaml.safe_dump(base))
        ensure_topics(b.bootstrap, load_settings(cfg))
        topic = load_settings(cfg).topics.events
        if args.new:
            produce_records(b.bootstrap, topic,
                            one_event_per_customer(n, int(time.time() * 1000) - n - 3_600_000))
        else:
            produce_records(b.bootstrap, topic, event_records(simulate(n // 7, n, seed=7)))
        for r in range(3):
            row: dict = {"load": round(os.getloadavg()[0], 2)}
            for variant in ("off", "on") if r % 2 == 0 else ("on", "off"):
                row[variant] = one_run(b.bootstrap, work, base, f"{r}{variant}",
                                       variant == "on", not args.new)
            row["ratio_on_off"] = round(row["on"] / row["off"], 3)
            print(f"[changelog_cost] round {r + 1}: {row}", flush=True)
            rounds.append(row)
    ratios = sorted(x["ratio_on_off"] for x in rounds)
    write_result("changelog_cost" + ("_new" if args.new else ""), {
        "events": n, "stream": "one event per new customer, no journeys" if args.new
        else "simulated (seed 7), shipped journeys", "rounds": rounds,
        "median_ratio_on_off": ratios[1], "spread": [ratios[0], ratios[-1]]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
