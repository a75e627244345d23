"""Alerts judged on totals across partitions, once per subject and hour (issue 19): a push
outage on 8 partitions raises one alert, whether later events follow in the same input or
not, and a DLQ rate of 8 % spread over the partitions raises one too. Replay and live agree.

Before: with later events the hour rolled over before the end-of-batch check (no alert);
without them, one alert per partition (8); the DLQ rate never alerted (no partition alone
reached ``dlq_min_messages``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from models.envelope import idempotency_key
from segue.kafka_io import consume_all, produce_records
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)
OPEN = {"partitions": 8, "policy": {"caps": {}, "send_windows": {}, "consent_defaults": {}}}
JOURNEYS = str(ROOT / "tests" / "journeys-policy")


def at(delta: timedelta) -> str:
    return (T0 + delta).isoformat()


def outage(later_events: bool) -> list[dict]:
    """320 pushes in the hour, 144 of them reported failed in the same hour."""
    out = [{"type": "track", "messageId": f"s{i}", "userId": f"c{i}", "event": "Alert Start",
            "timestamp": at(timedelta(seconds=5 * i))} for i in range(320)]
    for i in range(144):
        entered = int((T0 + timedelta(seconds=5 * i)).timestamp() * 1000)
        did = idempotency_key("dispatch", f"c{i}", "push-alert", 1, "p1", 1, 1, entered)
        out.append({"type": "track", "messageId": f"f{i}", "userId": f"c{i}",
                    "event": "Dispatch Failed", "properties": {"dispatch_id": did},
                    "timestamp": at(timedelta(minutes=30, seconds=i))})
    if later_events:  # the next hour goes on
        out += [{"type": "page", "messageId": f"l{i}", "userId": f"c{i}", "name": "Home",
                 "timestamp": at(timedelta(hours=2, seconds=i))} for i in range(60)]
    return out


def dead_letters() -> list[tuple[str, bytes]]:
    """201 messages, 16 of them not JSON (8 %), spread over every partition."""
    good = [(f"d{i}", orjson.dumps({"type": "page", "messageId": f"d{i}", "userId": f"d{i}",
                                    "name": "Home", "timestamp": at(timedelta(seconds=i))}))
            for i in range(185)]
    bad = [(f"x{i}", b"{not json") for i in range(16)]
    return good[:90] + bad + good[90:]


def replayed_alerts(out) -> list[dict]:  # noqa: ANN001
    return [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]


def live_alerts(job) -> list[dict]:  # noqa: ANN001
    return [orjson.loads(m.value()) for m in consume_all(job.broker.bootstrap,
                                                         job.topics.alerts)]


def channel_alerts(records: list[dict]) -> list[dict]:
    return [a for a in records if a["type"] == "alert.channel_failure"]


def check_outage(alerts: list[dict]) -> None:
    got = channel_alerts(alerts)
    assert len(got) == 1, got
    a = got[0]
    assert a["subject"] == "push" and a["hour_start_ms"] == int(T0.timestamp() * 1000)
    assert a["rate"] >= 0.2 and a["sent"] >= 20 and a["failed"] <= 144


@pytest.mark.parametrize("later_events", [True, False], ids=["later-events", "input-ends"])
def test_a_push_outage_raises_one_alert(job_factory, tmp_path, later_events):
    job = job_factory(**OPEN)
    stream = outage(later_events)
    job.replay(stream, tmp_path / "replay", "--journeys", JOURNEYS, "--horizon", "0s")
    replayed = replayed_alerts(tmp_path / "replay")
    check_outage(replayed)
    produce_records(job.broker.bootstrap, job.topics.events,
                    [(e["userId"], orjson.dumps(e)) for e in stream])
    job.run_until_eof("--journeys", JOURNEYS)
    live = live_alerts(job)
    check_outage(live)
    # The same alert: one subject and hour, one idempotency key.
    assert channel_alerts(live)[0]["idempotency_key"] == \
        channel_alerts(replayed)[0]["idempotency_key"]


def test_a_dlq_rate_spread_over_partitions_alerts_once(job_factory, tmp_path):
    job = job_factory(**OPEN)
    lines = tmp_path / "dlq.jsonl"
    lines.write_bytes(b"".join(v + b"\n" for _, v in dead_letters()))
    import subprocess

    r = subprocess.run(job.cli("replay", "--events", str(lines), "--out", str(tmp_path / "r"),
                               "--config", str(job.config)), capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    produce_records(job.broker.bootstrap, job.topics.events, dead_letters())
    job.run_until_eof()
    for alerts in (replayed_alerts(tmp_path / "r"), live_alerts(job)):
        dlq = [a for a in alerts if a["type"] == "alert.dlq_rate"]
        assert len(dlq) == 1, alerts
        assert dlq[0]["messages"] >= 100 and dlq[0]["rate"] >= 0.05
        assert dlq[0]["partitions"] >= 2  # judged on more than one partition's counts
