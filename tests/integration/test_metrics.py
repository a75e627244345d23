"""Prometheus /metrics after a simulated run through the real broker: counters equal the
known counts and the latency histogram has one sample per dispatch."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from segue.broker import free_port
from segue.kafka_io import consume_all, produce_records
from state.inspect import iter_profiles
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[tuple, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def healthcheck(port: int) -> subprocess.CompletedProcess:
    """The image's HEALTHCHECK command against ``port``."""
    return subprocess.run([sys.executable, str(ROOT / "deploy/docker/healthcheck.py")],
                          env={**os.environ, "SEGUE_METRICS_PORT": str(port)},
                          capture_output=True, text=True, timeout=30)


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    import socket
    import struct

    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(struct.pack("<I", int(addr, 16))))
    return found


def test_metrics_equal_known_counts(job_factory):
    job = job_factory(policy={"caps": {}, "send_windows": {}, "consent_defaults": {}})
    now = datetime.now(UTC)
    stream = []
    for i in range(300):
        name = "Late Send" if i % 3 else "Alert Start"
        ev = {"type": "track", "messageId": f"m{i}", "userId": f"c{i % 120}", "event": name,
              "timestamp": (now - timedelta(seconds=300 - i)).isoformat()}
        stream.append((f"c{i % 120}", orjson.dumps(ev)))
    stream += [(f"bad{i}", b"{nope") for i in range(17)]
    stream += [stream[0]]  # a retried duplicate
    port = free_port()
    run = job.start_run("--journeys", str(ROOT / "tests" / "journeys-policy"),
                        "--metrics-port", str(port))
    try:
        produce_records(job.broker.bootstrap, job.topics.events, stream)
        wait_for(lambda: sum(p["events"] for p in iter_profiles(job.state_dir)) == 300, 60,
                 what="all applied")
        dispatched = {ch: len(consume_all(job.broker.bootstrap, job.topics.dispatch(ch)))
                      for ch in ("email", "push")}

        def settled():
            m = scrape(port)
            sent = sum(v for (n, lab), v in m.items() if n == "segue_dispatches_total")
            count = m.get(("segue_event_to_dispatch_seconds_count", (("clock", "kafka"),)), 0)
            return m if sent == sum(dispatched.values()) and count == sent else None

        m = wait_for(settled, 20, every=0.3, what="metrics to settle")
        assert run.poll() is None
        assert listening_addresses(port) == {"127.0.0.1"}  # loopback unless --metrics-host
        assert healthcheck(port).returncode == 0  # the image's HEALTHCHECK
    finally:
        run.terminate()
        run.wait(20)
    gone = healthcheck(port)
    assert gone.returncode == 1 and "unhealthy: no metrics" in gone.stderr
    topic = job.topics.events
    assert m[("segue_events_total", (("result", "applied"), ("topic", topic)))] == 300
    assert m[("segue_events_total", (("result", "dead_lettered"), ("topic", topic)))] == 17
    assert m[("segue_events_total", (("result", "deduplicated"), ("topic", topic)))] == 1
    # Journeys: "Late Send" starts late-send (re-entry never: once per customer), "Alert
    # Start" starts push-alert once per customer.
    assert dispatched["email"] == m[("segue_dispatches_total", (("channel", "email"),
                                                                  ("outcome", "sent")))] > 0
    assert dispatched["push"] == m[("segue_dispatches_total", (("channel", "push"),
                                                                 ("outcome", "sent")))] > 0
    total = dispatched["email"] + dispatched["push"]
    assert m[("segue_event_to_dispatch_seconds_count", (("clock", "kafka"),))] == total
    assert m[("segue_event_to_dispatch_seconds_count", (("clock", "event"),))] == total
    # Segue's own time (consumer → producer, in process) for each of them: more than nothing,
    # and less than the whole way from the event's Kafka timestamp to the dispatch's.
    own = m[("segue_consume_to_produce_seconds_sum", ())]
    assert m[("segue_consume_to_produce_seconds_count", ())] == total
    assert 0 < own < m[("segue_event_to_dispatch_seconds_sum", (("clock", "kafka"),))]
    assert m[("segue_decisions_total", (("outcome", "send"),))] == total  # one per decision
    assert m[("segue_decision_reasons_total", (("outcome", "send"), ("reason", "ok")))] == total
    entered = sum(v for (n, lab), v in m.items() if n == "segue_journey_events_total"
                  and dict(lab)["kind"] == "entered")
    assert entered == total


def test_timer_lateness_counts_live_timers_and_reports_catch_up_apart(job_factory):
    """Timers that fell due before the partition caught up (a backfill) fire late by design:
    they go to ``segue_timer_catchup_seconds``, not into the live lateness histogram."""
    job = job_factory(lifecycle={"inactivity_s": 2, "min_stage_duration_s": 0})
    old = datetime.now(UTC) - timedelta(days=2)
    backfill = [(f"old{i}", orjson.dumps({
        "type": "track", "messageId": f"o{i}", "userId": f"old{i}", "event": "Signed Up",
        # Within 20 ms: every timer is due after the last event, so none fires by event time.
        "timestamp": (old + timedelta(milliseconds=i)).isoformat()})) for i in range(20)]
    produce_records(job.broker.bootstrap, job.topics.events, backfill)
    port = free_port()
    run = job.start_run("--metrics-port", str(port))
    try:
        def count(name: str) -> float:
            try:
                return scrape(port).get((name, ()), 0)
            except OSError:  # not serving yet
                return 0

        wait_for(lambda: count("segue_timer_catchup_seconds_count") >= 20, 60,
                 every=0.3, what="the backfill's timers")
        live = [("new1", orjson.dumps({
            "type": "track", "messageId": "n1", "userId": "new1", "event": "Signed Up",
            "timestamp": datetime.now(UTC).isoformat()}))]
        produce_records(job.broker.bootstrap, job.topics.events, live)
        wait_for(lambda: count("segue_timer_lateness_seconds_count") >= 1, 30, every=0.3,
                 what="the live timer")
        m = scrape(port)
    finally:
        run.terminate()
        run.wait(20)
    assert m[("segue_timer_catchup_seconds_count", ())] == 20
    assert m[("segue_timer_catchup_seconds_sum", ())] > 20 * 86_400  # about two days each
    assert m[("segue_timer_lateness_seconds_count", ())] == 1
    assert m[("segue_timer_lateness_seconds_sum", ())] < 5  # the live one fired on time
