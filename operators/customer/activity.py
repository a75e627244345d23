"""What an applied event changes in its customer's profile: counts, sessions, first and last
seen, traits, time zone, sliding-window counters, revenue and the configured sums.

Example:
    >>> from models.events import InEvent
    >>> from models.profile import new_profile
    >>> p = new_profile("user:u1", 0)
    >>> ev = InEvent("identify", "m1", "u1", "identify", 1_000, traits={"email": "A@b.c"})
    >>> record(p, ev, session_gap_ms=1_800_000, sums=())
    >>> p.events, p.sessions, sorted(p.traits)
    (1, 1, ['email_sha256'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from models.identifiers import hash_email, hash_personal
from models.in_event import InEvent
from models.profile import Profile
from models.settings import PrivacySettings, ProfileLimits, ProfileSum
from operators.customer.limits import dropped, trait_too_big
from state.windows import add as count_event
from state.windows import new_counter

SUM_LIMIT = 2**53
DEFAULT_LIMITS = ProfileLimits()
PERSONAL = PrivacySettings().personal_traits


def record(p: Profile, ev: InEvent, session_gap_ms: int, sums: Sequence[ProfileSum],
           limits: ProfileLimits = DEFAULT_LIMITS,
           privacy: Mapping[str, str] | None = None) -> None:
    """Fold one event into the profile (see the module docstring); new names beyond
    ``limits`` are counted under ``dropped`` instead (``operators.customer.limits``)."""
    ts = ev.ts_ms
    p.events += 1
    last = p.last_seen
    if p.events == 1 or ts - last > session_gap_ms:
        p.sessions += 1
    if ts > last:
        p.last_seen = ts
    if ts < p.first_seen:
        p.first_seen = ts
    if ev.type == "group":  # an account's traits, not the user's (Segment's group call)
        if ev.group_id:
            join_group(p, ev.group_id, ev.traits, ts, limits, privacy)
    elif ev.traits:
        set_traits(p, ev.traits, ts, limits, privacy)
    if ev.timezone:
        p.timezone = ev.timezone
    counters = p.counters
    counter = counters.get(ev.key)
    if counter is None:
        if len(counters) >= limits.max_counters:
            dropped(p, "counters")
        else:
            counter = counters[ev.key] = new_counter()
    if counter is not None:
        count_event(counter, ts)
    if ev.key == "Order Completed":
        rev = ev.properties.get("revenue")
        if isinstance(rev, int | float) and not isinstance(rev, bool) and 0 < rev < SUM_LIMIT:
            p.revenue = round(p.revenue + rev, 2)  # monetary, for NBA
    for rule in sums:
        if ev.key == rule.event:
            add_sum(p, rule.name, ev.properties.get(rule.by), ev.properties.get(rule.value),
                    limits.max_sum_keys)


def set_traits(p: Profile, traits: dict, ts: int,
               limits: ProfileLimits = DEFAULT_LIMITS,
               privacy: Mapping[str, str] | None = None, into: dict | None = None) -> None:
    """Latest event time wins per trait (whatever the arrival order). A raw email never
    reaches state: it is kept as its SHA-256 only; ``privacy`` (trait name -> hash, drop or
    keep; default: phone and ip hashed) rules the other personal traits. ``into`` (a group)
    receives them instead of the profile; what limits keep out is counted on the profile."""
    if into is None:
        ts_of, mine = p.trait_ts, p.traits
    else:
        ts_of, mine = into.setdefault("trait_ts", {}), into["traits"]
    personal = PERSONAL if privacy is None else privacy
    for k, v in traits.items():
        if k == "email":
            if not isinstance(v, str):
                continue
            k, v = "email_sha256", hash_email(v)
        elif k in personal:
            how = personal[k]
            if how == "drop":
                continue
            if how == "hash":
                if v is None:
                    continue
                k, v = f"{k}_sha256", hash_personal(k, v if isinstance(v, str) else str(v))
        if ts >= ts_of.get(k, -1):
            if (k not in mine and len(mine) >= limits.max_traits) \
                    or trait_too_big(v, limits.max_trait_bytes):
                dropped(p, "traits")
                continue
            mine[k] = v
            ts_of[k] = ts


def join_group(p: Profile, group_id: str, traits: dict, ts: int,
               limits: ProfileLimits = DEFAULT_LIMITS,
               privacy: Mapping[str, str] | None = None) -> None:
    """Record that the customer belongs to ``group_id`` and keep that group's traits (latest
    event time wins per trait, the same privacy rules as the user's). The group with the
    latest ``group`` call is the customer's current one (``group.<trait>`` in conditions)."""
    groups = p.groups
    g = groups.get(group_id)
    if g is None:
        if len(groups) >= limits.max_groups:
            dropped(p, "groups")
            return
        g = groups[group_id] = {"traits": {}, "trait_ts": {}, "since": ts}
    set_traits(p, traits, ts, limits, privacy, into=g)
    if ts >= p.group_ts:
        p.group, p.group_ts = group_id, ts


def group_view(p: Profile) -> dict:
    """``group`` in conditions: the current group's traits and its ``id``."""
    gid = p.group
    if gid is None:
        return {}
    return {**p.groups[gid]["traits"], "id": gid}


def add_sum(p: Profile, name: str, by: object, value: object, max_keys: int = 200) -> None:
    """Add ``value`` to the sum ``name`` under ``by``; journeys read the leader as
    ``profile.top.<name>``."""
    if not isinstance(by, str) or not isinstance(value, int | float) \
            or isinstance(value, bool):
        return
    sums = p.sums.setdefault(name, {})
    if by not in sums and len(sums) >= max_keys:
        dropped(p, "sum_keys")
        return
    # Clamped: one absurd value must not overflow what the profile can store.
    sums[by] = max(min(sums.get(by, 0) + value, SUM_LIMIT), -SUM_LIMIT)
    # The leader (ties: alphabetical) is what journeys read as profile.top.<name>.
    p.top[name] = min(sums, key=lambda k: (-sums[k], k))
