"""Training and offline evaluation of next-best-action models from logged decisions.

The flow logs, in every NBA decision, the feature row it scored (``nba.features``), the
eligible actions, whether it explored and the probability of the action it took. Training
joins those rows with the outcomes found in the events that followed (a goal event within
``nba.horizon_s``), so the trainer never rebuilds features itself (no train/serve skew).

Evaluation estimates a policy's conversion rate on the *explored* decisions only, where the
action was drawn uniformly among the eligible ones (propensity 1/K): inverse propensity
(IPS) and doubly robust (DR, with the candidate's own model as the outcome model), each with
a 95 % normal-approximation confidence interval; the difference candidate − baseline is paired
per decision, so its interval is narrower than the two intervals side by side. The objective
is net value (``nba.conversion_value`` × incremental conversions − the cost of the actions
sent): the number of trees is chosen by it, and the promotion gate compares it.
"""

from __future__ import annotations

import hashlib
import math
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import orjson

from models import features as F
from models.nba import ACTION_FEATURE, DO_NOTHING, SCORE_MODELS, NbaModel
from models.settings import NbaSettings

CANCEL = "Subscription Cancelled"
UPGRADE = "Subscription Upgraded"
ORDER = "Order Completed"
PARAMS = {
    "objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "max_depth": 5,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.9, "lambda_l2": 1.0, "max_cat_to_onehot": 16, "verbose": -1,
    "deterministic": True, "force_row_wise": True, "num_threads": 2, "seed": 7,
}


class TrainError(Exception):
    """Training or evaluation cannot go on; the message says why."""


@dataclass
class Logged:
    """One row per NBA decision (the first record of each ``dispatch_id``)."""

    rows: list[list[float]] = field(default_factory=list)
    decided: list[str] = field(default_factory=list)     # the primary action decided
    received: list[str] = field(default_factory=list)    # what went out (else do_nothing)
    eligible: list[list[str]] = field(default_factory=list)
    explored: list[bool] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    at: list[int] = field(default_factory=list)
    reward: list[int] = field(default_factory=list)
    churn: list[int] = field(default_factory=list)
    upgrade: list[int] = field(default_factory=list)
    revenue: list[float] = field(default_factory=list)
    skipped_lines: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: list[int]) -> Logged:
        """The decisions at positions ``keep``, in that order."""
        out = Logged(skipped_lines=self.skipped_lines)
        for name in ("rows", "decided", "received", "eligible", "explored", "customers", "at",
                     "reward", "churn", "upgrade", "revenue"):
            column = getattr(self, name)
            setattr(out, name, [column[i] for i in keep])
        return out


def outside_training(logged: Logged, *models: NbaModel | None) -> tuple[Logged, int]:
    """The decisions none of ``models`` was trained on (by time: a model's ``meta.json``
    names its data range), and how many were left out. Raises ``TrainError`` when none is
    left: an evaluation on a model's own training data says nothing about new decisions
    (on the simulator it overstated the policy value by a third)."""
    ranges = [(m.version, m.meta["data"]["from_ms"], m.meta["data"]["to_ms"])
              for m in models if m is not None and "data" in m.meta]
    keep = [i for i, t in enumerate(logged.at)
            if not any(lo <= t <= hi for _, lo, hi in ranges)]
    if not keep and len(logged):
        names = ", ".join(f"{v} ({_day(lo)} to {_day(hi)})" for v, lo, hi in ranges)
        raise TrainError(f"all {len(logged):,} decisions fall inside the training data of "
                         f"{names}: evaluate on decisions logged after it")
    return logged.subset(keep), len(logged) - len(keep)


def _day(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000))


def _lines(path: Path, bad: list[int]):
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                d = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad[0] += 1
                continue
            if isinstance(d, dict):
                yield d
            else:
                bad[0] += 1


def _ts(ev: dict) -> int | None:
    from datetime import datetime

    t = ev.get("timestamp")
    if not isinstance(t, str):
        return None
    try:
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def nba_decisions(path: Path, bad: list[int] | None = None) -> dict[str, tuple[dict, str]]:
    """Each next-best-action decision of a decisions file, by dispatch id: its first record
    (the moment it was decided, with the logged features) and the action that went out (the
    first ``send``; ``do_nothing`` when nothing did)."""
    first: dict[str, dict] = {}
    sent: dict[str, str] = {}
    for rec in _lines(path, bad if bad is not None else [0]):
        logged = rec.get("nba")
        did = rec.get("dispatch_id")
        if not isinstance(logged, dict) or not isinstance(did, str) or "features" not in logged:
            continue
        first.setdefault(did, rec)
        if rec.get("outcome") == "send" and did not in sent:
            sent[did] = rec.get("action") or DO_NOTHING
    return {did: (rec, sent.get(did, DO_NOTHING)) for did, rec in first.items()}


def taken_actions(path: Path) -> list[dict]:
    """The first record of each decision with ``action`` set to what went out (what the
    simulator's response model answers)."""
    return [dict(rec, action=action) for rec, action in nba_decisions(path).values()]


def load_logged(from_dir: str | Path, events: list[str | Path], nba: NbaSettings) -> Logged:
    """Decisions of ``from_dir/decisions.jsonl`` joined with outcomes from ``events``."""
    d = Path(from_dir)
    path = d / "decisions.jsonl"
    if not path.is_file():
        raise TrainError(f"{path}: no such file (a `segue replay --out` folder, or a dump "
                         "of the decisions topic, is expected)")
    bad = [0]
    decided = nba_decisions(path, bad)
    if not decided:
        raise TrainError(f"{path}: no next-best-action decisions with logged features")
    wanted = {r["customer_id"] for r, _ in decided.values()}
    goals = set(nba.goal_events)
    times: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        ep = Path(e)
        if not ep.is_file():
            raise TrainError(f"{ep}: no such events file")
        for ev in _lines(ep, bad):
            cid = ev.get("userId") or ev.get("anonymousId")
            if cid not in wanted:
                continue
            t = _ts(ev)
            if t is None:
                continue
            name = ev.get("event")
            per = times[cid]
            per["any"].append(t)
            if name in goals:
                per["goal"].append(t)
            if name == CANCEL:
                per["cancel"].append(t)
            if name == UPGRADE:
                per["upgrade"].append(t)
            if name == ORDER:
                rev = (ev.get("properties") or {}).get("revenue")
                if isinstance(rev, int | float):
                    per["order"].append((t, float(rev)))
    for per in times.values():
        for v in per.values():
            v.sort()
    h = nba.horizon_s * 1000
    out = Logged(skipped_lines=bad[0])

    def within(ts: list[int], at: int) -> bool:
        i = bisect_right(ts, at)
        return i < len(ts) and ts[i] <= at + h

    for did in sorted(decided, key=lambda k: (decided[k][0]["at_ms"], k)):
        rec, received = decided[did]
        nba_rec = rec["nba"]
        at = rec["at_ms"]
        per = times.get(rec["customer_id"], {})
        out.rows.append(F.from_dict(nba_rec["features"]))
        ranked = nba_rec.get("ranked") or []
        out.decided.append(ranked[0]["action"] if ranked else DO_NOTHING)
        out.received.append(received)
        out.eligible.append(list(nba_rec.get("eligible") or []))
        out.explored.append(bool(nba_rec.get("explored")))
        out.customers.append(rec["customer_id"])
        out.at.append(at)
        out.reward.append(int(within(per.get("goal", []), at)))
        out.upgrade.append(int(within(per.get("upgrade", []), at)))
        out.churn.append(int(within(per.get("cancel", []), at) or
                             not within(per.get("any", []), at)))
        out.revenue.append(sum(v for t, v in per.get("order", []) if at < t <= at + h))
    return out


def _holdout(customer: str) -> bool:
    """A stable 20 % of customers for validation."""
    return hashlib.blake2b(customer.encode(), digest_size=2).digest()[0] < 51


def _dataset(x: np.ndarray, y: np.ndarray, cats: list[int]) -> lgb.Dataset:
    return lgb.Dataset(x, label=y, categorical_feature=cats, free_raw_data=False,
                       params={"verbose": -1, "max_bin": 63})


def _fit(params: dict, x: np.ndarray, y: np.ndarray, valid: np.ndarray, cats: list[int],
         rounds: int) -> tuple[lgb.Booster, dict]:
    tr = _dataset(x[~valid], y[~valid], cats)
    va = _dataset(x[valid], y[valid], cats)
    ev: dict = {}
    booster = lgb.train(params, tr, num_boost_round=rounds, valid_sets=[va],
                        valid_names=["valid"],
                        callbacks=[lgb.early_stopping(100, first_metric_only=True,
                                                      verbose=False),
                                   lgb.record_evaluation(ev)])
    metrics = {k: round(float(v[booster.best_iteration - 1]), 5)
               for k, v in ev.get("valid", {}).items() if v}
    metrics["trees"] = booster.best_iteration
    return booster, metrics


def select_trees(booster: lgb.Booster, rows: np.ndarray, none_code: int, taken: np.ndarray,
                 r: np.ndarray, k: np.ndarray, cost: np.ndarray, eligible: np.ndarray,
                 value: float, rounds: int, step: int = 25) -> tuple[int, dict[str, float]]:
    """How many trees of ``booster`` (an S-learner, action code in the last column) make the
    best policy: the doubly robust estimate of the greedy policy's net value per decision
    (``value`` × its conversion rate − the cost of what it sends; the conversions of doing
    nothing are the same for every policy, so they drop out of the comparison) on held-out
    randomised decisions (``taken`` drawn uniformly among ``k`` eligible actions, outcome
    ``r``), every ``step`` trees, smoothed over three neighbours (log loss stops far too early
    for uplift, and the curve is noisy near its flat top)."""
    n, n_actions = eligible.shape
    curve: dict[int, float] = {}
    for it in range(step, rounds + 1, step):
        p = np.column_stack([booster.predict(np.column_stack([rows, np.full(n, j)]),
                                             num_iteration=it, **{"num_threads": 2})
                             for j in range(n_actions)])
        v = (p - p[:, [none_code]]) * value - cost
        v[~eligible] = -np.inf
        pi = v.argmax(axis=1)
        q_pi = p[np.arange(n), pi]
        q_taken = p[np.arange(n), taken]
        curve[it] = float((value * (q_pi + (pi == taken) * k * (r - q_taken)) - cost[pi]).mean())
    its = sorted(curve)
    smooth = {it: sum(curve[j] for j in its[max(i - 1, 0):i + 2]) /
              len(its[max(i - 1, 0):i + 2]) for i, it in enumerate(its)}
    best = max(its, key=lambda it: (smooth[it], -it))
    return best, {str(it): round(v, 4) for it, v in curve.items()}


def _fit_uplift(params: dict, x: np.ndarray, y: np.ndarray, valid: np.ndarray, cats: list[int],
                rounds: int, logged: Logged, actions: list[str], nba: NbaSettings
                ) -> tuple[lgb.Booster, dict]:
    """Fit on the training customers, choose the number of trees by policy value on the
    held-out customers' explored decisions (:func:`select_trees`), then fit again on all
    decisions with that many trees."""
    booster = lgb.train(params, _dataset(x[~valid], y[~valid], cats), num_boost_round=rounds)
    vidx = np.flatnonzero(valid & np.asarray(logged.explored))
    metrics: dict[str, Any] = {}
    trees = rounds
    if len(vidx) >= 100:
        code = {a: i for i, a in enumerate(actions)}
        cost = np.asarray([(nba.action(a).cost if nba.action(a) else 0.0) for a in actions])
        elig = np.zeros((len(vidx), len(actions)), dtype=bool)
        for j, i in enumerate(vidx):
            for a in logged.eligible[i]:
                if a in code:
                    elig[j, code[a]] = True
        elig[:, code[DO_NOTHING]] = True
        taken = np.asarray([code.get(logged.decided[i], code[DO_NOTHING]) for i in vidx])
        kk = np.asarray([max(len(logged.eligible[i]), 1) for i in vidx], dtype=np.float64)
        trees, curve = select_trees(booster, x[vidx, :-1], code[DO_NOTHING], taken, y[vidx],
                                    kk, cost, elig, nba.conversion_value, rounds)
        metrics["net_value_dr_by_trees"] = curve
    pred = booster.predict(x[valid], num_iteration=trees)
    eps = 1e-12
    metrics["binary_logloss"] = round(float(-np.mean(y[valid] * np.log(pred + eps) +
                                                     (1 - y[valid]) * np.log(1 - pred + eps))), 5)
    metrics["auc"] = round(_auc(y[valid], pred), 5)
    metrics["trees"] = trees
    final = lgb.train(params, _dataset(x, y, cats), num_boost_round=trees)
    return final, metrics


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _next_version(root: Path) -> str:
    n = 0
    for p in root.glob("v*"):
        try:
            n = max(n, int(p.name[1:4]))
        except ValueError:
            continue
    return f"v{n + 1:03d}"


def train(logged: Logged, out_root: str | Path, nba: NbaSettings, source: str = "",
          rounds: int = 400, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Fit the uplift model and the profile scores; write a new version folder.
    ``progress(stage, done, total)`` is told as each model starts and when all are done."""
    stages = 1 + len(SCORE_MODELS)

    def told(stage: str, done: int) -> None:
        if progress is not None:
            progress(stage, done, stages)

    n = len(logged)
    if n < 200:
        raise TrainError(f"only {n} decisions: too few to train on (at least 200)")
    actions = sorted(set(logged.received) | {DO_NOTHING})
    counts = Counter(logged.received)
    if counts[DO_NOTHING] == 0:
        raise TrainError("no decision went without an action: keep 'do_nothing' in the "
                         "inventory and exploration on, so there is a control to measure "
                         "uplift against")
    code = {a: i for i, a in enumerate(actions)}
    rows = np.asarray(logged.rows, dtype=np.float64)
    valid = np.array([_holdout(c) for c in logged.customers])
    if valid.all() or not valid.any():
        raise TrainError("too few customers to hold some out for validation")
    cat_idx = [F.NAMES.index(c) for c in F.CATEGORICAL]
    x = np.column_stack([rows, [code[a] for a in logged.received]])
    y = np.asarray(logged.reward, dtype=np.float64)
    params = dict(PARAMS, metric=["binary_logloss", "auc"])
    if y.sum() == 0:
        raise TrainError("no conversions within the horizon: nothing to learn from")
    told(f"uplift model ({len(logged):,} decisions)", 0)
    uplift, up_metrics = _fit_uplift(params, x, y, valid, [*cat_idx, len(F.NAMES)], rounds,
                                     logged, actions, nba)
    root = Path(out_root)
    root.mkdir(parents=True, exist_ok=True)
    version = _next_version(root)
    tmp = root / f".{version}.tmp"
    tmp.mkdir(exist_ok=True)
    uplift.save_model(str(tmp / "uplift.txt"))
    metrics: dict[str, Any] = {"uplift": up_metrics}
    labels = {"churn_risk": (logged.churn, "binary"), "upgrade_probability":
              (logged.upgrade, "binary"), "clv": (logged.revenue, "regression")}
    for i, name in enumerate(SCORE_MODELS, 1):
        told(f"{name} model", i)
        lab, objective = labels[name]
        yy = np.asarray(lab, dtype=np.float64)
        if np.unique(yy).size < 2:
            metrics[name] = "skipped: one label value only"
            continue
        p = dict(PARAMS, objective=objective,
                 metric=["binary_logloss", "auc"] if objective == "binary" else ["l2"])
        booster, m = _fit(p, rows, yy, valid, cat_idx, rounds)
        booster.save_model(str(tmp / f"{name}.txt"), num_iteration=booster.best_iteration)
        metrics[name] = m
    body = (tmp / "uplift.txt").read_bytes()
    meta = {
        "version": version,
        "content_sha256": hashlib.sha256(body).hexdigest()[:16],
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "learner": "S-learner: one LightGBM classifier, action as a categorical feature",
        "features_version": F.VERSION,
        "features": list(F.NAMES) + [ACTION_FEATURE],
        "categorical": list(F.CATEGORICAL) + [ACTION_FEATURE],
        "actions": actions,
        "goal_events": list(nba.goal_events),
        "horizon_s": nba.horizon_s,
        "source": source,
        "data": {"decisions": n, "from_ms": min(logged.at), "to_ms": max(logged.at),
                 "conversions": int(y.sum()), "explored": int(sum(logged.explored)),
                 "by_action": dict(sorted(counts.items())),
                 "validation_customers_share": round(float(valid.mean()), 3)},
        "metrics": metrics,
        "params": {k: v for k, v in PARAMS.items() if k != "verbose"},
    }
    (tmp / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    final = root / version
    tmp.rename(final)
    told("written", stages)
    return final


# ----- offline policy evaluation ---------------------------------------------------------------
def greedy_actions(model: NbaModel | None, logged: Logged, nba: NbaSettings,
                   idx: list[int]) -> list[str]:
    """The action the live flow would execute (no exploration) for each logged row in
    ``idx``: the same ranking code the flow runs."""
    from operators.nba import Candidate, NbaDecider, Request

    s = nba.model_copy(update={"exploration": 0.0, "models_dir": None})
    decider = NbaDecider(s, None, None, lambda *a: 0.0)
    reqs = []
    order = {a.name: k for k, a in enumerate(s.actions)}
    for i in idx:
        cands = []
        for name in sorted(logged.eligible[i], key=lambda n: order.get(n, len(order))):
            a = s.action(name)
            cands.append(Candidate(name, a.channel if a else "email",
                                   (a.template if a else "") or name, a.cost if a else 0.0, a))
        reqs.append(Request((i,), logged.rows[i], {}, cands, {}))
    recs = decider.decide(reqs, model=model, explain=False) if model is not None else \
        decider.decide(reqs, explain=False)
    return [r["ranked"][0]["action"] if r["ranked"] else DO_NOTHING for r in recs]


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    n: int

    @staticmethod
    def of(terms: np.ndarray) -> Estimate:
        n = len(terms)
        m = float(terms.mean()) if n else math.nan
        se = float(terms.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        return Estimate(m, m - 1.96 * se, m + 1.96 * se, n)

    def as_dict(self) -> dict:
        return {"mean": round(self.mean, 6), "ci95": [round(self.lo, 6), round(self.hi, 6)],
                "n": self.n}


def evaluate(candidate: NbaModel | None, baseline: NbaModel | None, logged: Logged,
             nba: NbaSettings, outcome_model: NbaModel | None = None) -> dict:
    """IPS and DR estimates of the conversion rate under each policy, and their difference,
    on the explored decisions."""
    idx = [i for i in range(len(logged)) if logged.explored[i] and logged.eligible[i]]
    if len(idx) < 30:
        raise TrainError(f"only {len(idx)} explored decisions: too few to evaluate on "
                         "(raise nba.exploration or log longer)")
    r = np.asarray([logged.reward[i] for i in idx], dtype=np.float64)
    k = np.asarray([len(logged.eligible[i]) for i in idx], dtype=np.float64)
    taken = [logged.decided[i] for i in idx]
    q_model = outcome_model or candidate or baseline
    rows = [logged.rows[i] for i in idx]

    def q(actions: list[str]) -> np.ndarray:
        if q_model is None:
            return np.zeros(len(actions))
        acts = [a if a in q_model.code else DO_NOTHING for a in actions]
        return q_model.conversion(rows, acts)

    q_taken = q(taken)
    value = nba.conversion_value
    costs = {a.name: a.cost for a in nba.actions}

    def matches(pi: list[str]) -> np.ndarray:
        return np.asarray([a == b for a, b in zip(pi, taken, strict=True)], dtype=np.float64)

    def dr_of(pi: list[str], match: np.ndarray) -> np.ndarray:
        return q(pi) + match * k * (r - q_taken)

    # Net value per decision against doing nothing: value × (conversions − those doing
    # nothing would have had) − the cost of what is sent; doing nothing's term is the same
    # for every policy, so differences of net value are differences of value × DR − cost.
    none = [DO_NOTHING] * len(idx)
    dr_none = dr_of(none, matches(none))
    out: dict[str, Any] = {"explored_decisions": len(idx),
                           "outcome_model": q_model.version if q_model else None,
                           "conversion_value": value}
    terms = {}
    for name, model in (("candidate", candidate), ("baseline", baseline)):
        pi = greedy_actions(model, logged, nba, idx)
        match = matches(pi)
        ips = match * k * r
        dr = dr_of(pi, match)
        net = value * (dr - dr_none) - np.asarray([costs.get(a, 0.0) for a in pi])
        terms[name] = (ips, dr, net)
        out[name] = {"version": model.version if model else "inventory_order",
                     "ips": Estimate.of(ips).as_dict(), "dr": Estimate.of(dr).as_dict(),
                     "net_value": Estimate.of(net).as_dict(),
                     "actions": dict(Counter(pi).most_common())}
    out["difference"] = {
        "ips": Estimate.of(terms["candidate"][0] - terms["baseline"][0]).as_dict(),
        "dr": Estimate.of(terms["candidate"][1] - terms["baseline"][1]).as_dict(),
        "net_value": Estimate.of(terms["candidate"][2] - terms["baseline"][2]).as_dict(),
    }
    out["logged_conversion_rate"] = round(float(r.mean()), 6)
    return out


NO_UPLIFT = 1e-4  # a model whose every predicted uplift is smaller learned none


def learned_uplift(model: NbaModel, logged: Logged) -> float:
    """The largest predicted uplift (|P(conversion | a) - P(conversion | do nothing)|) over
    the logged customers and their eligible actions: 0 for a model that learned none."""
    idx = [i for i in range(len(logged)) if logged.eligible[i]]
    found = model.uplifts([logged.rows[i] for i in idx], [list(logged.eligible[i]) for i in idx])
    return max((abs(p - base) for base, ups in found for p in ups.values()), default=0.0)


def promotion_gate(candidate: NbaModel, baselines: list[NbaModel | None], logged: Logged,
                   nba: NbaSettings) -> dict:
    """Whether ``candidate`` may be promoted: it learned some uplift, and its doubly robust
    net value per decision beats every baseline (the inventory order, ``None``, and the
    model in use) with 95 % confidence, paired on the same explored decisions. Returns each
    comparison and why not."""
    why = []
    lift = learned_uplift(candidate, logged)
    if lift < NO_UPLIFT:
        why.append(f"{candidate.version} learned no uplift (largest predicted uplift "
                   f"{lift:.2g}): it would do nothing for everyone")
    against = []
    for base in baselines:
        res = evaluate(candidate, base, logged, nba)
        diff = res["difference"]["net_value"]
        passed = diff["ci95"][0] > 0
        name = res["baseline"]["version"]
        against.append({"baseline": name, "net_value_difference": diff,
                        "dr_difference": res["difference"]["dr"], "passed": passed,
                        "evaluation": res})
        if not passed:
            why.append(f"not better than {name} with 95 % confidence (net value per "
                       f"decision, DR, difference {diff['mean']:+.4f}, 95 % CI "
                       f"[{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}])")
    return {"passed": not why, "why": why, "learned_uplift": round(lift, 6),
            "against": against}
