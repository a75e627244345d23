"""Every output record matches its published schema (``schemas/<topic>.schema.json``,
generated from ``models.outputs``): the records of broad replays — the shipped journeys on a
simulated stream with an erasure and a refused merge, split and holdout analytics with a
step alert, a channel outage — are validated against the models that forbid any field they
do not document, so a new field cannot reach a topic unannounced."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from pydantic import ValidationError

from models.outputs import OUTPUT_MODELS
from models.settings import Settings
from segue.replay import replay
from segue.simulator import simulate
from tests.conftest import ROOT
from tests.integration.test_merge_protection import chains
from tests.unit import test_alerts, test_analytics


def records(out) -> dict[str, list[dict]]:  # noqa: ANN001
    return {name: [orjson.loads(x) for x in (out / f"{name}.jsonl").read_bytes().splitlines()]
            for name in OUTPUT_MODELS}


@pytest.fixture(scope="module")
def emitted(tmp_path_factory) -> dict[str, list[dict]]:
    d = tmp_path_factory.mktemp("schemas")
    stream = list(simulate(2000, 30_000, seed=11))
    stream += chains()  # a merge refused by the link limits
    erased = next(e["userId"] for e in stream if e.get("userId"))
    stream.append({"type": "track", "messageId": "erase-1", "userId": erased,
                   "event": "Erasure Requested", "timestamp": "2026-01-20T11:00:00Z"})
    (d / "a.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in stream))
    replay(Settings(), ROOT / "journeys", d / "a.jsonl", d / "shipped", now_ms=1 << 62)
    got = records(d / "shipped")
    (d / "b.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n"
                                         for e in test_analytics._events()))
    replay(Settings(analytics={"every_s": 600}, alerts={"step_min_exits": 20}),
           ROOT / "tests" / "journeys-analytics", d / "b.jsonl", d / "ab")
    for name, recs in records(d / "ab").items():
        got[name] += recs
    got["alerts"] += test_alerts.run(d, failures=30)
    return got


def test_every_record_matches_its_topic_schema(emitted):
    problems = []
    for name, recs in emitted.items():
        model = OUTPUT_MODELS[name]
        for r in recs:
            try:
                model.model_validate(r)
            except ValidationError as e:
                problems.append(f"{name} {r.get('type')}: {e.errors()[0]}")
    assert not problems, f"{len(problems)} records off their schema: {problems[:5]}"


def test_the_replays_cover_every_kind_of_record(emitted):
    kinds = Counter(r["type"] for recs in emitted.values() for r in recs)
    for kind in ("dispatch", "decision", "journey.entered", "journey.step", "journey.exited",
                 "journey.converted", "analytics.journey", "analytics.channel",
                 "alert.channel_failure", "alert.step_dropoff", "lifecycle.changed",
                 "identity.merged", "identity.link_refused", "privacy.erased"):
        assert kinds[kind] > 0, kind
    assert any(r["split"] for r in emitted["analytics"] if r["type"] == "analytics.journey")


def test_schema_files_are_published_for_every_output_topic():
    import json

    for name in OUTPUT_MODELS:
        schema = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
        assert schema["$id"] == f"urn:segue:schema:{name}" and schema["properties"]["type"]
