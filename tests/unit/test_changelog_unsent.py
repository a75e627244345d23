"""Coalesced changelog batches rebuild the same store as the batches sent one by one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from state.changelog import Unsent


def apply(store: dict, changes: list) -> None:
    for k, v in changes:
        if v is None:
            store.pop(k, None)
        else:
            store[k] = v


@st.composite
def histories(draw):  # noqa: ANN001, ANN201 - a hypothesis strategy
    """Batches of writes as the partition makes them: profile and timer keys rewritten and
    deleted at will; outbox keys created once (a new sequence number) and deleted later."""
    batches = []
    next_out, live_out = 0, []
    for _ in range(draw(st.integers(1, 12))):
        changes = []
        for _ in range(draw(st.integers(0, 8))):
            what = draw(st.sampled_from(["put", "delete", "out", "ack"]))
            if what in ("put", "delete"):
                k = b"c|%d" % draw(st.integers(0, 4))
                changes.append((k, draw(st.binary(min_size=1, max_size=3))
                                if what == "put" else None))
            elif what == "out":
                changes.append((b"o|%016x" % next_out, b"out"))
                live_out.append(next_out)
                next_out += 1
            elif live_out:
                seq = live_out.pop(draw(st.integers(0, len(live_out) - 1)))
                changes.append((b"o|%016x" % seq, None))
        batches.append(changes)
    cuts = sorted(draw(st.sets(st.integers(1, len(batches)), max_size=len(batches))))
    return batches, cuts


@settings(max_examples=300, deadline=None)
@given(histories())
def test_coalesced_batches_restore_the_same_store(history):
    batches, cuts = history
    one_by_one: dict = {}
    coalesced: dict = {}
    unsent = Unsent()
    sent = 0
    for i, changes in enumerate(batches, start=1):
        apply(one_by_one, changes)
        unsent.add(i, {"e": i}, changes, now=float(i))
        if i in cuts or i == len(batches):
            seq, applied, out, n = unsent.take()
            assert (seq, applied["e"], n) == (i, i, i - sent)
            apply(coalesced, out)
            sent = i
            assert coalesced == one_by_one  # at every marker, the same store
    # Coalescing never sends more than the batches did, and an output created and
    # acknowledged within one coalesced batch is not sent at all.
    assert unsent.batches == 0 and unsent.bytes == 0


def test_an_output_created_and_acknowledged_meanwhile_is_not_sent():
    u = Unsent()
    u.add(1, {}, [(b"o|01", b"x"), (b"c|a", b"1")], now=0.0)
    u.add(2, {}, [(b"o|01", None), (b"c|a", b"2"), (b"c|b", None)], now=0.5)
    _, _, out, n = u.take()
    assert n == 2
    assert out == [(b"c|a", b"2"), (b"c|b", None)]  # a deleted profile key still goes


def test_a_restart_sends_the_unacknowledged_batches_again_as_the_store_holds_them(tmp_path):
    """Pending entries name keys only: what a restart sends again (their keys with the
    store's values now, and the last batch's marker) after what Kafka had acknowledged
    rebuilds the store exactly, deleted keys included."""
    from models.in_event import InEvent
    from models.settings import Settings
    from operators.partition import Partition
    from state import keys
    from state.store import PartitionStore

    def ev(offset: int, cid: str) -> InEvent:
        return InEvent("track", f"m{offset}", cid, "Signed Up", 1_767_225_600_000 + offset,
                       user_id=cid, offset=offset, part="e#0")

    path = tmp_path / "p0"
    proc = Partition(PartitionStore(path), Settings(), changelog=True)
    sent = []
    for i, cids in enumerate([("u1", "u2"), ("u1", "u3"), ("u2", "u4"), ("u1", "u5")]):
        outputs = proc.process([ev(2 * i, cids[0]), ev(2 * i + 1, cids[1])])
        assert outputs and proc.txn.changelog_entry is not None
        sent.append(proc.txn.changelog_entry)
        for seq, _ in outputs:  # Kafka has the outputs: their outbox keys go next batch
            proc.acknowledge(seq)
    # Kafka acknowledged the first two batches' changelog records, then the process died.
    proc.acknowledge_changelog(sent[1][0])
    proc.process([])  # drops their pending entries, and the last outputs' outbox keys
    assert proc.txn.changelog_entry is not None
    sent.append(proc.txn.changelog_entry)
    proc.store.close()

    store = PartitionStore(path)
    again = Partition(store, Settings(), changelog=True).unsent_changelog()
    assert [(seq, applied) for seq, applied, _ in again] == [sent[-1][:2]]
    rebuilt: dict = {}
    for _, _, changes in (*sent[:2], *again):
        apply(rebuilt, changes)
    stored = {k: v for k, v in store.scan(b"") if not k.startswith(keys.CHANGELOG)}
    assert rebuilt == stored
    assert any(v is None and k.startswith(keys.OUTBOX) for k, v in again[0][2])


def test_a_timer_armed_and_fired_between_two_sends_is_not_sent():
    u = Unsent()
    u.add(1, {}, [(b"t|0001|user:a|j:x", b""), (b"c|a", b"1")], now=0.0)
    u.add(2, {}, [(b"t|0001|user:a|j:x", None), (b"c|a", b"2")], now=0.5)
    assert u.take()[2] == [(b"c|a", b"2")]


def test_a_timer_key_is_written_only_when_it_is_not_there(tmp_path):
    """What dropping timer keys relies on: over a run of the shipped journeys, every timer
    key a batch writes is new to the store (a timer armed again for the same moment
    writes nothing), and every timer the profiles hold has its key."""
    from pathlib import Path

    from models.settings import Settings
    from operators.decode import RawRecord, decode
    from operators.journeys import journey_registry
    from operators.partition import Partition
    from segue.kafka_io import event_records
    from segue.simulator import simulate
    from state import keys
    from state.profiles import load_profile
    from state.store import PartitionStore

    s = Settings()
    journeys = journey_registry(s, Path(__file__).parents[2] / "journeys", tmp_path / "jv")
    proc = Partition(PartitionStore(tmp_path / "p0"), s, journeys, changelog=True)
    items = [decode(RawRecord(s.topics.events, 0, off, k.encode(), v, [], 1_800_000_000_000),
                    max_bytes=1 << 20, max_future_skew_ms=10**12)
             for off, (k, v) in enumerate(event_records(simulate(60, 1500, seed=3)))]
    timer_puts = 0
    for i in range(0, len(items), 50):
        before = {k for k, _ in proc.store.scan(keys.TIMER)}
        proc.process(items[i:i + 50])
        entry = proc.txn.changelog_entry
        for k, v in entry[2] if entry is not None else []:
            if k.startswith(keys.TIMER) and v is not None:
                assert k not in before
                timer_puts += 1
    assert timer_puts > 100  # the journeys armed timers all along
    stored = {k for k, _ in proc.store.scan(keys.TIMER)}
    held = {keys.timer(due, p.ref, kind)
            for k, v in proc.store.scan(keys.PROFILE)
            for p in [load_profile(v)] if not p.gone for kind, due in p.timers.items()}
    assert held == stored
