"""The records a journey emits: decisions, dispatch commands and journey events."""

from __future__ import annotations

from typing import Any

from models.envelope import envelope, idempotency_key, journey_ref
from models.journey import Journey
from models.profile import Profile, Run


def decision(p: Profile, spec: Journey, run: Run, intent: dict, outcome: str,
             reasons: list[str], at: int, next_ms: int | None, channel: str | None) -> dict:
    """One delivery decision on ``segue.decisions`` (the audit log of every send step)."""
    return envelope(
        "decision",
        idempotency_key("decision", intent["dispatch_id"], outcome, at, channel, *reasons),
        customer_id=p.id,
        journey=journey_ref(spec.id, run.v, intent["node"], run.instance),
        at_ms=at, cause=intent["cause"],
        dispatch_id=intent["dispatch_id"],
        channel=channel or intent["channel"],
        original_channel=intent["channel"],
        template=intent["template"],
        outcome=outcome,
        reasons=reasons,
        next_eligible_ms=next_ms,
        action=intent.get("action"),
        nba=intent.get("nba"),
    )


def dispatch(p: Profile, d: dict, dispatch_id: str, jid: str, version: int, instance: int,
             channel: str, at: int, attempt: int) -> dict:
    """A dispatch command on ``segue.dispatch.<channel>``; a retry has its own key."""
    key = dispatch_id if attempt == 1 else idempotency_key(dispatch_id, "attempt", attempt)
    return envelope(
        "dispatch", key,
        customer_id=p.id, journey=journey_ref(jid, version, d["node"], instance),
        at_ms=at, cause=d["cause"],
        dispatch_id=dispatch_id,
        attempt=attempt,
        channel=channel,
        original_channel=d["channel"],
        template=d["template"],
        purpose=d["purpose"],
        action=d.get("action"),
        personalization=d["personalization"],
    )


def journey_event(p: Profile, spec: Journey, run: Run, kind: str, at: int, cause: dict,
                  node: str | None, extra: dict[str, Any]) -> dict:
    """A journey entry, step, exit or goal on ``segue.journey-events``."""
    node = node or run.node
    visit = run.visits.get(node, 0)
    record = envelope(
        kind,
        idempotency_key(kind, p.id, spec.id, run.v, node, run.instance, visit,
                        extra.get("reason"), run.entered),
        customer_id=p.id, journey=journey_ref(spec.id, run.v, node, run.instance),
        at_ms=at, cause=cause, **extra)
    # The run's experiment arms travel with every record (analytics: conversion per arm).
    if run.variant is not None:
        record["variant"] = run.variant
    if run.holdout is not None:
        record["holdout"] = run.holdout
    if kind == "journey.exited":
        record["entered_ms"] = run.entered
    return record
