"""Next best action in the running flow, through the real broker: decisions go out with the
inventory order, a model promoted while the flow runs is used without a restart, and
ineligible actions are never chosen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from models.nba import promote
from models.nba_train import train
from models.settings import NbaSettings
from segue.kafka_io import consume_all, produce_records
from tests.conftest import wait_for
from tests.unit.test_nba import _logged

pytestmark = pytest.mark.integration


def _batch(start: datetime, tag: str, n: int) -> list[tuple[str, bytes]]:
    """Sign-ups (identify) of ``n`` new customers, every other one on the free plan."""
    out = []
    for i in range(n):
        cid = f"{tag}-{i}"
        ev = {"type": "identify", "messageId": f"{tag}-{i}", "userId": cid,
              "timestamp": (start + timedelta(seconds=i)).isoformat(),
              "traits": {"plan": "pro" if i % 2 else "free", "adoption_score": 50 + i % 50}}
        out.append((cid, orjson.dumps(ev)))
    return out


def test_model_promoted_while_running_is_used_without_restart(job_factory, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    job = job_factory(
        policy={"caps": {}, "send_windows": {}, "consent_defaults": {}},
        nba={"models_dir": str(models), "reload_s": 0.5, "exploration": 0.0,
             "always_on": {"events": ["identify"]},
             "actions": [{"name": "upgrade_offer", "channel": "email", "plans": ["pro"]},
                         {"name": "feature_tip", "channel": "in_app"},
                         {"name": "content_recommendation", "channel": "content"},
                         {"name": "do_nothing", "channel": "none"}]})
    run = job.start_run()
    try:
        now = datetime.now(UTC)
        produce_records(job.broker.bootstrap, job.topics.events, _batch(now, "before", 40))

        def decided(n: int):
            recs = [orjson.loads(m.value()) for m in
                    consume_all(job.broker.bootstrap, job.topics.decisions)]
            return recs if len(recs) >= n else None

        before = wait_for(lambda: decided(40), 60, what="decisions without a model")
        assert {d["nba"]["model"] for d in before} == {None}
        # Promote a model while the flow runs; it is picked up within reload_s.
        version = train(_logged(), models, NbaSettings(), source="test").name
        promote(models, version)
        later = now + timedelta(minutes=5)
        produce_records(job.broker.bootstrap, job.topics.events, _batch(later, "after", 40))
        every = wait_for(lambda: decided(80), 60, what="decisions with the model")
        assert run.poll() is None  # the same process throughout
    finally:
        run.terminate()
        run.wait(20)
    after = [d for d in every if d["customer_id"].startswith("after-")]
    assert len(after) == 40 and {d["nba"]["model"] for d in after} == {version}
    for d in every:
        # upgrade_offer only for the pro plan; never an action the decision called ineligible
        assert d["action"] not in d["nba"]["ineligible"]
        if d["customer_id"].rsplit("-", 1)[1] in {str(i) for i in range(0, 40, 2)}:
            assert d["nba"]["ineligible"] == {"upgrade_offer": "plan:free"}
    with_model = [d for d in after if d["nba"]["ranked"][0].get("rationale")]
    assert with_model and all(d["nba"]["ranked"][0]["uplift"] is not None for d in after)
