"""Counts on every node of a journey version, folded from the journey events.

The same fold serves the live topics (``segue.journey-events`` read by Studio) and a replay's
``journey-events.jsonl`` (a backtest), so a number on the canvas means the same thing in
both. Per journey version (a new version starts from zero):

- entry: runs entered (total) and customers (unique);
- each step: visits (total) and customers (unique); runs that ended there, by reason;
  conversions while there; drop-off = runs that ended there without completing or
  converting, over the customers who reached it;
- goals: conversions per goal; exits: runs per exit.

Experiment verdicts (split arms, holdout) come from the newest ``analytics.journey`` total
of the version, which carries the sequential test's lift, interval and verdict.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import orjson


class VersionCounts:
    """Counts of one journey version."""

    def __init__(self) -> None:
        self.entered = 0
        self.entered_customers: set[str] = set()
        self.visits: Counter[str] = Counter()
        self.customers: dict[str, set[str]] = defaultdict(set)
        self.ended_at: dict[str, Counter[str]] = defaultdict(Counter)
        self.converted_at: Counter[str] = Counter()
        self.goals: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()
        self.converted = 0
        self.converted_customers: set[str] = set()
        self.exited = 0
        self.last_at = 0
        self.analytics: dict | None = None

    def add(self, r: dict) -> None:
        kind = r.get("type", "")
        node = (r.get("journey") or {}).get("node")
        cid = r.get("customer_id", "")
        self.last_at = max(self.last_at, r.get("at_ms") or 0)
        if kind == "journey.entered":
            self.entered += 1
            self.entered_customers.add(cid)
        elif kind == "journey.step":
            self.visits[node] += 1
            self.customers[node].add(cid)
        elif kind == "journey.converted":
            self.converted += 1
            self.converted_customers.add(cid)
            self.converted_at[node] += 1
            self.goals[str(r.get("reason", "")).removeprefix("goal:")] += 1
        elif kind == "journey.exited":
            self.exited += 1
            reason = str(r.get("reason", ""))
            self.ended_at[node][reason] += 1
            if reason.startswith("exit:"):
                self.exits[reason.removeprefix("exit:")] += 1

    def as_dict(self) -> dict:
        nodes = {}
        for node in set(self.visits) | set(self.ended_at):
            ended = self.ended_at.get(node, Counter())
            dropped = sum(n for why, n in ended.items()
                          if why != "completed" and not why.startswith(("goal:", "goto:")))
            reached = len(self.customers.get(node, ()))
            nodes[node] = {"visits": self.visits.get(node, 0), "customers": reached,
                           "ended": dict(ended), "converted": self.converted_at.get(node, 0),
                           "dropped": dropped,
                           "drop_off_rate": round(dropped / reached, 4) if reached else None}
        a = self.analytics or {}
        return {
            "entered": self.entered, "entered_customers": len(self.entered_customers),
            "active": self.entered - self.exited, "exited": self.exited,
            "converted": self.converted, "converted_customers": len(self.converted_customers),
            "conversion_rate": round(self.converted / self.entered, 4) if self.entered else None,
            "nodes": nodes, "goals": dict(self.goals), "exits": dict(self.exits),
            "split": a.get("split"), "holdout": a.get("holdout"),
            "target_conversion": a.get("target_conversion"), "last_at_ms": self.last_at or None,
        }


class JourneyCounts:
    """Counts of every journey version seen, folded record by record."""

    def __init__(self) -> None:
        self.by_version: dict[tuple[str, int], VersionCounts] = defaultdict(VersionCounts)

    def add_journey_event(self, r: dict) -> None:
        j = r.get("journey") or {}
        if "id" in j and "version" in j:
            self.by_version[(j["id"], int(j["version"]))].add(r)

    def add_analytics(self, r: dict) -> None:
        if r.get("type") == "analytics.journey":
            j = r["journey"]
            self.by_version[(j["id"], int(j["version"]))].analytics = r

    def versions(self, jid: str) -> dict[int, dict]:
        return {v: c.as_dict() for (j, v), c in sorted(self.by_version.items()) if j == jid}

    def totals(self, jid: str) -> dict:
        """A journey's numbers over all its versions (the journeys list)."""
        rows = [c for (j, _), c in self.by_version.items() if j == jid]
        entered = sum(c.entered for c in rows)
        converted = sum(c.converted for c in rows)
        return {"entered": entered, "active": sum(c.entered - c.exited for c in rows),
                "converted": converted,
                "conversion_rate": round(converted / entered, 4) if entered else None,
                "last_at_ms": max((c.last_at for c in rows), default=0) or None}

    @classmethod
    def from_replay(cls, out_dir: str | Path) -> JourneyCounts:
        out = Path(out_dir)
        counts = cls()
        for line in _lines(out / "journey-events.jsonl"):
            counts.add_journey_event(orjson.loads(line))
        for line in _lines(out / "analytics.jsonl"):
            counts.add_analytics(orjson.loads(line))
        return counts


def _lines(path: Path) -> Iterable[bytes]:
    if not path.exists():
        return []
    return (x for x in path.read_bytes().splitlines() if x.strip())
