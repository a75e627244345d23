"""Identity resolution through the real broker: anonymous devices, sign-up, login, merges
across partitions, order independence, crashes mid-merge, and identity limits."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from operators.identity.routing import home_partition
from segue.kafka_io import consume_all, event_records, produce_records
from segue.simulator import simulate
from state.inspect import find_profile, iter_profiles, partition_stores, profile_view
from tests.conftest import ROOT, kill9, wait_for
from tests.expected import expected_counters
from tests.integration.test_crash import applied_total

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EMAIL = "Jane.Doe@Example.com"


def ev(mid, at, **fields):
    return {"messageId": mid, "timestamp": (T0 + at).isoformat(),
            "context": {"timezone": "Europe/Paris"}, **fields}


def two_device_story() -> list[dict]:
    """Browse on two devices, add to cart on the first, sign up there, log in on the second."""
    # Identifiers chosen so the three live on three different partitions (of 4).
    assert len({home_partition(x, 4) for x in ("phone-anon", "laptop-anon-2", "jane")}) == 3
    m = 0

    def nxt():
        nonlocal m
        m += 1
        return f"story-{m}"

    return [
        ev(nxt(), timedelta(0), type="page", name="Home", anonymousId="phone-anon"),
        ev(nxt(), timedelta(minutes=2), type="track", event="Product Viewed",
           anonymousId="phone-anon", properties={"product_id": "p9"}),
        ev(nxt(), timedelta(minutes=3), type="track", event="Product Added",
           anonymousId="phone-anon", properties={"product_id": "p9"}),
        ev(nxt(), timedelta(hours=1), type="page", name="Pricing", anonymousId="laptop-anon-2"),
        ev(nxt(), timedelta(hours=1, minutes=5), type="track", event="Product Viewed",
           anonymousId="laptop-anon-2", properties={"product_id": "p9"}),
        ev(nxt(), timedelta(hours=2), type="identify", userId="jane", anonymousId="phone-anon",
           traits={"email": EMAIL, "plan": "pro", "company": "Doe Ltd"}),
        ev(nxt(), timedelta(hours=2, minutes=1), type="track", event="Signed Up",
           userId="jane", anonymousId="phone-anon"),
        ev(nxt(), timedelta(hours=5), type="track", event="Signed In", userId="jane",
           anonymousId="laptop-anon-2"),
        ev(nxt(), timedelta(hours=5, minutes=1), type="page", name="Docs", userId="jane"),
    ]


def key_of(e: dict) -> str:
    return e.get("userId") or e["anonymousId"]


def test_two_devices_then_signup_then_login_make_one_customer(job_factory, tmp_path):
    job = job_factory()
    jdir = tmp_path / "journeys"
    shutil.copytree(ROOT / "journeys", jdir)
    story = two_device_story()
    produce_records(job.broker.bootstrap, job.topics.events,
                    [(key_of(e), orjson.dumps(e)) for e in story])
    r = subprocess.run(job.cli("run", "--brokers", job.broker.bootstrap, "--state-dir",
                               str(job.state_dir), "--config", str(job.config), "--journeys",
                               str(jdir), "--until-eof", "--horizon", "3d",
                               "--progress-every", "0"),
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]

    profiles = list(iter_profiles(job.state_dir))
    assert [p["id"] for p in profiles] == ["jane"]  # nothing left on the anonymous profiles
    jane = profiles[0]
    view = profile_view(jane)
    assert jane["events"] == len(story)
    assert {k: v["total"] for k, v in view["counters"].items()} == {
        "page:Home": 1, "Product Viewed": 2, "Product Added": 1, "page:Pricing": 1,
        "identify": 1, "Signed Up": 1, "Signed In": 1, "page:Docs": 1}
    assert jane["first_seen"] == int(T0.timestamp() * 1000)
    assert {link.split(":")[0] for link in jane["links"]} == {"user", "anon", "email"}
    assert {"anon:phone-anon", "anon:laptop-anon-2", "user:jane"} <= set(jane["links"])
    assert jane["traits"]["company"] == "Doe Ltd" and "email" not in jane["traits"]

    # Any identifier finds her, through the CLI too.
    for ident in ("phone-anon", "laptop-anon-2", EMAIL, "jane"):
        found = find_profile(job.state_dir, ident)
        assert found is not None and found[1]["id"] == "jane", ident
    shown = subprocess.run([sys.executable, "-m", "segue.cli", "profile", "laptop-anon-2",
                            "--state-dir", str(job.state_dir)], capture_output=True, text=True,
                           check=True, cwd=ROOT)
    assert orjson.loads(shown.stdout)["id"] == "jane"

    # The raw email address is nowhere in state.
    from state.inspect import open_read_only
    for path in partition_stores(job.state_dir):
        store = open_read_only(path)
        try:
            for k, v in store.scan(b""):
                assert EMAIL.lower().encode() not in (k + v).lower()
        finally:
            store.close()

    # The cart started anonymously on the phone continues after sign-up: the reminder goes
    # to Jane 24 h after the product was added.
    reminders = [orjson.loads(m.value()) for m in
                 consume_all(job.broker.bootstrap, job.topics.dispatch("email"))]
    cart = [d for d in reminders if d["template"] == "cart-reminder"]
    assert [(d["customer_id"], d["at_ms"]) for d in cart] == [
        ("jane", int((T0 + timedelta(minutes=3, hours=24)).timestamp() * 1000))]
    merges = [orjson.loads(m.value()) for m in
              consume_all(job.broker.bootstrap, job.topics.customer_events)]
    merged = {r["merged_ref"] for r in merges if r["type"] == "identity.merged"}
    # Said in full so that a failure tells a lost output from a lost read.
    seen = sorted((r["type"], r["customer_id"], r.get("merged_ref")) for r in merges)
    assert "anon:phone-anon" in merged, (seen, unsent_outputs(job.state_dir))
    assert all(r["customer_id"] == "jane" for r in merges
               if r["type"] == "identity.merged"), seen
    assert unsent_outputs(job.state_dir) == 0  # the run ended with everything acknowledged


def unsent_outputs(state_dir) -> int:
    from state.inspect import open_read_only
    from state.outbox import unacknowledged
    n = 0
    for path in partition_stores(state_dir):
        store = open_read_only(path)
        try:
            n += len(unacknowledged(store))
        finally:
            store.close()
    return n


ORDER_FREE = ("events", "counters", "first_seen", "last_seen", "traits", "links", "sums")


def final_profiles(state_dir) -> dict[str, dict]:
    out = {}
    for p in iter_profiles(state_dir):
        v = profile_view(p)
        v["links"] = sorted(v["links"])
        out[p["id"]] = {k: v.get(k) for k in ORDER_FREE}
    return out


def test_shuffled_events_give_the_same_final_profiles(job_factory):
    events = list(simulate(customers=1500, events=15_000, seed=21, duplicate_rate=0))
    events += two_device_story()
    shuffled = list(events)
    random.Random(5).shuffle(shuffled)  # within and across partitions
    results = []
    for stream in (events, shuffled):
        job = job_factory()
        produce_records(job.broker.bootstrap, job.topics.events, event_records(stream))
        job.run_until_eof()
        results.append(final_profiles(job.state_dir))
    in_order, out_of_order = results
    assert len(in_order) > 1000
    assert in_order == out_of_order
    # …and both equal what identity resolution makes of the input, independently computed.
    expected = expected_counters(events)
    assert {cid: p["counters"] for cid, p in in_order.items()} == expected


def test_sigkill_during_merges_leaves_no_half_merged_customer(job_factory):
    rng = random.Random(99)
    job = job_factory()
    events = list(simulate(customers=6000, events=60_000, seed=31))
    produce_records(job.broker.bootstrap, job.topics.events, event_records(events))
    total = len(events)
    for target in (rng.uniform(0.2, 0.4), rng.uniform(0.5, 0.8)):
        run = job.start_run("--until-eof")
        wait_for(lambda t=target, r=run: applied_total(job.state_dir, job.topics.events)
                 >= t * total or r.poll() is not None, 180, every=0.02, what="progress")
        assert run.poll() is None
        kill9(run)
    job.run_until_eof()
    got = {p["id"]: profile_view(p)["counters"] for p in iter_profiles(job.state_dir)}
    expected = expected_counters(events)
    assert got == expected  # every event counted once, on the customer it belongs to
    merged = [p for p in iter_profiles(job.state_dir) if p["merged_from"]]
    assert len(merged) > 100
    for p in merged:  # no anonymous half left behind for any merged id
        for ref in p["merged_from"]:
            assert find_profile(job.state_dir, ref)[1]["id"] == p["id"]


def test_identity_limit_refuses_excess_links_with_a_reason(job_factory):
    job = job_factory(identity={"max_links": {"anon": 5}})
    stream = []
    for i in range(8):  # one user, eight devices: three too many
        stream.append(ev(f"lim-{i}", timedelta(minutes=i), type="track", event="Signed In",
                         userId="hoarder", anonymousId=f"device-{i}"))
        stream.append(ev(f"lim-b-{i}", timedelta(minutes=i, seconds=30), type="page",
                         name="Home", anonymousId=f"device-{i}"))
    stream.append(ev("bystander", timedelta(minutes=1), type="page", name="Home",
                     userId="someone-else"))
    produce_records(job.broker.bootstrap, job.topics.events,
                    [(key_of(e), orjson.dumps(e)) for e in stream])
    run = job.start_run()
    try:
        def refused():
            recs = [orjson.loads(m.value()) for m in
                    consume_all(job.broker.bootstrap, job.topics.customer_events)]
            return [r for r in recs if r["type"] == "identity.link_refused"]
        got = wait_for(lambda: len(refused()) >= 3 and refused(), 60, every=0.2,
                       what="refusals")
        wait_for(lambda: find_profile(job.state_dir, "someone-else"), 30, what="bystander")
        assert run.poll() is None  # nothing else broke
    finally:
        run.terminate()
        run.wait(20)
    assert [r["reason"] for r in got] == ["identity.limit.anon"] * 3
    assert {r["identifier"] for r in got} == {"anon:device-5", "anon:device-6", "anon:device-7"}
    hoarder = find_profile(job.state_dir, "hoarder")[1]
    assert sum(1 for x in hoarder["links"] if x.startswith("anon:")) == 5
    # A refused device keeps its own anonymous profile; its events are not lost.
    assert find_profile(job.state_dir, "anon:device-7")[1]["id"] == "device-7"
