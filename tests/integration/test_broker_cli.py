"""``segue broker``: starts Tansu, creates the topics, prints the address, stops on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient

from segue.broker import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_segue_broker_serves_topics_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "segue.cli", "broker", "--port", str(port),
                          "--log", str(tmp_path / "tansu.log")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        first = p.stdout.readline()
        assert f"127.0.0.1:{port}" in first, first
        topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(
            timeout=10).topics
        for name in ("segue.events", "segue.dlq", "segue.customer-events", "segue.decisions",
                     "segue.journey-events"):
            assert name in topics
            assert len(topics[name].partitions) == 8
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=15)[0]
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, rest
    assert "broker stopped" in rest
    assert "Traceback" not in rest
