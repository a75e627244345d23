"""Read-only views of the stores (``segue profile``, the demo summary, tests).

Opening read-only takes no lock, so this works while ``segue run`` is running.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from state import keys
from state.profiles import decode_profile
from state.store import PartitionStore
from state.windows import window_counts


def partition_stores(state_dir: str | Path) -> list[Path]:
    root = Path(state_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "CURRENT").exists())


def open_read_only(path: Path) -> PartitionStore:
    return PartitionStore(path, read_only=True)


def _candidates(identifier: str) -> list[str]:
    from models.identifiers import hash_email

    if ":" in identifier and identifier.split(":", 1)[0] in ("user", "anon", "email", "device",
                                                              "trait"):
        return [identifier]
    if "@" in identifier:
        return [f"email:{hash_email(identifier)}"]
    return [f"user:{identifier}", f"anon:{identifier}", f"device:{identifier}",
            f"email:{identifier}"]


def find_profile(state_dir: str | Path, customer: str) -> tuple[Path, dict] | None:
    """The customer behind any identifier: a user id, anonymous id, email address, device id
    or ``kind:value``; links and merges are followed to the canonical customer."""
    stores = [(path, open_read_only(path)) for path in partition_stores(state_dir)]
    try:
        refs = _candidates(customer)
        for _ in range(8):  # follow links/redirects a few hops at most
            for ref in refs:
                for path, store in stores:
                    raw = store.get(keys.profile(ref))
                    if raw is not None:
                        return path, decode_profile(raw)
            nxt = []
            for ref in refs:
                for _, store in stores:
                    for key in (keys.link(ref), keys.redirect(ref)):
                        v = store.get(key)
                        if v is not None:
                            nxt.append(v.decode())
            if not nxt:
                return None
            refs = nxt
        return None
    finally:
        for _, store in stores:
            store.close()


def some_customers(state_dir: str | Path, n: int = 5) -> tuple[list[str], int]:
    """Up to ``n`` customers in the state (the first of each store, in turn) and how many
    stores were read: what ``segue profile`` suggests when a customer is not found."""
    picks: list[str] = []
    stores = partition_stores(state_dir)
    for path in stores:
        store = open_read_only(path)
        try:
            for k, _ in store.scan(keys.PROFILE):
                picks.append(k[len(keys.PROFILE):].decode())
                break
        finally:
            store.close()
        if len(picks) >= n:
            break
    return picks, len(stores)


def iter_profiles(state_dir: str | Path) -> Iterator[dict]:
    for path in partition_stores(state_dir):
        store = open_read_only(path)
        try:
            for _, v in store.scan(keys.PROFILE):
                yield decode_profile(v)
        finally:
            store.close()


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ISO 8601 UTC, for people."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def profile_view(profile: dict) -> dict:
    """The profile as a person reads it: times in ISO 8601, window counts as of the last event.

    >>> from models.profile import new_profile, plain
    >>> v = profile_view(plain(new_profile("u1", 0)))
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
