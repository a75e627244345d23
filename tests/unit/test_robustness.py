"""Odd but valid input never stops a partition; a bug in one item costs only that item."""

import orjson

from models.events import InEvent
from models.profile import new_profile
from models.settings import PolicySettings, Settings
from operators.decode import RawRecord, Rejected, decode
from operators.partition import Partition
from operators.policy import DeliveryPolicy
from state.profiles import decode_profile
from state.store import PartitionStore
from tests.conftest import FragileRules

T0 = 1_767_225_600_000


def raw_ev(off, **fields):
    ev = {"type": "track", "messageId": f"m{off}", "userId": "u1", "event": "Signed In",
          "timestamp": "2026-01-01T10:00:00Z", **fields}
    return decode(RawRecord("e", 0, off, b"u1", orjson.dumps(ev), [], T0 + 10**9),
                  max_bytes=65536, max_future_skew_ms=86_400_000)


def test_strange_but_valid_properties_are_stored_not_fatal(tmp_path):
    proc = Partition(PartitionStore(tmp_path / "p"), Settings())
    items = [
        raw_ev(0, event="Unsubscribed", properties={"channel": None}),
        raw_ev(1, event="Email Opened", properties={"channel": ["x"]}),
        raw_ev(2, event="Content Viewed", properties={"category": "a", "seconds": -2**63}),
        raw_ev(3, event="Content Viewed", properties={"category": "a", "seconds": -1}),
        raw_ev(4, type="identify", traits={"timezone": 5}),
    ]
    assert all(not isinstance(i, Rejected) for i in items)
    proc.process(items)
    assert proc.stats["applied"] == 5 and proc.stats["processing_errors"] == 0


def test_deeply_nested_input_is_dead_lettered_at_the_edge():
    deep: dict = {}
    cur = deep
    for _ in range(100):
        cur["x"] = {}
        cur = cur["x"]
    r = raw_ev(0, properties=deep)
    assert isinstance(r, Rejected) and r.reason["code"] == "json.too_deep"


def test_an_item_that_raises_is_dead_lettered_and_the_batch_goes_on(tmp_path):
    proc = Partition(PartitionStore(tmp_path / "p"), Settings())
    proc.personal_traits = FragileRules(proc.personal_traits)
    out = proc.process([raw_ev(0), raw_ev(1, type="identify", traits={"explode": 1}),
                        raw_ev(2, event="Order Completed")])
    recs = [orjson.loads(o.value) for _, o in out]
    dlq = [r for r in recs if r.get("reason", {}).get("code") == "processing.error"]
    assert len(dlq) == 1 and "RuntimeError: a bug" in dlq[0]["reason"]["detail"]
    assert dlq[0]["source"]["offset"] == 1
    assert proc.stats["applied"] == 2  # the other two, once each (the batch was redone)
    p = decode_profile(proc.store.get(b"c|user:u1"))
    assert p["events"] == 2 and set(p["counters"]) == {"Signed In", "Order Completed"}


def test_a_repeated_erasure_request_does_not_erase_the_new_profile(tmp_path):
    proc = Partition(PartitionStore(tmp_path / "p"), Settings())
    erase = raw_ev(1, event="Erasure Requested")
    proc.process([raw_ev(0), erase])
    proc.process([raw_ev(2, timestamp="2026-01-02T10:00:00Z")])
    again = raw_ev(3, event="Erasure Requested")  # the producer's retry, later offset
    proc.process([again])
    assert decode_profile(proc.store.get(b"c|user:u1"))["events"] == 1


def test_a_global_opt_out_covers_every_channel_and_the_newest_statement_wins():
    pol = DeliveryPolicy(PolicySettings())
    p = new_profile("user:u1", 0)
    p.consent, p.consent_ts = {"all": {"all": "opted_out"}}, {"all/all": 5}
    assert pol.consent(p, "email", "marketing") == "opted_out"
    p.consent["email"] = {"marketing": "opted_in"}
    p.consent_ts["email/marketing"] = 3  # older than the global opt-out
    assert pol.consent(p, "email", "marketing") == "opted_out"
    p.consent_ts["email/marketing"] = 9  # newer: the customer opted back in to email
    assert pol.consent(p, "email", "marketing") == "opted_in"


def test_event_with_device_and_no_raw_kept():
    ev = raw_ev(0, context={"device": {"id": 42}})
    assert isinstance(ev, InEvent) and ev.device_id == "42"
