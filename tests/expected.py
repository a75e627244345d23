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


RANK = {"user": 0, "email": 1, "device": 2, "trait": 3, "anon": 4}


def ids_of(ev: dict) -> list[str]:
    import hashlib

    out = []
    if ev.get("userId"):
        out.append(f"user:{ev['userId']}")
    if ev.get("anonymousId"):
        out.append(f"anon:{ev['anonymousId']}")
    email = (ev.get("traits") or {}).get("email")
    if isinstance(email, str) and "@" in email:
        out.append("email:" + hashlib.sha256(email.strip().lower().encode()).hexdigest())
    return out


def canonical_ids(events: list[dict]) -> dict[str, str]:
    """Union-find over the identifiers events carry together: identifier -> the raw id of the
    customer that survives (user before email before anonymous, then by value)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for ev in events:
        ids = ids_of(ev)
        for other in ids[1:]:
            a, b = find(ids[0]), find(other)
            if a != b:
                parent[max(a, b, key=lambda r: (RANK[r.split(":")[0]], r))] = min(
                    a, b, key=lambda r: (RANK[r.split(":")[0]], r))
    return {x: find(x).split(":", 1)[1] for x in list(parent)}


def expected_counters(events: list[dict]) -> dict[str, dict[str, dict[str, int]]]:
    """customer -> event key -> {window: count} as of the customer's last event (deduped),
    customers being what identity resolution makes of the events' identifiers."""
    canon = canonical_ids(events)
    seen: set[tuple[str, str]] = set()
    times: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for ev in events:
        primary = f"user:{ev['userId']}" if ev.get("userId") else f"anon:{ev['anonymousId']}"
        cid = canon.get(primary, primary.split(":", 1)[1])
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
