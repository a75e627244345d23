"""Bounded per-customer state (issue 15, item 2): four anonymous ids sending 5,000 new event
names each, then identifies that merge them, stay within the limits, every merge message
fits an output, and what was kept out is counted."""

import orjson

from models.events import InEvent
from models.profile import from_plain, plain
from models.settings import Settings
from operators.decode import RawRecord, decode
from operators.partition import Partition
from segue.replay import replay
from state.inspect import find_profile
from state.profiles import encode_profile
from state.store import PartitionStore

T0 = 1_767_225_600_000


def flood(n_anon: int = 4, names: int = 5_000) -> list[dict]:
    evs = []
    for a in range(n_anon):
        for i in range(names):
            evs.append({"type": "track", "messageId": f"a{a}-{i}", "anonymousId": f"anon{a}",
                        "event": f"Clicked {a}-{i}", "traits": {f"t{a}-{i % 300}": "x"},
                        "timestamp": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:"
                                     f"{i % 60:02d}Z"})
    for a in range(n_anon):
        evs.append({"type": "identify", "messageId": f"id{a}", "userId": "alice",
                    "anonymousId": f"anon{a}", "timestamp": "2026-01-02T00:00:00Z"})
    return evs


def test_a_flood_of_names_and_merges_stays_bounded_and_counted(tmp_path):
    s = Settings()
    events = tmp_path / "flood.jsonl"
    evs = flood()
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs))
    out = tmp_path / "out"
    summary = replay(s, None, events, out, state_dir=tmp_path / "state")
    assert summary["applied"] == len(evs) and summary["dead_lettered"] == 0
    assert summary["outputs_parked"] == 0  # every merge message fit in one output
    _, p = find_profile(tmp_path / "state", "alice")
    assert p["events"] == len(evs)  # every event counted, whatever the limits
    assert len(p["counters"]) <= s.limits.max_counters
    assert len(p["traits"]) <= s.limits.max_traits
    assert len(encode_profile(from_plain(p))) <= s.limits.max_profile_bytes
    kept_out = sum(p["dropped"].values())
    assert p["dropped"]["counters"] >= 4 * 5_000 - s.limits.max_counters
    assert summary["limits_dropped"] >= kept_out > 0


def ev(off, **fields):
    body = {"type": "track", "messageId": f"m{off}", "userId": "u1", "event": "Signed In",
            "timestamp": "2026-01-01T10:00:00Z", **fields}
    out = decode(RawRecord("e", 0, off, b"u1", orjson.dumps(body), [], T0 + 10**9),
                 max_bytes=65536, max_future_skew_ms=86_400_000)
    assert isinstance(out, InEvent)
    return out


def test_names_a_customer_has_keep_counting_at_the_limit(tmp_path):
    s = Settings(limits={"max_counters": 3, "max_traits": 2, "max_trait_bytes": 100})
    proc = Partition(PartitionStore(tmp_path / "p"), s)
    proc.process([ev(i, event=f"E{i}") for i in range(5)]
                 + [ev(5, event="E0"), ev(6, type="identify", traits={"a": 1, "b": 2, "c": 3}),
                    ev(7, type="identify", traits={"a": "y" * 500})])
    p = plain(proc._stored("user:u1"))
    assert sorted(p["counters"]) == ["E0", "E1", "E2"]
    assert p["counters"]["E0"][0] == 2  # a name it has still counts
    assert p["traits"] == {"a": 1, "b": 2}
    # E3, E4 and the two identify calls (counted as "identify") found no room; c and the
    # 500-character value of a were kept out.
    assert p["dropped"] == {"counters": 4, "traits": 2}
    assert proc.stats["limits_dropped"] == 6 and proc.stats["applied"] == 8


def test_an_oversized_profile_is_trimmed_oldest_counters_first(tmp_path):
    from datetime import UTC, datetime, timedelta

    s = Settings(limits={"max_profile_bytes": 16 * 1024, "max_counters": 10_000})
    proc = Partition(PartitionStore(tmp_path / "p"), s)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # One new name every 10 minutes, in reverse name order: E0599 is the least recently
    # active, E0000 the most (so recency, not the name, must decide).
    items = [ev(i, event=f"E{599 - i:04d}",
                timestamp=(start + timedelta(minutes=10 * i)).isoformat()) for i in range(600)]
    proc.process(items)
    stored = proc._stored("user:u1")
    p = plain(stored)
    assert len(encode_profile(stored)) <= 16 * 1024
    assert p["events"] == 600 and p["dropped"]["counters"] == 600 - len(p["counters"]) > 0
    kept = sorted(p["counters"])
    assert kept == [f"E{i:04d}" for i in range(len(kept))]  # the most recent stay
