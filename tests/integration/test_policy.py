"""Delivery policy, through ``segue replay`` and the live flow on the real broker (the two
must emit the same records): caps, quiet hours (and DST), opt-out mid-journey, consent
fallback, failed-delivery retry then backup channel, erasure, and replays never breaking caps.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from models.envelope import idempotency_key
from segue.kafka_io import consume_all, produce_records
from state.inspect import find_profile, open_read_only, partition_stores
from tests.conftest import ROOT, live_outputs, replay_outputs

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)  # Monday 10:00 UTC
DAY = 86_400_000
# Email without a fallback here, so capped emails are deferred or dropped, not downgraded.
POLICY = "policy: {fallback: {sms: email, push: inbox}}\n"


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def dispatch_id(cid: str, jid: str, node: str, entered: datetime = T0) -> str:
    return idempotency_key("dispatch", cid, jid, 1, node, 1, 1, ms(entered))


def stream() -> list[dict]:
    out: list[dict] = []

    def add(cid, at, name, tz="Europe/London", **fields):
        out.append({"type": "track", "messageId": f"p{len(out)}", "userId": cid,
                    "event": name, "timestamp": at.isoformat(), "context": {"timezone": tz},
                    **fields})

    add("capped", T0, "Blast Start")
    add("late", datetime(2026, 2, 3, 22, 30, tzinfo=UTC), "Late Send", tz="Europe/Paris")
    add("late-dst", datetime(2026, 3, 28, 22, 30, tzinfo=UTC), "Late Send", tz="Europe/Paris")
    add("opt-out", T0, "Series Start")
    add("opt-out", T0 + timedelta(hours=12), "Consent Updated",
        properties={"channel": "email", "status": "opted_out"})
    add("sms-no-consent", T0, "Offer Start")
    add("push-fails", T0, "Alert Start")
    pid = dispatch_id("push-fails", "push-alert", "p1")
    add("push-fails", T0 + timedelta(minutes=1), "Dispatch Failed",
        properties={"dispatch_id": pid, "channel": "push"})
    add("push-fails", T0 + timedelta(minutes=2), "Dispatch Failed",
        properties={"dispatch_id": pid, "channel": "push"})
    # Erasure: a customer with history, a journey in flight and an anonymous device linked.
    out.append({"type": "page", "messageId": "er-0", "anonymousId": "erase-device",
                "name": "Home", "timestamp": T0.isoformat()})
    out.append({"type": "identify", "messageId": "er-1", "userId": "erase-me",
                "anonymousId": "erase-device", "traits": {"email": "erase@me.example"},
                "timestamp": (T0 + timedelta(minutes=1)).isoformat()})
    add("erase-me", T0 + timedelta(minutes=2), "Keep Start")
    add("erase-me", T0 + timedelta(hours=1), "Erasure Requested")
    add("erase-me", T0 + timedelta(days=2), "Signed In")  # starts afresh
    # In time order, as a live stream arrives: timers fire as event time passes, so an event
    # arriving after a much later one would meet timers that already fired.
    return sorted(out, key=lambda e: e["timestamp"])


@pytest.fixture(scope="module")
def outputs(broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("policy")
    jdir = ROOT / "tests" / "journeys-policy"
    events = stream()
    events_file = tmp / "events.jsonl"
    events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    cfg = tmp / "segue.yaml"
    cfg.write_text("prefix: pol.\npartitions: 4\n" + POLICY)
    r = subprocess.run([sys.executable, "-m", "segue.cli", "replay", "--journeys", str(jdir),
                        "--events", str(events_file), "--out", str(tmp / "replay"),
                        "--horizon", "20d", "--config", str(cfg), "--state-dir",
                        str(tmp / "replay-state")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    replay = replay_outputs(tmp / "replay")

    from segue.broker import ensure_topics
    from segue.config import load_settings
    settings = load_settings(cfg)
    t = settings.topics
    ensure_topics(broker.bootstrap, settings)
    records = [(e.get("userId") or e["anonymousId"], orjson.dumps(e)) for e in events]
    produce_records(broker.bootstrap, t.events, records)
    state = tmp / "state"
    r = subprocess.run([sys.executable, "-m", "segue.cli", "run", "--brokers", broker.bootstrap,
                        "--state-dir", str(state), "--config", str(cfg), "--journeys", str(jdir),
                        "--until-eof", "--horizon", "20d", "--progress-every", "0"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    live = live_outputs(broker.bootstrap, t)
    return {"replay": replay, "live": live, "state": state, "settings": settings,
            "broker": broker, "records": records, "cfg": cfg, "jdir": jdir}


def _canon(records):
    return Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def test_replay_and_live_agree(outputs):
    for name, recs in outputs["replay"].items():
        # Identity merge records depend on how partitions interleave; the rest may not.
        keep = [r for r in recs if not r["type"].startswith("identity.")]
        live = [r for r in outputs["live"][name] if not r["type"].startswith("identity.")]
        assert _canon(keep) == _canon(live), name


def decisions(o, cid):
    return [d for d in o["replay"]["decisions"] if d["customer_id"] == cid]


def sends(o, cid):
    return [(d["channel"], d["template"], d["at_ms"]) for d in o["replay"]["dispatches"]
            if d["customer_id"] == cid]


def test_five_emails_in_a_week_become_two_the_rest_deferred_with_reasons(outputs):
    got = sends(outputs, "capped")
    week = [s for s in got if s[2] < ms(T0) + 7 * DAY]
    assert [t for _, t, _ in week] == ["blast-1", "blast-2"]
    deferred = [d for d in decisions(outputs, "capped") if d["outcome"] == "defer"]
    assert {d["template"] for d in deferred} >= {"blast-3"}
    assert all("cap.email.week" in d["reasons"] for d in deferred)
    assert all(d["next_eligible_ms"] >= ms(T0) + 7 * DAY for d in deferred)
    # Whatever went out later never had more than 2 emails in any 7 days.
    times = sorted(s[2] for s in got if s[0] == "email")
    assert all(sum(1 for u in times if t - 7 * DAY < u <= t) <= 2 for t in times)


def test_send_at_2330_local_goes_out_at_0900_next_morning_also_across_dst(outputs):
    assert sends(outputs, "late") == [
        ("email", "late-news", ms(datetime(2026, 2, 4, 8, 0, tzinfo=UTC)))]  # 09:00 CET
    d = decisions(outputs, "late")
    assert (d[0]["outcome"], d[0]["reasons"]) == ("defer", ["quiet_hours"])
    # 23:30 CET on 28 March; 09:00 on the 29th is CEST (UTC+2).
    assert sends(outputs, "late-dst") == [
        ("email", "late-news", ms(datetime(2026, 3, 29, 7, 0, tzinfo=UTC)))]


def test_opt_out_between_steps_stops_later_sends_and_exits_the_journey(outputs):
    assert [t for _, t, _ in sends(outputs, "opt-out")] == ["series-1"]
    exits = [e for e in outputs["replay"]["journey-events"]
             if e["customer_id"] == "opt-out" and e["type"] == "journey.exited"]
    assert [e["reason"] for e in exits] == ["consent.email.opted_out"]


def test_sms_without_consent_falls_back_to_email(outputs):
    assert [(c, t) for c, t, _ in sends(outputs, "sms-no-consent")] == [("email", "sms-offer")]
    d = decisions(outputs, "sms-no-consent")[0]
    assert (d["outcome"], d["original_channel"], d["channel"]) == ("send", "sms", "email")
    assert d["reasons"] == ["consent.sms", "fallback.sms->email"]
    sent = [x for x in outputs["replay"]["dispatches"] if x["customer_id"] == "sms-no-consent"]
    assert sent[0]["original_channel"] == "sms"


def test_failed_push_is_retried_once_then_sent_as_inbox_message(outputs):
    got = [(d["channel"], d["attempt"]) for d in outputs["replay"]["dispatches"]
           if d["customer_id"] == "push-fails"]
    assert got == [("push", 1), ("push", 2), ("inbox", 1)]
    reasons = [d["reasons"] for d in decisions(outputs, "push-fails")]
    assert reasons[1] == ["delivery.failed", "retry"]
    assert reasons[2][0] == "delivery.failed" and "fallback.push->inbox" in reasons[2]


def test_erasure_leaves_nothing_and_later_events_start_fresh(outputs):
    from models.identifiers import hash_email
    needles = [b"erase-me", b"erase-device", b"erase@me.example",
               hash_email("erase@me.example").encode()]
    fresh_from = ms(T0 + timedelta(days=2))  # the one event after the erasure

    def belongs_to_the_fresh_profile(k: bytes) -> bool:
        if k == b"c|user:erase-me":
            return True
        if k.startswith(b"t|") and k.endswith(b"|user:erase-me|inactivity"):
            return int(k[2:18], 16) > fresh_from
        return False

    for path in partition_stores(outputs["state"]):  # every key of every store
        store = open_read_only(path)
        try:
            for k, v in store.scan(b""):
                if belongs_to_the_fresh_profile(k):
                    continue
                leftover = [n for n in needles if n in (k + v).lower()]
                assert not leftover, (k, leftover)
        finally:
            store.close()
    fresh = find_profile(outputs["state"], "erase-me")[1]
    assert fresh["events"] == 1 and list(fresh["counters"]) == ["Signed In"]
    assert fresh["links"] == ["user:erase-me"] and fresh["traits"] == {}
    assert find_profile(outputs["state"], "erase-device") is None
    audit = [r for r in outputs["replay"]["customer-events"] if r["type"] == "privacy.erased"]
    assert len(audit) == 1 and audit[0]["customer_id"] is None
    audit_bytes = orjson.dumps(audit[0])
    assert b"erase-me" not in audit_bytes and b"erase-device" not in audit_bytes
    assert audit[0]["deleted"]["profile"] == 1 and audit[0]["deleted"]["timers"] >= 1
    assert not [s for s in sends(outputs, "erase-me") if s[1] == "keeper"]


def test_the_same_events_again_never_push_a_customer_over_a_cap(outputs):
    """Replayed after a crash: every event produced a second time (same messageIds)."""
    o = outputs
    before = [m for m in consume_all(o["broker"].bootstrap, o["settings"].topics.dispatch(
        "email")) if orjson.loads(m.value())["customer_id"] == "capped"]
    produce_records(o["broker"].bootstrap, o["settings"].topics.events, o["records"])
    r = subprocess.run([sys.executable, "-m", "segue.cli", "run", "--brokers",
                        o["broker"].bootstrap, "--state-dir", str(o["state"]), "--config",
                        str(o["cfg"]), "--journeys", str(o["jdir"]), "--until-eof",
                        "--horizon", "20d", "--progress-every", "0"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    after = [m for m in consume_all(o["broker"].bootstrap, o["settings"].topics.dispatch(
        "email")) if orjson.loads(m.value())["customer_id"] == "capped"]
    assert len(after) == len(before)
    p = find_profile(o["state"], "capped")[1]
    assert p["events"] == 1  # the duplicate start was dropped
    ledger = [e for e in p["ledger"] if e[1] == "email"]
    assert len({e[3] for e in ledger}) == len(ledger)  # no send counted twice
