"""Frequency caps: sliding windows in event time over the customer's send ledger, per
channel, across channels (``total``) and per journey. A dispatch is counted once, by its id,
so replays and retries never break a cap."""

from __future__ import annotations

from models.profile import Profile
from state.ledger import record_send, sends_within

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
WINDOW_MS = {"day": DAY_MS, "week": WEEK_MS}


def first_block(p: Profile, channel: str, jid: str, caps: dict, journey_caps: dict,
                at: int) -> tuple[str, int | None] | None:
    """(reason, next eligible ms) for the first cap this send would break, else None.
    ``caps`` are the configured ones (per channel and ``total``), ``journey_caps`` the
    journey's own."""
    checks: list[tuple[str, int, int, object]] = []
    for name, limits in ((channel, caps.get(channel, {})), ("total", caps.get("total", {}))):
        for window, limit in limits.items():
            if limit is not None:
                checks.append((f"cap.{name}.{window}", limit, WINDOW_MS[window],
                               (lambda e, n=name: n == "total" or e[1] == n)))
    for name, limits in ((channel, journey_caps.get(channel)),
                         ("total", journey_caps.get("total"))):
        if limits is None:
            continue
        for window, limit in limits.items():
            if limit is not None:
                checks.append((f"cap.journey.{name}.{window}", limit, WINDOW_MS[window],
                               (lambda e, n=name: e[2] == jid and
                                (n == "total" or e[1] == n))))
    for reason, limit, span, match in checks:
        inside = sends_within(p, at, span, match)  # type: ignore[arg-type]
        if len(inside) >= limit:
            # Eligible again once enough of these sends have left the window.
            if limit <= 0:
                return reason, None  # a cap of 0 shuts the channel: never eligible
            return reason, inside[len(inside) - limit] + span
    return None


def record(p: Profile, channel: str, jid: str, dispatch_id: str, at: int) -> bool:
    """Count a send in the ledger; a dispatch already counted (replay, retry) is not."""
    return record_send(p, channel, jid, dispatch_id, at)
