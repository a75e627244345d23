"""Every path of the shipped journeys and every step type, run twice: through ``segue replay``
and through the live flow on the real broker. The two must emit the same records; the
scenario assertions then read the replay's output.

All scenarios share one event stream (each has its own customers), so one replay and one live
run serve them all.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from segue.kafka_io import produce_records
from tests.conftest import ROOT, live_outputs, replay_outputs

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC
DAY = 86_400_000
HORIZON = "60d"


class Stream:
    def __init__(self) -> None:
        self.events: list[dict] = []
        self._n = 0

    def add(self, cid: str, at: timedelta, kind: str = "track", name: str | None = None,
            tz: str = "Europe/London", **fields) -> None:
        self._n += 1
        ev = {"type": kind, "messageId": f"s{self._n}", "userId": cid,
              "timestamp": (T0 + at).isoformat(), "context": {"timezone": tz}}
        if kind == "track":
            ev["event"] = name
        ev.update(fields)
        self.events.append(ev)

    def signup(self, cid: str, adoption: int, plan: str = "pro", at=timedelta(0), **kw) -> None:
        self.add(cid, at, "identify", traits={"adoption_score": adoption, "plan": plan,
                                              "company": f"{cid} Inc", "industry": "software"},
                 **kw)
        self.add(cid, at + timedelta(minutes=1), name="Signed Up", **kw)
        self.add(cid, at + timedelta(hours=1), name="Feature Activated", **kw)

    def keep_active(self, cid: str, days: list[float]) -> None:
        for d in days:
            self.add(cid, timedelta(days=d), name="Signed In")


def scenario_stream() -> Stream:
    s = Stream()
    # Blueprint, adoption 85 (high path), CSAT 9 on day 22 -> referral; day 30 -> retention.
    s.signup("bp-high-csat9", 85)
    s.keep_active("bp-high-csat9", [4, 9, 13, 18, 26, 29])
    s.add("bp-high-csat9", timedelta(days=22), name="CSAT Submitted", properties={"score": 9})
    # High path, CSAT 5 -> personalised help + CSM intro.
    s.signup("bp-high-csat5", 90)
    s.keep_active("bp-high-csat5", [4, 9, 13, 18, 26])
    s.add("bp-high-csat5", timedelta(days=22), name="CSAT Submitted", properties={"score": 5})
    # Low path (adoption 40), active throughout: the whole nurture series.
    s.signup("bp-low", 40)
    s.keep_active("bp-low", [3, 8, 12, 17, 22, 27])
    # 21 days silent -> at-risk journey.
    s.signup("bp-silent", 75)
    # Adoption rises above 80 on day 5 -> expansion (next-best-action step).
    s.signup("bp-adoption-up", 75)
    s.add("bp-adoption-up", timedelta(days=5), "identify", traits={"adoption_score": 91})
    # Cancellation on day 8 -> journey ends with a churn-analysis event.
    s.signup("bp-cancel", 60)
    s.add("bp-cancel", timedelta(days=8), name="Subscription Cancelled")
    # Excluded: enterprise; and feature activated 10 days after sign-up.
    s.signup("bp-enterprise", 90, plan="enterprise")
    s.add("bp-late", timedelta(0), name="Signed Up")
    s.add("bp-late", timedelta(days=10), name="Feature Activated")

    # Abandoned cart.
    s.add("cart-abandoned", timedelta(0), name="Product Added", properties={"product_id": "p1"})
    s.add("cart-late-buy", timedelta(0), name="Product Added", properties={"product_id": "p2"})
    s.add("cart-late-buy", timedelta(hours=30), name="Order Completed",
          properties={"revenue": 20})
    s.add("cart-quick-buy", timedelta(0), name="Product Added", properties={"product_id": "p3"})
    s.add("cart-quick-buy", timedelta(hours=2), name="Order Completed",
          properties={"revenue": 20})

    # Portal onboarding (customers whose first order is not from a cart).
    s.add("portal-silent", timedelta(0), name="Order Completed", properties={"revenue": 99})
    s.add("portal-engaged", timedelta(0), name="Order Completed", properties={"revenue": 99})
    s.add("portal-engaged", timedelta(days=2), name="Signed In")
    s.add("portal-engaged", timedelta(days=2, minutes=5), name="Content Viewed",
          properties={"category": "videos", "seconds": 600})
    s.add("portal-engaged", timedelta(days=2, minutes=20), name="Content Viewed",
          properties={"category": "guides", "seconds": 100})

    # Step types: 22:00 in Berlin -> wait until 09:00 local; no click -> goto.
    s.add("steps-no-click", timedelta(hours=11), name="Test Started", tz="Europe/Berlin")
    s.add("steps-click", timedelta(hours=11), name="Test Started", tz="Europe/Berlin",
          traits={})
    s.add("steps-click", timedelta(hours=23, minutes=30), name="Test Clicked",
          tz="Europe/Berlin")
    # Across the DST change (Berlin: 2026-03-29 02:00 -> 03:00).
    s.add("steps-dst", timedelta(days=54, hours=11), name="Test Started", tz="Europe/Berlin")
    for i in range(200):
        s.add(f"split-{i}", timedelta(days=1, minutes=i), name="Test Started")
    # Two journeys want to send at the same moment.
    s.add("conflict", timedelta(days=3), name="Conflict Test")
    # In time order, as a live stream arrives (timers fire as event time passes).
    s.events.sort(key=lambda e: e["timestamp"])
    return s


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


@pytest.fixture(scope="module")
def outputs(broker, tmp_path_factory):
    """(replay outputs, live outputs) for the whole scenario stream."""
    tmp = tmp_path_factory.mktemp("scenarios")
    jdir = tmp / "journeys"
    shutil.copytree(ROOT / "journeys", jdir)
    for f in (ROOT / "tests" / "journeys").glob("*.yaml"):
        shutil.copy(f, jdir)
    stream = scenario_stream()
    events_file = tmp / "events.jsonl"
    events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in stream.events))
    cfg = tmp / "segue.yaml"
    prefix = "scn."
    # Journey mechanics only: no caps, no quiet hours, SMS allowed (test_policy.py covers
    # delivery policy).
    cfg.write_text(f"prefix: {prefix}\npartitions: 4\n"
                   "policy: {caps: {}, send_windows: {}, consent_defaults: {}}\n")

    replay_out = tmp / "replay"
    r = subprocess.run([sys.executable, "-m", "segue.cli", "replay", "--journeys", str(jdir),
                        "--events", str(events_file), "--out", str(replay_out), "--horizon",
                        HORIZON, "--config", str(cfg)], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    replay = replay_outputs(replay_out)

    from segue.broker import ensure_topics
    from segue.config import load_settings
    settings = load_settings(cfg)
    ensure_topics(broker.bootstrap, settings)
    produce_records(broker.bootstrap, settings.topics.events,
                    [(e["userId"], orjson.dumps(e)) for e in stream.events])
    r = subprocess.run([sys.executable, "-m", "segue.cli", "run", "--brokers", broker.bootstrap,
                        "--state-dir", str(tmp / "state"), "--config", str(cfg), "--journeys",
                        str(jdir), "--until-eof", "--horizon", HORIZON, "--progress-every", "0"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return replay, live_outputs(broker.bootstrap, settings.topics)


def _canon(records: list[dict]) -> Counter:
    return Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def test_replay_and_live_flow_emit_the_same_records(outputs):
    replay, live = outputs
    for name in replay:
        assert len(replay[name]) > 0 or name == "customer-events"
        assert _canon(replay[name]) == _canon(live[name]), name


def test_every_record_matches_its_published_schema(outputs):
    """Every step type's records, replay and live, against schemas/<topic>.schema.json."""
    from models.outputs import OUTPUT_MODELS

    checked = 0
    for side in outputs:
        for name, records in side.items():
            for r in records:
                OUTPUT_MODELS[name].model_validate(r)
                checked += 1
    assert checked > 100


def test_live_order_per_customer_matches_replay(outputs):
    """Per customer (and per topic: each channel is its own topic), the same order."""
    replay, live = outputs
    for name in ("dispatches", "decisions", "journey-events"):
        by_r, by_l = defaultdict(list), defaultdict(list)
        for r in replay[name]:
            by_r[(r["customer_id"], r.get("channel"))].append(r["idempotency_key"])
        for r in live[name]:
            by_l[(r["customer_id"], r.get("channel"))].append(r["idempotency_key"])
        assert by_r == by_l, name


def sends(replay, cid):
    """(day offset from T0, channel, template) of each dispatch, in order."""
    return [(round((d["at_ms"] - ms(T0)) / DAY, 3), d["channel"], d["template"])
            for d in replay["dispatches"] if d["customer_id"] == cid]


def jevents(replay, cid, kind=None):
    return [e for e in replay["journey-events"] if e["customer_id"] == cid
            and (kind is None or e["type"] == kind)]


def test_blueprint_high_adoption_csat_9_referral_then_retention(outputs):
    replay, _ = outputs
    got = sends(replay, "bp-high-csat9")
    a = 1 / 24  # entered one hour after T0 (Feature Activated)
    assert got[:7] == [
        (round(1 + a, 3), "email", "welcome-getting-started-guide"),
        (round(3 + a, 3), "in_app", "feature-tip-carousel-3-tips"),
        (round(5 + a, 3), "email", "advanced-features-youll-love"),
        (round(7 + a, 3), "push", "join-our-community"),
        (round(14 + a, 3), "email", "case-study-similar-company"),
        (round(21 + a, 3), "email", "hows-it-going-csat-survey"),
        (22.0, "email", "referral-program-invite-early-reward"),
    ]
    exits = jevents(replay, "bp-high-csat9", "journey.exited")
    assert [(e["journey"]["id"], e["reason"]) for e in exits][0] == (
        "activation-retention", "exit:reached_30_days")
    entered = [e["journey"]["id"] for e in jevents(replay, "bp-high-csat9", "journey.entered")]
    assert entered[:2] == ["activation-retention", "retention"]
    assert (round(30 + a, 3), "email", "monthly-tips-and-wins") in got
    first = next(d for d in replay["dispatches"] if d["customer_id"] == "bp-high-csat9")
    assert first["personalization"] == {"traits.company": "bp-high-csat9 Inc",
                                        "traits.industry": "software"}


def test_blueprint_high_adoption_csat_5_help_offer(outputs):
    replay, _ = outputs
    got = [t for _, _, t in sends(replay, "bp-high-csat5")]
    assert "personalized-help-offer-csm-intro" in got
    assert "referral-program-invite-early-reward" not in got


def test_blueprint_low_adoption_nurture_series(outputs):
    replay, _ = outputs
    a = 1 / 24
    got = sends(replay, "bp-low")[:8]
    assert got == [
        (round(1 + a, 3), "email", "getting-the-most-out-of-product"),
        (round(2 + a, 3), "in_app", "guided-tour-key-features"),
        (round(4 + a, 3), "email", "video-tutorial-top-3-use-cases"),
        (round(7 + a, 3), "push", "your-team-at-company-does-this"),
        (round(10 + a, 3), "email", "common-mistakes-and-how-to-avoid"),
        (round(14 + a, 3), "sms", "free-1-on-1-onboarding-call"),
        (round(21 + a, 3), "email", "product-update-new-feature"),
        (round(28 + a, 3), "email", "we-miss-you-win-back-offer"),
    ]


def test_blueprint_21_days_silent_moves_to_at_risk(outputs):
    replay, _ = outputs
    exits = jevents(replay, "bp-silent", "journey.exited")
    assert (exits[0]["journey"]["id"], exits[0]["reason"]) == (
        "activation-retention", "exit:inactive_21_days")
    # 21 days after its last activity (Feature Activated, one hour after T0).
    assert round((exits[0]["at_ms"] - ms(T0)) / DAY, 3) == round(21 + 1 / 24, 3)
    entered = [(e["journey"]["id"], e["reason"]) for e in
               jevents(replay, "bp-silent", "journey.entered")]
    assert ("at-risk", "from:activation-retention") in entered
    assert (round(21 + 1 / 24, 3), "email", "we-noticed-youve-been-away") in sends(replay,
                                                                                   "bp-silent")


def test_blueprint_adoption_over_80_moves_to_expansion_nba(outputs):
    replay, _ = outputs
    exits = jevents(replay, "bp-adoption-up", "journey.exited")
    assert exits[0]["reason"] == "exit:adoption_over_80"
    dec = [d for d in replay["decisions"] if d["customer_id"] == "bp-adoption-up"
           and d["journey"]["id"] == "expansion"]
    assert dec[0]["action"] == "upgrade_offer"
    nba = dec[0]["nba"]
    # No model promoted: inventory order; this decision did not explore (exploration 10 %).
    assert nba["policy"] == "inventory_order" and nba["model"] is None and not nba["explored"]
    assert [r["action"] for r in nba["ranked"]] == \
        ["upgrade_offer", "feature_spotlight", "roi_calculator"]
    assert nba["propensity"] == round(0.9 + 0.1 / 3, 6)
    assert nba["features"]["adoption_score"] > 80
    assert (5.0, "email", "upgrade-offer-advanced-plan") in sends(replay, "bp-adoption-up")


def test_blueprint_cancellation_ends_with_churn_analysis(outputs):
    replay, _ = outputs
    kinds = [e["type"] for e in jevents(replay, "bp-cancel")]
    assert "journey.churn_analysis" in kinds
    exits = jevents(replay, "bp-cancel", "journey.exited")
    assert exits[0]["reason"] == "exit:cancelled"
    assert all(day < 8 for day, _, _ in sends(replay, "bp-cancel"))


def test_blueprint_exclusion_and_entry_criteria(outputs):
    replay, _ = outputs
    for cid in ("bp-enterprise", "bp-late"):
        assert not [e for e in jevents(replay, cid, "journey.entered")
                    if e["journey"]["id"] == "activation-retention"], cid


def test_abandoned_cart_paths(outputs):
    replay, _ = outputs
    assert sends(replay, "cart-abandoned") == [(1.0, "email", "cart-reminder"),
                                               (2.0, "email", "cart-discount-10")]
    reminder = next(d for d in replay["dispatches"] if d["customer_id"] == "cart-abandoned")
    assert reminder["personalization"] == {"journey.trigger.product_id": "p1"}
    assert [t for _, _, t in sends(replay, "cart-late-buy") if t.startswith("cart")] == [
        "cart-reminder"]
    conv = jevents(replay, "cart-late-buy", "journey.converted")
    assert [(c["journey"]["id"], c["reason"]) for c in conv] == [("abandoned-cart",
                                                                  "goal:purchased")]
    assert not [t for _, _, t in sends(replay, "cart-quick-buy") if t.startswith("cart")]
    assert jevents(replay, "cart-quick-buy", "journey.converted")


def test_portal_onboarding_paths(outputs):
    replay, _ = outputs
    silent = [s for s in sends(replay, "portal-silent") if s[2].startswith("onboarding")
              or s[1] in ("inbox", "webhook")]
    assert silent == [
        (0.0, "email", "onboarding-1-welcome"),
        (0.0, "inbox", "portal-welcome-notification"),
        (0.0, "webhook", "dashboard-highlight-onboarding"),
        (7.0, "email", "onboarding-follow-up-portal-tour"),
        (10.0, "email", "onboarding-follow-up-need-help"),
    ]
    engaged = [s for s in sends(replay, "portal-engaged") if s[1] == "content"]
    assert engaged == [(5.0, "content", "recommend-videos")]  # most seconds: videos


def test_step_types_wait_until_local_morning_nba_and_goto(outputs):
    replay, _ = outputs
    # 21:00 UTC = 22:00 Berlin (CET) -> 09:00 Berlin next day = 08:00 UTC.
    steps = {e["journey"]["node"]: e for e in jevents(replay, "steps-no-click", "journey.step")}
    morning = datetime(2026, 2, 3, 8, 0, tzinfo=UTC)
    assert steps["morning"]["until_ms"] == ms(morning)
    hello = [d for d in replay["decisions"] if d["customer_id"] == "steps-no-click"
             and d["template"] == "good-morning"]
    assert [d["at_ms"] for d in hello] == [ms(morning)]
    assert steps["pick"]["action"] == "tip"  # vip_call is not eligible
    assert steps["jump"]["target"] == "step-target"
    entered = [e["journey"]["id"] for e in jevents(replay, "steps-no-click", "journey.entered")]
    assert entered == ["step-types", "step-target"]
    assert "thanks-for-clicking" not in [t for _, _, t in sends(replay, "steps-no-click")]
    clicked = jevents(replay, "steps-click", "journey.step")
    assert "thanks" in [e["journey"]["node"] for e in clicked]
    assert "jump" not in [e["journey"]["node"] for e in clicked]


def test_wait_until_local_time_across_dst(outputs):
    replay, _ = outputs
    steps = {e["journey"]["node"]: e for e in jevents(replay, "steps-dst", "journey.step")}
    # Entered 2026-03-28 21:00 UTC (22:00 CET); 09:00 on the 29th is CEST (UTC+2): 07:00 UTC.
    assert steps["morning"]["until_ms"] == ms(datetime(2026, 3, 29, 7, 0, tzinfo=UTC))


def test_split_and_holdout_are_stable_hashes_with_their_weights(outputs):
    replay, _ = outputs
    variants = Counter()
    holdout = set()
    for e in replay["journey-events"]:
        if e["customer_id"].startswith("split-") and e["type"] == "journey.step":
            if e["journey"]["node"] == "split":
                variants[e["variant"]] += 1
            if e["journey"]["node"] == "holdout" and e["holdout"]:
                holdout.add(e["customer_id"])
    assert set(variants) == {"a", "b"} and 70 <= variants["a"] <= 130
    assert 30 <= len(holdout) <= 90  # 30 % of 200
    dispatched = {d["customer_id"] for d in replay["dispatches"] if d["template"] ==
                  "good-morning"}
    held_back = {d["customer_id"] for d in replay["decisions"] if d["outcome"] == "holdout"
                 and d["template"] == "good-morning"}
    assert held_back == holdout  # control members get a 'holdout' decision, no dispatch
    assert not (dispatched & holdout)
    from operators.journeys import bucket
    assert all((bucket(c, "step-types", "holdout", "holdout") < 30) == (c in holdout)
               for c in (f"split-{i}" for i in range(200)))


def test_conflict_resolution_defers_the_lower_priority_send(outputs):
    replay, _ = outputs
    decs = [(d["journey"]["id"], d["outcome"], d["at_ms"] - ms(T0), d["reasons"])
            for d in replay["decisions"] if d["customer_id"] == "conflict"]
    three_days = 3 * DAY
    assert decs[0] == ("conflict-high", "send", three_days, ["ok"])
    assert decs[1] == ("conflict-low", "defer", three_days, ["conflict.priority:conflict-high"])
    assert decs[2] == ("conflict-low", "send", three_days + 3_600_000, ["ok"])
    assert [t for _, _, t in sends(replay, "conflict")] == ["high-priority", "low-priority"]
