"""Consent: the most recent statement that covers a channel and purpose wins.

Example:
    >>> from models.profile import new_profile
    >>> p = new_profile("user:u1", 0)
    >>> p.consent = {"all": {"all": "opted_out"}, "email": {"marketing": "opted_in"}}
    >>> p.consent_ts = {"all/all": 5, "email/marketing": 9}
    >>> status(p, "email", "marketing", {}), status(p, "sms", "marketing", {})
    ('opted_in', 'opted_out')
"""

from __future__ import annotations

from collections.abc import Mapping

from models.profile import Profile


def status(p: Profile, channel: str, purpose: str, defaults: Mapping[str, str]) -> str:
    """The most recent statement that covers this channel and purpose (a channel's own,
    'all' channels, 'all' purposes); without one, the configured default."""
    consent = p.consent
    stamps = p.consent_ts
    best: tuple[int, int, str] | None = None
    for specificity, (ch, pu) in enumerate(((channel, purpose), (channel, "all"),
                                             ("all", purpose), ("all", "all"))):
        st = consent.get(ch, {}).get(pu)
        if st is None:
            continue
        # Newest wins; at the same time the more specific statement does.
        rank = (stamps.get(f"{ch}/{pu}", 0), -specificity, st)
        if best is None or rank > best:
            best = rank
    if best is not None:
        return best[2]
    if purpose == "transactional":
        return "opted_in"
    return defaults.get(channel, "opted_in")
