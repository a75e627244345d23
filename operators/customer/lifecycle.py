"""Lifecycle stage: which stage an event moves a customer to, the minimum stage duration,
and the ``lifecycle.changed`` records.

The rules live in ``Settings.lifecycle`` (see ``models.settings``); the first matching transition
wins. A change requested sooner than ``min_stage_duration_s`` after the previous change waits
on a durable timer; the newest request wins. Inactivity moves customers from a timer too.

Example:
    >>> from models.settings import LifecycleRules
    >>> rules = StageRules(LifecycleRules())
    >>> rules.requested(None, "page:Home")
    'awareness'
    >>> rules.requested("awareness", "page:Pricing")
    'consideration'
    >>> rules.requested("consideration", "page:Home") is None
    True
"""

from __future__ import annotations

import msgspec

from models.envelope import envelope, idempotency_key
from models.profile import Profile
from models.settings import LifecycleRules
from operators.effects import Effects


class StageRules:
    """Compiled lifecycle transitions with a memo per (stage, event key)."""

    def __init__(self, rules: LifecycleRules) -> None:
        self.rules = rules
        self.min_stage_ms = rules.min_stage_duration_s * 1000
        self.inactivity_ms = rules.inactivity_s * 1000
        # Without a stage that inactivity moves a customer from, its timer could never do
        # anything: none is armed (a timer armed earlier fires once and is not armed again).
        self.inactivity_timers = bool(rules.inactivity_from)
        self._memo: dict[tuple[str | None, str], str | None] = {}

    def requested(self, stage: str | None, key: str) -> str | None:
        """The stage this event asks for, or None if it asks for no change."""
        memo_key = (stage, key)
        if memo_key in self._memo:
            return self._memo[memo_key]
        cur = stage or "none"
        result = None
        for t in self.rules.transitions:
            if ("*" in t.on or key in t.on) and ("*" in t.from_ or cur in t.from_):
                result = t.to if t.to != stage else None
                break
        if len(self._memo) < 100_000:
            self._memo[memo_key] = result
        return result

    def inactivity_applies(self, stage: str | None) -> bool:
        return stage is not None and stage in self.rules.inactivity_from


def request_stage(fx: Effects, rules: StageRules, p: Profile, to: str, at_ms: int,
                  cause: dict) -> None:
    """Move the customer to ``to`` now, or once the current stage has lasted long enough."""
    lc = p.lifecycle
    if lc.stage is not None and lc.since is not None and at_ms < lc.since + rules.min_stage_ms:
        lc.pending = {"stage": to, "cause": cause}
        if "stage" not in p.timers:
            fx.arm(p, "stage", lc.since + rules.min_stage_ms)
        return
    change_stage(fx, p, to, at_ms, cause)


def change_stage(fx: Effects, p: Profile, to: str, at_ms: int, cause: dict) -> None:
    """The stage changes (if it is another): ``lifecycle.changed`` on segue.customer-events."""
    lc = p.lifecycle
    before = lc.stage
    lc.pending = None
    if before == to:
        return
    lc.stage = to
    lc.since = at_ms
    lc.changes += 1
    cause_id = cause.get("message_id") or f"{cause.get('timer')}@{cause.get('due_ms')}"
    fx.count("lifecycle_changes")
    fx.customer_event(p.id, envelope(
        "lifecycle.changed", idempotency_key("lifecycle", p.id, before, to, cause_id, at_ms),
        customer_id=p.id, journey=None, at_ms=at_ms, cause=cause,
        from_stage=before, to_stage=to))


def on_timer(fx: Effects, rules: StageRules, p: Profile, kind: str, due: int) -> None:
    """The customer's ``inactivity`` or ``stage`` timer fired."""
    lc = p.lifecycle
    if kind == "inactivity":
        target = p.last_seen + rules.inactivity_ms
        if target > due:  # activity since it was armed: push it back, lazily
            if rules.inactivity_timers:
                fx.arm(p, "inactivity", target)
        elif rules.inactivity_applies(lc.stage):
            request_stage(fx, rules, p, rules.rules.inactivity_stage, due,
                          {"timer": "inactivity", "due_ms": due})
    elif kind == "stage":
        pending = lc.pending
        if pending is not None:
            change_stage(fx, p, pending["stage"], due, pending["cause"])


def merge(fx: Effects, p: Profile, snapshot: Profile) -> None:
    """A customer merged into ``p``: the winner's stage stands; one without takes the loser's
    (with its pending change)."""
    if p.lifecycle.stage is None and snapshot.lifecycle.stage is not None:
        p.lifecycle = msgspec.structs.replace(snapshot.lifecycle)
        due = snapshot.timers.get("stage")
        if due is not None:
            fx.arm(p, "stage", due)
