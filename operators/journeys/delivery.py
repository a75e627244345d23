"""Sends: what a journey wants to send at a moment, the conflicts between journeys, delivery
policy, and what happens when a channel reports a failure.

A journey stops at each send step. The sends of one moment are resolved together (lifecycle
priority, then business value, then journey id): the winner's goes out through delivery
policy and its journey carries on, the others wait on their send step until a deferral timer
(``jd:<id>``) lets them try again.
"""


from __future__ import annotations

from dataclasses import dataclass

from mypy_extensions import trait

from models.conditions import Context
from models.envelope import idempotency_key
from models.in_event import InEvent
from models.journey import (
    Journey,
)
from models.profile import Profile, Run
from operators.effects import Effects
from operators.journeys import records
from operators.journeys.parts import EngineParts
from operators.journeys.registry import priority_key
from state import keys

DAY_MS = 86_400_000
MAX_STEPS_PER_MOMENT = 200  # steps and send rounds one moment may take (loop guard)


@dataclass(slots=True, init=False)  # its own __init__: see operators.effects
class _Intent:
    """A send a journey wants to make at this moment."""

    jid: str
    run: Run
    spec: Journey
    node: str
    channel: str
    template: str
    purpose: str
    personalization: dict
    action: str | None
    nba: dict | None
    cause: dict
    dispatch_id: str
    next: str | None          # where the journey goes on after this send
    ev: InEvent | None        # the event of this moment (branches after the send)

    def __init__(self, jid: str, run: Run, spec: Journey, node: str, channel: str,
                 template: str, purpose: str, personalization: dict, action: str | None,
                 nba: dict | None, cause: dict, dispatch_id: str, next: str | None = None,
                 ev: InEvent | None = None) -> None:
        self.jid, self.run, self.spec, self.node = jid, run, spec, node
        self.channel, self.template, self.purpose = channel, template, purpose
        self.personalization, self.action, self.nba = personalization, action, nba
        self.cause, self.dispatch_id, self.next, self.ev = cause, dispatch_id, next, ev


def intent_to_dict(i: _Intent) -> dict:
    return {"node": i.node, "channel": i.channel, "template": i.template, "purpose": i.purpose,
            "personalization": i.personalization, "action": i.action, "nba": i.nba,
            "cause": i.cause, "dispatch_id": i.dispatch_id}


def _priority(i: _Intent) -> tuple:  # a sort key; no lambda in the engine's methods (mypyc)
    return priority_key(i.spec)


def dispatch_id(p: Profile, jid: str, run: Run, node: str) -> str:
    """The idempotency key of the send at ``node`` of this run. The entry time identifies the
    entry instance even where instance numbers restart (after a merge or an erasure)."""
    return idempotency_key("dispatch", p.id, jid, run.v, node, run.instance,
                           run.visits.get(node, 1), run.entered)


def intent_from_dict(d: dict, run: Run, spec: Journey, nxt: str | None) -> _Intent:
    return _Intent(spec.id, run, spec, d["node"], d["channel"], d["template"], d["purpose"],
                   d["personalization"], d["action"], d["nba"], d["cause"], d["dispatch_id"],
                   nxt, None)


@trait
class SendDelivery(EngineParts):
    """The engine's sends (a part of ``JourneyEngine``)."""

    # ----- sends and conflicts ---------------------------------------------------------------
    def _intend(self, p: Profile, jid: str, run: Run, spec: Journey, node: str, channel: str,
                template: str, purpose: str, fields: list[str], action: str | None,
                nba: dict | None, at: int, cause: dict, ctx: Context | None,
                nxt: str | None, ev: InEvent | None) -> None:
        """``ctx`` is needed (only) when there are personalization ``fields``."""
        personalization = {}
        for path in fields:
            parts = tuple(path.split("."))
            if parts[0] in ("traits", "event", "profile", "scores", "journey"):
                assert ctx is not None
                personalization[path] = ctx.resolve(parts)
        key = dispatch_id(p, jid, run, node)
        intent = _Intent(jid, run, spec, node, channel, template, purpose, personalization,
                         action, nba, cause, key, nxt, ev)
        if self.registry.status(jid) == "paused":
            run.held = {"at": at, "intent": intent_to_dict(intent)}
            return
        self._moment.append(intent)

    def _backup(self, p: Profile, i: _Intent, caps: dict, at: int) -> None:
        """A next-best-action send whose channel cannot take it now (capped, quiet, opted out,
        suppressed) becomes the first backup action that can go out on its own channel."""
        nba = i.nba
        if nba is None:
            return
        ranked = nba.get("ranked", [])
        if len(ranked) < 2 or nba.get("skipped") is not None:
            return
        skipped: list[dict] = []
        for cand in ranked:
            if cand["channel"] == "none":
                break  # doing nothing ranks above the rest
            v = self.policy.decide(p, cand["channel"], i.purpose, caps, i.jid, at)
            if v.outcome == "send" and v.channel == cand["channel"]:
                if skipped:
                    i.action, i.channel, i.template = cand["action"], cand["channel"], \
                        cand["template"]
                    i.nba = dict(nba, skipped=skipped)
                return
            skipped.append({"action": cand["action"], "channel": cand["channel"],
                            "reasons": v.reasons})

    def _resolve(self, fx: Effects, p: Profile, at: int) -> None:
        """Sends of this moment: the highest-priority journey's go out and it carries on;
        the others wait on their send step for ``conflict_delay`` (a ``defer`` decision)."""
        self._index_held(fx, p, at)
        for _ in range(MAX_STEPS_PER_MOMENT):
            intents: list[_Intent] = self._moment
            self._moment = []
            if not intents:
                return
            live = sorted((i for i in intents if not i.run.holdout),
                          key=_priority)
            winner = live[0].jid if live else None
            for i in intents:
                if p.journeys.get(i.jid) is not i.run:  # its journey ended meanwhile
                    self._decision(fx, p, i.spec, i.run, intent_to_dict(i), "drop",
                                   ["journey.exited"], at, None)
                elif i.run.holdout:
                    self._decision(fx, p, i.spec, i.run, intent_to_dict(i), "holdout",
                                   ["holdout.control"], at, None)
                    self._advance(fx, p, i.jid, i.run, i.spec, i.next, at, i.ev, i.cause)
                elif i.jid == winner:
                    if self._deliver(fx, p, i, at):
                        self._advance(fx, p, i.jid, i.run, i.spec, i.next, at, i.ev, i.cause)
                else:
                    due = at + self.conflict_delay_ms
                    d = intent_to_dict(i)
                    i.run.deferred = d
                    fx.arm(p, f"jd:{i.jid}", due)
                    self._decision(fx, p, i.spec, i.run, d, "defer",
                                   [f"conflict.priority:{winner}"], at, due)
            self._index_held(fx, p, at)

    def _index_held(self, fx: Effects, p: Profile, at: int) -> None:
        for jid, run in p.journeys.items():
            held = run.held
            if held is not None and not held.get("indexed"):
                held["indexed"] = True
                fx.index_put(keys.held(jid, held["at"], p.ref))
                spec = self.registry.spec(jid, run.v)
                if spec is not None:
                    self._decision(fx, p, spec, run, held["intent"], "defer",
                                   ["journey.paused"], at, None)

    def _deliver(self, fx: Effects, p: Profile, i: _Intent, at: int) -> bool:
        """Ask delivery policy; returns whether the journey moves on (sent or dropped)."""
        caps = i.spec.cap_limits
        if i.nba is not None:
            self._backup(p, i, caps, at)
        v = self.policy.decide(p, i.channel, i.purpose, caps, i.jid, at)
        d = intent_to_dict(i)
        if v.outcome == "defer":
            i.run.deferred = d
            fx.arm(p, f"jd:{i.jid}", v.next_ms or at)
            self._decision(fx, p, i.spec, i.run, d, "defer", v.reasons, at, v.next_ms,
                           channel=v.channel)
            return False
        if v.outcome == "drop":
            if v.channel == "enrich":  # silent enrichment: remember what was not sent
                p.enrichment[i.template] = at
            self._decision(fx, p, i.spec, i.run, d, "drop", v.reasons, at, None,
                           channel=v.channel)
            return True
        self.policy.record(p, v.channel, i.jid, i.dispatch_id, at)
        self._decision(fx, p, i.spec, i.run, d, "send", v.reasons, at, None, channel=v.channel)
        self._dispatch(fx, p, d, i.jid, i.run.v, i.run.instance, v.channel, at, 1)
        return True

    def _dispatch(self, fx: Effects, p: Profile, d: dict, jid: str, version: int,
                  instance: int, channel: str, at: int, attempt: int) -> None:
        dispatch_id = d["dispatch_id"] if channel == d["channel"] else \
            idempotency_key(d["dispatch_id"], "fallback", channel)
        record = records.dispatch(p, d, dispatch_id, jid, version, instance, channel, at,
                                  attempt)
        fx.dispatch(channel, p.id, record)
        self.counts[("dispatch", channel)] += 1
        sent = p.sent
        sent[dispatch_id] = {"d": d, "jid": jid, "v": version, "inst": instance,
                             "ch": channel, "attempt": attempt, "at": at}
        for k in [k for k, v in sent.items() if v["at"] < at - 7 * DAY_MS]:
            del sent[k]

    def _on_delivery_failed(self, fx: Effects, p: Profile, dispatch_id: str, at: int,
                           cause: dict) -> None:
        """A channel reported a dispatch failed: retry once, then the backup channel."""
        self._settle(fx, p)
        s = p.sent.get(dispatch_id)
        if s is None:
            return
        self.counts[("dispatch_failed", s["ch"])] += 1
        spec = self.registry.spec(s["jid"], s["v"])
        run = Run(v=s["v"], instance=s["inst"])  # what its records name
        d = dict(s["d"], cause=cause)
        if s["attempt"] == 1:
            if spec is not None:
                self._decision(fx, p, spec, run, d, "send", ["delivery.failed", "retry"], at,
                               None, channel=s["ch"])
            self._dispatch(fx, p, dict(d, channel=s["ch"], dispatch_id=dispatch_id), s["jid"],
                           s["v"], s["inst"], s["ch"], at, 2)
            return
        v = self.policy.decide(p, s["ch"], d["purpose"], {}, s["jid"], at, exclude=(s["ch"],))
        backup = v.outcome == "send" and v.channel not in (s["ch"], "enrich")
        if spec is not None:
            self._decision(fx, p, spec, run, d, "send" if backup else "drop",
                           ["delivery.failed", *v.reasons], at, None, channel=v.channel)
        if backup:
            self.policy.record(p, v.channel, s["jid"], idempotency_key(dispatch_id, v.channel),
                               at)
            self._dispatch(fx, p, dict(d, channel=s["ch"], dispatch_id=dispatch_id), s["jid"],
                           s["v"], s["inst"], v.channel, at, 1)

    def _release_held(self, fx: Effects, p: Profile, jid: str, at: int) -> None:
        """The journey was resumed: send the held message, then carry on from there."""
        self._settle(fx, p)
        run = p.journeys.get(jid)
        if run is None or run.held is None:
            return
        spec = self.registry.spec(jid, run.v)
        if spec is None:
            return
        held = run.held
        run.held = None
        fx.index_delete(keys.held(jid, held["at"], p.ref))
        step = spec.steps[run.node]
        intent = intent_from_dict(held["intent"], run, spec, getattr(step, "next", None))
        self._moment.append(intent)
        self._resolve(fx, p, at)
