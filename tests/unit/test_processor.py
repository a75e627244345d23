"""The per-partition processor on a real RocksDB store, without Kafka."""

import orjson

from models.events import InEvent
from models.settings import Settings
from operators.partition import Partition
from state import keys
from state.profiles import decode_profile
from state.store import PartitionStore

DAY = 86_400_000
T0 = 1_767_225_600_000


def ev(offset, name, cid="u1", ts=T0, mid=None):
    return InEvent(type="track", message_id=mid or f"m{offset}", customer_id=cid, key=name,
                   ts_ms=ts, offset=offset, part="e#0", user_id=cid)


def decoded(s, offset, cid, ts, **fields):
    """A track event of user ``cid`` (fields override), through the decoder as from Kafka."""
    from datetime import UTC, datetime

    from operators.decode import RawRecord, decode

    doc = {"type": "track", "event": "Signed In", "messageId": f"m{offset}", "userId": cid,
           **fields, "timestamp": datetime.fromtimestamp(ts / 1000, UTC).isoformat()}
    return decode(RawRecord(s.topics.events, 0, offset, None, orjson.dumps(doc), [], ts),
                  max_bytes=1 << 20, max_future_skew_ms=DAY)


def make(tmp_path, **lifecycle):
    s = Settings(lifecycle={"min_stage_duration_s": 0, **lifecycle})
    return Partition(PartitionStore(tmp_path / "p0"), s), s


def test_applied_offsets_are_never_applied_again(tmp_path):
    proc, _ = make(tmp_path)
    proc.process([ev(0, "Signed Up"), ev(1, "Signed In")])
    proc.process([ev(1, "Signed In"), ev(2, "Signed In")])  # 1 is a replay
    p = decode_profile(proc.store.get(keys.profile("user:u1")))
    assert p["events"] == 3
    assert proc.stats["skipped_already_applied"] == 1
    assert proc.store.get(keys.applied("e")) == b"2"


def test_same_message_id_is_deduplicated(tmp_path):
    proc, _ = make(tmp_path)
    proc.process([ev(0, "Signed In", mid="x"), ev(1, "Signed In", mid="x")])
    p = decode_profile(proc.store.get(keys.profile("user:u1")))
    assert p["events"] == 1 and proc.stats["deduplicated"] == 1


def test_lifecycle_change_is_emitted_once_with_stable_key(tmp_path):
    proc, s = make(tmp_path)
    out = proc.process([ev(0, "page:Home"), ev(1, "Signed Up")])
    recs = [orjson.loads(o.value) for _, o in out]
    assert [(r["from_stage"], r["to_stage"]) for r in recs] == [
        (None, "awareness"), ("awareness", "activation")]
    assert all(o.topic == s.topics.customer_events for _, o in out)
    assert recs[1]["cause"] == {"message_id": "m1"}
    # The same input on a fresh store gives the same bytes (determinism).
    other = Partition(PartitionStore(tmp_path / "p1"), s)
    again = other.process([ev(0, "page:Home"), ev(1, "Signed Up")])
    assert [o.value for _, o in again] == [o.value for _, o in out]


def test_inactivity_timer_fires_in_event_time_and_is_pushed_back_by_activity(tmp_path):
    proc, _ = make(tmp_path, inactivity_s=86_400)
    proc.process([ev(0, "Signed Up", ts=T0)])
    assert proc.next_timer_due() == T0 + DAY
    proc.process([ev(1, "Signed In", ts=T0 + DAY // 2)])
    out = proc.process([ev(2, "page:Home", cid="other", ts=T0 + DAY + 1)])  # watermark moves
    assert not [o for _, o in out if b"at-risk" in o.value]  # pushed back by activity
    assert proc.next_timer_due() == T0 + DAY + DAY // 2
    out = proc.process([], clock_ms=T0 + 2 * DAY)
    recs = [orjson.loads(o.value) for _, o in out]
    assert [(r["customer_id"], r["to_stage"], r["at_ms"]) for r in recs] == [
        ("u1", "at-risk", T0 + DAY + DAY // 2)]


def test_no_inactivity_timer_where_inactivity_moves_no_stage(tmp_path):
    proc, s = make(tmp_path, inactivity_s=86_400, inactivity_from=[])
    out = proc.process([ev(0, "Signed Up", ts=T0)])
    assert [orjson.loads(o.value)["to_stage"] for _, o in out] == ["activation"]
    p = decode_profile(proc.store.get(keys.profile("user:u1")))
    assert "inactivity" not in p["timers"] and proc.next_timer_due() is None
    assert proc.timers_pending == 0
    # One armed by an earlier configuration fires once, changes nothing, is not armed again.
    on = Partition(PartitionStore(tmp_path / "on"),
                   Settings(lifecycle={"min_stage_duration_s": 0, "inactivity_s": 86_400}))
    on.process([ev(0, "Signed Up", ts=T0), ev(1, "Signed In", ts=T0 + DAY // 2)])
    on.store.close()
    off = Partition(PartitionStore(tmp_path / "on"), s)
    assert off.next_timer_due() == T0 + DAY
    out = off.process([], clock_ms=T0 + 3 * DAY)
    assert out == [] and off.stats["timers_fired"] == 1 and off.next_timer_due() is None


def test_min_stage_duration_defers_change_to_a_timer(tmp_path):
    proc, _ = make(tmp_path, min_stage_duration_s=3 * 86_400)
    out = proc.process([ev(0, "Signed Up", ts=T0), ev(1, "Order Completed", ts=T0 + DAY)])
    assert [orjson.loads(o.value)["to_stage"] for _, o in out] == ["activation"]
    p = decode_profile(proc.store.get(keys.profile("user:u1")))
    assert p["lifecycle"]["pending"]["stage"] == "retention"
    out = proc.process([], clock_ms=T0 + 3 * DAY)
    recs = [orjson.loads(o.value) for _, o in out]
    assert [(r["to_stage"], r["at_ms"], r["cause"]) for r in recs] == [
        ("retention", T0 + 3 * DAY, {"message_id": "m1"})]


def test_outbox_keeps_outputs_until_acknowledged(tmp_path):
    proc, s = make(tmp_path)
    out = proc.process([ev(0, "Signed Up")])
    assert [seq for seq, _ in proc.unacknowledged()] == [seq for seq, _ in out]
    # A new processor on the same store (a restart) sees the same unacknowledged outputs.
    proc.store.close()
    again = Partition(PartitionStore(tmp_path / "p0"), s)
    assert [o.value for _, o in again.unacknowledged()] == [o.value for _, o in out]
    for seq, _ in out:
        again.acknowledge(seq)
    again.process([])
    assert again.unacknowledged() == []


def test_pending_timers_count_matches_the_timer_index(tmp_path):
    proc, _ = make(tmp_path)
    day = 86_400_000
    for i in range(30):  # new customers arm timers; later events move them; time fires some
        proc.process([ev(2 * i, "Signed Up", cid=f"c{i % 12}", ts=T0 + i * day),
                      ev(2 * i + 1, "Signed In", cid=f"c{(i * 7) % 12}", ts=T0 + i * day + 1)])
        stored = sum(1 for _ in proc.store.scan(keys.TIMER))
        assert proc.timers_pending == stored
    assert stored > 0
    proc.store.close()
    reopened, _ = make(tmp_path)
    assert reopened.timers_pending == stored


def test_timers_of_a_customer_awaiting_a_merge_wait_for_its_held_events(tmp_path):
    """A customer's timers never fire ahead of its own older events held for a merge: the
    outcome no longer depends on when the claim's answer arrives (issue 19, live runs)."""
    from flows.local import LocalFlow
    from operators.identity.routing import home_partition

    s = Settings(partitions=2, lifecycle={"min_stage_duration_s": 0, "inactivity_s": 60})
    user = next(f"u{i}" for i in range(100) if home_partition(f"u{i}", 2) == 0)
    anon = next(f"a{i}" for i in range(100) if home_partition(f"a{i}", 2) == 1)
    other = next(f"o{i}" for i in range(100) if home_partition(f"o{i}", 2) == 0)
    flow = LocalFlow(s, None, tmp_path, lambda out: None)
    flow.partitions[1].input_done = True  # the anonymous id's partition has nothing unread

    def track(offset, cid, ts, **fields):
        return decoded(s, offset, cid, ts, **fields)

    flow.step(0, [track(0, user, T0, event="Signed Up")])  # activation: inactivity applies
    flow.step(0, [track(1, user, T0 + 10_000, type="identify", anonymousId=anon)])
    # Its next event waits for the claim of the anonymous id; another customer's event moves
    # the partition's event time past the user's inactivity timer (due T0 + 70 s).
    flow.step(0, [track(2, user, T0 + 30_000), track(3, other, T0 + 600_000)])
    p = decode_profile(flow.partitions[0].store.get(keys.profile(f"user:{user}")))
    assert p["lifecycle"]["stage"] == "activation" and p["held_events"] == 1
    flow.settle()  # the claim is answered: the held event (T0 + 30 s) is applied first
    flow.step(0, [])
    p = decode_profile(flow.partitions[0].store.get(keys.profile(f"user:{user}")))
    assert p["events"] == 3 and not p.get("awaiting")
    # Inactive 60 s after its last event: at-risk since T0 + 90 s. Before, the timer fired
    # at T0 + 70 s ahead of the held event, which then moved the customer on to win-back.
    assert p["lifecycle"]["stage"] == "at-risk" and p["lifecycle"]["since"] == T0 + 90_000
    flow.close()


def test_a_timer_pass_that_fires_nothing_writes_no_profile_back(tmp_path):
    """A due timer of a customer awaiting a merge is found again by every pass until the
    merge is answered; those passes change nothing, so they take (and write back) nothing."""
    from flows.local import LocalFlow
    from operators.identity.routing import home_partition

    s = Settings(partitions=2, lifecycle={"min_stage_duration_s": 0, "inactivity_s": 60})
    user = next(f"u{i}" for i in range(100) if home_partition(f"u{i}", 2) == 0)
    anon = next(f"a{i}" for i in range(100) if home_partition(f"a{i}", 2) == 1)
    other = next(f"o{i}" for i in range(100) if home_partition(f"o{i}", 2) == 0)
    flow = LocalFlow(s, None, tmp_path, lambda out: None)
    flow.partitions[1].input_done = True

    def track(offset, cid, ts, **fields):
        return decoded(s, offset, cid, ts, **fields)

    flow.step(0, [track(0, user, T0, event="Signed Up")])
    flow.step(0, [track(1, user, T0 + 10_000, type="identify", anonymousId=anon)])
    flow.step(0, [track(2, user, T0 + 30_000), track(3, other, T0 + 600_000)])
    part = flow.partitions[0]
    before = part.store.get(keys.profile(f"user:{user}"))
    assert decode_profile(before)["held_events"] == 1  # awaiting, its timer due
    assert part.next_timer_due() is not None and part.next_timer_due() < T0 + 600_000
    for _ in range(3):
        part.process([])
        assert f"user:{user}" not in part.txn.objects
    assert part.store.get(keys.profile(f"user:{user}")) == before
    flow.settle()  # answered: the held event, then the timer, as before
    flow.step(0, [])
    p = decode_profile(part.store.get(keys.profile(f"user:{user}")))
    assert p["events"] == 3 and p["lifecycle"]["stage"] == "at-risk"
    flow.close()


def test_held_events_released_from_memory_or_from_the_store_alike(tmp_path):
    """Events held for a merge are kept decoded; one released after a restart (nothing in
    memory) is decoded from the store, with the same outcome."""
    from datetime import UTC, datetime

    from flows.local import LocalFlow
    from operators.decode import RawRecord, decode
    from operators.identity.routing import home_partition

    s = Settings(partitions=2, lifecycle={"min_stage_duration_s": 0})
    user = next(f"u{i}" for i in range(100) if home_partition(f"u{i}", 2) == 0)
    anon = next(f"a{i}" for i in range(100) if home_partition(f"a{i}", 2) == 1)

    def track(offset, ts, **fields):
        doc = {"type": "track", "event": "Order Completed", "messageId": f"m{offset}",
               "userId": user, "properties": {"revenue": offset}, **fields,
               "timestamp": datetime.fromtimestamp(ts / 1000, UTC).isoformat()}
        return decode(RawRecord(s.topics.events, 0, offset, None, orjson.dumps(doc), [], ts),
                      max_bytes=1 << 20, max_future_skew_ms=DAY)

    runs = []
    for restarted in (False, True):
        outputs = []
        flow = LocalFlow(s, None, tmp_path / str(restarted),
                         lambda o, out=outputs: out.append(o.value))
        flow.partitions[1].input_done = True
        flow.step(1, [decode(RawRecord(s.topics.events, 1, 0, None, orjson.dumps(
            {"type": "page", "name": "Home", "messageId": "p0", "anonymousId": anon,
             "timestamp": "2026-01-01T00:00:00Z"}), [], T0), max_bytes=1 << 20,
            max_future_skew_ms=DAY)])
        flow.step(0, [track(0, T0 + 1000, type="identify", anonymousId=anon),
                      track(1, T0 + 2000), track(2, T0 + 3000, event="Signed Up")])
        part = flow.partitions[0]
        held = decode_profile(part.store.get(keys.profile(f"user:{user}")))["held_events"]
        assert held == 2 and len(part.held_decoded) == 2
        if restarted:
            part.held_decoded.clear()
        flow.settle()
        flow.step(0, [])
        assert part.held_decoded == {}
        runs.append((outputs, decode_profile(part.store.get(keys.profile(f"user:{user}")))))
        flow.close()
    (out_a, prof_a), (out_b, prof_b) = runs
    assert prof_a["events"] == 4 and prof_a["lifecycle"]["stage"] == "retention"
    assert out_a == out_b and prof_a == prof_b


def test_a_claim_waits_until_the_identifiers_partition_has_read_up_to_it(tmp_path):
    """The identify's claim of an anonymous id reaches that id's partition before it has read
    the visitor's three pricing views (a live race): the claim waits for them, so the sign-up
    still sees the anonymous history (before: no merge, the views were forwarded later and
    the sign-up entered nothing)."""
    from datetime import UTC, datetime
    from pathlib import Path

    from flows.local import LocalFlow
    from operators.decode import RawRecord, decode
    from operators.identity.routing import home_partition
    from operators.journeys import journey_registry

    s = Settings(partitions=2, policy={"caps": {}, "send_windows": {}, "consent_defaults": {}})
    user = next(f"u{i}" for i in range(100) if home_partition(f"u{i}", 2) == 0)
    anon = next(f"a{i}" for i in range(100) if home_partition(f"a{i}", 2) == 1)
    journeys = Path(__file__).resolve().parents[1] / "journeys-segment"
    sent = []
    flow = LocalFlow(s, journey_registry(s, journeys, tmp_path / "jv"), tmp_path,
                     lambda out: sent.append(orjson.loads(out.value))
                     if out.topic.startswith(s.topics.dispatch("")) else None)

    def event(part, offset, ts, **doc):
        doc.update(messageId=f"m{part}-{offset}",
                   timestamp=datetime.fromtimestamp(ts / 1000, UTC).isoformat())
        return decode(RawRecord(s.topics.events, part, offset, None, orjson.dumps(doc), [], ts),
                      max_bytes=1 << 20, max_future_skew_ms=DAY)

    views = [event(1, i, T0 + i * 60_000, type="page", name="Pricing", anonymousId=anon)
             for i in range(3)]
    flow.step(0, [event(0, 0, T0 + 300_000, type="identify", userId=user, anonymousId=anon),
                  event(0, 1, T0 + DAY, type="track", event="Signed Up", userId=user)])
    flow.settle()  # the claim arrives first; the views are not read yet
    assert flow.partitions[1].stats["claims_waiting"] == 1 and not sent
    flow.step(1, views)  # partition 1 reads the views, then has nothing more: caught up
    flow.partitions[1].input_done = True
    flow.step(1, [])
    flow.settle()
    assert [(d["customer_id"], d["template"]) for d in sent] == [(user, "pricing-followup")]
    p = decode_profile(flow.partitions[0].store.get(keys.profile(f"user:{user}")))
    assert p["counters"]["page:Pricing"][0] == 3 and p["merged_from"] == [f"anon:{anon}"]
    flow.close()


def test_batches_before_the_next_timer_skip_the_scan_and_miss_no_timer(tmp_path):
    """A batch whose clock is before the earliest stored timer does no timer scan (the
    partition remembers that timer's due time); a timer armed earlier than it, in a batch
    with no scan, still fires on time."""
    proc, _ = make(tmp_path, inactivity_s=10 * 86_400)
    scans = []
    store_scan = proc.store.scan

    def scan(prefix, start=None):
        scans.append(prefix)
        return store_scan(prefix, start)

    proc.store.scan = scan

    def step(events, clock):
        before = scans.count(keys.TIMER)
        out = proc.process(events, clock_ms=clock)
        return scans.count(keys.TIMER) - before, [
            (r["customer_id"], r["to_stage"], r["at_ms"]) for _, o in out
            if (r := orjson.loads(o.value))["to_stage"] == "at-risk"]

    assert step([ev(0, "Signed Up", cid="late", ts=T0)], T0) == (1, [])  # due T0 + 10 days
    assert proc.progress.timer_next == T0 + 10 * DAY
    assert step([], T0 + DAY) == (0, [])
    n = len(scans)
    assert proc.timer_wakeup() == T0 + 10 * DAY and len(scans) == n  # the live flow's wake-up
    # An event from 8 days before: its inactivity is due at T0 + 2 days, before the other.
    assert step([ev(1, "Signed Up", cid="soon", ts=T0 - 8 * DAY)], T0 + DAY) == (0, [])
    assert proc.progress.timer_next == T0 + 2 * DAY
    assert step([], T0 + 2 * DAY + 1) == (1, [("soon", "at-risk", T0 + 2 * DAY)])
    assert step([], T0 + 5 * DAY) == (0, [])
    assert step([], T0 + 10 * DAY) == (1, [("late", "at-risk", T0 + 10 * DAY)])


def _two_partitions(s, path, outputs: list):  # noqa: ANN001, ANN202
    """A two-partition local flow whose partition 1 has read all its input; ``outputs``
    collects what it produces."""
    from flows.local import LocalFlow

    flow = LocalFlow(s, None, path, lambda out: outputs.append(out.value))
    flow.partitions[1].input_done = True
    return flow


def _homed(prefix: str, partition: int) -> str:
    """An id (``<prefix><n>``) whose home is ``partition`` of two."""
    from operators.identity.routing import home_partition

    return next(f"{prefix}{i}" for i in range(100)
                if home_partition(f"{prefix}{i}", 2) == partition)


def test_timers_of_waiting_customers_are_remembered_between_passes(tmp_path):
    """A pass remembers the due timers it left for customers awaiting a merge and does not
    scan them again; a restart (nothing remembered, the pass scans from the floor) fires
    them at the same point, with the same outputs."""
    s = Settings(partitions=2, lifecycle={"min_stage_duration_s": 0, "inactivity_s": 60})
    user, anon, other = _homed("u", 0), _homed("a", 1), _homed("o", 0)
    runs = []
    for restarted in (False, True):
        outputs: list[bytes] = []
        flow = _two_partitions(s, tmp_path / str(restarted), outputs)
        flow.step(0, [decoded(s, 0, user, T0, event="Signed Up")])
        flow.step(0, [decoded(s, 1, user, T0 + 10_000, type="identify", anonymousId=anon)])
        flow.step(0, [decoded(s, 2, user, T0 + 30_000), decoded(s, 3, other, T0 + 600_000)])
        part = flow.partitions[0]
        due = decode_profile(part.store.get(keys.profile(f"user:{user}")))["timers"]
        remembered = part.waiting_timers.keys
        assert remembered == {f"user:{user}": {
            keys.timer(due["inactivity"], f"user:{user}", "inactivity"): due["inactivity"]}}
        part.process([])
        assert part.waiting_timers.keys == remembered  # still waiting: nothing changed
        assert part.waiting_timers.upto == T0 + 600_000
        if restarted:
            part.waiting_timers.forget()
        flow.settle()  # answered: the held event, then the timer
        flow.step(0, [])
        assert part.waiting_timers.keys == {}
        runs.append((outputs, decode_profile(part.store.get(keys.profile(f"user:{user}")))))
        flow.close()
    (out_a, prof_a), (out_b, prof_b) = runs
    assert prof_a["lifecycle"]["stage"] == "at-risk" and prof_a["events"] == 3
    assert out_a == out_b and prof_a == prof_b


def test_a_released_event_whose_claim_is_answered_at_once_releases_the_rest_once(tmp_path):
    """While held events are released, one claims an identifier this partition owns: the
    claim is answered at once and that answer releases the rest of them, inside the first
    release. Each held event is applied once, from memory or (after a restart) the store."""
    from models.identifiers import hash_email, value_of
    from operators.identity.routing import home_partition

    s = Settings(partitions=2, lifecycle={"min_stage_duration_s": 0})
    user, anon = _homed("u", 0), _homed("a", 1)
    email = next(f"e{i}@corp.io" for i in range(100)
                 if home_partition(value_of(f"email:{hash_email(f'e{i}@corp.io')}"), 2) == 0)
    runs = []
    for restarted in (False, True):
        outputs: list[bytes] = []
        flow = _two_partitions(s, tmp_path / str(restarted), outputs)
        part = flow.partitions[0]
        # The visitor's claim goes to partition 1: the user's next events wait for it.
        flow.step(0, [decoded(s, 0, user, T0, type="identify", anonymousId=anon)])
        flow.step(0, [decoded(s, 1, user, T0 + 1000, type="identify", traits={"email": email}),
                      decoded(s, 2, user, T0 + 2000), decoded(s, 3, user, T0 + 3000)])
        assert decode_profile(part.store.get(keys.profile(f"user:{user}")))["held_events"] == 3
        if restarted:
            part.held_decoded.clear()
        flow.settle()
        flow.step(0, [])
        p = decode_profile(part.store.get(keys.profile(f"user:{user}")))
        assert p["events"] == 4 and not p.get("held_events") and not p.get("awaiting")
        assert f"email:{hash_email(email)}" in p["links"]
        assert part.stats["processing_errors"] == 0 and part.stats["deduplicated"] == 0
        assert list(part.store.scan(keys.waiting(f"user:{user}"))) == []
        runs.append(outputs)
        flow.close()
    assert runs[0] == runs[1]


def _visit(s: Settings, anon: str, offset: int, ts: int):  # noqa: ANN202
    """The anonymous visitor's page view at ``ts``, through the decoder, on partition 1."""
    from datetime import UTC, datetime

    from operators.decode import RawRecord, decode

    doc = {"type": "page", "messageId": f"v{offset}", "anonymousId": anon,
           "timestamp": datetime.fromtimestamp(ts / 1000, UTC).isoformat()}
    return decode(RawRecord(s.topics.events, 1, offset, None, orjson.dumps(doc), [], ts),
                  max_bytes=1 << 20, max_future_skew_ms=DAY)


def _keys_naming(flow, *refs: str) -> list[bytes]:  # noqa: ANN001
    """The keys of every partition store whose key or value names one of ``refs``."""
    needles = [r.encode() for r in refs]
    return [k for part in flow.partitions for k, v in part.store.scan(b"")
            if any(n in k + v for n in needles)]


def test_an_erasure_takes_the_history_its_customer_still_claims_at_another_partition(
        tmp_path):
    """A sign-up claims the visitor's history at another partition, which has not read its
    input up to the sign-up yet (the claim waits there); the customer's erasure request
    comes next. The claim is dropped there and the visitor's history, which it would have
    merged, is erased too, with the visitor's late events from before the request. (The
    claim used to be dropped alone, and the visitor's profile stayed behind.)"""
    from flows.local import LocalFlow

    s = Settings(partitions=2, lifecycle={"min_stage_duration_s": 0})
    user, anon, other = _homed("u", 0), _homed("a", 1), _homed("o", 1)
    outputs: list[bytes] = []
    flow = LocalFlow(s, None, tmp_path, lambda out: outputs.append(out.value))

    flow.step(1, [_visit(s, anon, 0, T0)])
    flow.step(0, [decoded(s, 0, user, T0 + 10_000, type="identify", anonymousId=anon)])
    flow.step(0, [decoded(s, 1, user, T0 + 20_000, event="Erasure Requested")])
    flow.settle()  # the claim waited at partition 1 (its input has not reached the sign-up)
    # Partition 1 reads on: a visit from before the request (late), another customer.
    flow.step(1, [_visit(s, anon, 1, T0 + 5_000), decoded(s, 2, other, T0 + 3_600_000)])
    flow.settle()
    flow.step(0, [])
    assert not _keys_naming(flow, f"anon:{anon}", f"user:{user}")
    assert flow.partitions[1].stats["dropped_erased"] == 1
    erased = [r for r in map(orjson.loads, outputs) if r.get("type") == "privacy.erased"]
    assert [r["deleted"]["profile"] for r in erased] == [1, 1]  # the user's, the visitor's
    flow.close()


def test_an_erasure_drops_the_late_history_of_an_identifier_its_customer_had_claimed(tmp_path):
    """The visitor's partition has read past the sign-up, so the claim is answered at once
    (no history there yet: a link); the customer's erasure then removes the link. The
    visitor's page view from before the request, read only now, is dropped, not kept as a
    customer of its own (it used to stay behind as ``c|anon:…``)."""
    from flows.local import LocalFlow

    s = Settings(partitions=2, lifecycle={"min_stage_duration_s": 0})
    user, anon, other = _homed("u", 0), _homed("a", 1), _homed("o", 1)
    flow = LocalFlow(s, None, tmp_path, lambda out: None)

    flow.step(1, [decoded(s, 0, other, T0 + 3_600_000)])  # partition 1 is past the sign-up
    flow.step(0, [decoded(s, 0, user, T0 + 10_000, type="identify", anonymousId=anon)])
    flow.settle()  # the claim is answered at once: the visitor has no history there yet
    assert flow.partitions[1].store.get(keys.link(f"anon:{anon}")) == f"user:{user}".encode()
    flow.step(0, [decoded(s, 1, user, T0 + 20_000, event="Erasure Requested")])
    flow.settle()
    flow.step(1, [_visit(s, anon, 1, T0)])  # the visitor's page view from before, read late
    flow.settle()
    flow.step(0, [])  # the outbox entries Kafka has go
    flow.step(1, [])
    assert not _keys_naming(flow, f"anon:{anon}", f"user:{user}")
    assert flow.partitions[1].stats["dropped_erased"] == 1
    flow.close()

