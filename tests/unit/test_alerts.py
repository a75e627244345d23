"""Alerts fire on an injected channel outage and stay quiet on a healthy run (replay: the
flow's own operators, event time)."""

from datetime import UTC, datetime, timedelta

import orjson

from models.envelope import idempotency_key
from models.settings import Settings
from segue.replay import replay
from tests.conftest import ROOT

T0 = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
OPEN = {"partitions": 2, "policy": {"caps": {}, "send_windows": {}, "consent_defaults": {}}}


def run(tmp_path, failures: int) -> list[dict]:
    lines = []
    for i in range(40):
        cid = f"c{i}"
        lines.append({"type": "track", "messageId": f"s{i}", "userId": cid,
                      "event": "Alert Start", "timestamp": (T0 + timedelta(seconds=i)).isoformat()})
    for i in range(failures):  # the push provider reports failures for the first ones
        cid = f"c{i}"
        entered = int((T0 + timedelta(seconds=i)).timestamp() * 1000)
        did = idempotency_key("dispatch", cid, "push-alert", 1, "p1", 1, 1, entered)
        lines.append({"type": "track", "messageId": f"f{i}", "userId": cid,
                      "event": "Dispatch Failed", "properties": {"dispatch_id": did},
                      "timestamp": (T0 + timedelta(minutes=5, seconds=i)).isoformat()})
    f = tmp_path / f"ev{failures}.jsonl"
    f.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    out = tmp_path / f"out{failures}"
    replay(Settings(**OPEN), ROOT / "tests" / "journeys-policy", f, out,
           tmp_path / f"state{failures}", horizon_ms=0)
    return [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]


def test_channel_outage_raises_one_alert_for_the_hour_across_partitions(tmp_path):
    alerts = run(tmp_path, failures=30)
    assert [(a["type"], a["subject"]) for a in alerts] == [("alert.channel_failure", "push")]
    assert alerts[0]["rate"] >= 0.2 and alerts[0]["sent"] >= 20
    assert alerts[0]["sent"] <= 40 and 1 <= alerts[0]["partitions"] <= 2


def test_healthy_run_raises_no_alert(tmp_path):
    assert run(tmp_path, failures=2) == []
