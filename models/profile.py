"""The customer profile: what Segue keeps of each customer (stored under ``c|<customer>``).

A typed ``msgspec.Struct`` on the hot path: fixed attributes instead of dict keys, encoded
positionally with msgpack by ``state.profiles`` (so **fields are only ever appended at the end,
never reordered or removed**: the order is the stored format). ``plain`` gives the dict
shape that tools, the merge hand-over and ``segue profile`` show; ``from_plain`` reads that
shape back (and the dict-shaped profiles earlier versions stored).

Example:
    >>> p = new_profile("user:u1", 1_000)
    >>> p.events += 1
    >>> plain(p)["events"], "scores" in plain(p)    # optional parts absent until set
    (1, False)
    >>> from_plain(plain(p)) == p
    True
"""

from __future__ import annotations

from typing import Any

import msgspec

# The structs are not tracked by the cyclic garbage collector (gc=False): a profile holds
# plain data and never a reference back to itself, and a cache of a million profiles would
# otherwise be walked by every full collection (each untracked struct is also 16 bytes
# smaller). Their dicts and lists are still tracked, as any.

class Lifecycle(msgspec.Struct, array_like=True, gc=False):
    """The customer's lifecycle stage (``operators.customer.lifecycle``)."""

    stage: str | None = None
    since: int | None = None
    # A change that waits for the minimum stage duration: {"stage": …, "cause": {…}}.
    pending: dict[str, Any] | None = None
    changes: int = 0


class Run(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """The customer's place in one journey (``operators.journeys.runner``)."""

    v: int                                          # the journey version it runs
    node: str = ""                                  # the current step
    entered: int | None = None                      # entry time (ms)
    instance: int = 1                               # the customer's n-th entry
    due: int | None = None                          # the current step's timer
    visits: dict[str, int] = msgspec.field(default_factory=dict)  # per step
    variant: str | None = None                      # split: the variant chosen
    holdout: bool | None = None
    # A send the journey holds (paused): {"at", "intent", "indexed"}; one that waits for a
    # send window or a cap: the intent.
    held: dict[str, Any] | None = None
    deferred: dict[str, Any] | None = None
    true_exits: list[str] = msgspec.field(default_factory=list)  # condition exits now true
    trigger: dict[str, Any] = msgspec.field(default_factory=dict)  # the entry event's props
    pending_exit: str | None = None                 # an exit waiting for min_duration


_RUN_FIELDS: tuple[str, ...] = Run.__struct_fields__


class Profile(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """One customer. Stored positionally: append new fields at the end only."""

    id: str
    ref: str                                        # user:…, anon:…, email:… (its key)
    links: list[str]                                # identifiers it holds (ref first)
    merged_from: list[str] = msgspec.field(default_factory=list)
    trait_ts: dict[str, Any] = msgspec.field(default_factory=dict)  # event time per trait
    first_seen: int = 0
    last_seen: int = 0
    events: int = 0
    sessions: int = 0
    traits: dict[str, Any] = msgspec.field(default_factory=dict)
    timezone: str | None = None
    # Sliding-window event counters by event key (``state.windows``).
    counters: dict[str, Any] = msgspec.field(default_factory=dict)
    recent_ids: list[Any] = msgspec.field(default_factory=list)   # for dedup by messageId
    lifecycle: Lifecycle = msgspec.field(default_factory=Lifecycle)
    timers: dict[str, int] = msgspec.field(default_factory=dict)  # kind -> due (ms)
    journeys: dict[str, Run] = msgspec.field(default_factory=dict)  # by journey id
    journey_history: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    # ----- optional parts (absent from ``plain`` until set) --------------------------------
    scores: dict[str, Any] | None = None            # NBA model scores, as of ``at_ms``
    awaiting: dict[str, Any] = msgspec.field(default_factory=dict)  # claims not answered
    held_events: int = 0                            # events held back for those claims
    held_seq: int = 0
    ledger: list[Any] = msgspec.field(default_factory=list)      # sends (``state.ledger``)
    sent: dict[str, Any] = msgspec.field(default_factory=dict)  # by dispatch id
    engagement: dict[str, Any] = msgspec.field(default_factory=dict)
    sums: dict[str, Any] = msgspec.field(default_factory=dict)  # profile_sums
    top: dict[str, Any] = msgspec.field(default_factory=dict)     # the largest sum's key
    revenue: float = 0.0
    nba_open: list | None = None                    # the NBA offer awaiting an outcome
    dropped: dict[str, Any] = msgspec.field(default_factory=dict)  # what limits kept out
    groups: dict[str, Any] = msgspec.field(default_factory=dict)  # Segment group calls
    group_ts: int = -1
    group: str | None = None
    consent: dict[str, Any] = msgspec.field(default_factory=dict)
    consent_ts: dict[str, Any] = msgspec.field(default_factory=dict)
    suppressed: dict[str, Any] = msgspec.field(default_factory=dict)  # channel -> why
    enrichment: dict[str, Any] = msgspec.field(default_factory=dict)
    erased_at: int | None = None
    # Marks a profile the batch merged away or erased (deleted at commit); never stored True.
    gone: bool = False


FIELDS: tuple[str, ...] = Profile.__struct_fields__
CORE = frozenset(FIELDS[:FIELDS.index("scores")])  # always shown; the optional parts follow
_DEFAULTS = {name: getattr(Profile(id="", ref="", links=[]), name) for name in FIELDS}


def new_profile(ref: str, ts_ms: int) -> Profile:
    """A fresh profile for the customer with reference ``ref`` (``user:…``, ``anon:…``)."""
    return Profile(id=ref.split(":", 1)[1] if ":" in ref else ref, ref=ref, links=[ref],
                   first_seen=ts_ms, last_seen=ts_ms)


def plain(p: Profile) -> dict[str, Any]:
    """The profile as plain data (JSON-able): every core field, the optional ones that are
    set; the lifecycle as a dict. The shape earlier versions stored."""
    out: dict[str, Any] = {}
    for name in FIELDS:
        v = getattr(p, name)
        if name in CORE or v != _DEFAULTS[name]:
            out[name] = v
    lc = p.lifecycle
    out["lifecycle"] = {"stage": lc.stage, "since": lc.since, "pending": lc.pending,
                        "changes": lc.changes}
    out["journeys"] = {jid: plain_run(r) for jid, r in p.journeys.items()}
    out.pop("gone", None)
    return out


def plain_run(r: Run) -> dict[str, Any]:
    out = {name: getattr(r, name) for name in _RUN_FIELDS}
    if r.pending_exit is None:
        del out["pending_exit"]
    return out


def from_plain(d: dict[str, Any]) -> Profile:
    """A profile from its plain shape (``plain``, or a profile stored as a dict by an earlier
    version). A key this version does not know is an error, never dropped silently."""
    d = dict(d)
    lc = d.pop("lifecycle", None)
    runs = d.pop("journeys", None)
    d.pop("_gone", None)
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise ValueError(f"profile has fields this version does not know: {unknown}")
    p = Profile(**d)
    if lc is not None:
        p.lifecycle = Lifecycle(lc.get("stage"), lc.get("since"), lc.get("pending"),
                                lc.get("changes", 0))
    if runs:
        p.journeys = {jid: Run(**r) for jid, r in runs.items()}
    return p


def mark_gone(p: Profile | None = None) -> Profile:
    """Empty ``p`` (a new profile if None) and mark it gone, merged away or erased: whoever
    holds it sees nothing left, and the batch deletes it at commit."""
    blank = Profile(id="", ref="", links=[], gone=True)
    if p is None:
        return blank
    for name in FIELDS:
        setattr(p, name, getattr(blank, name))
    return p
