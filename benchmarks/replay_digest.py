"""Digest of what ``segue replay`` emits, to prove a refactor changed no output.

Replays an event file with the shipped journeys and records, per output file, the number of
records, a SHA-256 of the file (byte-identical output, for information) and a SHA-256 over the
parsed records of each customer in order (keys sorted: the same records per topic and
customer, whatever the interleaving of customers or the order of fields). ``--compare
OLD.json`` exits 1 when the record count or the per-customer digest of any file differs.

The process CPU time of the replay is reported beside it (``cpu_us_per_event``): replay is the
deterministic offline runner, so this is how a hot-path change is judged.

``python -m benchmarks.replay_digest --events F.jsonl --out D.json [--compare OLD.json]``
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import orjson

from models.settings import Settings
from segue.replay import FILES, replay

ROOT = Path(__file__).resolve().parent.parent


def digest_dir(out: Path) -> dict:
    """Per output file: records, file digest, per-customer-order digest."""
    result = {}
    for name in FILES:
        data = (out / f"{name}.jsonl").read_bytes()
        per_customer: dict[str, list[bytes]] = defaultdict(list)
        n = 0
        for line in data.splitlines():
            n += 1
            rec = orjson.loads(line)
            who = rec.get("customer_id") or rec.get("customer_ref_sha256") or ""
            per_customer[str(who)].append(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS))
        h = hashlib.sha256()
        for who in sorted(per_customer):
            h.update(who.encode() + b"\0" + b"\n".join(per_customer[who]) + b"\0")
        result[name] = {"records": n, "file_sha256": hashlib.sha256(data).hexdigest(),
                        "by_customer_sha256": h.hexdigest()}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", required=True, help="event file (JSON lines)")
    ap.add_argument("--journeys", default=str(ROOT / "journeys"))
    ap.add_argument("--out", required=True, help="where to write the digest (JSON)")
    ap.add_argument("--compare", help="an earlier digest: exit 1 if any output differs")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="segue-digest-") as tmp:
        cpu0, t0 = time.process_time(), time.monotonic()
        summary = replay(Settings(), args.journeys, args.events, Path(tmp) / "out",
                         state_dir=Path(tmp) / "state")
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        digest = digest_dir(Path(tmp) / "out")
    doc = {"events": summary["events"], "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
           "cpu_us_per_event": round(cpu / max(summary["events"], 1) * 1e6, 1),
           "outputs": digest}
    Path(args.out).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print(f"{summary['events']:,} events: {doc['cpu_us_per_event']} µs CPU per event "
          f"({cpu:.1f} s CPU, {wall:.1f} s wall)")
    if args.compare:
        old = orjson.loads(Path(args.compare).read_bytes())["outputs"]
        def same(a: dict | None, b: dict) -> bool:
            return a is not None and all(a[k] == b[k] for k in ("records", "by_customer_sha256"))

        bad = [n for n in FILES if not same(old.get(n), digest[n])]
        for n in bad:
            print(f"DIFFERS: {n}: {old.get(n)} != {digest[n]}")
        if bad:
            return 1
        print("outputs identical to", args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
