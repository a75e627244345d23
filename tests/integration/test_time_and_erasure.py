"""Event time and erasure (issue 14): a forged future time is dead-lettered and fires no
timers; sends due before an erasure still happen, in order. Replay and live agree."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from segue.kafka_io import consume_all, produce_records
from tests.conftest import ROOT, live_outputs, replay_outputs

pytestmark = pytest.mark.integration
JOURNEYS = ROOT / "tests" / "journeys-segment"
DAY = "2026-01-{:02d}T10:00:00Z"


def ev(mid: str, user: str, name: str, day: int, **extra) -> dict:
    return {"type": "track", "messageId": mid, "userId": user, "event": name,
            "timestamp": DAY.format(1 + day), **extra}


def stream() -> list[dict]:
    out = [ev("s1", "ann", "Series Start", 0), ev("e1", "ann", "Erasure Requested", 10),
           ev("s2", "ben", "Series Start", 0), ev("e2", "ben", "Erasure Requested", 6),
           ev("s3", "cid", "Series Start", 0), ev("x3", "cid", "Signed In", 1)]
    # 64 messages stamped 2030 in both fields: they must not move anyone's clock.
    out += [ev(f"f{i}", f"forger{i}", "Signed In", 0, timestamp="2030-01-01T00:00:00Z",
               receivedAt="2030-01-01T00:00:00Z") for i in range(64)]
    return out


def templates(records: list[dict], who: str) -> list[str]:
    return [r["template"] for r in records if r["customer_id"] == who]


def check(outputs: dict, dlq: list[dict]) -> None:
    d = outputs["dispatches"]
    assert templates(d, "ann") == ["day-0", "day-2", "day-4"]  # erased on day 10
    assert templates(d, "ben") == ["day-0", "day-2", "day-4"]  # erased on day 6
    # cid's input ends on day 1: only the first send is due by then (no drain horizon).
    assert templates(d, "cid") == ["day-0"]
    assert Counter(r["reason"]["code"] for r in dlq) == {"timestamp.future": 64}


def test_forged_time_and_erasure_in_replay_and_live(job_factory, tmp_path):
    job = job_factory()
    out = tmp_path / "replay"
    job.replay(stream(), out, "--journeys", str(JOURNEYS), "--horizon", "0d")
    replay = replay_outputs(out)
    check(replay, [orjson.loads(x) for x in (out / "dlq.jsonl").read_bytes().splitlines()])

    produce_records(job.broker.bootstrap, job.topics.events,
                    [(e["userId"], orjson.dumps(e)) for e in stream()])
    job.run_until_eof("--journeys", str(JOURNEYS))
    live = live_outputs(job.broker.bootstrap, job.topics)
    check(live, [orjson.loads(m.value()) for m in consume_all(job.broker.bootstrap,
                                                               job.topics.dlq)])
    key = lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)  # noqa: E731
    assert Counter(map(key, live["dispatches"])) == Counter(map(key, replay["dispatches"]))
