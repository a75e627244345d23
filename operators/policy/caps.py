"""Frequency caps: sliding windows in event time over the customer's send ledger, per
channel, across channels (``total``) and per journey. A dispatch is counted once, by its id,
so replays and retries never break a cap."""

from __future__ import annotations

from models.profile import Profile
from state.ledger import record_send, send_times

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
WINDOW_MS = {"day": DAY_MS, "week": WEEK_MS}


def first_block(p: Profile, channel: str, jid: str, caps: dict, journey_caps: dict,
                at: int) -> tuple[str, int | None] | None:
    """(reason, next eligible ms) for the first cap this send would break, else None.
    ``caps`` are the configured ones (per channel and ``total``), ``journey_caps`` the
    journey's own; checked in that order."""
    for journey, table, prefix in ((None, caps, "cap."), (jid, journey_caps, "cap.journey.")):
        for name in (channel, "total"):
            limits = table.get(name)
            if not limits:
                continue
            for window, limit in limits.items():
                if limit is None:
                    continue
                span = WINDOW_MS[window]
                inside = send_times(p, at, span, None if name == "total" else name, journey)
                if len(inside) >= limit:
                    # Eligible again once enough of these sends have left the window.
                    if limit <= 0:
                        return f"{prefix}{name}.{window}", None  # a cap of 0 shuts the channel
                    return f"{prefix}{name}.{window}", inside[len(inside) - limit] + span
    return None


def record(p: Profile, channel: str, jid: str, dispatch_id: str, at: int) -> bool:
    """Count a send in the ledger; a dispatch already counted (replay, retry) is not."""
    return record_send(p, channel, jid, dispatch_id, at)
