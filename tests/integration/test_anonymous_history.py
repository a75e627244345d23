"""Anonymous history counts at once (issue 14): a visitor views pricing 3 times, identifies,
and signs up a day later: the sign-up enters the journey whose entry needs
count('page:Pricing', '7d') >= 3, in replay of this 7-event file and live. The customer's
events wait for the merge they depend on."""

from __future__ import annotations

import orjson
import pytest

from operators.identity.routing import home_partition
from segue.kafka_io import produce_records
from state.inspect import iter_profiles
from tests.conftest import ROOT, live_outputs, replay_outputs

pytestmark = pytest.mark.integration
JOURNEYS = ROOT / "tests" / "journeys-segment"


def stream(partitions: int) -> list[dict]:
    # An anonymous id whose home is another partition than the user's: the merge crosses.
    anon = next(f"visitor-{i}" for i in range(100)
                if home_partition(f"visitor-{i}", partitions) != home_partition("pat", partitions))
    evs = [{"type": "page", "messageId": f"v{i}", "anonymousId": anon, "name": "Pricing",
            "timestamp": f"2026-01-01T10:0{i}:00Z"} for i in range(3)]
    evs += [{"type": "identify", "messageId": "i1", "userId": "pat", "anonymousId": anon,
             "traits": {"plan": "free"}, "timestamp": "2026-01-01T10:05:00Z"},
            {"type": "page", "messageId": "v4", "anonymousId": anon, "name": "Docs",
             "timestamp": "2026-01-01T10:06:00Z"},
            {"type": "track", "messageId": "s1", "userId": "pat", "event": "Signed Up",
             "timestamp": "2026-01-02T10:00:00Z"},
            {"type": "track", "messageId": "s2", "userId": "pat", "event": "Signed In",
             "timestamp": "2026-01-02T10:01:00Z"}]
    return evs


def check(outputs: dict, state_dir) -> None:  # noqa: ANN001
    sends = [(d["customer_id"], d["template"]) for d in outputs["dispatches"]]
    assert sends == [("pat", "pricing-followup")]
    (pat,) = list(iter_profiles(state_dir))  # one customer: the anonymous one merged in
    assert pat["id"] == "pat" and pat["events"] == 7
    assert pat["counters"]["page:Pricing"][0] == 3


def test_anonymous_history_counts_at_once_in_replay_and_live(job_factory, tmp_path):
    job = job_factory()
    evs = stream(job.settings.partitions)
    out = tmp_path / "replay"
    job.replay(evs, out, "--journeys", str(JOURNEYS), "--state-dir", str(tmp_path / "rs"))
    check(replay_outputs(out), tmp_path / "rs")

    produce_records(job.broker.bootstrap, job.topics.events,
                    [(e.get("userId") or e["anonymousId"], orjson.dumps(e)) for e in evs])
    job.run_until_eof("--journeys", str(JOURNEYS))
    check(live_outputs(job.broker.bootstrap, job.topics), job.state_dir)
