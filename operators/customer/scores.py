"""Predictive scores on every profile: churn risk, upgrade probability and CLV.

With a promoted NBA model, every profile a micro-batch changed gets its scores refreshed at
the end of the batch, in one batched call per score model (``refresh``), as of the
customer's last event: ``segue profile`` and segments read them there. A journey condition
on ``scores.*`` computes them for that customer at that moment instead (``now``), so a
decision never depends on where a micro-batch ended.

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


def refresh(profiles: list[Profile], model: Any) -> int:
    """Score ``profiles`` as of each one's last event, in one call; returns how many."""
    if model is None or not profiles or not model.scorers:
        return 0
    rows = [features.build(p, p["last_seen"])[0] for p in profiles]
    for p, s in zip(profiles, model.scores(rows), strict=True):
        p["scores"] = _record(s, model, p["last_seen"])
    return len(profiles)


def now(p: Profile, at: int, model: Any) -> dict:
    """The customer's scores at event time ``at`` (the stored ones without a model)."""
    if model is None or not model.scorers:
        return p.get("scores", {})
    return _record(model.scores([features.build(p, at)[0]])[0], model, at)
