"""Next best action: rationale from the model's own contributions, eligibility, backups,
training, promotion and reloading."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from models import features as F
from models.nba import DO_NOTHING, ModelRegistry, NbaModel, promote
from models.nba_train import Logged, TrainError, evaluate, train
from models.profile import from_plain, new_profile
from models.settings import NbaSettings, PolicySettings, Settings
from operators.journeys import bucket, condition
from operators.nba import Candidate, NbaDecider, Request
from operators.partition import Partition
from operators.policy import DeliveryPolicy
from state.store import PartitionStore
from tests.unit.test_processor import ev

PRICING = F.NAMES.index("pricing_views_7d")
ADOPTION = F.NAMES.index("adoption_score")
ACTIONS = ["upgrade_offer", "feature_tip", "content_recommendation", DO_NOTHING]


def _row(rng: random.Random) -> list[float]:
    row = [float(rng.randint(0, 20)) for _ in F.NAMES]
    row[PRICING] = float(rng.randint(0, 6))
    row[ADOPTION] = float(rng.randint(20, 100))
    for c in F.CATEGORICAL:
        row[F.NAMES.index(c)] = float(rng.randint(0, 3))
    return row


def _logged(n: int = 8000, seed: int = 3) -> Logged:
    """Randomised decisions: the upgrade offer converts customers who viewed the pricing page
    3+ times in 7 days; nothing else has an effect."""
    rng = random.Random(seed)
    log = Logged()
    for i in range(n):
        row = _row(rng)
        a = rng.choice(ACTIONS)
        p = 0.03 + (0.35 if a == "upgrade_offer" and row[PRICING] >= 3 else 0.0)
        log.rows.append(row)
        log.decided.append(a)
        log.received.append(a)
        log.eligible.append(list(ACTIONS))
        log.explored.append(True)
        log.customers.append(f"c{i}")
        log.at.append(i * 1000)
        log.reward.append(int(rng.random() < p))
        log.churn.append(int(rng.random() < 0.2))
        log.upgrade.append(log.reward[-1])
        log.revenue.append(0.0)
    return log


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    path = train(_logged(), root, NbaSettings(), source="unit test")
    promote(root, path.name)
    return path


def _decider(exploration: float = 0.0, **kw) -> NbaDecider:
    nba = NbaSettings(exploration=exploration, **kw)
    return NbaDecider(nba, condition, DeliveryPolicy(PolicySettings()).tz, bucket)


def _cands(nba: NbaSettings, names=ACTIONS) -> list[Candidate]:
    out = []
    for n in names:
        a = nba.action(n)
        out.append(Candidate(n, a.channel, a.template, a.cost, a))
    return out


def test_rationale_names_the_features_that_moved_the_score(trained):
    model = NbaModel(trained)
    row = _row(random.Random(1))
    row[PRICING] = 5.0
    d = _decider()
    rec = d.decide([Request(("c",), row, {}, _cands(d.s), {})], model=model)[0]
    top = rec["ranked"][0]
    assert top["action"] == "upgrade_offer" and top["uplift"] > 0.1
    assert top["rationale"][0].startswith("pricing page viewed 5× in 7 days (+")
    # The contributions are the model's own: with the action's effect they add up to the
    # difference in raw score between the action and doing nothing.
    exp = model.explain([row], ["upgrade_offer"])[0]
    code = model.code
    x = np.array([[*row, code["upgrade_offer"]], [*row, code[DO_NOTHING]]])
    raw = model.uplift.predict(x, raw_score=True)
    assert sum(c for _, _, c in exp.features) + exp.action_effect == \
        pytest.approx(raw[0] - raw[1], abs=1e-6)
    # And the named feature really moves it: without the pricing views the uplift is gone.
    quiet = list(row)
    quiet[PRICING] = 0.0
    rec0 = d.decide([Request(("c",), quiet, {}, _cands(d.s), {})], model=model)[0]
    u0 = {r["action"]: r["uplift"] for r in rec0["ranked"]}.get("upgrade_offer", 0.0)
    assert u0 < top["uplift"] / 3
    assert rec["features"]["pricing_views_7d"] == 5.0 and rec["model"] == trained.name


def test_eligibility_rules_and_ineligible_actions_never_chosen():
    nba = NbaSettings(actions=[
        {"name": "upgrade_offer", "channel": "email", "plans": ["starter", "pro"]},
        {"name": "discount", "channel": "email", "vip": "never"},
        {"name": "vip_call", "channel": "webhook", "vip": "only"},
        {"name": "tip", "channel": "in_app", "stages": ["activation"]},
        {"name": "webinar", "channel": "email", "blackout": ["2026-03-01..2026-03-03"]},
        {"name": "survey", "channel": "email", "when": "count('Ticket Created', '30d') > 0"},
        {"name": "do_nothing", "channel": "none"},
    ], exploration=1.0)
    d = NbaDecider(nba, condition, DeliveryPolicy(PolicySettings()).tz, bucket)
    from operators.journeys import JourneyEngine, JourneyRegistry

    eng = JourneyEngine(JourneyRegistry.of([]))
    p = new_profile("user:u", 0)
    p.traits = {"plan": "enterprise", "vip": True}
    p.lifecycle.stage = "retention"
    at = 1772452800000  # 2026-03-02 12:00 UTC
    ok, why = d.eligibility(p, at, eng.context(p, at, None), d.candidates([]))
    assert [c.name for c in ok] == ["vip_call", "do_nothing"]
    assert why == {"upgrade_offer": "plan:enterprise", "discount": "vip.excluded",
                   "tip": "stage:retention", "webinar": "blackout:2026-03-02",
                   "survey": "condition"}
    # Exploring every decision (exploration 1.0): the pick is always among the eligible.
    reqs = [Request((f"c{i}",), [0.0] * len(F.NAMES), {}, ok, why) for i in range(300)]
    picks = {r["ranked"][0]["action"] for r in d.decide(reqs)}
    assert picks == {"vip_call", "do_nothing"}
    for r in d.decide(reqs):
        assert r["explored"] and r["propensity"] == pytest.approx(1.0 / 2)


ALWAYS_ON = {"events": ["Signed In"], "every": 60}


def _processor(tmp_path: Path, nba: dict) -> Partition:
    settings = Settings.model_validate({
        "nba": {"always_on": ALWAYS_ON, **nba},
        "policy": {"caps": {"email": {"day": 1}}, "send_windows": {}}})
    from operators.journeys import journey_registry

    return Partition(PartitionStore(tmp_path / "p0"), settings,
                              journey_registry(settings, None, None))


def make_event(cid: str, name: str, ts: int, offset: int):
    return ev(offset, name, cid=cid, ts=ts)


def _decisions(entries) -> list[dict]:
    return [orjson.loads(o.value) for _, o in entries if o.topic.endswith("decisions")]


def test_a_capped_channels_action_falls_to_the_next_backup(tmp_path):
    # The inventory order ranks (no bandit): the first choice is known, its backup tested.
    proc = _processor(tmp_path, {"exploration": 0.0, "cold_start": "inventory", "actions": [
        {"name": "email_tips", "channel": "email", "template": "tips"},
        {"name": "in_app_tip", "channel": "in_app", "template": "tip"},
        {"name": "do_nothing", "channel": "none"}]})
    t0 = 1767614400000  # 2026-01-05 12:00 UTC
    first = _decisions(proc.process([make_event("u1", "Signed In", t0, offset=0)]))
    second = _decisions(proc.process([make_event("u1", "Signed In", t0 + 120_000, offset=1)]))
    assert [(d["outcome"], d["action"], d["channel"]) for d in first] == \
        [("send", "email_tips", "email")]
    # One email a day: the second decision's first choice is capped, the backup goes out.
    (d,) = second
    assert (d["outcome"], d["action"], d["channel"]) == ("send", "in_app_tip", "in_app")
    assert d["nba"]["ranked"][0]["action"] == "email_tips"
    assert d["nba"]["skipped"] == [{"action": "email_tips", "channel": "email",
                                    "reasons": ["cap.email.day", "fallback.email->in_app"]}]


def test_decisions_are_batched_and_do_not_depend_on_batch_boundaries(tmp_path, trained):
    nba = {"exploration": 0.2, "models_dir": str(trained.parent)}
    evs = [make_event(f"u{i % 40}", "Signed In", 1767614400000 + i * 90_000, offset=i)
           for i in range(200)]
    one = _processor(tmp_path / "a", nba)
    together = _decisions(one.process(evs))
    assert one.engine.nba.scored == len(together) > 40  # noqa: SIM300
    apart = []
    two = _processor(tmp_path / "b", nba)
    for i in range(0, 200, 7):
        apart += _decisions(two.process(evs[i:i + 7]))
    key = lambda d: d["idempotency_key"]  # noqa: E731
    assert sorted(together, key=key) == sorted(apart, key=key)
    assert {d["nba"]["model"] for d in together} == {trained.name}


def test_promoted_model_reloads_without_restart(tmp_path, trained):
    root = tmp_path / "models"
    root.mkdir()
    reg = ModelRegistry(root, reload_s=0.0)
    assert reg.current() is None
    import shutil

    shutil.copytree(trained, root / "v001")
    promote(root, "v001")
    assert reg.current().version == "v001"
    (root / "v002").mkdir()
    (root / "v002" / "meta.json").write_text("{broken")
    with pytest.raises(Exception, match="meta.json"):
        promote(root, "v002")  # a version that does not load is never promoted
    assert reg.current().version == "v001"


def test_training_refuses_without_a_control_and_evaluation_needs_exploration(tmp_path):
    log = _logged(600)
    log.received = ["upgrade_offer"] * len(log)
    with pytest.raises(TrainError, match="do_nothing"):
        train(log, tmp_path, NbaSettings())
    log = _logged(3000)
    model = NbaModel(train(log, tmp_path, NbaSettings()))
    log.explored = [False] * len(log)
    with pytest.raises(TrainError, match="explored"):
        evaluate(model, None, log, NbaSettings())


def test_offline_evaluation_prefers_the_policy_that_converts_more(trained):
    held_out = _logged(6000, seed=11)
    res = evaluate(NbaModel(trained), None, held_out, NbaSettings(
        actions=[{"name": n, "channel": "email" if n != DO_NOTHING else "none"}
                 for n in ACTIONS]))
    # Inventory order sends the upgrade offer to everyone; the model only where it works,
    # and content to the rest: the same conversions, so no significant difference ...
    assert res["baseline"]["version"] == "inventory_order"
    assert res["candidate"]["ips"]["n"] == 6000
    cand, base = res["candidate"]["dr"]["mean"], res["baseline"]["dr"]["mean"]
    assert abs(cand - base) < 0.03
    # ... while a model against doing nothing is clearly better.
    worst = evaluate(NbaModel(trained), None, held_out, NbaSettings(actions=[
        {"name": DO_NOTHING, "channel": "none"},
        *[{"name": n, "channel": "email"} for n in ACTIONS if n != DO_NOTHING]]))
    assert worst["difference"]["dr"]["ci95"][0] > 0.05


def test_evaluation_and_the_gate_judge_net_value_not_conversions(trained):
    """Net value is the objective (issue 18, item 1): when every action costs more than the
    conversions it can gain are worth, the inventory order (which ignores cost) converts
    more, yet the model, which then sends nothing, is better on net value, and the gate
    promotes on net value."""
    from models.nba_train import promotion_gate

    held_out = _logged(6000, seed=12)
    nba = NbaSettings(conversion_value=100.0, actions=[
        {"name": n, "channel": "email" if n != DO_NOTHING else "none",
         "cost": 0.0 if n == DO_NOTHING else 60.0} for n in ACTIONS])
    res = evaluate(NbaModel(trained), None, held_out, nba)
    assert res["candidate"]["actions"] == {DO_NOTHING: 6000}
    assert res["difference"]["dr"]["ci95"][1] < 0  # fewer conversions ...
    net = res["difference"]["net_value"]
    assert net["ci95"][0] > 30  # ... but more net value: a send costs 60, gains < 30
    assert abs(res["candidate"]["net_value"]["mean"]) < 1e-9  # doing nothing: 0 by definition
    gate = promotion_gate(NbaModel(trained), [None], held_out, nba)
    assert gate["passed"], gate["why"]
    assert gate["against"][0]["net_value_difference"] == net


def test_every_profile_a_batch_changes_gets_scores_as_of_its_last_event(tmp_path, trained):
    """Scores for every customer, not only those given an NBA decision (issue 18, item 4):
    one batched call per micro-batch, the same numbers the model gives that profile."""
    from state.inspect import iter_profiles, profile_view

    t0 = 1767614400000
    evs = [make_event(f"s{i % 30}", "Report Exported", t0 + i * 60_000, offset=i)
           for i in range(90)]
    proc = _processor(tmp_path / "on", {"exploration": 0.0, "models_dir": str(trained.parent)})
    proc.process(evs[:45])
    proc.process(evs[45:])
    assert proc.stats["scores_refreshed"] >= 60  # every touched profile, in both batches
    proc.store.close()
    model = NbaModel(trained)
    profiles = [p for p in iter_profiles(tmp_path / "on") if p["id"].startswith("s")]
    assert len(profiles) == 30
    for p in profiles:
        s = p["scores"]
        want = model.scores([F.build(from_plain(p), p["last_seen"])[0]])[0]
        # (no CLV model: the unit test's log has no revenue)
        assert {k: s[k] for k in want} == want and set(want) == set(model.scorers) == {
            "churn_risk", "upgrade_probability"}
        assert s["model"] == trained.name and s["at_ms"] == p["last_seen"]
        assert profile_view(p)["scores"] == s  # what segue profile prints
    off = _processor(tmp_path / "off", {"exploration": 0.0})
    off.process(evs)
    off.store.close()
    assert not any("scores" in p for p in iter_profiles(tmp_path / "off"))


def test_scores_are_refreshed_only_when_what_they_are_computed_from_changed():
    """A batch that touches a profile without changing its score inputs (a journey timer, a
    claim answered) keeps its scores: the same model would give the same numbers."""
    from types import SimpleNamespace

    from msgspec.structs import replace

    from models.profile import Lifecycle, new_profile
    from operators.customer import scores

    model = SimpleNamespace(version="v001")
    p = new_profile("user:u1", 1_000)
    p.scores = {"churn_risk": 0.2, "model": "v001", "at_ms": 1_000}
    before = (scores.inputs(p), p.scores)
    assert not scores.stale(p, model, before)
    assert scores.stale(p, model, None)  # new to the batch's store
    assert scores.stale(p, SimpleNamespace(version="v002"), before)  # another model
    p.journeys["j"] = {"step": "wait"}  # journeys are not a score input
    assert not scores.stale(p, model, before)
    changed = [("last_seen", 2_000), ("events", 1), ("first_seen", 500)]
    for field, value in changed:
        q = replace(p, **{field: value})
        assert scores.stale(q, model, before), field
    staged = replace(p, lifecycle=Lifecycle(stage="active", since=1_500, changes=1))
    assert scores.stale(staged, model, before)  # a stage change (days in stage, changes)
    decided = replace(p, scores=dict(p.scores))  # rewritten by an NBA decision
    assert scores.stale(decided, model, before)


def test_a_condition_on_scores_computes_them_at_its_moment_only():
    from models.conditions import Context

    calls = []

    def score() -> dict:
        calls.append(1)
        return {"churn_risk": 0.7}

    ctx = Context(traits={"plan": "pro"}, scores={"churn_risk": 0.1}, score=score)
    assert condition("traits.plan == 'pro'")(ctx) and not calls  # no model call unless read
    assert condition("scores.churn_risk > 0.5")(ctx)  # fresh, not the stored 0.1
    assert condition("scores.churn_risk > 0.5")(ctx) and len(calls) == 1  # once per context


def test_thompson_sampling_takes_what_converts_and_logs_its_propensity():
    from operators.nba_bandit import thompson

    prior = {"upgrade_offer": (300, 60), "feature_tip": (300, 9), DO_NOTHING: (300, 6)}
    names = ["upgrade_offer", "feature_tip", DO_NOTHING]
    picks = [thompson(("c", i), prior, names, [0.1, 0.01, 0.0], 100.0, DO_NOTHING)
             for i in range(200)]
    first = [names[order[0]] for order, _, _ in picks]
    assert first.count("upgrade_offer") >= 190  # 20 % against 3 %: nearly always
    for order, probs, _ in picks:
        assert 0 < probs[order[0]] <= 1 and abs(sum(probs) - 1) < 1e-9
    assert thompson(("c", 7), prior, names, [0.1, 0.01, 0.0], 100.0, DO_NOTHING) == picks[7]
    # Nothing seen yet: every action is about as likely as any other.
    fresh = [names[thompson(("c", i), {}, names, [0.0] * 3, 100.0, DO_NOTHING)[0][0]]
             for i in range(300)]
    assert min(fresh.count(n) for n in names) > 60


def _cold(tmp_path: Path, evs: list, cut: int | None = None) -> tuple[list[dict], Partition]:
    proc = _processor(tmp_path, {"exploration": 0.0, "cold_start": "thompson",
                                 "goal_events": ["Subscription Upgraded"]})
    out = []
    step = cut or len(evs)
    for i in range(0, len(evs), step):
        out += _decisions(proc.process(evs[i:i + step]))
    return out, proc


def _cold_stream() -> list:
    """Customers signing in (an always-on decision each), a third of them converting an hour
    after their decision, then signing in again a day later (new decisions)."""
    t0 = 1767614400000
    raw = []
    for day in range(3):
        for i in range(60):
            at = t0 + day * 86_400_000 + i * 60_000
            raw.append((at, f"u{i}", "Signed In"))
            if i % 3 == 0:
                raw.append((at + 3_600_000, f"u{i}", "Subscription Upgraded"))
    return [make_event(cid, name, at, offset=n) for n, (at, cid, name) in enumerate(sorted(raw))]


def test_the_cold_start_bandit_learns_from_conversions_and_its_counts_add_up(tmp_path):
    from operators.nba_bandit import Bandit
    from state import keys

    evs = _cold_stream()
    decisions, proc = _cold(tmp_path / "a", evs)
    nba = [d for d in decisions if d["nba"]]
    first = {}
    for d in nba:  # a deferred send logs the same decision again when it goes out
        first.setdefault(d["dispatch_id"], d)
    assert len(first) >= 150 and {d["nba"]["policy"] for d in first.values()} == {"thompson"}
    assert all(0 < d["nba"]["propensity"] <= 1 for d in first.values())
    arms = Bandit(proc.store.get(keys.BANDIT)).arms
    decided = sum(n for seg in arms.values() for n, _ in seg.values())
    converted = sum(c for seg in arms.values() for _, c in seg.values())
    assert decided == len(first)
    # Every conversion an hour after a decision is credited to that decision's action.
    goals = sum(1 for e in evs if e.key == "Subscription Upgraded")
    assert converted == goals
    # Learned: the counts are there for the next decisions (and survive a restart: stored).
    assert proc.engine.nba.bandit.arms == arms and converted > 0


def test_cold_start_decisions_do_not_depend_on_batch_boundaries(tmp_path):
    evs = _cold_stream()
    together, _ = _cold(tmp_path / "one", evs)
    apart, _ = _cold(tmp_path / "many", evs, cut=7)
    key = lambda d: d["idempotency_key"]  # noqa: E731
    assert sorted(together, key=key) == sorted(apart, key=key)
    assert len(together) > 150
