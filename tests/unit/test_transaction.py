"""The batch transaction: read-your-writes, a scan that sees staged changes, all or nothing."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state import keys
from state.store import PartitionStore
from state.transaction import BatchTransaction, Progress, TransactionStateError

KEYS = [b"t|1", b"t|2", b"t|20", b"t|3", b"t|9", b"u|1", b"u|5", b"tz"]


class Out:
    def __init__(self, b: bytes) -> None:
        self.b = b

    def encode(self) -> bytes:
        return self.b


def committed(store: PartitionStore, **puts: bytes) -> None:
    txn = BatchTransaction(store, Progress.load(store))
    for k, v in puts.items():
        txn.put(k.encode(), v)
    txn.prepare()
    txn.commit()


def test_scan_merges_staged_puts_and_deletes_in_key_order(tmp_path):
    store = PartitionStore(tmp_path / "s")
    committed(store, **{"t|2": b"s2", "t|4": b"s4", "t|6": b"s6", "u|1": b"other"})
    txn = BatchTransaction(store, Progress.load(store))
    txn.put(b"t|1", b"n1")
    txn.put(b"t|4", b"n4")   # overwrites a stored key
    txn.delete(b"t|6")       # hides a stored key
    txn.put(b"t|9", b"n9")
    assert list(txn.scan(b"t|")) == [(b"t|1", b"n1"), (b"t|2", b"s2"), (b"t|4", b"n4"),
                                     (b"t|9", b"n9")]
    assert list(txn.scan(b"t|", start=b"t|3")) == [(b"t|4", b"n4"), (b"t|9", b"n9")]
    assert txn.get(b"t|6") is None and store.get(b"t|6") == b"s6"


def _write(txn: BatchTransaction, model: dict, op: str, key: bytes, value: bytes) -> bool:
    """Apply a put or delete to the transaction and to ``model``; False for anything else."""
    if op == "put":
        txn.put(key, value)
        model[key] = value
    elif op == "delete":
        txn.delete(key)
        model.pop(key, None)
    else:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(stored=st.dictionaries(st.sampled_from(KEYS), st.binary(max_size=3), max_size=8),
       ops=st.lists(st.tuples(st.sampled_from(["put", "delete", "scan"]),
                              st.sampled_from(KEYS), st.binary(max_size=3)), max_size=30))
def test_scan_agrees_with_a_plain_dict_through_writes_between_scans(tmp_path_factory, stored,
                                                                      ops):
    """Scans interleaved with puts and deletes (the staged key order is kept after the first
    scan) see what a dict of the same writes holds."""
    store = PartitionStore(tmp_path_factory.mktemp("s"))
    committed(store, **{k.decode(): v for k, v in stored.items()})
    model = dict(stored)
    txn = BatchTransaction(store, Progress.load(store))
    for op, key, value in ops:
        if not _write(txn, model, op, key, value):
            prefix, start = key[:2], key
            want = sorted((k, v) for k, v in model.items()
                          if k.startswith(prefix) and k >= start)
            assert list(txn.scan(prefix, start=start)) == want
            assert list(txn.scan(prefix)) == sorted(
                (k, v) for k, v in model.items() if k.startswith(prefix))


@settings(max_examples=150, deadline=None)
@given(stored=st.dictionaries(st.sampled_from(KEYS), st.binary(max_size=3), max_size=8),
       ops=st.lists(st.tuples(st.sampled_from(["put", "delete", "scan"]),
                              st.sampled_from(KEYS), st.binary(max_size=3),
                              st.integers(0, 4)), max_size=30))
def test_scans_of_any_prefix_length_agree_with_a_plain_dict(tmp_path_factory, stored, ops):
    """The staged keys are kept in order per key family (``t|``, ``u|``…); a scan whose
    prefix is shorter than a family (across families) or longer sees the same as one that
    is not."""
    store = PartitionStore(tmp_path_factory.mktemp("s"))
    committed(store, **{k.decode(): v for k, v in stored.items()})
    model = dict(stored)
    txn = BatchTransaction(store, Progress.load(store))
    for op, key, value, cut in ops:
        if not _write(txn, model, op, key, value):
            prefix = key[:cut]
            assert list(txn.scan(prefix)) == sorted(
                (k, v) for k, v in model.items() if k.startswith(prefix))


def test_prepare_numbers_the_outbox_and_stages_progress_then_commit_writes_it_all(tmp_path):
    store = PartitionStore(tmp_path / "s")
    txn = BatchTransaction(store, Progress.load(store))
    txn.progress.applied["events"] = 41
    txn.progress.watermark = 1234
    txn.emit(Out(b"a"))
    txn.emit(Out(b"b"))
    entries = txn.prepare()
    assert [(seq, o.b) for seq, o in entries] == [(1, b"a"), (2, b"b")]
    assert store.get(keys.outbox(1)) is None  # prepared is not committed
    txn.commit()
    assert store.get(keys.outbox(2)) == b"b"
    again = Progress.load(store)
    assert (again.applied, again.outbox_seq, again.watermark) == ({"events": 41}, 2, 1234)


def test_a_failed_transaction_leaves_the_committed_state_and_cannot_be_used(tmp_path):
    store = PartitionStore(tmp_path / "s")
    committed(store, **{"c|u1": b"old"})
    before = Progress.load(store)
    txn = BatchTransaction(store, before)
    txn.put(b"c|u1", b"new")
    txn.progress.applied["events"] = 7
    txn.fail()
    assert store.get(b"c|u1") == b"old" and before.applied == {}
    for call in (lambda: txn.put(b"x", b"y"), lambda: txn.delete(b"x"), txn.prepare,
                 txn.commit):
        with pytest.raises(TransactionStateError):
            call()


def test_commit_needs_prepare_first(tmp_path):
    txn = BatchTransaction(PartitionStore(tmp_path / "s"), Progress(
        applied={}, outbox_seq=0, watermark=0, timers_pending=0))
    with pytest.raises(TransactionStateError, match="PREPARED"):
        txn.commit()


def replay_changelog(batches: list[list]) -> dict[bytes, bytes]:
    """A store rebuilt from batches' changelog records, applied in order."""
    rebuilt: dict[bytes, bytes] = {}
    for changes in batches:
        for k, v in changes:
            if v is None:
                rebuilt.pop(k, None)
            else:
                rebuilt[k] = v
    return rebuilt


def test_changelog_entries_rebuild_the_store_exactly(tmp_path):
    """Every mirrored key of the store, deletes included, comes back from the batches'
    changelog records; each batch's pending entry names exactly the keys it changed; the
    pending entries themselves are not mirrored, and their deletion alone sends nothing."""
    from state.changelog import decode_pending

    store = PartitionStore(tmp_path / "s")
    sent: list[list] = []

    def batch(puts=(), deletes=(), emit=(), applied=None) -> BatchTransaction:
        txn = BatchTransaction(store, Progress.load(store), changelog=True)
        for k, v in puts:
            txn.put(k, v)
        for k in deletes:
            txn.delete(k)
        for o in emit:
            txn.emit(Out(o))
        if applied is not None:
            txn.progress.applied["in"] = applied
        txn.prepare()
        txn.commit()
        if txn.changelog_entry is not None:
            seq, offsets, changes = txn.changelog_entry
            sent.append(changes)
            pending = decode_pending(store.get(keys.changelog(seq)))
            assert pending == (offsets, [k for k, _ in changes])
        return txn

    first = batch(puts=[(b"c|u1", b"a"), (b"c|u2", b"b")], emit=[b"out1"], applied=3)
    assert first.changelog_entry is not None and first.changelog_entry[0] == 1
    last = batch(puts=[(b"c|u1", b"a2")], deletes=[b"c|u2", keys.outbox(1)], applied=7)
    # Only the first pending entry leaves: nothing to mirror, no changelog batch.
    only = batch(deletes=[keys.changelog(1)])
    assert only.changelog_entry is None
    assert Progress.load(store).changelog_seq == 2

    stored = {k: v for k, v in store.scan(b"") if not k.startswith(keys.CHANGELOG)}
    assert replay_changelog(sent) == stored
    assert stored[b"c|u1"] == b"a2" and b"c|u2" not in stored and keys.outbox(1) not in stored
    assert stored[keys.applied("in")] == b"7"
    assert last.changelog_entry is not None
    assert last.changelog_entry[1] == {"in": 7}  # the marker's applied offsets


def test_a_pending_entry_of_an_earlier_version_still_reads():
    """Entries written before they held keys only (keys and values) give their keys."""
    import msgspec

    from state.changelog import FORMAT_V1, decode_pending

    raw = FORMAT_V1 + msgspec.msgpack.encode(({"in": 4}, [(b"c|u1", b"v"), (b"t|1", None)]))
    assert decode_pending(raw) == ({"in": 4}, [b"c|u1", b"t|1"])


def test_a_store_changed_without_the_changelog_forgets_its_changelog_sequence(tmp_path):
    store = PartitionStore(tmp_path / "s")
    for on in (True, False):
        txn = BatchTransaction(store, Progress.load(store), changelog=on)
        txn.put(b"c|u1", b"x")
        txn.prepare()
        txn.commit()
        assert Progress.load(store).changelog_seq == (1 if on else None)


def test_a_key_created_and_deleted_by_one_batch_is_written_nowhere(tmp_path):
    """A timer armed and fired, or an event held and released, within one batch: the batch
    sees it come and go, but neither the store nor the changelog gets a delete of a key it
    never had. A stored key deleted by the batch still is."""
    store = PartitionStore(tmp_path / "s")
    first = BatchTransaction(store, Progress.load(store), changelog=True)
    first.put(b"t|old", b"")
    first.prepare()
    first.commit()

    txn = BatchTransaction(store, Progress.load(store), changelog=True)
    for k in (b"t|new", b"w|u1|1", b"c|u1"):
        txn.put(k, b"v")
    for k in (b"t|new", b"w|u1|1", b"t|old", b"c|u1"):
        txn.delete(k)
    assert txn.deleted(b"t|new") and txn.get(b"t|new") is None
    assert [k for k, _ in txn.scan(b"t|")] == []
    txn.prepare()
    assert txn.changelog_entry is not None
    sent = dict(txn.changelog_entry[2])
    # c| is not a created-by-put key: its put may have overwritten a stored value.
    assert sent[b"t|old"] is None and sent[b"c|u1"] is None
    assert b"t|new" not in sent and b"w|u1|1" not in sent
    txn.commit()
    assert store.get(b"t|old") is None

    again = BatchTransaction(store, Progress.load(store))
    again.put(b"t|x", b"")
    again.delete(b"t|x")
    again.put(b"t|x", b"")  # armed again: it is written after all
    again.prepare()
    again.commit()
    assert store.get(b"t|x") == b""

    # A stored key deleted and put again by one batch goes to the changelog as both, so
    # that coalescing never takes the put for a creation and drops a later delete.
    rearmed = BatchTransaction(store, Progress.load(store), changelog=True)
    rearmed.delete(b"t|x")
    rearmed.put(b"t|x", b"")
    rearmed.prepare()
    rearmed.commit()
    assert rearmed.changelog_entry is not None
    assert [c for c in rearmed.changelog_entry[2] if c[0] == b"t|x"] == [(b"t|x", None),
                                                                         (b"t|x", b"")]
    from state.changelog import Unsent

    u = Unsent()
    u.add(1, {}, rearmed.changelog_entry[2], now=0.0)
    u.add(2, {}, [(b"t|x", None)], now=0.5)  # fired in the next batch, the same send
    assert (b"t|x", None) in u.take()[2]

    # A stored key deleted, put again and deleted again by one batch: its delete is written.
    last = BatchTransaction(store, Progress.load(store))
    last.delete(b"t|x")
    last.put(b"t|x", b"")
    last.delete(b"t|x")
    last.prepare()
    last.commit()
    assert store.get(b"t|x") is None
