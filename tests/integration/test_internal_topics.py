"""The internal topic belongs to one application and one state (issue 15, item 4): a state
rebuilt from nothing does not apply what an earlier state's partitions sent each other, and
messages stamped by another application are counted and ignored. Idempotency keys are
unique to their content."""

from __future__ import annotations

import shutil
from collections import defaultdict

import orjson
import pytest

from segue.kafka_io import consume_all, event_records, produce_records
from segue.simulator import simulate
from state.inspect import iter_profiles
from tests.conftest import OUTPUT_FILES, ROOT, live_outputs

pytestmark = pytest.mark.integration


def by_key(outputs: dict[str, list[dict]],
           files: tuple[str, ...] = OUTPUT_FILES) -> dict[str, set[bytes]]:
    seen: dict[str, set[bytes]] = defaultdict(set)
    for name in files:
        for r in outputs[name]:
            seen[r["idempotency_key"]].add(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    return seen


def test_a_rebuilt_state_gives_the_same_outputs_as_the_first(job_factory):
    # Rebuilt from the input, not restored: with the changelog on (the default) a lost state
    # dir is restored from it instead (test_changelog.py).
    job = job_factory(store={"changelog": False})
    produce_records(job.broker.bootstrap, job.topics.events,
                    event_records(simulate(customers=2_000, events=20_000, seed=11)))
    journeys = ("--journeys", str(ROOT / "journeys"), "--horizon", "35d")
    job.run_until_eof(*journeys)
    first = live_outputs(job.broker.bootstrap, job.topics)
    first_state = {p["ref"]: p["events"] for p in iter_profiles(job.state_dir)}
    assert len(consume_all(job.broker.bootstrap, job.topics.repartition)) > 0

    shutil.rmtree(job.state_dir)  # a lost disk: rebuild from the input
    out = job.run_until_eof(*journeys)
    assert "were sent to an earlier state or another deployment and are not applied" in out
    both = live_outputs(job.broker.bootstrap, job.topics)
    # The rebuilt state decided the same: every key it wrote, the first run wrote, with the
    # same payload (one payload per key over both runs), and nothing the first never sent.
    keys = by_key(both)
    assert all(len(payloads) == 1 for payloads in keys.values()), \
        [k for k, v in keys.items() if len(v) > 1][:5]
    # Nothing the first never sent: dispatches, decisions and journey events. (Customer events
    # of customers who browsed anonymously may differ between any two live runs: README,
    # "What live and replay share".)
    decided = ("dispatches", "decisions", "journey-events")
    assert set(by_key(both, decided)) == set(by_key(first, decided))
    assert {p["ref"]: p["events"] for p in iter_profiles(job.state_dir)} == first_state


def test_internal_messages_of_another_application_are_ignored(job_factory):
    job = job_factory()
    produce_records(job.broker.bootstrap, job.topics.events,
                    event_records(simulate(customers=20, events=100, seed=3, duplicate_rate=0)))
    forged = {"kind": "event", "canonical": "user:intruder", "hops": 1, "app": "someone-else",
              "event": {"type": "track", "messageId": "x1", "userId": "intruder",
                        "event": "Signed In", "timestamp": "2026-01-01T10:00:00Z"}}
    produce_records(job.broker.bootstrap, job.topics.repartition,
                    [("intruder", orjson.dumps(forged))])
    # A state that has run before reads the internal topic where it left off, so make one.
    job.run_until_eof()
    produce_records(job.broker.bootstrap, job.topics.repartition,
                    [("intruder", orjson.dumps(forged))] * 3)
    out = job.run_until_eof()
    assert "ignored 3 internal messages of another application" in out
    assert not [p for p in iter_profiles(job.state_dir) if p["id"] == "intruder"]
