"""Delivery policy: may this send go out now, on this channel? (send, defer or drop)

Checks, per channel, in order: suppression (hard bounce, complaint), consent (per channel and
purpose), frequency caps (sliding windows in event time: per channel, across channels, and the
journey's own), then the send window (quiet hours in the customer's time zone, blackout dates).
A channel that is suppressed, unconsented or capped falls back along the configured chain
(``sms → email``, ``push → inbox``, ``email → in_app``, ``in_app → badge``, or ``enrich``: a
silent profile update, no message). Quiet hours never fall back: the send waits for the next
window. Transactional sends skip caps and quiet hours and need only transactional consent.

Pure functions of (profile, send, time): the live flow, replay and tests share them.

Example:
    >>> from models.settings import PolicySettings
    >>> pol = DeliveryPolicy(PolicySettings())
    >>> from models.profile import new_profile
    >>> p = new_profile("user:u1", 0)
    >>> p.timezone = "Europe/Paris"
    >>> v = pol.decide(p, "email", "marketing", {}, "j", 1767306600000)  # 23:30 Paris
    >>> v.outcome, v.reasons, v.next_ms  # deferred to 09:00 Paris the next morning
    ('defer', ['quiet_hours'], 1767340800000)
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from models.profile import Profile
from models.settings import PolicySettings
from operators.policy import caps, consent, send_windows
from operators.policy.caps import DAY_MS, WEEK_MS

__all__ = ["DAY_MS", "WEEK_MS", "DeliveryPolicy", "Verdict"]


@dataclass(slots=True, init=False)  # its own __init__: see operators.effects
class Verdict:
    outcome: str                      # send | defer | drop
    channel: str                      # the channel it goes (or would go) out on
    reasons: list[str]
    next_ms: int | None               # for defer: the next eligible moment

    def __init__(self, outcome: str, channel: str, reasons: list[str] | None = None,
                 next_ms: int | None = None) -> None:
        self.outcome, self.channel = outcome, channel
        self.reasons = reasons if reasons is not None else []
        self.next_ms = next_ms


class DeliveryPolicy:
    """The checks of the module docstring, with the configured settings."""

    def __init__(self, settings: PolicySettings) -> None:
        self.s = settings
        self._zones = send_windows.TimeZones(settings.default_timezone)
        self._blackout = set(settings.blackout_dates)

    def tz(self, p: Profile) -> ZoneInfo:
        return self._zones.of(p)

    def consent(self, p: Profile, channel: str, purpose: str) -> str:
        return consent.status(p, channel, purpose, self.s.consent_defaults)

    def chain(self, channel: str) -> list[str]:
        out = [channel]
        while out[-1] in self.s.fallback and len(out) < 6:
            nxt = self.s.fallback[out[-1]]
            if nxt in out:
                break
            out.append(nxt)
        return out

    def record(self, p: Profile, channel: str, jid: str, dispatch_id: str, at: int) -> bool:
        """Count a send in the ledger; a dispatch already counted (replay, retry) is not."""
        return caps.record(p, channel, jid, dispatch_id, at)

    def _window_open(self, p: Profile, channel: str, at: int) -> int | None:
        window = self.s.send_windows.get(channel)
        if window is None and not self._blackout:
            return None
        return send_windows.next_opening(self.tz(p), window, self._blackout, at)

    def decide(self, p: Profile, channel: str, purpose: str, journey_caps: dict, jid: str,
               at: int, exclude: tuple[str, ...] = ()) -> Verdict:
        """One send's verdict: the first channel of its fallback chain that may take it."""
        reasons: list[str] = []
        cap_next: int | None = None
        transactional = purpose == "transactional"
        for ch in self.chain(channel):
            if ch in exclude:
                continue
            if ch == "enrich":
                reasons.append("fallback.enrichment")
                return Verdict("drop", "enrich", reasons)
            supp = p.suppressed.get(ch)
            if supp:
                reasons.append(f"suppressed.{supp}")
                continue
            if self.consent(p, ch, purpose) != "opted_in":
                reasons.append(f"consent.{ch}")
                continue
            if not transactional:
                block = caps.first_block(p, ch, jid, self.s.caps, journey_caps, at)
                if block is not None:
                    reasons.append(block[0])
                    if block[1] is not None:
                        cap_next = block[1] if cap_next is None else min(cap_next, block[1])
                    continue
            if ch != channel:
                reasons.append(f"fallback.{channel}->{ch}")
            if not transactional:
                opens = self._window_open(p, ch, at)
                if opens is not None:
                    return Verdict("defer", ch, [*reasons, "quiet_hours"], opens)
            return Verdict("send", ch, reasons or ["ok"])
        if cap_next is not None and cap_next - at <= self.s.max_defer_s * 1000:
            return Verdict("defer", channel, reasons, cap_next)
        return Verdict("drop", channel, reasons or ["no_channel"])
