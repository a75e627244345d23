"""The customer profile as stored under ``c|<customer>`` (``state.profiles``: msgpack).

A plain dict on the hot path (decoded once per micro-batch, written back once); this module
is the one place that knows its shape.
"""

from __future__ import annotations

from typing import Any

Profile = dict[str, Any]


def new_profile(ref: str, ts_ms: int) -> Profile:
    """A fresh profile for the customer with reference ``ref`` (``user:…``, ``anon:…``)."""
    return {
        "id": ref.split(":", 1)[1] if ":" in ref else ref,
        "ref": ref,
        "links": [ref],
        "merged_from": [],
        "trait_ts": {},
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
