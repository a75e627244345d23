"""Predictive scores on every profile: churn risk, upgrade probability and CLV.

With a promoted NBA model, every profile a micro-batch changed gets its scores refreshed at
the end of the batch, in one batched call per score model (``refresh``), as of the
customer's last event, unless nothing they are computed from changed (``stale``):
``segue profile`` and segments read them there. A journey condition on ``scores.*``
computes them for that customer at that moment instead (``now``), so a decision never
depends on where a micro-batch ended.

Example:
    >>> refresh([], None)
    0
"""

from __future__ import annotations

from typing import Any

from models import features
from models.profile import Profile


def _record(scores: dict[str, float], model: Any, at: int) -> dict:
    return {**scores, "model": model.version, "at_ms": at}


def inputs(p: Profile) -> tuple:
    """What a profile's scores as of its last event are computed from, with the model: the
    rest of what ``features.build`` reads (counters, traits, revenue, sessions) changes only
    with an applied event or a merge, and each of those moves ``events`` or ``first_seen``;
    a stage change moves ``lifecycle.changes``."""
    lc = p.lifecycle
    return (p.last_seen, p.events, p.first_seen, lc.changes, lc.since)


def stale(p: Profile, model: Any, before: tuple | None) -> bool:
    """Whether ``p`` needs its scores refreshed: ``before`` is (``inputs``, the scores
    record) as the batch first read the profile (None: new to this batch's store). A batch
    that fired only a journey timer, answered a claim or moved the outbox leaves the scores
    as they are, and the same model gives the same numbers."""
    s = p.scores
    return (before is None or s is None or s is not before[1]
            or s.get("model") != model.version or s.get("at_ms") != p.last_seen
            or inputs(p) != before[0])


def refresh(profiles: list[Profile], model: Any) -> int:
    """Score ``profiles`` as of each one's last event, in one call; returns how many."""
    if model is None or not profiles or not model.scorers:
        return 0
    rows = [features.build(p, p.last_seen)[0] for p in profiles]
    for p, s in zip(profiles, model.scores(rows), strict=True):
        p.scores = _record(s, model, p.last_seen)
    return len(profiles)


def now(p: Profile, at: int, model: Any) -> dict:
    """The customer's scores at event time ``at`` (the stored ones without a model)."""
    if model is None or not model.scorers:
        return p.scores or {}
    return _record(model.scores([features.build(p, at)[0]])[0], model, at)
