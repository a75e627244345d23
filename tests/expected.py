"""Independent reference computations for tests: what the flow must end up with, from input."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

BUCKETS = {"1h": (60_000, 60), "24h": (3_600_000, 24), "7d": (3_600_000, 168),
           "30d": (86_400_000, 30)}


def event_key(ev: dict) -> str:
    if ev["type"] == "track":
        return ev["event"]
    if ev["type"] in ("page", "screen"):
        return f"{ev['type']}:{ev['name']}" if ev.get("name") else ev["type"]
    return ev["type"]


def ts_ms(ev: dict) -> int:
    return int(datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00")).timestamp() * 1000)


def expected_counters(events: list[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """customer -> event key -> {window: count} as of the customer's last event (deduped)."""
    seen: set[tuple[str, str]] = set()
    times: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for ev in events:
        cid = ev.get("userId") or ev.get("anonymousId")
        if (cid, ev["messageId"]) in seen:
            continue
        seen.add((cid, ev["messageId"]))
        times[cid][event_key(ev)].append(ts_ms(ev))
    out: dict[str, dict[str, dict[str, int]]] = {}
    for cid, by_key in times.items():
        last = max(t for ts in by_key.values() for t in ts)
        out[cid] = {}
        for key, ts in by_key.items():
            counts = {"total": len(ts)}
            for w, (g, n) in BUCKETS.items():
                hi = last // g
                counts[w] = sum(1 for t in ts if hi - n < t // g <= hi)
            out[cid][key] = counts
    return out
