"""A durable timer fires after SIGKILL + restart, with no further events from the customer."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest

from segue.kafka_io import consume_all, produce_records
from state.inspect import find_profile
from tests.conftest import kill9, wait_for

pytestmark = pytest.mark.integration


def test_timer_due_2s_ahead_fires_after_sigkill_and_restart(job_factory):
    job = job_factory(lifecycle={"inactivity_s": 2, "min_stage_duration_s": 0})
    run = job.start_run()
    try:
        # Wait until the flow is up (it has created its partition stores).
        wait_for(lambda: (job.state_dir).exists() and any(job.state_dir.iterdir()), 30,
                 what="flow start")
        sent_ms = int(time.time() * 1000)
        ev = {"type": "track", "messageId": "t-1", "userId": "quiet-customer",
              "event": "Signed Up",
              "timestamp": datetime.fromtimestamp(sent_ms / 1000, UTC).isoformat()}
        produce_records(job.broker.bootstrap, job.topics.events,
                        [("quiet-customer", orjson.dumps(ev))])
        found = wait_for(lambda: find_profile(job.state_dir, "quiet-customer"), 5, every=0.02,
                         what="event applied")
        profile = found[1]
        due = profile["timers"]["inactivity"]
        assert due == sent_ms + 2000
        kill9(run)
        assert int(time.time() * 1000) < due, "the kill must come before the timer is due"
        run = job.start_run()  # restart; the customer sends nothing more

        def fired():
            msgs = consume_all(job.broker.bootstrap, job.topics.customer_events)
            return [m for m in msgs if orjson.loads(m.value())["to_stage"] == "at-risk"]

        msgs = wait_for(fired, 15, every=0.1, what="inactivity timer output")
    finally:
        run.terminate()
        run.wait(20)
    assert len(msgs) == 1
    rec = orjson.loads(msgs[0].value())
    assert rec["customer_id"] == "quiet-customer"
    assert rec["from_stage"] == "activation"
    assert rec["cause"] == {"timer": "inactivity", "due_ms": due}
    assert rec["at_ms"] == due
    lateness_ms = msgs[0].timestamp()[1] - due
    print(f"timer lateness after restart: {lateness_ms} ms")
    assert 0 <= lateness_ms < 1000
