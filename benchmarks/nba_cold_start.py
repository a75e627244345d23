"""Cold start: a new deployment with no model, learning online, against the inventory order.

A closed loop on the simulator: the flow's own partitions (``flows.local``, always-on NBA, no
model, no exploration) read a simulated population's events hour by hour of event time;
each NBA decision is answered by the simulator's hidden response model, its conversion (if
any) fed back into the input at its time, so the Thompson sampler learns from conversions
as they arrive, as it would live. Measured per week: the exact expected conversions per
1,000 decisions of the actions taken (the hidden model's probability, so no sampling noise
in the score) and their net value (``conversion_value`` × incremental conversion − cost),
for the sampler (``nba.cold_start: thompson``, the default), the inventory order, and the
oracle (the best eligible action by true net value).

``python -m benchmarks.nba_cold_start [--customers N --events N --days D --seed S]``.
Writes ``benchmarks/results/nba_cold_start.json``.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import orjson

from benchmarks.common import write_result
from flows.local import LocalFlow
from models.settings import Settings
from operators.decode import RawRecord, decode_all
from operators.journeys import journey_registry
from segue.replay import _partition_of
from segue.simulator import (
    customer_of,
    parse_start,
    population,
    respond,
    simulate,
    true_conversion,
)
from state.outbox import Output

ALWAYS_ON = {"events": ["Signed In", "page:Pricing", "Product Viewed", "page:Home",
                        "page:Docs", "Ticket Created", "Product Added", "page:Blog"],
             "when": "profile.events >= 4", "every": 7 * 86_400}
HOUR = 3_600_000
WEEK = 7 * 86_400_000


def run(policy: str, customers: int, events: int, days: float, seed: int) -> dict:
    s = Settings.model_validate({"nba": {
        "exploration": 0.0, "cold_start": "inventory" if policy == "inventory" else "thompson",
        "always_on": ALWAYS_ON, "goal_events": ["Subscription Upgraded"]}})
    people = population(customers, seed)
    value = s.nba.conversion_value
    cost = {a.name: a.cost for a in s.nba.actions}
    decided: dict[str, dict] = {}  # the first record of each decision (a deferred send logs
    # another when it goes out)
    responses: list[tuple[int, int, bytes]] = []  # (time, order, line): conversions to come

    def sink(o: Output) -> None:
        if o.topic == s.topics.decisions:
            d = orjson.loads(o.value)
            if d.get("nba") and d.get("action") and d["dispatch_id"] not in decided:
                decided[d["dispatch_id"]] = d
                for ev in respond([d], people, s.nba.horizon_s * 1000, seed=seed):
                    heapq.heappush(responses, (parse_start(ev["timestamp"]), len(responses),
                                               orjson.dumps(ev)))

    stream = sorted(((parse_start(e["timestamp"]), orjson.dumps(e))
                     for e in simulate(customers, events, seed=seed, days=days)),
                    key=lambda t: t[0])
    n = s.partitions
    with tempfile.TemporaryDirectory(prefix="segue-cold-start-") as tmp:
        flow = LocalFlow(s, journey_registry(s, None, None), Path(tmp), sink)
        offsets = [0] * n
        t0 = time.monotonic()
        i = 0
        hour_end = stream[0][0] + HOUR
        while i < len(stream) or responses:
            batch: list[tuple[int, bytes]] = []
            while i < len(stream) and stream[i][0] < hour_end:
                batch.append(stream[i])
                i += 1
            while responses and responses[0][0] < hour_end:
                at, _, line = heapq.heappop(responses)
                batch.append((at, line))
            batch.sort(key=lambda t: t[0])
            parts: list[list] = [[] for _ in range(n)]
            for _, line in batch:
                p = _partition_of(line, n)
                offsets[p] += 1
                parts[p].append(decode_all(RawRecord("in", p, offsets[p], None, line, [], 0),
                                           max_bytes=s.max_event_bytes,
                                           max_future_skew_ms=1 << 60,
                                           keep_bytes=s.dead_letter_keep_bytes,
                                           max_batch_bytes=s.max_batch_bytes, now_ms=1 << 62))
            for k in range(n):
                flow.step(k, parts[k])  # every partition, so event time moves on everywhere
            flow.settle()
            hour_end += HOUR
        flow.close()
        seconds = time.monotonic() - t0
    start = min(d["at_ms"] for d in decided.values())
    weeks: dict[int, dict] = defaultdict(lambda: {"decisions": 0, "conversions": 0.0,
                                                  "net_value": 0.0, "oracle_net_value": 0.0})
    for d in decided.values():
        c = customer_of(d["customer_id"], people)
        if c is None:
            continue
        w = weeks[(d["at_ms"] - start) // WEEK]
        base = true_conversion(c, "do_nothing")
        p = true_conversion(c, d["action"])
        w["decisions"] += 1
        w["conversions"] += p
        w["net_value"] += (p - base) * value - cost.get(d["action"], 0.0)
        w["oracle_net_value"] += max((true_conversion(c, a) - base) * value - cost.get(a, 0.0)
                                     for a in d["nba"]["eligible"])
    curve = [{"week": k + 1, "decisions": w["decisions"],
              "conversions_per_1k": round(1000 * w["conversions"] / w["decisions"], 2),
              "net_value_per_decision": round(w["net_value"] / w["decisions"], 3),
              "share_of_oracle": round(w["net_value"] / w["oracle_net_value"], 3)
              if w["oracle_net_value"] > 0 else None}
             for k, w in sorted(weeks.items()) if w["decisions"]]
    total = {"decisions": sum(w["decisions"] for w in weeks.values()),
             "conversions_per_1k": round(1000 * sum(w["conversions"] for w in weeks.values())
                                         / max(sum(w["decisions"] for w in weeks.values()), 1),
                                         2),
             "share_of_oracle": round(sum(w["net_value"] for w in weeks.values())
                                      / sum(w["oracle_net_value"] for w in weeks.values()), 3)}
    print(f"[nba_cold_start] {policy}: {total} in {seconds:.0f}s", flush=True)
    return {"weeks": curve, "total": total, "seconds": round(seconds, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=6000)
    ap.add_argument("--events", type=int, default=240_000)
    ap.add_argument("--days", type=float, default=56)
    ap.add_argument("--seed", type=int, default=41)
    args = ap.parse_args()
    result = {"customers": args.customers, "events": args.events, "days": args.days,
              "seed": args.seed, "policies": {}}
    for policy in ("thompson", "inventory"):
        result["policies"][policy] = run(policy, args.customers, args.events, args.days,
                                         args.seed)
    write_result("nba_cold_start", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
