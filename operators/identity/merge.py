"""The identifiers an event carries, and how two profiles merge (``models.identifiers`` has
the references and which one wins).

>>> sorted(i[:12] for i in identifiers({"userId": "u1", "anonymousId": "a1",
...                                      "traits": {"email": " Ann@X.io"}}))
['anon:a1', 'email:311227', 'user:u1']
"""

from __future__ import annotations

from typing import Any

from models.identifiers import hash_email
from models.profile import Profile
from state.ledger import merge_ledgers
from state.windows import merge as merge_counter

PLACEHOLDER_LOCALS = ("noreply", "no-reply", "donotreply", "do-not-reply")


def placeholder(email: str, blocked: frozenset[str] = frozenset()) -> bool:
    """An address that identifies nobody: a blocked one, or a no-reply address.

    >>> placeholder(" NoReply@shop.example"), placeholder("ann@x.io")
    (True, False)
    """
    e = email.strip().lower()
    return e in blocked or e.split("@", 1)[0] in PLACEHOLDER_LOCALS


def identifiers(event: dict | Any, traits_as_ids: tuple[str, ...] = (),
                blocked_emails: frozenset[str] = frozenset()) -> set[str]:
    """Every identifier an event (dict or ``InEvent``) carries."""
    if isinstance(event, dict):
        kind, uid, aid = event.get("type"), event.get("userId"), event.get("anonymousId")
        traits = event.get("traits") or {}
        device = ((event.get("context") or {}).get("device") or {}).get("id")
        prev = event.get("previousId")
    else:
        kind, uid, aid, traits, device = (event.type, event.user_id, event.anonymous_id,
                                          event.traits, event.device_id)
        prev = event.previous_id
    if kind == "group":  # an account's traits (its billing email) never identify a user
        traits = {}
    out = set()
    if uid:
        out.add(f"user:{uid}")
    if aid:
        out.add(f"anon:{aid}")
    if kind == "alias" and prev:  # Segment's alias: previousId (anonymous or an old user id)
        out.update((f"anon:{prev}", f"user:{prev}"))
    email = traits.get("email") if isinstance(traits, dict) else None
    if isinstance(email, str) and "@" in email and not placeholder(email, blocked_emails):
        out.add(f"email:{hash_email(email)}")
    if isinstance(device, str) and device:
        out.add(f"device:{device}")
    for name in traits_as_ids:
        v = traits.get(name) if isinstance(traits, dict) else None
        if isinstance(v, str | int) and not isinstance(v, bool) and v != "":
            out.add(f"trait:{name}:{v}")
    return out


def merge_profile_data(into: Profile, frm: Profile, max_recent: int) -> None:
    """Fold ``frm``'s behaviour into ``into`` (counts add, traits by timestamp, …).

    Commutative for what is order-independent (counters, totals, first/last seen, traits,
    sums, links); journeys, timers and lifecycle are reconciled by the caller.
    """
    into.events += frm.events
    into.sessions += frm.sessions
    if frm.revenue:
        into.revenue = round(into.revenue + frm.revenue, 2)
    into.first_seen = min(into.first_seen, frm.first_seen)
    if frm.last_seen > into.last_seen or (
            frm.last_seen == into.last_seen and frm.timezone
            and not into.timezone):
        into.timezone = frm.timezone or into.timezone
    into.last_seen = max(into.last_seen, frm.last_seen)
    ts_in = into.trait_ts
    for k, v in frm.traits.items():
        t_frm = frm.trait_ts.get(k, 0)
        t_in = ts_in.get(k)
        if t_in is None or (t_frm, repr(v)) > (t_in, repr(into.traits.get(k))):
            into.traits[k] = v
            ts_in[k] = t_frm
    for key, c in frm.counters.items():
        mine = into.counters.get(key)
        into.counters[key] = merge_counter(mine, c) if mine is not None else c
    for name, sums in frm.sums.items():
        acc = into.sums.setdefault(name, {})
        for k, v in sums.items():
            acc[k] = acc.get(k, 0) + v
        into.top[name] = min(acc, key=lambda k: (-acc[k], k))
    # The loser's recent ids come first, the winner's (its newest) last: trimming keeps the
    # newest rather than the numerically largest hashes.
    mine = set(into.recent_ids)
    recent = [h for h in frm.recent_ids if h not in mine] + into.recent_ids
    into.recent_ids = recent[-max_recent:]
    into.links = sorted(set(into.links) | set(frm.links))
    # Consent: the most restrictive wins; suppressions and sends add up (caps stay correct).
    for ch, purposes in frm.consent.items():
        mine = into.consent.setdefault(ch, {})
        for purpose, status in purposes.items():
            if mine.get(purpose) != "opted_out":
                mine[purpose] = status if purpose not in mine or status == "opted_out" \
                    else mine[purpose]
    for ch, why in frm.suppressed.items():
        into.suppressed.setdefault(ch, why)
    merge_ledgers(into, frm)
    for kind, n in frm.dropped.items():  # what limits kept out, on either side
        d = into.dropped
        d[kind] = d.get(kind, 0) + n
    into.sent.update(frm.sent)
    for ch, kinds in frm.engagement.items():
        mine_e = into.engagement.setdefault(ch, {})
        for k, n in kinds.items():
            mine_e[k] = mine_e.get(k, 0) + n
    hist = into.journey_history
    for jid, h in frm.journey_history.items():
        mine = hist.get(jid)
        if mine is None:
            hist[jid] = dict(h)
        else:
            mine["entries"] = max(mine["entries"], h["entries"])
            exits = [x for x in (mine["last_exit"], h["last_exit"]) if x is not None]
            mine["last_exit"] = max(exits) if exits else None
