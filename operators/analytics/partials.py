"""Journey and channel analytics, aggregated in the flow, emitted to ``segue.analytics``.

Two stages, both inside the stateful step:

1. Each partition folds the records it emits (journey events, decisions, dispatches) into
   cumulative partial counts per journey version and per channel (:class:`PartialStats`,
   saved in the store with the batch). Whenever the partition's event time enters a new
   ``analytics.every_s`` period, and at the end of the input, it sends the partials that
   changed to the partition that owns the journey (or channel), through ``segue.repartition``.
2. The owner keeps the newest partial of every source partition (cumulative, so a redelivered
   or late snapshot never counts twice) and emits their sum: one ``analytics.journey`` or
   ``analytics.channel`` record, with rates, drop-off per step, time in journey, and for
   splits and holdouts the conversion per arm, the lift against control and a two-proportion
   z-test (:func:`compare`).

The newest record per journey version (or channel) is the current total; intermediate
records depend on the order partials arrive in.
"""

from __future__ import annotations

import math
from typing import Any

ANALYTICS_VERSION = 1


def _bump(d: dict, key: str, by: int = 1) -> None:
    d[key] = d.get(key, 0) + by


def _new_journey() -> dict:
    return {"entered": 0, "exited": 0, "completed": 0, "converted": 0, "reasons": {},
            "time_ms": 0, "steps": {}, "variants": {}, "holdout": {}}


def _new_channel() -> dict:
    return {"decisions": 0, "sent": 0, "failed": 0, "capped": 0, "opted_out": 0,
            "unsubscribed": 0}


class PartialStats:
    """One partition's cumulative counts, folded from the records it emits."""

    def __init__(self, state: dict | None = None) -> None:
        self.state = state or {"j": {}, "c": {}, "period": None, "dirty": []}
        self.changed = False  # since the state was last saved

    def _journey(self, rec: dict) -> dict:
        j = rec["journey"]
        key = f"{j['id']}|{j['version']}"
        js = self.state["j"].get(key)
        if js is None:
            js = self.state["j"][key] = _new_journey()
        self._dirty(f"j:{key}")
        return js

    def _channel(self, ch: str) -> dict:
        cs = self.state["c"].get(ch)
        if cs is None:
            cs = self.state["c"][ch] = _new_channel()
        self._dirty(f"c:{ch}")
        return cs

    def _dirty(self, key: str) -> None:
        self.changed = True
        if key not in self.state["dirty"]:
            self.state["dirty"].append(key)

    # ----- folding ---------------------------------------------------------------------------
    def journey_event(self, rec: dict) -> None:
        t = rec["type"]
        if t not in ("journey.entered", "journey.step", "journey.exited", "journey.converted"):
            return
        js = self._journey(rec)
        if t == "journey.entered":
            js["entered"] += 1
        elif t == "journey.step":
            node = rec["journey"]["node"]
            step = js["steps"].setdefault(node, [0, 0])
            step[0] += 1
            if rec.get("step_type") == "split":
                js["variants"].setdefault(rec["variant"], [0, 0])[0] += 1
            elif rec.get("step_type") == "holdout":
                arm = "control" if rec["holdout"] else "treatment"
                js["holdout"].setdefault(arm, [0, 0])[0] += 1
        elif t == "journey.converted":
            js["converted"] += 1
            if rec.get("variant") is not None:
                js["variants"].setdefault(rec["variant"], [0, 0])[1] += 1
            if rec.get("holdout") is not None:
                arm = "control" if rec["holdout"] else "treatment"
                js["holdout"].setdefault(arm, [0, 0])[1] += 1
        else:
            reason = str(rec.get("reason", ""))
            js["exited"] += 1
            _bump(js["reasons"], reason_group(reason))
            js["time_ms"] += max(rec["at_ms"] - rec.get("entered_ms", rec["at_ms"]), 0)
            if reason == "completed" or reason.startswith("goal:"):
                js["completed"] += 1
            else:  # left before the end: a drop-off at the step it was on
                js["steps"].setdefault(rec["journey"]["node"], [0, 0])[1] += 1

    def decision(self, rec: dict) -> None:
        ch = rec.get("original_channel") or rec.get("channel")
        if not ch or ch == "none":
            return
        cs = self._channel(ch)
        reasons = rec.get("reasons") or []
        if "delivery.failed" in reasons:
            cs["failed"] += 1
            return
        cs["decisions"] += 1
        if any(r.startswith("cap.") for r in reasons):
            cs["capped"] += 1
        if any(r.startswith(f"consent.{ch}") for r in reasons):
            cs["opted_out"] += 1

    def dispatch(self, rec: dict) -> None:
        if rec.get("attempt", 1) == 1:
            self._channel(rec["channel"])["sent"] += 1

    def unsubscribed(self, channel: str) -> None:
        self._channel(channel)["unsubscribed"] += 1

    # ----- snapshots -------------------------------------------------------------------------
    def due(self, at_ms: int, every_ms: int) -> bool:
        """Whether event time ``at_ms`` starts a new period (snapshots go out first)."""
        period = at_ms // every_ms
        last = self.state["period"]
        if last is None:
            self.state["period"] = period
            self.changed = True
            return False
        if period > last:
            self.state["period"] = period
            self.changed = True
            return bool(self.state["dirty"])
        return False

    def take(self) -> list[tuple[str, dict]]:
        """The changed partials, as (owner key, body), and forget that they changed."""
        out = []
        for key in self.state["dirty"]:
            kind, _, name = key.partition(":")
            if kind == "j":
                jid, _, v = name.rpartition("|")
                out.append((f"journey:{jid}", {"scope": "journey", "id": jid, "version": int(v),
                                               "partial": self.state["j"][name]}))
            else:
                out.append((f"channel:{name}", {"scope": "channel", "id": name,
                                                "partial": self.state["c"][name]}))
        self.state["dirty"] = []
        self.changed = True
        return out


def reason_group(reason: str) -> str:
    """Exit reasons with unbounded detail folded to their kind (``consent.email.opted_out``
    → ``opted_out``); goals and named exits stay as they are (bounded by the spec)."""
    if reason.startswith("consent."):
        return "opted_out"
    if reason.startswith("error."):
        return "error"
    return reason


# ----- the owner's totals ---------------------------------------------------------------------
def combine(partials: list[dict]) -> dict:
    """Sum of cumulative partials (journey or channel)."""
    total: dict[str, Any] = {}
    for part in partials:
        for k, v in part.items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
            elif k in ("reasons",):
                d = total.setdefault(k, {})
                for r, n in v.items():
                    d[r] = d.get(r, 0) + n
            else:  # steps, variants, holdout: name -> [a, b]
                d = total.setdefault(k, {})
                for name, pair in v.items():
                    mine = d.setdefault(name, [0, 0])
                    mine[0] += pair[0]
                    mine[1] += pair[1]
    return total


SEQUENTIAL_TAU = 0.02  # default spread of the lifts the mSPRT expects (absolute, 2 points)


def compare(n_t: int, c_t: int, n_c: int, c_c: int, alpha: float = 0.05,
            min_n: int = 100, tau: float = SEQUENTIAL_TAU) -> dict:
    """Treatment (n_t customers, c_t conversions) against control, **always valid**: the
    verdict may be read at any time, as often as one likes (a fixed-horizon z-test looked at
    hourly calls about a quarter of A/A tests significant at some look).

    The test is the mixture sequential probability ratio test (mSPRT; Johari, Pekelis and
    Walsh, "Always valid inference", 2017) on the difference of the two rates, with a normal
    mixture N(0, ``tau``²) over the lift. Returned: the rates, the absolute lift with its
    (1 - alpha) **confidence sequence** (covers the true lift at every look at once, with
    probability 1 - alpha), the relative lift, the always-valid p-value (1 / the mixture
    likelihood ratio: under no difference it falls below alpha at any look with probability
    at most alpha), the customers per arm at which the observed lift would become
    significant, and a verdict: ``significant``, ``not significant``, ``not significant
    (needs more data)`` or ``needs more data`` (fewer than ``min_n`` customers or 10
    conversions in an arm).

    >>> r = compare(2000, 300, 2000, 200)
    >>> r["verdict"], round(r["lift"], 3), r["p_value"] < 0.01, r["test"]
    ('significant', 0.05, True, 'msprt')
    >>> compare(2000, 205, 2000, 200)["verdict"]
    'not significant (needs more data)'
    """
    p_t = c_t / n_t if n_t else 0.0
    p_c = c_c / n_c if n_c else 0.0
    out: dict[str, Any] = {"treatment": {"customers": n_t, "converted": c_t,
                                         "rate": round(p_t, 6)},
                           "control": {"customers": n_c, "converted": c_c,
                                       "rate": round(p_c, 6)}}
    diff = p_t - p_c
    out["lift"] = round(diff, 6)
    out["relative_lift"] = round(diff / p_c, 4) if p_c > 0 else None
    out["test"] = "msprt"
    out["tau"] = tau
    # Variance of one customer's outcome in each arm; a floor keeps an arm with no (or only)
    # conversions from claiming certainty.
    var_t = max(p_t * (1 - p_t), 1e-6)
    var_c = max(p_c * (1 - p_c), 1e-6)
    if n_t and n_c:
        v = var_t / n_t + var_c / n_c
        half = _cs_half_width(v, tau, alpha)
        out["ci"] = [round(diff - half, 6), round(diff + half, 6)]
        out["p_value"] = round(min(1.0, 1.0 / _mixture_ratio(diff, v, tau)), 6)
    else:
        out["ci"] = None
        out["p_value"] = None
    out["confidence"] = 1 - alpha
    out["customers_per_arm_needed"] = (_needed_per_arm(abs(diff), var_t + var_c, tau, alpha)
                                       if diff != 0 else None)
    if min(n_t, n_c) < min_n or min(c_t + c_c, n_t + n_c - c_t - c_c) < 10:
        out["verdict"] = "needs more data"
    elif out["p_value"] is not None and out["p_value"] < alpha:
        out["verdict"] = "significant"
    else:
        out["verdict"] = "not significant"
        need = out["customers_per_arm_needed"]
        if need is not None and need > min(n_t, n_c):
            out["verdict"] = "not significant (needs more data)"
    return out


def _mixture_ratio(diff: float, v: float, tau: float) -> float:
    """The mSPRT statistic: the likelihood ratio of the observed lift, mixed over N(0, tau²)
    lifts, against no lift (v: the variance of the observed lift)."""
    t2 = tau * tau
    exponent = diff * diff * t2 / (2 * v * (v + t2))
    return math.sqrt(v / (v + t2)) * math.exp(min(exponent, 700.0))


def _cs_half_width(v: float, tau: float, alpha: float) -> float:
    """Half-width of the confidence sequence: the lifts whose mixture ratio stays < 1/alpha."""
    t2 = tau * tau
    return math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))


def _needed_per_arm(diff: float, var_sum: float, tau: float, alpha: float) -> int:
    """Customers per arm (equal arms) at which a lift of ``diff`` is significant."""
    lo, hi = 1, 1
    while _cs_half_width(var_sum / hi, tau, alpha) >= diff:
        hi *= 2
        if hi > 1 << 40:
            return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if _cs_half_width(var_sum / mid, tau, alpha) < diff:
            hi = mid
        else:
            lo = mid + 1
    return lo


def journey_record(jid: str, version: int, total: dict, reporting: int,
                   min_n: int = 100, tau: float = SEQUENTIAL_TAU) -> dict:
    """The ``analytics.journey`` record from a journey version's total."""
    entered = total.get("entered", 0)
    exited = total.get("exited", 0)
    steps = []
    for node, (visits, dropped) in sorted(total.get("steps", {}).items()):
        steps.append({"step": node, "visits": visits, "dropped": dropped,
                      "drop_off_rate": round(dropped / visits, 4) if visits else None})
    variants = total.get("variants", {})
    arms = []
    if variants:
        names = sorted(variants)
        ctrl = "control" if "control" in variants else names[0]
        for name in names:
            n, c = variants[name]
            arm = {"variant": name, "customers": n, "converted": c,
                   "rate": round(c / n, 6) if n else None, "control": name == ctrl}
            if name != ctrl:
                cn, cc = variants[ctrl]
                arm["vs_control"] = compare(n, c, cn, cc, min_n=min_n, tau=tau)
            arms.append(arm)
    holdout = None
    ho = total.get("holdout", {})
    if ho:
        t = ho.get("treatment", [0, 0])
        c = ho.get("control", [0, 0])
        holdout = compare(t[0], t[1], c[0], c[1], min_n=min_n, tau=tau)
    return {
        "entered": entered, "active": entered - exited, "exited": exited,
        "completed": total.get("completed", 0), "converted": total.get("converted", 0),
        "conversion_rate": round(total.get("converted", 0) / entered, 6) if entered else None,
        # conversions of the runs that have ended (in-flight runs may still convert)
        "finished_conversion_rate": round(total.get("converted", 0) / exited, 6)
        if exited else None,
        "exited_by_reason": dict(sorted(total.get("reasons", {}).items())),
        "avg_time_in_journey_s": round(total.get("time_ms", 0) / exited / 1000, 1)
        if exited else None,
        "steps": steps, "split": arms or None, "holdout": holdout,
        "partitions_reporting": reporting,
    }


def channel_record(channel: str, total: dict, reporting: int) -> dict:
    sent = total.get("sent", 0)
    decisions = total.get("decisions", 0)
    return {
        "sent": sent, "failed": total.get("failed", 0), "decisions": decisions,
        "capped": total.get("capped", 0), "opted_out_at_send": total.get("opted_out", 0),
        "unsubscribed": total.get("unsubscribed", 0),
        "delivery_rate": round(1 - total.get("failed", 0) / sent, 6) if sent else None,
        "failure_rate": round(total.get("failed", 0) / sent, 6) if sent else None,
        "unsubscribe_rate": round(total.get("unsubscribed", 0) / sent, 6) if sent else None,
        # Fatigue: how often frequency caps had to hold a send back on this channel.
        "fatigue_rate": round(total.get("capped", 0) / decisions, 6) if decisions else None,
        "partitions_reporting": reporting,
    }
