"""Read-only views of the stores (``segue profile``, the demo summary, tests).

Opening read-only takes no lock, so this works while ``segue run`` is running.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson

from state import keys
from state.store import PartitionStore
from state.windows import window_counts


def partition_stores(state_dir: str | Path) -> list[Path]:
    root = Path(state_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "CURRENT").exists())


def open_read_only(path: Path) -> PartitionStore:
    return PartitionStore(path, read_only=True)


def find_profile(state_dir: str | Path, customer: str) -> tuple[Path, dict] | None:
    for path in partition_stores(state_dir):
        store = open_read_only(path)
        try:
            raw = store.get(keys.profile(customer))
        finally:
            store.close()
        if raw is not None:
            return path, orjson.loads(raw)
    return None


def iter_profiles(state_dir: str | Path) -> Iterator[dict]:
    for path in partition_stores(state_dir):
        store = open_read_only(path)
        try:
            for _, v in store.scan(keys.PROFILE):
                yield orjson.loads(v)
        finally:
            store.close()


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ISO 8601 UTC, for people."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def profile_view(profile: dict) -> dict:
    """The profile as a person reads it: times in ISO 8601, window counts as of the last event.

    >>> from models.profile import new_profile
    >>> v = profile_view(new_profile("u1", 0))
    >>> v["first_seen"], v["counters"]
    ('1970-01-01T00:00:00.000Z', {})
    """
    at = profile["last_seen"]
    view = {k: v for k, v in profile.items() if k not in ("counters", "recent_ids")}
    view["first_seen"] = iso(profile["first_seen"])
    view["last_seen"] = iso(profile["last_seen"])
    view["lifecycle"] = {**profile["lifecycle"], "since": iso(profile["lifecycle"]["since"])}
    view["timers"] = {kind: iso(due) for kind, due in profile["timers"].items()}
    view["counters"] = {
        name: window_counts(c, at) for name, c in sorted(profile["counters"].items())
    }
    return view
