"""Analytics totals: the partition that owns a journey version (or a channel) keeps the newest
cumulative partial of every partition and emits their sum on ``segue.analytics``; the journey
alerts (step drop-off, conversion below target) are judged on those totals.

Partials are cumulative, so a redelivered or overtaken one changes nothing, and a total's
idempotency key names the partials it sums: the same partials give the same record.
"""

from __future__ import annotations

from typing import Any

import orjson

from models.envelope import envelope, idempotency_key
from models.settings import Settings
from operators.analytics.alerts import on_window
from operators.analytics.partials import channel_record, combine, journey_record
from operators.effects import Effects
from state import keys
from state.transaction import BatchTransaction


def size(partial: dict) -> int:
    """How much a cumulative partial has counted (it only grows)."""
    return sum(v for v in partial.values() if isinstance(v, int))


def on_partial(fx: Effects, txn: BatchTransaction, b: dict, journeys: Any, settings: Settings,
               partition: int) -> None:
    """Keep the newest partial per source partition, emit the total."""
    scope, name = b["scope"], b["id"]
    # An hour (alerts) or a journey version; none for a channel's total.
    version: int | None = b.get("version")
    if scope == "alerts":
        assert version is not None  # one hour of a partition's alert counts: see analytics.alerts
        key = keys.totals(scope, name, version)
        raw = txn.get(key)
        doc = orjson.loads(raw) if raw else {}
        for alert in on_window(doc, settings.alerts, version, b["src"], b["at"], b["partial"]):
            raise_alert(fx, alert, b["at"], alert["hour_start_ms"],
                        {"window_start_ms": alert["hour_start_ms"]}, partition)
        txn.put(key, orjson.dumps(doc))
        if raw is None:  # a new hour: the totals of two days ago are no longer needed
            txn.delete(keys.totals(scope, name, version - 48))
        return
    key = keys.totals(scope, name, version)
    raw = txn.get(key)
    doc = orjson.loads(raw) if raw else {"parts": {}, "alerted": [], "prev": {}}
    src = str(b["src"])
    old = doc["parts"].get(src)
    # Cumulative partials: an older one (redelivered, or overtaken) changes nothing.
    if old is not None and (old["at"], size(old["partial"])) >= (b["at"], size(b["partial"])):
        return
    doc["parts"][src] = {"at": b["at"], "partial": b["partial"]}
    total = combine([v["partial"] for _, v in sorted(doc["parts"].items())])
    at = max(v["at"] for v in doc["parts"].values())
    n = len(doc["parts"])
    if scope == "journey":
        assert version is not None
        spec = journeys.spec(name, version) if journeys is not None else None
        a = settings.analytics
        body = journey_record(name, version, total, n, a.min_customers_per_arm, a.sequential_tau)
        body["target_conversion"] = spec.target.conversion \
            if spec is not None and spec.target is not None else None
        subject = {"id": name, "version": version}
        every_ms = settings.analytics.every_s * 1000
        for alert in journey_alerts(settings, every_ms, name, version, spec, body, doc, at):
            raise_alert(fx, alert, at, at, {"partition": partition}, partition)
    else:
        body = channel_record(name, total, n)
        subject = {"channel": name}
    doc["prev"] = {"steps": {s["step"]: [s["visits"], s["dropped"]] for s in
                             body.get("steps", [])}, "exited": body.get("exited", 0)}
    txn.put(key, orjson.dumps(doc))
    snap = sorted((k, v["at"], size(v["partial"])) for k, v in doc["parts"].items())
    # The message key names exactly one total (a journey version, a channel): the topic is
    # compacted, and the newest record per key is that total.
    msg_key = f"journey:{name}@v{version}" if scope == "journey" else f"channel:{name}"
    fx.analytics(msg_key, envelope(
        f"analytics.{scope}", idempotency_key("analytics", scope, name, version, snap),
        customer_id=None, journey=subject if scope == "journey" else None, at_ms=at,
        cause={"partition": b["src"]}, channel=name if scope == "channel" else None, **body))


def journey_alerts(settings: Settings, every_ms: int, jid: str, version: int, spec: Any,
                   body: dict, doc: dict, at: int) -> list:
    """Alerts a journey version's new total raises (at most once per period and step, and
    once per version for its conversion target)."""
    a = settings.alerts
    out = []
    prev = doc.get("prev", {})
    before_steps = prev.get("steps", {})
    exits_before = prev.get("exited", 0)
    exits_now = body["exited"] - exits_before
    if exits_now >= a.step_min_exits:
        # A step's share of the journey's exits in this period against before it.
        for s in body["steps"]:
            before = before_steps.get(s["step"], [0, 0])[1]
            share = (s["dropped"] - before) / exits_now
            base = before / exits_before if exits_before else 0.0
            last = doc.setdefault("raised", {}).get(s["step"], -1 << 62)
            if share >= a.step_dropoff_share and share >= 2 * base and \
                    at - last >= every_ms:  # once per period and step
                doc["raised"][s["step"]] = at
                out.append({"kind": "step_dropoff",
                            "subject": f"{jid}@v{version}:{s['step']}",
                            "rate": round(share, 4), "threshold": a.step_dropoff_share,
                            "exits": exits_now, "baseline_rate": round(base, 4)})
    target = spec.target if spec is not None else None
    tag = f"target:{version}"
    rate = body["finished_conversion_rate"]
    if target is not None and body["exited"] >= target.min_finished and rate is not None \
            and rate < target.conversion and tag not in doc["alerted"]:
        doc["alerted"].append(tag)
        out.append({"kind": "conversion_below_target", "subject": f"{jid}@v{version}",
                    "rate": rate, "threshold": target.conversion,
                    "finished": body["exited"]})
    return out


def raise_alert(fx: Effects, alert: dict, at: int, window_ms: int, cause: dict,
                partition: int) -> None:
    """One record on ``segue.alerts``; its key is the kind, subject, window and partition
    (an alert repeated by a replay of the same window has the same key)."""
    fx.alert(alert["subject"], envelope(
        f"alert.{alert['kind']}",
        idempotency_key("alert", alert["kind"], alert["subject"], window_ms, partition),
        customer_id=None, journey=None, at_ms=at, cause=cause, **{"partition": partition, **alert}))
