"""Link limits that hold (issue 14): a shared or placeholder email never merges people; the
refusal is on segue.customer-events. Replay and live agree."""

from __future__ import annotations

import orjson
import pytest

from segue.kafka_io import produce_records
from state.inspect import iter_profiles
from tests.conftest import live_outputs, replay_outputs

pytestmark = pytest.mark.integration


def stream() -> list[dict]:
    out = [{"type": "identify", "messageId": f"s{i}", "userId": f"member-{i}",
            "traits": {"email": "family@shared.example"},
            "timestamp": f"2026-01-01T10:00:{i:02d}Z"} for i in range(20)]
    out += [{"type": "identify", "messageId": f"p{i}", "userId": f"buyer-{i}",
             "traits": {"email": "noreply@shop.example" if i % 2 else "test@test.com"},
             "timestamp": f"2026-01-01T11:00:{i:02d}Z"} for i in range(6)]
    # The same person with a second user id through alias still merges (a rename).
    out += [{"type": "identify", "messageId": "r1", "userId": "old-id",
             "timestamp": "2026-01-01T12:00:00Z"},
            {"type": "alias", "messageId": "r2", "userId": "new-id", "previousId": "old-id",
             "timestamp": "2026-01-01T12:00:01Z"}]
    return out


def check(state_dir, customer_events) -> None:  # noqa: ANN001
    ids = sorted(p["id"] for p in iter_profiles(state_dir))
    members = [i for i in ids if i.startswith("member-")]
    assert len(members) == 20  # one shared address: twenty people, not one
    assert len([i for i in ids if i.startswith("buyer-")]) == 6
    assert "new-id" in ids and "old-id" not in ids
    for p in iter_profiles(state_dir):
        users = [x for x in p["links"] if x.startswith("user:")]
        assert len(users) <= 5, (p["id"], users)
        if p["id"].startswith("buyer-"):
            assert not [x for x in p["links"] if x.startswith("email:")]  # placeholders
    refused = [r for r in customer_events if r["type"] == "identity.link_refused"]
    assert len(refused) == 19
    assert {r["reason"] for r in refused} == {"identity.shared_identifier"}


def test_shared_and_placeholder_emails_merge_nobody(job_factory, tmp_path):
    job = job_factory()
    out = tmp_path / "replay"
    job.replay(stream(), out, "--state-dir", str(tmp_path / "rs"))
    check(tmp_path / "rs", replay_outputs(out)["customer-events"])

    produce_records(job.broker.bootstrap, job.topics.events,
                    [(e["userId"], orjson.dumps(e)) for e in stream()])
    job.run_until_eof()
    check(job.state_dir, live_outputs(job.broker.bootstrap, job.topics)["customer-events"])


def chains() -> list[dict]:
    """Two users with three renamed ids each (alias), then an alias joining them: together
    they would hold eight user ids, above identity.max_links.user (5)."""
    out: list[dict] = []

    def add(**kw: object) -> None:
        n = len(out)
        out.append({"messageId": f"c{n}", "timestamp": f"2026-01-02T10:00:{n:02d}Z", **kw})

    for who in ("A", "B"):
        add(type="identify", userId=who)
        for i in range(3):
            add(type="alias", userId=who, previousId=f"{who.lower()}{i}")
    add(type="alias", userId="B", previousId="A")
    add(type="track", userId="A", event="Signed In")
    add(type="track", userId="B", event="Signed In")
    return out


def check_chains(state_dir, customer_events) -> None:  # noqa: ANN001
    profiles = {p["id"]: p for p in iter_profiles(state_dir)}
    assert {"A", "B"} <= set(profiles)  # refused: two customers, not one
    for who in ("A", "B"):
        users = sorted(x for x in profiles[who]["links"] if x.startswith("user:"))
        assert users == sorted([f"user:{who}"] + [f"user:{who.lower()}{i}" for i in range(3)])
    # Own identify, three aliases and one track each; B also has the alias that asked.
    assert (profiles["A"]["events"], profiles["B"]["events"]) == (5, 6)
    assert not profiles["B"]["merged_from"] and not profiles["A"]["merged_from"]
    refused = [r for r in customer_events if r["type"] == "identity.link_refused"]
    assert [(r["customer_id"], r["reason"], r["identifier"], r["held_by"]) for r in refused] \
        == [("B", "identity.limit.user", "user:A", "A")]
    assert not [r for r in customer_events if r["type"] == "identity.merged"]


def test_a_merge_that_would_exceed_a_link_limit_is_refused(job_factory, tmp_path):
    job = job_factory()
    out = tmp_path / "replay"
    job.replay(chains(), out, "--state-dir", str(tmp_path / "rs"))
    check_chains(tmp_path / "rs", replay_outputs(out)["customer-events"])

    produce_records(job.broker.bootstrap, job.topics.events,
                    [(e["userId"], orjson.dumps(e)) for e in chains()])
    job.run_until_eof()
    check_chains(job.state_dir,
                 live_outputs(job.broker.bootstrap, job.topics)["customer-events"])
