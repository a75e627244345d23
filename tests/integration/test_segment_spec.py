"""Segment semantics at the edge (issue 14): group is an account, alias joins ids, batch
payloads are split, event time follows Segment's clock-skew rule, numeric ids are their
decimal string and numeric times are invalid. Each through ``segue replay`` and the live
flow, with the same records."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from segue.kafka_io import consume_all
from state.inspect import find_profile, iter_profiles
from tests.conftest import ROOT, live_outputs, replay_outputs

pytestmark = pytest.mark.integration
JOURNEYS = ROOT / "tests" / "journeys-segment"
T = "2026-01-01T10:00:0{}Z"


def ev(kind: str, mid: str, **fields) -> dict:
    return {"type": kind, "messageId": mid, "timestamp": T.format(0), **fields}


def stream() -> list[dict]:
    acme = {"name": "Acme Inc", "email": "billing@acme.com", "plan": "enterprise"}
    return [
        # group: two people of one account, never merged, their own traits kept
        ev("identify", "g1", userId="alice", traits={"name": "Alice", "email": "a@x.io"}),
        ev("identify", "g2", userId="bob", traits={"name": "Bob", "email": "b@x.io"}),
        ev("group", "g3", userId="alice", groupId="acme", traits=acme),
        ev("group", "g4", userId="bob", groupId="acme", traits=acme),
        ev("track", "g5", userId="alice", event="Signed In", timestamp=T.format(5)),
        # alias: anonymous history joins the user
        ev("page", "a1", anonymousId="anon-c", name="Pricing"),
        ev("page", "a2", anonymousId="anon-c", name="Pricing"),
        ev("alias", "a3", userId="carol", previousId="anon-c", timestamp=T.format(1)),
        ev("track", "a4", userId="carol", event="Signed In", timestamp=T.format(2)),
        # a batch payload: its events, one of them invalid
        {"batch": [ev("track", "b1", userId="dave", event="Signed In"),
                   ev("track", "b2", userId="dave", event="Order Completed"),
                   {"type": "track", "userId": "dave", "event": "No Id"}],
         "sentAt": T.format(3)},
        # time: originalTimestamp corrected by receivedAt - sentAt (a device 1 h behind)
        {"type": "track", "messageId": "t1", "userId": "erin", "event": "Signed In",
         "originalTimestamp": "2026-01-01T09:00:00Z", "sentAt": "2026-01-01T09:00:10Z",
         "receivedAt": "2026-01-01T10:00:10Z"},
        # numbers: a numeric userId is its decimal string, a numeric time is invalid
        {"type": "track", "messageId": "n1", "userId": 12345, "event": "Signed In",
         "timestamp": T.format(0)},
        {"type": "track", "messageId": "n2", "userId": "frank", "event": "Signed In",
         "timestamp": 1767261600},
    ]


def check_state(state_dir) -> None:  # noqa: ANN001
    _, alice = find_profile(state_dir, "alice")
    _, bob = find_profile(state_dir, "bob")
    assert alice["id"] == "alice" and bob["id"] == "bob"  # not merged by the group's email
    assert alice["traits"]["name"] == "Alice" and bob["traits"]["name"] == "Bob"
    assert alice["group"] == "acme"
    assert alice["groups"]["acme"]["traits"]["plan"] == "enterprise"
    assert "email" not in alice["groups"]["acme"]["traits"]  # hashed, as a user's
    _, carol = find_profile(state_dir, "carol")
    assert "anon:anon-c" in carol["links"]
    assert carol["counters"]["page:Pricing"][0] == 2  # the anonymous history is hers
    assert not find_profile(state_dir, "anon-c")[1]["id"] != "carol"
    _, dave = find_profile(state_dir, "dave")
    assert dave["events"] == 2
    _, erin = find_profile(state_dir, "erin")
    assert erin["last_seen"] == 1767261600000  # 09:00:00 + (10:00:10 - 09:00:10)
    assert find_profile(state_dir, "12345")[1]["events"] == 1
    assert find_profile(state_dir, "frank") is None


def test_segment_semantics_in_replay_and_live(job_factory, tmp_path):
    job = job_factory()
    out = tmp_path / "replay"
    job.replay(stream(), out, "--journeys", str(JOURNEYS), "--state-dir",
               str(tmp_path / "replay-state"))
    check_state(tmp_path / "replay-state")
    replay = replay_outputs(out)
    dlq = [orjson.loads(x) for x in (out / "dlq.jsonl").read_bytes().splitlines()]
    assert sorted((d["reason"]["code"], d["source"].get("batch_index")) for d in dlq) == [
        ("id.missing", 2), ("schema.invalid", None)]
    # group.plan in a condition: alice enters (her account is enterprise), nobody else.
    sends = [d["customer_id"] for d in replay["dispatches"]]
    assert sends == ["alice"]

    from segue.kafka_io import produce_records
    produce_records(job.broker.bootstrap, job.topics.events,
                    [(str(e.get("userId") or e.get("anonymousId") or "batch"), orjson.dumps(e))
                     for e in stream()])
    job.run_until_eof("--journeys", str(JOURNEYS))
    check_state(job.state_dir)
    live = live_outputs(job.broker.bootstrap, job.topics)
    for name in ("dispatches", "decisions", "journey-events"):
        key = lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS)  # noqa: E731
        assert Counter(map(key, live[name])) == Counter(map(key, replay[name])), name
    live_dlq = [orjson.loads(m.value()) for m in consume_all(job.broker.bootstrap,
                                                              job.topics.dlq)]
    assert sorted(d["reason"]["code"] for d in live_dlq) == ["id.missing", "schema.invalid"]
    assert {p["id"] for p in iter_profiles(job.state_dir)} >= {"alice", "bob", "carol"}
