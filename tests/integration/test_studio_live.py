"""Studio's live reader started before the flow made its topics: it says so, then reads them
once they exist, counting each record once."""

from __future__ import annotations

import uuid

import orjson
import pytest

from models.settings import Settings
from segue.broker import ensure_topics
from segue.kafka_io import produce_records
from segue.studio.live import LiveView
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def test_topics_made_after_studio_started_are_read(broker) -> None:  # noqa: ANN001
    s = Settings(prefix=f"late{uuid.uuid4().hex[:6]}.")
    live = LiveView(broker.bootstrap, s, None).start()
    try:
        wait_for(lambda: live.figures()["error"], 30, 0.2, "the missing topic to be reported")
        assert "does not exist yet" in live.figures()["error"]
        ensure_topics(broker.bootstrap, s)
        recs = [{"type": "journey.entered", "customer_id": f"c{i}", "at_ms": 1000 + i,
                 "journey": {"id": "j", "version": 1, "node": "a", "instance": 1}}
                for i in range(3)]
        produce_records(broker.bootstrap, s.topics.journey_events,
                        [(r["customer_id"].encode(), orjson.dumps(r)) for r in recs])
        wait_for(lambda: live.versions("j").get(1, {}).get("entered") == 3, 60, 0.3,
                 "the three entries")
        assert live.figures()["error"] is None
        assert live.versions("j")[1]["entered_customers"] == 3
    finally:
        live.stop()
