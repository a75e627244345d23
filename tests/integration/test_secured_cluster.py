"""A secured cluster (issue 16, item 2): credentials the broker refuses give one clear line
(no password in it); SEGUE_BROKERS is the default of --brokers. Tansu with
``--authentication`` refuses every SASL/PLAIN login (tansu.md), which is what this needs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flows.topics import free_port
from segue.broker import tansu_binary
from segue.kafka_io import consume_all
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def secured_broker(tmp_path):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "tansu.log", "wb")  # noqa: SIM115
    p = subprocess.Popen([tansu_binary(), "broker", "--listener-url", url,
                          "--advertised-listener-url", url, "--storage-engine",
                          "memory://tansu/", "--authentication"], stdout=log,
                         stderr=subprocess.STDOUT)
    import socket

    def up() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(up, 20, what="the secured broker")
    yield f"127.0.0.1:{port}"
    p.kill()
    p.wait(10)


def test_refused_credentials_are_one_clear_line(secured_broker, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "segue.cli", "run", "--brokers", secured_broker, "--state-dir",
         str(tmp_path / "state"), "--until-eof", "--kafka-option",
         "security.protocol=SASL_PLAINTEXT", "--kafka-option", "sasl.mechanism=PLAIN",
         "--kafka-option", "sasl.username=segue"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "SEGUE_KAFKA_SASL_PASSWORD": "not-the-password"})
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: could not authenticate with the Kafka cluster at "
                           f"{secured_broker}")
    assert "sasl.password" in last and "not-the-password" not in out.stderr


def test_segue_brokers_is_the_default(broker, tmp_path):
    topic_prefix = "envb."
    out = subprocess.run(
        [sys.executable, "-m", "segue.cli", "simulate", "--customers", "3", "--events", "20",
         "--prefix", topic_prefix],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "SEGUE_BROKERS": broker.bootstrap})
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(consume_all(broker.bootstrap, f"{topic_prefix}events")) >= 20
