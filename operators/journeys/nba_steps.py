"""Next-best-action steps: a journey's ``nba`` step queues a request; the micro-batch's requests
are scored in one model call, and a customer's own are decided first if anything else touches
that customer (so the outcome never depends on where a batch ended). Then the journey carries
on with the chosen action's send, or with nothing for ``do_nothing``."""

from __future__ import annotations

from mypy_extensions import trait

from models.profile import Profile
from operators.effects import Effects
from operators.journeys.delivery import _Intent, dispatch_id, intent_to_dict
from operators.journeys.parts import EngineParts
from operators.nba import Request


@trait
class NbaSteps(EngineParts):
    """The engine's next-best-action steps (a part of ``JourneyEngine``)."""

    def _flush_nba(self, fx: Effects, ref: str | None = None) -> None:
        """Make the waiting next-best-action decisions (all, or one customer's) and carry
        their journeys on."""
        while self._nba:
            if ref is None:
                reqs, self._nba = self._nba, []
                self.nba_pending.clear()
            else:
                reqs = [r for r in self._nba if r.payload[0].ref == ref]
                if not reqs:
                    return
                self._nba = [r for r in self._nba if r.payload[0].ref != ref]
                self.nba_pending.discard(ref)
            saved, self._moment = self._moment, []
            for r, rec in zip(reqs, self.nba.decide(reqs), strict=True):
                self._carry_on_nba(fx, r, rec)
            self._moment = saved

    def _nba_converted(self, p: Profile, at: int) -> None:
        """A goal event: the customer's last decision converted, if within the horizon."""
        last = p.nba_open
        if last is not None and 0 <= at - last[2] <= self.nba.s.horizon_s * 1000:
            self.nba.bandit.converted(last[1], last[0])
            p.nba_open = None

    def _settle(self, fx: Effects, p: Profile) -> None:
        """Make this customer's waiting decisions before anything else happens to it."""
        if p.ref in self.nba_pending:
            self._flush_nba(fx, p.ref)

    def _carry_on_nba(self, fx: Effects, r: Request, rec: dict) -> None:
        p, jid, run, spec, node, step, at, cause, ev = r.payload
        if p.journeys.get(jid) is not run or run.node != node:
            return  # cannot happen: a customer's decisions are made before it is touched
        if rec["scores"]:
            p.scores = {**rec["scores"], "model": rec["model"], "at_ms": at}
        primary = rec["ranked"][0] if rec["ranked"] else None
        action = primary["action"] if primary else None
        if action is not None:  # what the cold-start bandit learns from
            segment = self.nba.segment(r.cats)
            if r.prior is None or rec["model"] is not None:
                self.nba.bandit.decided(segment, action)  # else counted when asked for
            p.nba_open = [action, segment, at]
        self._step_event(fx, p, spec, run, node, "nba", at, cause,
                         {"action": action, "explored": rec["explored"], "model": rec["model"]})
        if primary is None:
            self._advance(fx, p, jid, run, spec, step.next, at, ev, cause)
            return
        self.counts[("nba", action, rec["explored"])] += 1
        if primary["channel"] == "none":
            intent = _Intent(jid, run, spec, node, "none", primary["template"], "marketing", {},
                             action, rec, cause, dispatch_id(p, jid, run, node))
            self._decision(fx, p, spec, run, intent_to_dict(intent), "drop",
                           ["nba.do_nothing"], at, None)
            self._advance(fx, p, jid, run, spec, step.next, at, ev, cause)
        else:
            self._intend(p, jid, run, spec, node, primary["channel"], primary["template"],
                         "marketing", [], action, rec, at, cause, None,
                         step.next, ev)
        self._resolve(fx, p, at)

