"""Alerts: a channel failing, dead letters piling up (``segue.alerts``).

Judged on totals across all partitions, per hour of event time, as journey analytics are:

1. Each partition counts, for the current hour of its event time, dispatches sent and failed
   per channel and input messages and dead letters (:class:`AlertWindow`, saved with each
   batch). At the end of a batch whose counts changed it sends them, cumulative for the hour,
   to the partition that owns alert totals (at most every ``SEND_EVERY_MS`` of event time,
   unless its own counts are over a threshold or the input ended); when its event time enters
   a new hour it first sends the closing hour's final counts.
2. The owner keeps the newest counts of every partition per hour (:func:`on_window`), sums
   them, and raises each alert once per kind, subject and hour, when the sum crosses its
   threshold: during the hour or when its last counts arrive.

>>> from models.settings import AlertSettings
>>> s = AlertSettings(channel_min_sends=4)
>>> a, b = AlertWindow(s), AlertWindow(s)
>>> for w in (a, b):
...     w.sent("push", 0); w.sent("push", 1); w.failed("push", 2)
>>> doc = {}
>>> [x["kind"] for x in on_window(doc, s, 0, 0, 2, a.take(2, force=True)[0][1])]
[]
>>> counts_b = b.take(2, force=True)[0][1]
>>> [(x["kind"], x["sent"], x["failed"]) for x in on_window(doc, s, 0, 1, 2, counts_b)]
[('channel_failure', 4, 2)]
>>> on_window(doc, s, 0, 1, 2, counts_b)  # redelivered: counted once, raised once
[]
"""

from __future__ import annotations

from models.settings import AlertSettings

HOUR_MS = 3_600_000
SEND_EVERY_MS = 10_000  # a partition's counts go to the owner at most this often (event time)
OWNER = "alerts:window"  # the routing key of the partition that owns alert totals


def _empty(hour: int | None) -> dict:
    return {"hour": hour, "sent": {}, "failed": {}, "messages": 0, "dead": 0,
            "sent_at": None, "dirty": False}


class AlertWindow:
    """One partition's counts for the current hour of event time, and the hours it closed
    in this batch (their final counts, still to send)."""

    def __init__(self, settings: AlertSettings, state: dict | None = None) -> None:
        self.s = settings
        self.state = state if state and "dirty" in state else _empty(None)
        self.closed: list[dict] = []

    def _here(self, at: int) -> bool:
        hour = at // HOUR_MS
        st = self.state
        if st["hour"] is None or hour > st["hour"]:
            if st["dirty"]:
                self.closed.append(st)  # the closing hour's final counts go out first
            self.state = _empty(hour)
        return hour == self.state["hour"]  # late records of past hours are ignored

    def sent(self, channel: str, at: int) -> None:
        if self._here(at):
            d = self.state["sent"]
            d[channel] = d.get(channel, 0) + 1
            self.state["dirty"] = True

    def failed(self, channel: str, at: int) -> None:
        if self._here(at):
            d = self.state["failed"]
            d[channel] = d.get(channel, 0) + 1
            self.state["dirty"] = True

    def message(self, at: int, dead: bool) -> None:
        if self._here(at):
            self.state["messages"] += 1
            self.state["dead"] += int(dead)
            self.state["dirty"] = True

    def _over(self) -> bool:
        """Whether this partition's own counts are over a threshold (send them now)."""
        st, s = self.state, self.s
        if st["messages"] and st["dead"] / st["messages"] >= s.dlq_rate:
            return True
        return any(st["failed"].get(ch, 0) / n >= s.channel_failure_rate
                   for ch, n in st["sent"].items() if n)

    def take(self, at: int, force: bool = False) -> list[tuple[int, dict]]:
        """What to send to the owner now, as (hour, cumulative counts of that hour)."""
        out = [(st["hour"], _counts(st)) for st in self.closed]
        self.closed = []
        st = self.state
        if st["dirty"] and (force or st["sent_at"] is None or at - st["sent_at"] >= SEND_EVERY_MS
                            or self._over()):
            out.append((st["hour"], _counts(st)))
            st["dirty"] = False
            st["sent_at"] = at
        return out


def _counts(st: dict) -> dict:
    return {"sent": dict(st["sent"]), "failed": dict(st["failed"]),
            "messages": st["messages"], "dead": st["dead"]}


def _size(c: dict) -> int:
    """How much cumulative counts have counted (they only grow within an hour)."""
    return sum(c["sent"].values()) + sum(c["failed"].values()) + c["messages"]


def on_window(doc: dict, settings: AlertSettings, hour: int, src: int, at: int,
              counts: dict) -> list[dict]:
    """At the owner: fold partition ``src``'s counts for ``hour`` into ``doc`` (the hour's
    totals, ``{}`` at first) and return the alerts that newly cross their threshold."""
    parts = doc.setdefault("parts", {})
    fired = doc.setdefault("fired", [])
    old = parts.get(str(src))
    if old is not None and (old["at"], _size(old["counts"])) >= (at, _size(counts)):
        return []  # redelivered or overtaken: cumulative counts never count twice
    parts[str(src)] = {"at": at, "counts": counts}
    sent: dict[str, int] = {}
    failed: dict[str, int] = {}
    messages = dead = 0
    for v in parts.values():
        c = v["counts"]
        for ch, n in c["sent"].items():
            sent[ch] = sent.get(ch, 0) + n
        for ch, n in c["failed"].items():
            failed[ch] = failed.get(ch, 0) + n
        messages += c["messages"]
        dead += c["dead"]
    s, out = settings, []
    for ch, n_sent in sorted(sent.items()):
        n_failed = failed.get(ch, 0)
        key = f"channel_failure:{ch}"
        if n_sent >= s.channel_min_sends and key not in fired \
                and n_failed / n_sent >= s.channel_failure_rate:
            fired.append(key)
            out.append({"kind": "channel_failure", "subject": ch, "sent": n_sent,
                        "failed": n_failed, "rate": round(n_failed / n_sent, 4),
                        "threshold": s.channel_failure_rate})
    if messages >= s.dlq_min_messages and "dlq" not in fired and dead / messages >= s.dlq_rate:
        fired.append("dlq")
        out.append({"kind": "dlq_rate", "subject": "input", "messages": messages,
                    "dead_lettered": dead, "rate": round(dead / messages, 4),
                    "threshold": s.dlq_rate})
    for a in out:
        a["hour_start_ms"] = hour * HOUR_MS
        a["partitions"] = len(parts)  # how many partitions' counts the totals hold
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
