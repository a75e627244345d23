"""Profiles at rest: msgpack with a format version; state written as JSON still opens."""

import orjson
import pytest

from models.events import InEvent
from models.profile import new_profile, plain
from models.settings import Settings
from operators.partition import Partition
from state import keys
from state.inspect import find_profile
from state.profiles import FORMAT, ProfileFormatError, decode_profile
from state.store import PartitionStore
from state.transaction import BatchTransaction, Progress
from tests.conftest import FragileRules

T0 = 1_767_225_600_000


def test_a_profile_stored_as_json_by_an_earlier_version_is_read_and_rewritten(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    old = {**plain(new_profile("user:u1", T0)), "events": 4, "sessions": 2,
           "traits": {"plan": "pro"}}
    txn = BatchTransaction(store, Progress.load(store))
    txn.put(keys.profile("user:u1"), orjson.dumps(old))  # today's JSON layout
    txn.prepare()
    txn.commit()
    store.close()
    found = find_profile(tmp_path, "u1")
    assert found is not None and found[1]["events"] == 4  # read-only view reads it too

    proc = Partition(PartitionStore(tmp_path / "p0"), Settings())
    proc.process([InEvent(type="track", message_id="m9", customer_id="u1", key="Signed In",
                          ts_ms=T0 + 1000, offset=0, part="e#0", user_id="u1")])
    raw = proc.store.get(keys.profile("user:u1"))
    assert raw[:1] == FORMAT  # rewritten in the current format
    p = decode_profile(raw)
    assert (p["events"], p["traits"]) == (5, {"plan": "pro"})


def test_a_profile_of_format_2_is_read_and_rewritten_with_its_counts(tmp_path):
    import msgspec

    from state.windows import add, buckets, new_counter, window_counts

    times = [T0 - 3 * 86_400_000, T0 - 7_200_000, T0 - 60_000, T0 - 30_000]
    counter = new_counter()
    for t in times:
        add(counter, t)
    # Format 2 kept a list per bucket: [total, [[b, n], …], […], […]].
    old = [counter[0]] + [[list(b) for b in buckets(counter, lv)] for lv in (1, 2, 3)]
    profile = new_profile("user:u1", T0 - 3 * 86_400_000)
    profile.events, profile.last_seen, profile.counters = 4, T0 - 30_000, {"Signed In": old}
    store = PartitionStore(tmp_path / "p0")
    txn = BatchTransaction(store, Progress.load(store))
    txn.put(keys.profile("user:u1"), b"\x02" + msgspec.msgpack.encode(profile))
    txn.prepare()
    txn.commit()
    store.close()
    found = find_profile(tmp_path, "u1")
    assert found is not None and found[1]["counters"]["Signed In"] == counter

    proc = Partition(PartitionStore(tmp_path / "p0"), Settings())
    proc.process([InEvent(type="track", message_id="m9", customer_id="u1", key="Signed In",
                          ts_ms=T0, offset=0, part="e#0", user_id="u1")])
    raw = proc.store.get(keys.profile("user:u1"))
    assert raw[:1] == FORMAT
    after = window_counts(decode_profile(raw)["counters"]["Signed In"], T0)
    assert after == {"1h": 3, "24h": 4, "7d": 5, "30d": 5, "total": 5}


def test_json_and_format_1_profiles_with_counters_of_the_earlier_shape_read_as_counted():
    import msgspec

    from state.profiles import load_profile
    from state.windows import add, buckets, new_counter

    counter = new_counter()
    for t in (T0 - 86_400_000, T0 - 60_000, T0):
        add(counter, t)
    old = [counter[0]] + [[list(b) for b in buckets(counter, lv)] for lv in (1, 2, 3)]
    stored = {**plain(new_profile("user:u1", T0)), "counters": {"Signed In": old}}
    for raw in (orjson.dumps(stored), b"\x01" + msgspec.msgpack.encode(stored)):
        assert load_profile(raw).counters == {"Signed In": counter}


def test_a_merge_handed_over_by_an_earlier_version_counts_its_old_shaped_counters(tmp_path):
    from operators.decode import Routed
    from state.windows import window_counts

    proc = Partition(PartitionStore(tmp_path / "p0"), Settings())
    proc.process([InEvent(type="track", message_id="m1", customer_id="u1", key="Signed In",
                          ts_ms=T0, offset=0, part="e#0", user_id="u1")])
    minute, hour, day = T0 // 60_000, T0 // 3_600_000, T0 // 86_400_000
    # The loser's profile as an earlier version hands it over (through JSON, as it travels).
    snapshot = {"id": "u9", "ref": "user:u9", "links": [], "events": 4,
                "first_seen": T0 - 60_000, "last_seen": T0, "counters": {
                    "Signed In": [3, [[minute - 1, 2], [minute, 1]], [[hour, 3]], [[day, 3]]],
                    "Other": [1, [], [[hour - 5, 1]], [[day, 1]]]}}
    body = orjson.loads(orjson.dumps({"kind": "merge", "from": "user:u9", "into": "user:u1",
                                      "profile": snapshot, "at": T0, "hops": 0}))
    proc.process([Routed("merge", body, 1, "r#0")])
    p = decode_profile(proc.store.get(keys.profile("user:u1")))
    assert {k: window_counts(c, T0) for k, c in p["counters"].items()} == {
        "Signed In": {"1h": 4, "24h": 4, "7d": 4, "30d": 4, "total": 4},
        "Other": {"1h": 0, "24h": 1, "7d": 1, "30d": 1, "total": 1}}


def test_unknown_bytes_are_a_clear_error_not_a_wrong_profile():
    with pytest.raises(ProfileFormatError, match="unknown profile format"):
        decode_profile(b"\x07garbage")


def test_the_cache_is_bounded_and_forgets_least_recently_used_first():
    from state.profiles import ProfileCache, decoded_size

    cache = ProfileCache(max_bytes=3 * decoded_size(100))
    for i in range(3):
        cache.put(f"u{i}", {"id": i}, encoded_size=100)
    assert cache.get("u0") == {"id": 0}  # u0 is now the most recent
    cache.put("u3", {"id": 3}, encoded_size=100)
    assert cache.get("u1") is None and cache.get("u0") is not None and len(cache) == 3
    assert cache.bytes <= cache.max_bytes
    cache.put("huge", {}, encoded_size=10_000)  # larger than the whole budget: not kept
    assert cache.get("huge") is None and len(cache) == 3


def _track(off, name, ts):
    return InEvent(type="track", message_id=f"m{off}", customer_id="u1", key=name, ts_ms=ts,
                   offset=off, part="e#0", user_id="u1")


def test_a_failed_batch_leaves_no_half_changed_profile_in_the_cache(tmp_path):
    proc = Partition(PartitionStore(tmp_path / "p0"), Settings())
    proc.process([_track(0, "Signed In", T0)])
    assert proc.profiles.get("user:u1").events == 1  # cached after the commit
    # Item 2 raises after its profile changed (its event count went up, then its traits fail).
    proc.personal_traits = FragileRules(proc.personal_traits)
    failing = _track(2, "Signed In", T0 + 2)
    failing.traits = {"explode": 1}
    proc.process([_track(1, "Signed In", T0 + 1), failing])
    # Item 2 was dead-lettered and the batch redone: item 1 counts once, item 2 not at all,
    # in the cache and on disk alike.
    stored = decode_profile(proc.store.get(keys.profile("user:u1")))
    assert stored["events"] == 2 and proc.profiles.get("user:u1").events == 2
    assert proc.stats["processing_errors"] == 1
