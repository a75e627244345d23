"""Alerts: a channel failing, dead letters piling up (``segue.alerts``).

Counted per partition in hours of event time, in the partition store (key ``a|<hour>``) so a
restart neither loses nor repeats them; each alert fires once per kind, subject and hour, with
an idempotency key from exactly that.

>>> from models.settings import AlertSettings
>>> w = AlertWindow(AlertSettings(channel_min_sends=2))
>>> w.sent("push", 0); w.sent("push", 1); w.failed("push", 2)
>>> [a["kind"] for a in w.check(0)]
['channel_failure']
>>> w.check(0)  # once per channel and hour
[]
"""

from __future__ import annotations

from models.settings import AlertSettings

HOUR_MS = 3_600_000


class AlertWindow:
    """Counts of one partition for the current hour of event time."""

    def __init__(self, settings: AlertSettings, state: dict | None = None) -> None:
        self.s = settings
        self.state = state or {"hour": None, "sent": {}, "failed": {}, "messages": 0,
                               "dead": 0, "fired": []}

    def _roll(self, at: int) -> None:
        hour = at // HOUR_MS
        if self.state["hour"] is None or hour > self.state["hour"]:
            self.state.update(hour=hour, sent={}, failed={}, messages=0, dead=0, fired=[])

    def _here(self, at: int) -> bool:
        self._roll(at)
        return at // HOUR_MS == self.state["hour"]  # late records of past hours are ignored

    def sent(self, channel: str, at: int) -> None:
        if self._here(at):
            self.state["sent"][channel] = self.state["sent"].get(channel, 0) + 1

    def failed(self, channel: str, at: int) -> None:
        if self._here(at):
            self.state["failed"][channel] = self.state["failed"].get(channel, 0) + 1

    def message(self, at: int, dead: bool) -> None:
        if self._here(at):
            self.state["messages"] += 1
            self.state["dead"] += int(dead)

    def check(self, partition: int) -> list[dict]:
        """Alerts newly crossing their threshold in the current hour."""
        st = self.state
        out = []
        for ch, n_sent in sorted(st["sent"].items()):
            n_failed = st["failed"].get(ch, 0)
            key = f"channel_failure:{ch}"
            if (n_sent >= self.s.channel_min_sends and key not in st["fired"]
                    and n_failed / n_sent >= self.s.channel_failure_rate):
                st["fired"].append(key)
                out.append({"kind": "channel_failure", "subject": ch, "sent": n_sent,
                            "failed": n_failed, "rate": round(n_failed / n_sent, 4),
                            "threshold": self.s.channel_failure_rate})
        if (st["messages"] >= self.s.dlq_min_messages and "dlq" not in st["fired"]
                and st["dead"] / st["messages"] >= self.s.dlq_rate):
            st["fired"].append("dlq")
            out.append({"kind": "dlq_rate", "subject": "input", "messages": st["messages"],
                        "dead_lettered": st["dead"],
                        "rate": round(st["dead"] / st["messages"], 4),
                        "threshold": self.s.dlq_rate})
        for a in out:
            a["hour_start_ms"] = st["hour"] * HOUR_MS
            a["partition"] = partition
        return out


class LagWatch:
    """Input lag that keeps growing: the flow is falling behind its input.

    Fed the lag of one input partition (at most once per ``every_s``); alerts when it grew at
    ``checks`` consecutive checks and is at least ``min_messages``; once more only after it
    stopped growing. Wall-clock based (an operational signal, not part of the flow's outputs).

    >>> w = LagWatch(checks=3, min_messages=100, every_s=10)
    >>> [w.observe(lag, t) is not None for t, lag in enumerate([50, 120, 200, 300, 400], 1)]
    [False, False, False, False, False]
    >>> [w.observe(lag, t * 10) is not None for t, lag in enumerate([50, 120, 200, 300, 400], 1)]
    [False, False, False, True, False]
    """

    def __init__(self, checks: int, min_messages: int, every_s: float = 10.0) -> None:
        self.checks = checks
        self.min_messages = min_messages
        self.every_s = every_s
        self._last: tuple[float, int] | None = None
        self._streak = 0
        self._raised = False

    def observe(self, lag: int, now_s: float) -> dict | None:
        if self._last is not None and now_s - self._last[0] < self.every_s:
            return None
        grew = self._last is not None and lag > self._last[1]
        self._last = (now_s, lag)
        self._streak = self._streak + 1 if grew else 0
        if not grew:
            self._raised = False
            return None
        if self._streak >= self.checks and lag >= self.min_messages and not self._raised:
            self._raised = True
            return {"kind": "lag_growing", "lag": lag, "checks": self._streak,
                    "threshold": self.min_messages}
        return None
