"""A replaced broker (Tansu's memory storage loses every topic on restart) is detected before
anything is read or skipped; ``--on-reset`` recovers it, and what it skips is printed
(issue 15, item 5)."""

from __future__ import annotations

import re

import pytest

from flows.topics import ensure_topics
from segue.broker import EmbeddedBroker
from segue.kafka_io import event_records, produce_records
from segue.simulator import simulate
from state.inspect import iter_profiles

pytestmark = pytest.mark.integration


def applied(job) -> int:  # noqa: ANN001
    return sum(p["events"] for p in iter_profiles(job.state_dir))


def events(seed: int, n: int) -> list:
    return list(event_records(simulate(customers=20, events=n, seed=seed, duplicate_rate=0)))


def test_a_replaced_broker_stops_the_run_until_told_what_to_do(job_factory, tmp_path):
    first = EmbeddedBroker(log_path=tmp_path / "a.log").start()
    job = job_factory()
    job.broker = first
    ensure_topics(first.bootstrap, job.settings)
    produce_records(first.bootstrap, job.topics.events, events(1, 300))
    job.run_until_eof()
    assert applied(job) == 300
    first.stop()

    second = EmbeddedBroker(log_path=tmp_path / "b.log").start()
    try:
        job.broker = second
        ensure_topics(second.bootstrap, job.settings)
        new = events(2, 100)
        produce_records(second.bootstrap, job.topics.events, new)

        run = job.start_run("--until-eof")
        assert run.wait(120) == 2
        out = job.last_log()
        assert "Traceback" not in out
        assert "is a different topic now" in out and "--on-reset=from-start" in out
        assert applied(job) == 300  # nothing read, nothing skipped

        out = job.run_until_eof("--on-reset=from-start")
        assert "[segue] input reset:" in out and "reading it from offset 0" in out
        assert applied(job) == 300 + len(new)
        # Recorded now: the next run on this broker is an ordinary restart.
        out = job.run_until_eof()
        assert "input reset" not in out
        assert applied(job) == 300 + len(new)
    finally:
        second.stop()

    third = EmbeddedBroker(log_path=tmp_path / "c.log").start()
    try:
        job.broker = third
        ensure_topics(third.bootstrap, job.settings)
        produce_records(third.bootstrap, job.topics.events, events(3, 50))
        out = job.run_until_eof("--on-reset=from-end")
        skipped = [int(n) for n in re.findall(
            rf"{re.escape(job.topics.events)}\[\d+\] .*skipping (\d+) message", out)]
        assert sum(skipped) == 50  # every skipped message is accounted for
        assert applied(job) == 300 + len(new)
    finally:
        third.stop()


def test_a_broker_replaced_while_running_stops_the_run_with_one_line(job_factory, tmp_path):
    first = EmbeddedBroker(log_path=tmp_path / "a.log").start()
    port = int(first.bootstrap.rpartition(":")[2])
    job = job_factory()
    job.broker = first
    ensure_topics(first.bootstrap, job.settings)
    produce_records(first.bootstrap, job.topics.events, events(1, 100))
    run = job.start_run()  # tailing
    second = None
    try:
        from tests.conftest import wait_for

        wait_for(lambda: applied(job) == 100, 60, what="the first 100 events")
        first.stop()
        second = EmbeddedBroker(port=port, log_path=tmp_path / "b.log").start()
        ensure_topics(second.bootstrap, job.settings)  # an empty broker, the same names
        produce_records(second.bootstrap, job.topics.events, events(2, 30))
        assert run.wait(60) == 3
    finally:
        if run.poll() is None:
            run.kill()
        if second is not None:
            second.stop()
    out = job.last_log()
    assert "was replaced while running" in out and "--on-reset" in out
    assert "Traceback" not in out
    assert applied(job) == 100  # nothing of the new log was read past, nothing skipped
