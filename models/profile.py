"""The customer profile as stored under ``c|<customer>`` (orjson).

A plain dict on the hot path (decoded once per micro-batch, written back once); this module
is the one place that knows its shape.
"""

from __future__ import annotations

from typing import Any

Profile = dict[str, Any]


def new_profile(customer_id: str, ts_ms: int) -> Profile:
    return {
        "id": customer_id,
        "first_seen": ts_ms,
        "last_seen": ts_ms,
        "events": 0,
        "sessions": 0,
        "traits": {},
        "timezone": None,
        "counters": {},
        "recent_ids": [],
        "lifecycle": {"stage": None, "since": None, "pending": None, "changes": 0},
        "timers": {},
        "journeys": {},
        "journey_history": {},
    }
