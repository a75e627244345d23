"""Lifecycle stage: which stage an event moves a customer to, and the minimum stage duration.

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

from models.settings import LifecycleRules


class StageRules:
    """Compiled lifecycle transitions with a memo per (stage, event key)."""

    def __init__(self, rules: LifecycleRules) -> None:
        self.rules = rules
        self.min_stage_ms = rules.min_stage_duration_s * 1000
        self.inactivity_ms = rules.inactivity_s * 1000
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
