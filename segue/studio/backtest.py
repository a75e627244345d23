"""Backtest a draft: replay the same events through the current version and the draft, with
the flow's own operators (``segue replay``), and say what would change.

Both runs see the same folder except for the one journey, the same settings and the same
clock reading, so every difference comes from the draft: per-step counts of both versions,
sends by channel, conversions, and the customers whose outcome changes, with the decisions
that differ.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson

from models.settings import Settings
from segue.replay import replay
from segue.studio.counts import JourneyCounts
from segue.studio.workspace import StudioError, Workspace

MAX_CUSTOMERS_LISTED = 200


def _outcomes(out: Path, jid: str) -> dict[str, dict]:
    """Per customer, what the journey did: steps in order, sends, conversions, exits and
    the delivery decisions (version left out: the two runs compare different versions)."""
    per: dict[str, dict] = defaultdict(lambda: {"path": [], "sends": [], "goals": [],
                                                "exits": [], "decisions": []})
    for line in (out / "journey-events.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        if r["journey"]["id"] != jid:
            continue
        c = per[r["customer_id"]]
        t = r["type"]
        if t == "journey.step":
            c["path"].append(r["journey"]["node"])
        elif t == "journey.converted":
            c["goals"].append(str(r.get("reason", "")).removeprefix("goal:"))
        elif t == "journey.exited":
            c["exits"].append(f"{r['journey']['node']}: {r.get('reason')}")
    for line in (out / "decisions.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        if r["journey"]["id"] != jid:
            continue
        c = per[r["customer_id"]]
        text = f"{r['journey']['node']}: {r['outcome']} {r.get('channel') or ''} " \
               f"{r.get('template') or ''}".rstrip()
        if r.get("reasons"):
            text += f" ({', '.join(r['reasons'])})"
        c["decisions"].append(text)
        if r["outcome"] == "send":
            c["sends"].append(f"{r.get('channel')}:{r.get('template')}")
    return dict(per)


def _sends(out: Path, jid: str) -> tuple[dict[str, int], int]:
    mine: Counter[str] = Counter()
    total = 0
    for line in (out / "dispatches.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        total += 1
        if r["journey"]["id"] == jid:
            mine[r["channel"]] += 1
    return dict(sorted(mine.items())), total


def events_from_topic(brokers: str, topic: str, since_ms: int, dest: Path) -> int:
    """The input topic's records stamped at or after ``since_ms`` (Kafka time), written as
    JSON lines in the topic's order per partition; returns how many."""
    from segue.kafka_io import consume_all

    n = 0
    with dest.open("wb") as f:
        for m in consume_all(brokers, topic):
            if m.value() and m.timestamp()[1] >= since_ms:
                f.write(m.value().rstrip(b"\n") + b"\n")
                n += 1
    return n


def backtest(ws: Workspace, settings: Settings, jid: str, events: str | Path,
             horizon_ms: int = 35 * 86_400_000) -> dict:
    """Replay ``events`` through the current version and the draft of ``jid``."""
    draft_version, draft_text = ws.release(jid, "backtest")
    if not Path(events).is_file():
        raise StudioError(f"{events}: no such events file")
    current = ws.files().get(jid)
    now_ms = int(time.time() * 1000)  # one clock reading for both runs
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="segue-backtest-") as tmp:
        root = Path(tmp)
        runs = {}
        for name, text in (("current", None), ("draft", draft_text)):
            if name == "current" and current is None:
                continue
            folder = root / name / "journeys"
            ws.copy_with(folder, ws.file_of(jid) if text is not None else None, text)
            out = root / name / "out"
            summary = replay(settings, folder, events, out, state_dir=root / name / "state",
                             horizon_ms=horizon_ms, now_ms=now_ms)
            version = draft_version if name == "draft" else current[1].version  # type: ignore[index]
            counts = JourneyCounts.from_replay(out).versions(jid).get(version)
            sends, all_sends = _sends(out, jid)
            runs[name] = {"version": version, "counts": counts, "sends_by_channel": sends,
                          "sends_all_journeys": all_sends, "events": summary["events"],
                          "outcomes": _outcomes(out, jid)}
    before = runs.get("current", {}).get("outcomes", {})
    after = runs["draft"]["outcomes"]
    changed = []
    for cid in sorted(set(before) | set(after)):
        a, b = before.get(cid), after.get(cid)
        if a == b:
            continue
        a = a or {"path": [], "sends": [], "goals": [], "exits": [], "decisions": []}
        b = b or {"path": [], "sends": [], "goals": [], "exits": [], "decisions": []}
        changed.append({
            "customer_id": cid, "current": a, "draft": b,
            "decisions_only_current": [d for d in a["decisions"] if d not in b["decisions"]],
            "decisions_only_draft": [d for d in b["decisions"] if d not in a["decisions"]],
            "converted": [bool(a["goals"]), bool(b["goals"])]})
    for r in runs.values():
        r.pop("outcomes")
    return {"journey": jid, "events": str(events), "seconds": round(time.monotonic() - t0, 2),
            "current": runs.get("current"), "draft": runs["draft"],
            "customers": len(set(before) | set(after)), "customers_changed": len(changed),
            "changed": changed[:MAX_CUSTOMERS_LISTED]}
