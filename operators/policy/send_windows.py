"""Send windows: quiet hours in the customer's time zone and blackout dates, DST-safe.

Example:
    >>> from zoneinfo import ZoneInfo
    >>> next_opening(ZoneInfo("Europe/Paris"), "09:00-20:00", set(), 1767306600000)  # 23:30
    1767340800000
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from models.profile import Profile


class TimeZones:
    """The customer's zone (profile ``timezone``, else ``traits.timezone``, else the
    default); zones are cached, an unusable name means the default."""

    def __init__(self, default: str) -> None:
        self.default = default
        self._zones: dict[str, ZoneInfo] = {}

    def of(self, p: Profile) -> ZoneInfo:
        name = p.timezone or p.traits.get("timezone")
        if not isinstance(name, str) or not name:
            name = self.default
        z = self._zones.get(name)
        if z is None:
            try:
                z = ZoneInfo(name)
            except Exception:  # noqa: BLE001 - any unusable zone name means the default
                z = ZoneInfo(self.default)
            if len(self._zones) < 10_000:
                self._zones[name] = z
        return z


def next_opening(tz: ZoneInfo, window: str | None, blackout: set[str], at: int) -> int | None:
    """None if ``at`` is inside the window (``HH:MM-HH:MM`` local time, None: all day) on a
    day that is no blackout date, else the next opening (ms)."""
    if window is None and not blackout:
        return None
    local = datetime.fromtimestamp(at / 1000, tz)
    start_h, start_m, end_h, end_m = parse_window(window) if window else (0, 0, 24, 0)

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


def parse_window(window: str) -> tuple[int, int, int, int]:
    start, end = window.split("-")
    sh, sm = (int(x) for x in start.split(":"))
    eh, em = (int(x) for x in end.split(":"))
    return sh, sm, eh, em
