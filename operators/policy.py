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
    >>> p = {"timezone": "Europe/Paris", "traits": {}, "consent": {}, "suppressed": {},
    ...      "ledger": []}
    >>> v = pol.decide(p, "email", "marketing", {}, "j", 1767306600000)  # 23:30 Paris
    >>> v.outcome, v.reasons, v.next_ms  # deferred to 09:00 Paris the next morning
    ('defer', ['quiet_hours'], 1767340800000)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from models.settings import PolicySettings
from state.ledger import record_send, sends_within

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
WINDOW_MS = {"day": DAY_MS, "week": WEEK_MS}


@dataclass(slots=True)
class Verdict:
    outcome: str                      # send | defer | drop
    channel: str                      # the channel it goes (or would go) out on
    reasons: list[str] = field(default_factory=list)
    next_ms: int | None = None        # for defer: the next eligible moment


class DeliveryPolicy:
    def __init__(self, settings: PolicySettings) -> None:
        self.s = settings
        self._tz: dict[str, ZoneInfo] = {}

    # ----- helpers ---------------------------------------------------------------------------
    def tz(self, p: dict) -> ZoneInfo:
        name = p.get("timezone") or p.get("traits", {}).get("timezone")
        if not isinstance(name, str) or not name:
            name = self.s.default_timezone
        z = self._tz.get(name)
        if z is None:
            try:
                z = ZoneInfo(name)
            except Exception:  # noqa: BLE001 - any unusable zone name means the default
                z = ZoneInfo(self.s.default_timezone)
            if len(self._tz) < 10_000:
                self._tz[name] = z
        return z

    def consent(self, p: dict, channel: str, purpose: str) -> str:
        """The most recent statement that covers this channel and purpose (a channel's own,
        'all' channels, 'all' purposes); without one, the configured default."""
        consent = p.get("consent", {})
        stamps = p.get("consent_ts", {})
        best: tuple[int, int, str] | None = None
        for specificity, (ch, pu) in enumerate(((channel, purpose), (channel, "all"),
                                                 ("all", purpose), ("all", "all"))):
            status = consent.get(ch, {}).get(pu)
            if status is None:
                continue
            # Newest wins; at the same time the more specific statement does.
            rank = (stamps.get(f"{ch}/{pu}", 0), -specificity, status)
            if best is None or rank > best:
                best = rank
        if best is not None:
            return best[2]
        if purpose == "transactional":
            return "opted_in"
        return self.s.consent_defaults.get(channel, "opted_in")

    def chain(self, channel: str) -> list[str]:
        out = [channel]
        while out[-1] in self.s.fallback and len(out) < 6:
            nxt = self.s.fallback[out[-1]]
            if nxt in out:
                break
            out.append(nxt)
        return out

    # ----- caps ------------------------------------------------------------------------------
    def _cap_block(self, p: dict, channel: str, jid: str, journey_caps: dict,
                   at: int) -> tuple[str, int | None] | None:
        """(reason, next eligible ms) for the first cap this send would break, else None."""
        checks: list[tuple[str, int, int, object]] = []
        for name, caps in ((channel, self.s.caps.get(channel, {})),
                           ("total", self.s.caps.get("total", {}))):
            for window, limit in caps.items():
                if limit is not None:
                    checks.append((f"cap.{name}.{window}", limit, WINDOW_MS[window],
                                   (lambda e, n=name: n == "total" or e[1] == n)))
        for name, caps in ((channel, journey_caps.get(channel)),
                           ("total", journey_caps.get("total"))):
            if caps is None:
                continue
            for window, limit in caps.items():
                if limit is not None:
                    checks.append((f"cap.journey.{name}.{window}", limit, WINDOW_MS[window],
                                   (lambda e, n=name: e[2] == jid and
                                    (n == "total" or e[1] == n))))
        for reason, limit, span, match in checks:
            inside = sends_within(p, at, span, match)  # type: ignore[arg-type]
            if len(inside) >= limit:
                # Eligible again once enough of these sends have left the window.
                if limit <= 0:
                    return reason, None  # a cap of 0 shuts the channel: never eligible
                return reason, inside[len(inside) - limit] + span
        return None

    def record(self, p: dict, channel: str, jid: str, dispatch_id: str, at: int) -> bool:
        """Count a send in the ledger; a dispatch already counted (replay, retry) is not."""
        return record_send(p, channel, jid, dispatch_id, at)

    # ----- windows ---------------------------------------------------------------------------
    def _window_open(self, p: dict, channel: str, at: int) -> int | None:
        """None if ``at`` is inside the channel's send window, else the next opening."""
        window = self.s.send_windows.get(channel)
        blackout = set(self.s.blackout_dates)
        if window is None and not blackout:
            return None
        tz = self.tz(p)
        local = datetime.fromtimestamp(at / 1000, tz)
        start_h, start_m, end_h, end_m = _parse_window(window) if window else (0, 0, 24, 0)

        def opening(day: date) -> datetime:
            naive = datetime(day.year, day.month, day.day, start_h, start_m)
            return naive.replace(tzinfo=tz)

        minutes = local.hour * 60 + local.minute
        inside = start_h * 60 + start_m <= minutes < end_h * 60 + end_m
        if inside and local.date().isoformat() not in blackout:
            return None
        day = local.date()
        if inside or minutes >= end_h * 60 + end_m or day.isoformat() in blackout:
            day = day + timedelta(days=1)
        for _ in range(366):
            if day.isoformat() not in blackout:
                break
            day = day + timedelta(days=1)
        nxt = opening(day)
        if nxt <= local:
            nxt = opening(day + timedelta(days=1))
        return int(nxt.timestamp() * 1000)

    # ----- the decision ----------------------------------------------------------------------
    def decide(self, p: dict, channel: str, purpose: str, journey_caps: dict, jid: str,
               at: int, exclude: tuple[str, ...] = ()) -> Verdict:
        reasons: list[str] = []
        cap_next: int | None = None
        transactional = purpose == "transactional"
        for ch in self.chain(channel):
            if ch in exclude:
                continue
            if ch == "enrich":
                reasons.append("fallback.enrichment")
                return Verdict("drop", "enrich", reasons)
            supp = p.get("suppressed", {}).get(ch)
            if supp:
                reasons.append(f"suppressed.{supp}")
                continue
            if self.consent(p, ch, purpose) != "opted_in":
                reasons.append(f"consent.{ch}")
                continue
            if not transactional:
                block = self._cap_block(p, ch, jid, journey_caps, at)
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


def _parse_window(window: str) -> tuple[int, int, int, int]:
    start, end = window.split("-")
    sh, sm = (int(x) for x in start.split(":"))
    eh, em = (int(x) for x in end.split(":"))
    return sh, sm, eh, em
