"""Journeys reload in the running flow: a new version applies to new entries, no restart."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import orjson
import pytest

from segue.kafka_io import consume_all, produce_records
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

JOURNEY = """\
id: hello
version: {v}
entry: {{event: Hello}}
start: s
steps:
  s: {{type: send, channel: push, template: hello-v{v}, next: done}}
  done: {{type: end}}
"""


def test_new_version_is_picked_up_without_restart(job_factory, tmp_path):
    # Wall-clock timestamps: no send window, or the test fails whenever quiet hours are on.
    job = job_factory(policy={"caps": {}, "send_windows": {}, "consent_defaults": {}})
    jdir = tmp_path / "journeys"
    jdir.mkdir()
    (jdir / "hello.yaml").write_text(JOURNEY.format(v=1))
    run = job.start_run("--journeys", str(jdir))

    def send(cid: str) -> None:
        ev = {"type": "track", "messageId": f"{cid}-1", "userId": cid, "event": "Hello",
              "timestamp": datetime.now(UTC).isoformat()}
        produce_records(job.broker.bootstrap, job.topics.events, [(cid, orjson.dumps(ev))])

    def templates():
        return {orjson.loads(m.value())["customer_id"]: orjson.loads(m.value())["template"]
                for m in consume_all(job.broker.bootstrap, job.topics.dispatch("push"))}

    try:
        send("first")
        wait_for(lambda: "first" in templates(), 30, every=0.1, what="first dispatch")
        (jdir / "hello.yaml").write_text(JOURNEY.format(v=2))
        os.utime(jdir / "hello.yaml", ns=(time.time_ns() + 10**9,) * 2)
        time.sleep(2.5)  # the folder is polled every 2 s
        send("second")
        got = wait_for(lambda: "second" in (t := templates()) and t, 30, every=0.1,
                       what="second dispatch")
        assert run.poll() is None
    finally:
        run.terminate()
        run.wait(20)
    assert got == {"first": "hello-v1", "second": "hello-v2"}
