"""Live converges to replay under deliberate CPU contention (issue 15, item 3): the same
input through ``segue replay`` and through the live flow with two busy processes beside it
and tiny batches gives the same dispatches, decisions and journey events (the same order
per customer), the same final analytics totals, and the same order-independent state per
customer. What may differ, and why, is in the README ("What live and replay share")."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

import orjson
import pytest

from segue.kafka_io import event_records, produce_records
from segue.simulator import simulate
from state.inspect import iter_profiles
from tests.conftest import ROOT, live_outputs, replay_outputs

pytestmark = pytest.mark.integration
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 600: pass\n"


def per_customer(records: list[dict]) -> dict:
    out = defaultdict(list)
    for r in records:
        out[(r["customer_id"], r.get("channel"))].append(
            orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    return dict(out)


def final_totals(records: list[dict]) -> dict:
    """The newest analytics record per journey version or channel: the running total."""
    last = {}
    for r in records:
        last[(r["type"], r.get("journey", {}) and r["journey"].get("id"),
              r.get("journey", {}) and r["journey"].get("version"), r.get("channel"))] = r
    return {k: {f: v for f, v in r.items() if f not in ("idempotency_key", "at_ms", "cause")}
            for k, r in last.items()}


def state(state_dir) -> dict:  # noqa: ANN001
    """What does not depend on the order a merged customer's events came in."""
    return {p["ref"]: (p["events"], sorted((k, c[0]) for k, c in p["counters"].items()),
                       p["first_seen"], p["last_seen"], sorted(p["links"]))
            for p in iter_profiles(state_dir)}


def test_live_under_contention_matches_replay(job_factory, tmp_path):
    job = job_factory(batch_size=50)
    evs = list(simulate(customers=1_000, events=10_000, seed=7))
    out = tmp_path / "replay"
    job.replay(evs, out, "--journeys", str(ROOT / "journeys"), "--state-dir",
               str(tmp_path / "rs"), "--horizon", "35d")
    replay = replay_outputs(out)
    replay_analytics = [orjson.loads(x) for x in (out / "analytics.jsonl").read_bytes()
                        .splitlines()]

    produce_records(job.broker.bootstrap, job.topics.events, event_records(iter(evs)))
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        job.run_until_eof("--journeys", str(ROOT / "journeys"), "--horizon", "35d")
    finally:
        for b in busy:
            b.kill()
    live = live_outputs(job.broker.bootstrap, job.topics)
    from segue.kafka_io import consume_all
    live_analytics = [orjson.loads(m.value())
                      for m in consume_all(job.broker.bootstrap, job.topics.analytics)]

    for name in ("dispatches", "decisions", "journey-events"):
        assert len(replay[name]) > 0, name
        assert per_customer(live[name]) == per_customer(replay[name]), name
    assert final_totals(live_analytics) == final_totals(replay_analytics)
    assert state(job.state_dir) == state(tmp_path / "rs")
    # Customer events agree for every customer who never browsed anonymously; for one who
    # did, identity.merged and lifecycle changes depend on whether the anonymous history was
    # read before the identify's claim reached it (README: "What live and replay share").
    profiles = list(iter_profiles(job.state_dir))
    anon = {x.split(":", 1)[1] for p in profiles for x in p["links"] if x.startswith("anon:")}
    merged = anon | {p["id"] for p in profiles
                     if any(x.startswith("anon:") for x in p["links"])}
    assert len(merged) < len(profiles)
    def others(records: list[dict]) -> dict:
        return {k: v for k, v in per_customer(records).items() if k[0] not in merged}
    assert others(live["customer-events"]) == others(replay["customer-events"])



def test_final_analytics_totals_without_a_horizon_count_every_entry(job_factory):
    """``segue run --until-eof`` without ``--horizon``: events held for a merge are applied
    after the partition's input ended, and their journey entries must still reach the
    analytics totals (they were left out: 459 of 1,194 abandoned-cart entries on this kind of
    stream)."""
    from segue.kafka_io import consume_all

    job = job_factory(partitions=8)
    produce_records(job.broker.bootstrap, job.topics.events,
                    event_records(simulate(3000, 40_000, seed=2)))
    job.run_until_eof("--journeys", str(ROOT / "journeys"))
    entered: dict[str, int] = defaultdict(int)
    converted: dict[str, int] = defaultdict(int)
    for m in consume_all(job.broker.bootstrap, job.topics.journey_events):
        r = orjson.loads(m.value())
        if r["type"] == "journey.entered":
            entered[r["journey"]["id"]] += 1
        elif r["type"] == "journey.converted":
            converted[r["journey"]["id"]] += 1
    latest: dict[str, dict] = {}
    for m in consume_all(job.broker.bootstrap, job.topics.analytics):
        r = orjson.loads(m.value())
        if r["type"] == "analytics.journey":
            latest[r["journey"]["id"]] = r
    assert sum(entered.values()) > 1000
    assert {j: r["entered"] for j, r in latest.items()} == dict(entered)
    assert {j: r["converted"] for j, r in latest.items() if r["converted"]} == dict(converted)
