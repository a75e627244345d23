"""Topics that fit their use (issue 16): Segue creates ``segue.analytics`` compacted, keyed
so that the newest record per key is one total (a journey version, a channel), and the
output topics with the retention the settings give (forever unless set)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from segue.broker import ensure_topics
from segue.kafka_io import consume_all, produce_records
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (fut,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return {k: v.value for k, v in fut.result(10).items()}


def test_topics_are_created_with_their_cleanup_policy_and_retention(broker):
    from models.settings import Settings

    s = Settings(prefix="cfg.", retention={"dispatch_days": 14, "decisions_days": 90})
    ensure_topics(broker.bootstrap, s)
    day = 86_400_000
    assert configs(broker.bootstrap, "cfg.analytics")["cleanup.policy"] == "compact"
    email = configs(broker.bootstrap, "cfg.dispatch.email")
    assert (email["cleanup.policy"], email["retention.ms"]) == ("delete", str(14 * day))
    assert configs(broker.bootstrap, "cfg.decisions")["retention.ms"] == str(90 * day)
    assert configs(broker.bootstrap, "cfg.journey-events")["retention.ms"] == "-1"
    assert configs(broker.bootstrap, "cfg.events")["retention.ms"] == "-1"


def test_each_analytics_key_names_one_total(job_factory):
    job = job_factory(policy={"caps": {}, "send_windows": {}, "consent_defaults": {}})
    t0 = datetime(2026, 3, 1, 10, tzinfo=UTC)
    produce_records(job.broker.bootstrap, job.topics.events, [
        (f"c{i}", orjson.dumps({"type": "track", "messageId": f"m{i}", "userId": f"c{i}",
                                "event": "Alert Start",
                                "timestamp": (t0 + timedelta(minutes=i)).isoformat()}))
        for i in range(30)])
    job.run_until_eof("--journeys", str(ROOT / "tests" / "journeys-policy"))
    subjects: dict[str, set] = {}
    for m in consume_all(job.broker.bootstrap, job.topics.analytics):
        r = orjson.loads(m.value())
        subject = (f"journey:{r['journey']['id']}@v{r['journey']['version']}"
                   if r["type"] == "analytics.journey" else f"channel:{r['channel']}")
        subjects.setdefault(m.key().decode(), set()).add(subject)
    assert "journey:push-alert@v1" in subjects and "channel:push" in subjects
    assert all(s == {k} for k, s in subjects.items()), subjects

    # The dashboard takes the totals whole from the compacted topic and reads the other
    # topics only from --since ago (Kafka time).
    import time

    from segue.dashboard import DashboardState, TopicTail

    for since, decisions in ((None, True), (int(time.time() * 1000) + 3_600_000, False)):
        state = DashboardState()
        assert TopicTail(job.broker.bootstrap, job.settings, since).poll(state, 30)
        rows, source = state.pipeline()
        assert source == "totals from segue.analytics" and rows["push-alert"]["entered"] == 30
        assert bool(state.decisions) is decisions
