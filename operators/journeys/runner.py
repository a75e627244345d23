"""The journey engine: runs every customer's journeys inside the per-partition step.

Per customer, ``profile.journeys`` holds one run per journey the customer is in (version,
current step, entry time, instance, …) and ``profile.journey_history`` what is needed for
re-entry rules. Waits and timeouts are durable timers of the partition store (kinds ``j:<id>``
for the current step, ``jx:<id>:<exit>`` for time-based exits, ``jd:<id>`` for a send deferred
by a conflict). Everything that happens is emitted to ``segue.journey-events``; each send step
produces one decision on ``segue.decisions`` and, when it goes out, a dispatch command on
``segue.dispatch.<channel>``. All keys derive from content: customer, journey, version, step,
entry instance and visit.

Order of work for one event of a customer: goals, then exits, then waiting steps, then new
entries. A journey stops at each send step; the sends of this "moment" are resolved together
(lifecycle priority, then business value, then journey id): the winner's goes out and its
journey carries on (its own next sends are no conflict), the others stay on their send step
until a deferral timer (``jd:<id>``) lets them try again.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from models import features as nba_features
from models.conditions import Context
from models.in_event import InEvent
from models.journey import (
    Branch,
    End,
    Goto,
    Holdout,
    Journey,
    NextBestAction,
    Send,
    Split,
    Wait,
    WaitEvent,
)
from models.profile import Profile, Run
from models.settings import NbaSettings, PolicySettings
from operators.customer import scores
from operators.customer.activity import group_view
from operators.effects import Effects
from operators.journeys import records
from operators.journeys.delivery import (
    DAY_MS,
    MAX_STEPS_PER_MOMENT,
    SendDelivery,
    _Intent,
    intent_from_dict,
)
from operators.journeys.evaluate import bucket, condition
from operators.journeys.nba_steps import NbaSteps
from operators.journeys.registry import JourneyRegistry
from operators.nba import NbaDecider, Request
from operators.policy import DeliveryPolicy
from state import keys
from state.windows import count as window_count

# Steps that read a condition context when they run (a send only with personalization).
NEEDS_CONTEXT = (Branch, NextBestAction)


# Closures live in module functions: mypyc cannot compile one inside a method of the engine
# (a Python class, see ``operators.journeys.parts``).
def condition_context(p: Profile, at: int, ev: InEvent | None, run: Run | None,
                      nba: NbaDecider) -> Context:
    """What a journey's conditions read of the customer at ``at`` (``models.conditions``)."""
    counters = p.counters

    def counter(key: str, window: str) -> int:
        c = counters.get(key)
        return window_count(c, window, at) if c is not None else 0

    journey: dict[str, Any] = {}
    if run is not None:
        entered = _entered(run)
        journey = {"days": (at - entered) / DAY_MS,
                   "hours": (at - entered) / 3_600_000,
                   "variant": run.variant, "instance": run.instance,
                   "trigger": run.trigger or {}}
    return Context(
        traits=p.traits,
        event_name=ev.key if ev else None,
        event_type=ev.type if ev else None,
        event_props=ev.properties if ev else {},
        profile={"stage": p.lifecycle.stage, "events": p.events,
                 "sessions": p.sessions, "timezone": p.timezone,
                 "days_since_first_seen": (at - p.first_seen) / DAY_MS,
                 "days_since_last_seen": (at - p.last_seen) / DAY_MS,
                 "top": p.top},
        scores=p.scores or {},
        score=lambda: scores.now(p, at, nba.loaded()),
        journey=journey,
        group=group_view(p),
        counter=counter,
    )


def _entered(run: Run) -> int:
    """The entry time of a run in a profile (only a record-only run has none)."""
    assert run.entered is not None
    return run.entered


def _holds(text: str, ctx: Context | None) -> bool:
    """Whether condition ``text`` holds. A context is built wherever a condition can run (a
    journey with conditions, a step that reads one), so none is missing here."""
    assert ctx is not None
    return condition(text)(ctx)


class JourneyEngine(SendDelivery, NbaSteps):
    """Runs journeys for one partition; see the module docstring."""

    def __init__(self, registry: JourneyRegistry, conflict_delay_ms: int = 3_600_000,
                 default_timezone: str = "UTC", policy: DeliveryPolicy | None = None,
                 nba: NbaSettings | None = None, journey_events: bool = True,
                 decisions: bool = True) -> None:
        """``journey_events`` / ``decisions``: whether to build those records (nothing reads
        them when their topic is off and analytics, which fold them, are off too)."""
        self.registry = registry
        self.build_journey_events, self.build_decisions = journey_events, decisions
        self.policy = policy or DeliveryPolicy(PolicySettings())
        self.nba = NbaDecider(nba or NbaSettings(), condition, self.policy.tz, bucket)
        # Next-best-action decisions wait here for the end of the micro-batch (one model call);
        # a customer's own are made earlier if anything else touches that customer first.
        self._nba: list[Request] = []
        self.nba_pending: set[str] = set()
        self.conflict_delay_ms = conflict_delay_ms
        self.default_tz = default_timezone
        # Labelled counts for metrics: ("journey", kind, id), ("dispatch", channel),
        # ("decision", outcome), ("decision_reason", outcome, reason); the batch's, see
        # ``begin``.
        self.counts: Counter[tuple] = Counter()
        self._moment: list[_Intent] = []

    def begin(self, counts: Counter[tuple]) -> None:
        """A new batch: count into ``counts``; nothing of a batch that failed is left."""
        self.counts = counts
        self._moment = []
        self._nba = []
        self.nba_pending = set()

    # ----- entry points: each returns, in order, the effects of what it did ----------------
    def on_event(self, p: Profile, ev: InEvent) -> Effects:
        """An event of the customer: goals, exits, waiting steps, then new entries."""
        fx = Effects()
        self._on_event(fx, p, ev)
        return fx

    def on_timers(self, p: Profile, due: int, kinds: list[str]) -> Effects:
        """Journey timers of one customer due at the same moment."""
        fx = Effects()
        self._on_timers(fx, p, due, kinds)
        return fx

    def exit_all(self, p: Profile, at: int, cause: dict, reason: str) -> Effects:
        """Take the customer out of every journey (opt-out, erasure, merge)."""
        fx = Effects()
        self._exit_all(fx, p, at, cause, reason)
        return fx

    def adopt_runs(self, p: Profile, snapshot: Profile, at: int) -> Effects:
        """Journeys of a customer merged into ``p`` (see ``_adopt_runs``)."""
        fx = Effects()
        self._adopt_runs(fx, p, snapshot, at)
        return fx

    def on_delivery_failed(self, p: Profile, dispatch_id: str, at: int, cause: dict) -> Effects:
        """A channel reported a dispatch failed: retry once, then the backup channel."""
        fx = Effects()
        self._on_delivery_failed(fx, p, dispatch_id, at, cause)
        return fx

    def release_held(self, p: Profile, jid: str, at: int) -> Effects:
        """The journey was resumed: send the held message, then carry on from there."""
        fx = Effects()
        self._release_held(fx, p, jid, at)
        return fx

    def flush_nba(self, ref: str | None = None) -> Effects:
        """Make the waiting next-best-action decisions (all, or one customer's)."""
        fx = Effects()
        self._flush_nba(fx, ref)
        return fx

    # ----- context ---------------------------------------------------------------------------
    def context(self, p: Profile, at: int, ev: InEvent | None, run: Run | None = None) -> Context:
        return condition_context(p, at, ev, run, self.nba)

    def _run(self, p: Profile, jid: str) -> tuple[Run, Journey] | None:
        """The customer's run of journey ``jid`` and the spec of its version, if both exist."""
        run = p.journeys.get(jid)
        if run is None:
            return None
        spec = self.registry.spec(jid, run.v)
        return None if spec is None else (run, spec)

    # ----- events ----------------------------------------------------------------------------
    def _on_event(self, fx: Effects, p: Profile, ev: InEvent) -> None:
        self._settle(fx, p)
        at = ev.ts_ms
        if ev.key in self.nba.goals:
            self._nba_converted(p, at)
        cause = {"message_id": ev.message_id}
        for jid in sorted(p.journeys):
            found = self._run(p, jid)
            if found is None:
                continue  # ended earlier in this moment (e.g. by a goto)
            run, spec = found
            # A context costs a few dicts: built only for journeys whose conditions can run.
            ctx = self.context(p, at, ev, run) if spec.conditions_on_events else None
            if self._goals(fx, p, jid, run, spec, ev, ctx, at, cause):
                continue
            if self._exits(fx, p, jid, run, spec, ev, ctx, at, cause):
                continue
            step = spec.steps.get(run.node)
            if isinstance(step, WaitEvent) and ev.key == step.event and (
                step.where is None or _holds(step.where, ctx)
            ):
                fx.cancel(p, f"j:{jid}")
                run.due = None
                self._advance(fx, p, jid, run, spec, step.on_event, at, ev, cause)
        self._enter_matching(fx, p, ev, at, cause)
        self._resolve(fx, p, at)

    def _enter_matching(self, fx: Effects, p: Profile, ev: InEvent, at: int, cause: dict) -> None:
        runs = p.journeys
        for spec in self.registry.entries_for(ev.key):
            if spec.id in runs:
                continue
            if not self._may_reenter(p, spec, at):
                continue
            entry = spec.entry
            if entry.when is not None or entry.exclude is not None:
                ctx = self.context(p, at, ev)
                if entry.when is not None and not _holds(entry.when, ctx):
                    continue
                if entry.exclude is not None and _holds(entry.exclude, ctx):
                    continue
            self._enter(fx, p, spec, at, ev, cause, reason="trigger")

    def _may_reenter(self, p: Profile, spec: Journey, at: int) -> bool:
        hist = p.journey_history.get(spec.id)
        if hist is None:
            return True
        rule = spec.entry.reentry
        if rule == "never":
            return False
        if rule == "after_exit":
            return True
        return at - hist["last_exit"] >= rule.after

    def _enter(self, fx: Effects, p: Profile, spec: Journey, at: int, ev: InEvent | None,
               cause: dict, reason: str) -> None:
        hist = p.journey_history.setdefault(
            spec.id, {"entries": 0, "last_exit": None})
        hist["entries"] += 1
        run = Run(v=spec.version, node=spec.start, entered=at, instance=hist["entries"],
                  trigger=dict(ev.properties) if ev is not None else {})
        p.journeys[spec.id] = run
        watched = spec.condition_exits
        if watched:
            ctx = self.context(p, at, ev, run)
            run.true_exits = [x.name for x in watched
                              if x.when is not None and _holds(x.when, ctx)]
        for x in spec.exits:
            if x.after is not None:
                fx.arm(p, f"jx:{spec.id}:{x.name}", at + x.after)
            elif x.inactive is not None:
                fx.arm(p, f"jx:{spec.id}:{x.name}", p.last_seen + x.inactive)
        self._journey_event(fx, p, spec, run, "journey.entered", at, cause, reason=reason)
        self.counts[("journey", "entered", spec.id)] += 1
        self._advance(fx, p, spec.id, run, spec, spec.start, at, ev, cause)

    # ----- goals and exits -------------------------------------------------------------------
    def _goals(self, fx: Effects, p: Profile, jid: str, run: Run, spec: Journey, ev: InEvent,
               ctx: Context | None, at: int, cause: dict) -> bool:
        for g in spec.goals:
            if ev.key == g.event and (g.when is None or _holds(g.when, ctx)):
                self._journey_event(fx, p, spec, run, "journey.converted", at, cause,
                                    reason=f"goal:{g.name}")
                self.counts[("journey", "converted", spec.id)] += 1
                if g.exit:
                    self._exit(fx, p, jid, run, spec, at, cause, f"goal:{g.name}")
                    return True
        return False

    def _exits(self, fx: Effects, p: Profile, jid: str, run: Run, spec: Journey,
               ev: InEvent | None, ctx: Context | None, at: int, cause: dict) -> bool:
        for x in spec.exits:
            if x.event is not None:
                if ev is None or ev.key != x.event:
                    continue
                if x.when is not None and not _holds(x.when, ctx):
                    continue
                return self._take_exit(fx, p, jid, run, spec, x, at, cause)
            if x.when is not None and x.after is None and x.inactive is None:
                # Fires when the condition turns true during the journey, not if it already
                # held at entry (e.g. "adoption > 80 → expansion").
                now_true = _holds(x.when, ctx)
                was = x.name in run.true_exits
                if now_true and not was:
                    return self._take_exit(fx, p, jid, run, spec, x, at, cause)
                if was and not now_true:
                    run.true_exits.remove(x.name)
        return False

    def _take_exit(self, fx: Effects, p: Profile, jid: str, run: Run, spec: Journey, x: Any,
                   at: int, cause: dict) -> bool:
        if x.goto and spec.min_duration and at < _entered(run) + spec.min_duration:
            # Minimum stage duration: the transition waits until the journey has lasted long
            # enough (unless another exit ends it first).
            fx.arm(p, f"jx:{jid}:{x.name}", _entered(run) + spec.min_duration)
            if run.pending_exit is None:
                run.pending_exit = x.name
            return False
        if x.emit:
            self._journey_event(fx, p, spec, run, f"journey.{x.emit}", at, cause,
                                reason=f"exit:{x.name}")
        self._exit(fx, p, jid, run, spec, at, cause, f"exit:{x.name}")
        if x.goto:
            self._goto(fx, p, x.goto, at, cause, reason=f"from:{jid}")
        return True

    def _exit(self, fx: Effects, p: Profile, jid: str, run: Run, spec: Journey, at: int,
              cause: dict, reason: str) -> None:
        fx.cancel(p, f"j:{jid}")
        fx.cancel(p, f"jd:{jid}")
        for x in spec.exits:
            fx.cancel(p, f"jx:{jid}:{x.name}")
        if run.held:
            fx.index_delete(keys.held(jid, run.held["at"], p.ref))
            self._decision(fx, p, spec, run, run.held["intent"], "drop",
                           ["journey.exited"], at, None)
        if run.deferred:
            self._decision(fx, p, spec, run, run.deferred, "drop", ["journey.exited"], at,
                           None)
        del p.journeys[jid]
        p.journey_history[jid]["last_exit"] = at
        self._journey_event(fx, p, spec, run, "journey.exited", at, cause, reason=reason)
        self.counts[("journey", "exited", spec.id)] += 1

    def _goto(self, fx: Effects, p: Profile, target: str, at: int, cause: dict,
              reason: str) -> None:
        spec = self.registry.current.get(target)
        if spec is None or spec.status != "active" or target in p.journeys:
            return
        self._enter(fx, p, spec, at, None, cause, reason=reason)

    def _exit_all(self, fx: Effects, p: Profile, at: int, cause: dict, reason: str) -> None:
        """Take the customer out of every journey (opt-out, erasure, merge)."""
        self._settle(fx, p)
        for jid in sorted(p.journeys):
            run = p.journeys[jid]
            spec = self.registry.spec(jid, run.v)
            if spec is not None:
                self._exit(fx, p, jid, run, spec, at, cause, reason)

    def _adopt_runs(self, fx: Effects, p: Profile, snapshot: Profile, at: int) -> None:
        """A customer merged into ``p``: journeys only it was in move over with their timers;
        for a journey both were in, the earlier entry survives and the other run exits with
        reason ``merged``."""
        self._settle(fx, p)
        theirs = snapshot.journeys
        timers = snapshot.timers
        cause = {"merge": snapshot.ref}
        for jid in sorted(theirs):
            run = theirs[jid]
            spec = self.registry.spec(jid, run.v)
            mine = p.journeys.get(jid)
            if mine is not None:
                if _entered(mine) <= _entered(run):  # ours survives (ties: the winner's)
                    if spec is not None:
                        self._drop_run(fx, p, spec, run, at, cause)
                    continue
                my_spec = self.registry.spec(jid, mine.v)
                if my_spec is not None:
                    self._exit(fx, p, jid, mine, my_spec, at, cause, "merged")
            p.journeys[jid] = run
            for kind, due in timers.items():
                if kind in (f"j:{jid}", f"jd:{jid}") or kind.startswith(f"jx:{jid}:"):
                    fx.arm(p, kind, due)
        self._index_held(fx, p, at)

    def _drop_run(self, fx: Effects, p: Profile, spec: Journey, run: Run, at: int,
                  cause: dict) -> None:
        if run.held:
            self._decision(fx, p, spec, run, run.held["intent"], "drop",
                           ["journey.merged"], at, None)
        if run.deferred:
            self._decision(fx, p, spec, run, run.deferred, "drop", ["journey.merged"], at,
                           None)
        self._journey_event(fx, p, spec, run, "journey.exited", at, cause, reason="merged")

    # ----- timers ----------------------------------------------------------------------------
    def _on_timers(self, fx: Effects, p: Profile, due: int, kinds: list[str]) -> None:
        """Journey timers of one customer due at the same moment."""
        self._settle(fx, p)
        for kind in sorted(kinds):
            prefix, _, rest = kind.partition(":")
            jid, _, exit_name = rest.partition(":")
            found = self._run(p, jid)
            if found is None:
                continue
            run, spec = found
            cause = {"timer": kind, "due_ms": due}
            ctx = self.context(p, due, None, run) if spec.conditions_on_events else None
            if prefix == "jx":
                x = next((x for x in spec.exits if x.name == exit_name), None)
                if x is None:
                    continue
                if x.inactive is not None and p.last_seen + x.inactive > due:
                    fx.arm(p, kind, p.last_seen + x.inactive)  # activity since: push back
                    continue
                if run.pending_exit == x.name or x.after or x.inactive:
                    self._take_exit(fx, p, jid, run, spec, x, due, cause)
                continue
            if self._exits(fx, p, jid, run, spec, None, ctx, due, cause):
                continue
            if prefix == "jd":
                if run.deferred and self.registry.status(jid) == "paused":
                    run.held = {"at": due, "intent": run.deferred}  # held, not sent
                    run.deferred = None
                elif run.deferred:
                    step = spec.steps[run.node]
                    self._moment.append(intent_from_dict(run.deferred, run, spec,
                                                         getattr(step, "next", None)))
                    run.deferred = None
            elif prefix == "j" and run.due == due:
                run.due = None
                step = spec.steps[run.node]
                nxt = step.on_timeout if isinstance(step, WaitEvent) else step.next
                self._advance(fx, p, jid, run, spec, nxt, due, None, cause)
        self._resolve(fx, p, due)

    # ----- steps -----------------------------------------------------------------------------
    def _advance(self, fx: Effects, p: Profile, jid: str, run: Run, spec: Journey,
                 node: str | None, at: int, ev: InEvent | None, cause: dict) -> None:
        for _ in range(MAX_STEPS_PER_MOMENT):
            if node is None:
                self._exit(fx, p, jid, run, spec, at, cause, "completed")
                return
            step = spec.steps[node]
            run.node = node
            visit = run.visits.get(node, 0) + 1
            run.visits[node] = visit
            # The steps that read a context (personalization, branch cases, NBA
            # eligibility) build it; the others need none.
            ctx = self.context(p, at, ev, run) if isinstance(step, NEEDS_CONTEXT) or (
                isinstance(step, Send) and step.personalization) else None
            extra: dict[str, Any] = {}
            nxt: str | None = None
            if isinstance(step, Send):
                # Stop here: the moment's sends are resolved together, then this journey
                # carries on from step.next (see _resolve), or waits here if paused/deferred.
                self._intend(p, jid, run, spec, node, step.channel, step.template, step.purpose,
                             step.personalization, None, None, at, cause, ctx, step.next, ev)
                self._step_event(fx, p, spec, run, node, step.type, at, cause, extra)
                return
            elif isinstance(step, Wait):
                due = at + step.duration if step.duration is not None else \
                    self._next_local_time(p, at, step.until or "00:00")
                run.due = due
                fx.arm(p, f"j:{jid}", due)
                extra["until_ms"] = due
                self._step_event(fx, p, spec, run, node, step.type, at, cause, extra)
                return
            elif isinstance(step, WaitEvent):
                due = at + step.timeout
                run.due = due
                fx.arm(p, f"j:{jid}", due)
                extra.update(event=step.event, until_ms=due)
                self._step_event(fx, p, spec, run, node, step.type, at, cause, extra)
                return
            elif isinstance(step, Branch):
                nxt = step.default
                extra["case"] = "default"
                for i, case in enumerate(step.cases):
                    if _holds(case.when, ctx):
                        nxt = case.next
                        extra["case"] = i
                        break
            elif isinstance(step, Split):
                point = bucket(p.id, jid, node) * sum(v.weight for v in step.variants) / 100
                acc = 0.0
                chosen = step.variants[-1]
                for v in step.variants:
                    acc += v.weight
                    if point < acc:
                        chosen = v
                        break
                run.variant = chosen.name
                extra["variant"] = chosen.name
                nxt = chosen.next
            elif isinstance(step, Holdout):
                run.holdout = bucket(p.id, jid, node, "holdout") < step.percent
                extra["holdout"] = run.holdout
                nxt = step.next
            elif isinstance(step, NextBestAction):
                cands = self.nba.candidates(list(step.actions))
                assert ctx is not None  # built for this step
                eligible, why = self.nba.eligibility(p, at, ctx, cands)
                row, cats = nba_features.build(p, at, run)
                req = Request((p.id, jid, run.entered, node, visit), row, cats,
                              eligible, why, (p, jid, run, spec, node, step, at, cause, ev),
                              prior=self.nba.prior(cats))
                self.nba.asked(req)
                self._nba.append(req)
                self.nba_pending.add(p.ref)
                return
            elif isinstance(step, Goto):
                self._step_event(fx, p, spec, run, node, step.type, at, cause,
                                 {"target": step.journey})
                self._exit(fx, p, jid, run, spec, at, cause, f"goto:{step.journey}")
                self._goto(fx, p, step.journey, at, cause, reason=f"from:{jid}")
                return
            elif isinstance(step, End):
                self._step_event(fx, p, spec, run, node, step.type, at, cause, extra)
                self._exit(fx, p, jid, run, spec, at, cause, "completed")
                return
            self._step_event(fx, p, spec, run, node, step.type, at, cause, extra)
            node = nxt
        self._exit(fx, p, jid, run, spec, at, cause, "error.too_many_steps")

    def _next_local_time(self, p: Profile, at: int, hhmm: str) -> int:
        tz_name = p.timezone
        try:
            tz = ZoneInfo(tz_name if isinstance(tz_name, str) and tz_name else self.default_tz)
        except Exception:  # noqa: BLE001 - an unusable zone name means the default
            tz = ZoneInfo(self.default_tz)
        local = datetime.fromtimestamp(at / 1000, tz)
        h, m = (int(x) for x in hhmm.split(":")[:2])
        target = local.replace(hour=h, minute=m, second=0, microsecond=0)
        if target <= local:
            # zoneinfo datetimes add in wall-clock time, so the offset of the next day is used
            # (DST changes in between are handled).
            target = (local + timedelta(days=1)).replace(hour=h, minute=m, second=0,
                                                        microsecond=0)
        return int(target.timestamp() * 1000)

    # ----- outputs ---------------------------------------------------------------------------
    def _decision(self, fx: Effects, p: Profile, spec: Journey, run: Run, intent: dict,
                  outcome: str, reasons: list[str], at: int, next_ms: int | None,
                  channel: str | None = None) -> None:
        if self.build_decisions:
            fx.decision(p.id, records.decision(p, spec, run, intent, outcome, reasons, at,
                                                  next_ms, channel))
        self.counts[("decision", outcome)] += 1  # one per decision, whatever its reasons
        for reason in reasons:
            self.counts[("decision_reason", outcome, reason.split(":", 1)[0])] += 1

    def _step_event(self, fx: Effects, p: Profile, spec: Journey, run: Run, node: str,
                    step_type: str, at: int, cause: dict, extra: dict) -> None:
        self._journey_event(fx, p, spec, run, "journey.step", at, cause, node=node,
                            step_type=step_type, **extra)

    def _journey_event(self, fx: Effects, p: Profile, spec: Journey, run: Run, kind: str,
                       at: int, cause: dict, node: str | None = None, **extra: Any) -> None:
        if self.build_journey_events:
            fx.journey_event(p.id, records.journey_event(p, spec, run, kind, at, cause, node,
                                                            extra))
