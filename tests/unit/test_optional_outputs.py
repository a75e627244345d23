"""Optional output streams (``outputs``) and identity stitching (``identity.stitching``):
a stream switched off is not produced and changes nothing else; with stitching off every
event belongs to its userId, else its anonymousId."""

from pathlib import Path

import orjson

from models.settings import Settings
from segue.replay import replay, summary_table
from segue.simulator import simulate
from state.inspect import iter_profiles

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_900_000_000_000  # the clock reading the input: after every simulated event


def run(tmp_path: Path, name: str, events: list[dict], **settings: object) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "events.jsonl"
    if not path.exists():
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    out = tmp_path / name
    summary = replay(Settings(**settings), ROOT / "journeys", path, out,
                     state_dir=tmp_path / f"{name}-state", now_ms=NOW)
    files = {f.stem: [orjson.loads(x) for x in f.read_bytes().splitlines()]
             for f in out.glob("*.jsonl")}
    return {"summary": summary, **files}


def test_streams_switched_off_are_not_produced_and_the_others_are_unchanged(tmp_path):
    events = list(simulate(300, 6_000, seed=11))
    full = run(tmp_path, "full", events)
    for name in ("dispatches", "decisions", "journey-events", "analytics", "customer-events"):
        assert full[name], name  # the comparison below means something

    # Off: the audit log and the journey events. Analytics still fold them: same totals.
    quiet = run(tmp_path, "quiet", events,
                outputs={"decisions": False, "journey_events": False})
    assert quiet["decisions"] == [] and quiet["journey-events"] == []
    for name in ("dispatches", "analytics", "customer-events", "alerts", "dlq"):
        assert quiet[name] == full[name], name

    # Analytics off as well: no totals, and still the same dispatches.
    bare = run(tmp_path, "bare", events, outputs={"decisions": False,
                                                  "journey_events": False,
                                                  "analytics": False})
    assert bare["analytics"] == [] and bare["decisions"] == []

    assert "journey events are off" in summary_table(bare["summary"])
    assert "journey events are off" not in summary_table(full["summary"])
    for name in ("dispatches", "customer-events", "dlq"):
        assert bare[name] == full[name], name
    assert not [a for a in bare["alerts"]
                if a["type"] in ("alert.step_dropoff", "alert.conversion_below_target")]

    # Journey events without analytics: the records are the full run's.
    only_events = run(tmp_path, "events-only", events,
                      outputs={"decisions": False, "analytics": False})
    assert only_events["journey-events"] == full["journey-events"]
    assert only_events["analytics"] == []


def stream() -> list[dict]:
    """A visitor views pricing three times, then identifies as user pat."""
    evs = [{"type": "page", "messageId": f"v{i}", "anonymousId": "visitor-1", "name": "Pricing",
            "timestamp": f"2026-01-01T10:0{i}:00Z"} for i in range(3)]
    return evs + [
        {"type": "identify", "messageId": "i1", "userId": "pat", "anonymousId": "visitor-1",
         "traits": {"email": "pat@corp.io"}, "timestamp": "2026-01-01T10:05:00Z"},
        {"type": "page", "messageId": "v4", "anonymousId": "visitor-1", "name": "Docs",
         "timestamp": "2026-01-01T10:06:00Z"},
        {"type": "track", "messageId": "s1", "userId": "pat", "event": "Signed Up",
         "timestamp": "2026-01-02T10:00:00Z"}]


def test_with_stitching_off_events_belong_to_their_own_ids(tmp_path):
    on = run(tmp_path / "on", "out", stream())
    (merged,) = list(iter_profiles(tmp_path / "on" / "out-state"))
    assert merged["id"] == "pat" and merged["events"] == 6
    assert [r["type"] for r in on["customer-events"]].count("identity.merged") == 1

    off = run(tmp_path / "off", "out", stream(), identity={"stitching": False})
    profiles = {p["id"]: p for p in iter_profiles(tmp_path / "off" / "out-state")}
    # The visitor's page views (the last one has no userId) stay the visitor's; the
    # identify and the sign-up are pat's. Nothing was held back or merged.
    assert {k: p["events"] for k, p in profiles.items()} == {"visitor-1": 4, "pat": 2}
    assert profiles["pat"]["links"] == ["user:pat"]  # its own id: no email, no visitor
    assert len(merged["links"]) == 3
    assert not [r for r in off["customer-events"] if r["type"].startswith("identity.")]
    assert off["summary"]["dead_lettered"] == 0
