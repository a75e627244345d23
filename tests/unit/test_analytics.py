"""Journey and channel analytics on segue.analytics: totals equal an independent count of the
output records; a split with a real difference is significant, one without is not."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from models.settings import Settings
from operators.analytics.partials import compare
from operators.journeys import bucket
from segue.replay import replay

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
N = 2400


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _events() -> list[dict]:
    evs = []
    for i in range(N):
        for jid, start, goal in (("ab-real", "AB Real Start", "AB Real Goal"),
                                 ("ab-null", "AB Null Start", "AB Null Goal")):
            cid = f"{jid}-{i}"
            t = T0 + timedelta(seconds=i)
            evs.append({"type": "track", "userId": cid, "event": start,
                        "messageId": f"s-{cid}", "timestamp": _iso(t)})
            treated = bucket(cid, "ab-real", "split") >= 50
            converts = (i % 10 < 3 if treated else i % 5 == 0) if jid == "ab-real" \
                else i % 5 == 0
            if converts:
                evs.append({"type": "track", "userId": cid, "event": goal,
                            "messageId": f"g-{cid}", "timestamp": _iso(t + timedelta(hours=1))})
            elif jid == "ab-null" and i >= N - 400:  # a sudden wave of exits at one step
                evs.append({"type": "track", "userId": cid, "event": "AB Null Left",
                            "messageId": f"l-{cid}", "timestamp": _iso(t + timedelta(hours=2))})
    for k in range(64):  # activity on every partition, so event time moves on everywhere
        for m in range(0, 30 * 60, 10):
            evs.append({"type": "track", "userId": f"filler-{k}", "event": "Ping",
                        "messageId": f"p-{k}-{m}",
                        "timestamp": _iso(T0 + timedelta(minutes=m, seconds=k))})
    evs.sort(key=lambda e: e["timestamp"])
    return evs


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> dict[str, list[dict]]:
    d = tmp_path_factory.mktemp("analytics")
    (d / "events.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in _events()) + b"\n")
    settings = Settings(analytics={"every_s": 600}, alerts={"step_min_exits": 20})
    replay(settings, ROOT / "tests" / "journeys-analytics", d / "events.jsonl", d / "out")
    return {name: [orjson.loads(x) for x in (d / "out" / f"{name}.jsonl").read_bytes()
                   .splitlines()]
            for name in ("analytics", "journey-events", "dispatches", "decisions", "alerts")}


def _latest(out: dict, scope: str) -> dict[str, dict]:
    latest = {}
    for r in out["analytics"]:
        if r["type"] == f"analytics.{scope}":
            latest[r["journey"]["id"] if scope == "journey" else r["channel"]] = r
    return latest


def test_journey_totals_equal_an_independent_count(out):
    latest = _latest(out, "journey")
    assert set(latest) == {"ab-real", "ab-null"}
    for jid, rec in latest.items():
        evs = [e for e in out["journey-events"] if e["journey"]["id"] == jid]
        kinds = Counter(e["type"] for e in evs)
        exits = [e for e in evs if e["type"] == "journey.exited"]
        assert rec["partitions_reporting"] > 1  # summed across partitions
        assert rec["entered"] == kinds["journey.entered"] == N
        assert rec["converted"] == kinds["journey.converted"]
        assert rec["exited"] == len(exits)
        assert rec["active"] == N - len(exits) == 0
        assert rec["exited_by_reason"] == dict(Counter(e["reason"] for e in exits))
        assert rec["completed"] == sum(e["reason"] == "completed" or
                                       e["reason"].startswith("goal:") for e in exits)
        visits = Counter(e["journey"]["node"] for e in evs if e["type"] == "journey.step")
        dropped = Counter(e["journey"]["node"] for e in exits
                          if e["reason"] != "completed" and not e["reason"].startswith("goal:"))
        assert {s["step"]: (s["visits"], s["dropped"]) for s in rec["steps"]} == \
            {node: (visits[node], dropped[node]) for node in visits}
        # Time in journey: from each run's entry record to its exit record.
        entered_at = {e["customer_id"]: e["at_ms"] for e in evs
                      if e["type"] == "journey.entered"}
        mean_s = sum(e["at_ms"] - entered_at[e["customer_id"]] for e in exits) / len(exits)
        assert rec["avg_time_in_journey_s"] == pytest.approx(mean_s / 1000, abs=0.1)
        # Conversion per variant, joining each conversion to the customer's split step.
        variant = {e["customer_id"]: e["variant"] for e in evs
                   if e["type"] == "journey.step" and e.get("step_type") == "split"}
        arms: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for v in variant.values():
            arms[v][0] += 1
        for e in evs:
            if e["type"] == "journey.converted" and e["customer_id"] in variant:
                arms[variant[e["customer_id"]]][1] += 1
        assert {a["variant"]: [a["customers"], a["converted"]] for a in rec["split"]} == \
            dict(arms)


def test_a_real_difference_is_significant_and_none_is_not(out):
    latest = _latest(out, "journey")
    real = {a["variant"]: a for a in latest["ab-real"]["split"]}
    cmp = real["treatment"]["vs_control"]
    assert real["control"]["control"] and cmp["verdict"] == "significant"
    # The true lift is 0.30 - 0.20: the confidence sequence (wider than a fixed-horizon
    # interval, valid at every look) covers it and excludes no lift.
    assert cmp["p_value"] < 0.001 and 0 < cmp["ci"][0] < 0.10 < cmp["ci"][1] \
        and cmp["lift"] > 0.08
    null = {a["variant"]: a for a in latest["ab-null"]["split"]}
    assert null["b"]["vs_control"]["verdict"].startswith("not significant")
    assert null["b"]["vs_control"]["ci"][0] < 0 < null["b"]["vs_control"]["ci"][1]
    ho = latest["ab-null"]["holdout"]  # nobody's conversion depends on the holdout
    assert ho["verdict"].startswith("not significant")
    assert ho["control"]["customers"] + ho["treatment"]["customers"] == N


def test_channel_rates_equal_an_independent_count(out):
    latest = _latest(out, "channel")
    sent = Counter(d["channel"] for d in out["dispatches"] if d["attempt"] == 1)
    assert {ch: r["sent"] for ch, r in latest.items()} == dict(sent)
    assert latest["email"]["delivery_rate"] == 1.0 and latest["email"]["failed"] == 0


def test_alerts_on_conversion_below_target_and_a_sudden_drop_off(out):
    kinds = Counter((a["type"], a["subject"]) for a in out["alerts"])
    # ab-null converts 20 % against a 50 % target; ab-real (about 25 %) beats its 10 %.
    assert kinds[("alert.conversion_below_target", "ab-null@v1")] == 1
    assert not any(s.startswith("ab-real") for _, s in kinds)
    drop = [a for a in out["alerts"] if a["type"] == "alert.step_dropoff"]
    assert drop and {a["subject"] for a in drop} == {"ab-null@v1:wait"}
    assert all(a["rate"] >= 0.5 and a["baseline_rate"] < 0.25 for a in drop)
    # Before the wave, no drop-off alert: the first comes after the first "left" exit.
    first_left = min(e["at_ms"] for e in out["journey-events"]
                     if e.get("reason") == "exit:left")
    assert min(a["at_ms"] for a in drop) >= first_left


def test_small_samples_need_more_data():
    assert compare(40, 12, 40, 4)["verdict"] == "needs more data"
    r = compare(300, 33, 300, 30)
    assert r["verdict"] == "not significant (needs more data)"
    assert r["customers_per_arm_needed"] > 300


def test_dashboard_shows_experiments_and_targets(out):
    from rich.console import Console

    from segue.dashboard import DashboardState

    state = DashboardState()
    for kind, name in (("analytics", "analytics"), ("alert", "alerts"),
                       ("journey", "journey-events")):
        for r in out[name]:
            state.add(kind, r)
    console = Console(width=140, record=True)
    console.print(state.render())
    text = console.export_text()
    assert "ab-real v1 split treatment vs control: lift +" in text
    assert "→ significant" in text and "→ not significant" in text
    assert "⚠ ab-null v1 conversion below target" in text
    assert "✓ ab-real v1 conversion meets target" in text
    assert "Overall conversion rate:" in text
