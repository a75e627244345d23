"""Next best action inside the stateful step: eligibility, batched scoring, exploration and
the decision's explanation.

A journey's ``nba`` step (or the always-on mode) asks for a decision; the engine collects the
requests of a micro-batch and :meth:`NbaDecider.decide` scores them in one model call. The
result ranks the eligible actions by expected net value, ``uplift × conversion_value − cost``
(doing nothing is worth 0), and keeps the top three: the first is executed now (through
delivery policy), the others are backups tried in order when the first cannot go out now.

With probability ``nba.exploration`` (a stable hash of the decision, so replays agree) the
primary is instead drawn uniformly among the eligible actions; the decision logs whether it
explored and the probability of the action it took, which offline evaluation needs.
Without a promoted model the ranking is the inventory order, or with ``nba.cold_start:
thompson`` a Thompson sampler that learns online (``operators.nba_bandit``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models import features as F
from models.conditions import Context
from models.nba import DO_NOTHING, ModelRegistry, NbaModel, rationale_text
from models.profile import Profile
from models.settings import NbaAction, NbaSettings
from operators.nba_bandit import Bandit, thompson

_CURRENT = object()  # decide() with the registry's promoted model


@dataclass(slots=True)
class Candidate:
    """An action a decision may pick: inventory rules plus the step's own channel/template."""

    name: str
    channel: str
    template: str
    cost: float
    rules: NbaAction | None
    when: str | None = None


@dataclass(slots=True)
class Request:
    """One decision to make at the end of the micro-batch."""

    key: tuple            # stable identity of the decision (exploration hash)
    row: list[float]
    cats: dict[str, Any]
    eligible: list[Candidate]
    ineligible: dict[str, str]
    payload: Any = None   # the engine's own context for carrying on
    # The cold-start bandit's counts for the customer's segment when the decision was asked
    # for (``operators.nba_bandit``): a decision never sees what happened after it.
    prior: dict[str, tuple[int, int]] | None = None


def _in_blackout(day: str, ranges: list[str]) -> bool:
    for r in ranges:
        lo, _, hi = r.partition("..")
        if lo <= day <= (hi or lo):
            return True
    return False


class NbaDecider:
    """Eligibility and ranking for one process (the model registry is shared)."""

    def __init__(self, settings: NbaSettings, condition: Any, tz: Any,
                 bucket: Any) -> None:
        self.s = settings
        self._condition = condition
        self._tz = tz
        self._bucket = bucket
        self.registry = ModelRegistry.shared(settings.models_dir, settings.reload_s) \
            if settings.models_dir else None
        self.index = {a.name: i for i, a in enumerate(settings.actions)}
        # Labelled counts for metrics: ("nba", action, explored), ("nba_scored",)
        self.scored = 0
        self.score_seconds = 0.0
        # (seconds, customers) per scored batch, drained by the metrics of the live flow
        self.timings: list[tuple[float, int]] = []
        # The cold-start bandit's counts (one partition's; the partition loads and stores it).
        self.bandit = Bandit()
        self.goals = frozenset(settings.goal_events)

    def segment(self, cats: dict[str, Any]) -> str:
        """The bandit's segment of a customer: its lifecycle stage."""
        return str(cats.get("stage") or "unknown")

    def prior(self, cats: dict[str, Any]) -> dict[str, tuple[int, int]] | None:
        """The bandit counts a decision asked for now would use (None: no bandit)."""
        if self.s.cold_start != "thompson":
            return None
        return self.bandit.prior(self.segment(cats))

    def asked(self, req: Request) -> None:
        """A decision was asked for: without a model, the bandit counts the action it will
        take now, in event order (the decision itself is made with the batch's, from the
        same counts, so it takes the same action), so that later requests' counts do not
        depend on where the batch ends."""
        if req.prior is None or self.loaded() is not None:
            return
        rec = self.decide([req], model=None, explain=False)[0]
        if rec["ranked"]:
            self.bandit.decided(self.segment(req.cats), rec["ranked"][0]["action"])

    def model(self) -> NbaModel | None:
        """The promoted model, looking for a newly promoted one at most every ``reload_s``
        (decisions call this)."""
        return self.registry.current() if self.registry is not None else None

    def loaded(self) -> NbaModel | None:
        """The model in use, without looking for a new one: the other callers (scores,
        the bandit) must not spend the reload check that the next decision makes."""
        return self.registry.model if self.registry is not None else None

    def candidates(self, step_actions: list[Any]) -> list[Candidate]:
        """The step's actions (inventory rules apply where names match), or the inventory."""
        if not step_actions:
            return [Candidate(a.name, a.channel, a.template or a.name, a.cost, a)
                    for a in self.s.actions]
        out = []
        for sa in step_actions:
            rules = self.s.action(sa.action)
            out.append(Candidate(sa.action, sa.channel, sa.template,
                                 rules.cost if rules else 0.0, rules, sa.when))
        return out

    def eligibility(self, p: Profile, at: int, ctx: Context, cands: list[Candidate]
                    ) -> tuple[list[Candidate], dict[str, str]]:
        traits = p.traits
        stage = p.lifecycle.stage
        vip: bool | None = None
        day: str | None = None
        ok: list[Candidate] = []
        why: dict[str, str] = {}
        for c in cands:
            r = c.rules
            reason = None
            if c.when is not None and not self._condition(c.when)(ctx):
                reason = "step.condition"
            elif r is not None:
                if r.stages and stage not in r.stages:
                    reason = f"stage:{stage}"
                elif r.plans and traits.get("plan") not in r.plans:
                    reason = f"plan:{traits.get('plan')}"
                elif r.tiers and traits.get("tier") not in r.tiers:
                    reason = f"tier:{traits.get('tier')}"
                elif r.when is not None and not self._condition(r.when)(ctx):
                    reason = "condition"
                elif r.vip != "allow":
                    if vip is None:
                        vip = bool(self._condition(self.s.vip_when)(ctx))
                    if (r.vip == "never") == vip:
                        reason = "vip.excluded" if vip else "vip.only"
                if reason is None and r is not None and r.blackout:
                    if day is None:
                        day = datetime.fromtimestamp(at / 1000, self._tz(p)).date().isoformat()
                    if _in_blackout(day, r.blackout):
                        reason = f"blackout:{day}"
            if reason is None:
                ok.append(c)
            else:
                why[c.name] = reason
        return ok, why

    def decide(self, reqs: list[Request], model: Any = _CURRENT,
               explain: bool = True) -> list[dict]:
        """The ``nba`` record of each request (in order), scored in one batch with the
        promoted model (or ``model``, for offline evaluation)."""
        if model is _CURRENT:
            model = self.model()
        t0 = time.perf_counter()
        probs: list[tuple[float, dict[str, float]]] = []
        scores: list[dict[str, float]] = []
        error = None
        if model is not None and reqs:
            try:
                probs = model.uplifts([r.row for r in reqs],
                                      [[c.name for c in r.eligible] for r in reqs])
                scores = model.scores([r.row for r in reqs])
            except Exception as e:  # noqa: BLE001 - a broken model must not stop the flow
                error = f"{type(e).__name__}: {e}"[:300]
                model = None
        V = self.s.conversion_value
        out = []
        to_explain: list[tuple[int, int, str]] = []  # (request, rank, action)
        for k, r in enumerate(reqs):
            ranked: list[dict] = []
            for pos, c in enumerate(r.eligible):
                entry = {"action": c.name, "channel": c.channel, "template": c.template,
                         "confidence": None, "uplift": None, "value": None}
                if model is not None:
                    base, by = probs[k]
                    if c.name == DO_NOTHING or c.channel == "none":
                        entry.update(confidence=round(base, 4), uplift=0.0, value=0.0)
                    elif c.name in by:
                        u = by[c.name] - base
                        entry.update(confidence=round(by[c.name], 4), uplift=round(u, 4),
                                     value=round(u * V - c.cost, 4))
                ranked.append((entry, pos))  # type: ignore[arg-type]
            # P(the policy, exploration aside, takes each action): 1 for the greedy first.
            chance: dict[str, float] | None = None
            sampled = model is None and r.prior is not None and len(r.eligible) > 1
            if model is not None:
                ranked.sort(key=lambda t: (t[0]["value"] is None,
                                           -(t[0]["value"] or 0.0), t[1]))
            elif sampled:
                names = [c.name for c in r.eligible]
                order, probs, rates = thompson(
                    r.key, r.prior or {}, names, [c.cost for c in r.eligible], V, DO_NOTHING)
                for (entry, _), rate in zip(ranked, rates, strict=True):
                    entry["confidence"] = rate  # the drawn conversion rate
                ranked = [ranked[i] for i in order]
                chance = dict(zip(names, probs, strict=True))
            greedy = [e for e, _ in ranked]  # type: ignore[misc]
            explored = False
            propensity = chance[greedy[0]["action"]] if chance and greedy else 1.0
            primary = greedy[0] if greedy else None
            n = len(greedy)
            if n > 1 and self.s.exploration > 0:
                explored = self._bucket(*r.key, "explore") < self.s.exploration * 100
                pick = greedy[min(int(self._bucket(*r.key, "pick") / 100 * n), n - 1)]
                if explored:
                    primary = pick
                top = greedy[0]["action"]
                took = primary["action"]  # type: ignore[index]
                p_policy = chance[took] if chance else float(took == top)
                propensity = self.s.exploration / n + (1 - self.s.exploration) * p_policy
            top3 = greedy[:3]
            if primary is not None and primary not in top3:
                top3 = [primary, *greedy[:2]]
            elif primary is not None:
                top3 = [primary, *[e for e in top3 if e is not primary]]
            # The executed action is explained (pred_contrib costs about a microsecond per
            # tree and row, the largest part of a decision); backups carry their numbers.
            if model is not None and top3 and top3[0]["action"] in model.code and \
                    top3[0]["action"] != DO_NOTHING:
                to_explain.append((k, 0, top3[0]["action"]))
            rec = {
                "model": model.version if model is not None else None,
                "policy": "model" if model is not None else (
                    "thompson" if sampled else "inventory_order"),
                "features_version": F.VERSION,
                "explored": explored,
                "propensity": round(propensity, 6),
                "ranked": [dict(e) for e in top3],
                "eligible": [c.name for c in r.eligible],
                "ineligible": r.ineligible,
                "features": F.as_dict(r.row),
                "scores": scores[k] if scores else {},
            }
            if error is not None:
                rec["model_error"] = error
            out.append(rec)
        if explain and to_explain and model is not None:
            exps = model.explain([reqs[k].row for k, _, _ in to_explain],
                                 [a for _, _, a in to_explain])
            for (k, rank, _), exp in zip(to_explain, exps, strict=True):
                entry = out[k]["ranked"][rank]
                entry["rationale"] = rationale_text(exp, reqs[k].cats)
                entry["action_effect"] = round(exp.action_effect, 4)
        spent = time.perf_counter() - t0
        self.scored += len(reqs)
        self.score_seconds += spent
        if len(self.timings) < 10_000:
            self.timings.append((spent, len(reqs)))
        return out
