"""Any Kafka cluster (issue 16, item 2): every librdkafka option from the config file's
kafka:, SEGUE_KAFKA_* and --kafka-option, in that order; secrets never printed."""

import subprocess
import sys

import pytest

from flows import kafka
from flows.source import consumer_config
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def _reset():
    yield
    kafka.configure({})


def test_options_merge_file_then_environment_then_command_line():
    opts = kafka.resolve(
        {"security.protocol": "SASL_SSL", "sasl.username": "file", "ssl.ca.location": "/ca"},
        ["sasl.username=cli", "sasl.mechanism=SCRAM-SHA-512"],
        {"SEGUE_KAFKA_SASL_USERNAME": "env", "SEGUE_KAFKA_SASL_PASSWORD": "pw", "HOME": "/x"})
    assert opts == {"security.protocol": "SASL_SSL", "sasl.username": "cli",
                    "ssl.ca.location": "/ca", "sasl.password": "pw",
                    "sasl.mechanism": "SCRAM-SHA-512"}


def test_every_client_gets_the_deployment_options():
    kafka.configure({"security.protocol": "SASL_SSL", "sasl.password": "pw", "enable.ssl"
                     ".certificate.verification": True})
    conf = consumer_config("k1:9093")
    assert conf["bootstrap.servers"] == "k1:9093"
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.password"] == "pw"
    assert conf["enable.ssl.certificate.verification"] == "true"
    assert conf["group.id"] == "segue-assign"  # the client's own settings stay


def test_a_bad_option_is_named():
    with pytest.raises(ValueError, match="expected key=value"):
        kafka.parse_options(["security.protocol"])


def test_config_show_never_prints_secrets(tmp_path):
    cfg = tmp_path / "segue.yaml"
    cfg.write_text("kafka: {security.protocol: SASL_SSL, sasl.username: svc, "
                   "sasl.password: hunter2}\n")
    out = subprocess.run([sys.executable, "-m", "segue.cli", "config", "show", str(cfg)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "SEGUE_KAFKA_SSL_KEY_PASSWORD": "k3y"})
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout and "k3y" not in out.stdout
    assert "sasl.password: '***'" in out.stdout and "ssl.key.password: '***'" in out.stdout
    assert "sasl.username: svc" in out.stdout


def test_an_unknown_option_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "segue.cli", "simulate", "--customers", "2",
                          "--events", "5", "--brokers", "127.0.0.1:1", "--kafka-option",
                          "no.such.option=1"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "no.such.option" in out.stderr
