"""Profiles at rest: msgpack with a format version; state written as JSON still opens."""

import orjson
import pytest

from models.events import InEvent
from models.profile import new_profile
from operators.orchestrate import PartitionProcessor
from segue.config import Settings
from state import keys
from state.inspect import find_profile
from state.profiles import FORMAT_V1, ProfileFormatError, decode_profile
from state.store import PartitionStore
from state.transaction import BatchTransaction, Progress

T0 = 1_767_225_600_000


def test_a_profile_stored_as_json_by_an_earlier_version_is_read_and_rewritten(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    old = new_profile("user:u1", T0)
    old.update(events=4, sessions=2, traits={"plan": "pro"})
    txn = BatchTransaction(store, Progress.load(store))
    txn.put(keys.profile("user:u1"), orjson.dumps(old))  # today's JSON layout
    txn.prepare()
    txn.commit()
    store.close()
    found = find_profile(tmp_path, "u1")
    assert found is not None and found[1]["events"] == 4  # read-only view reads it too

    proc = PartitionProcessor(PartitionStore(tmp_path / "p0"), Settings())
    proc.process([InEvent(type="track", message_id="m9", customer_id="u1", key="Signed In",
                          ts_ms=T0 + 1000, offset=0, part="e#0", user_id="u1")])
    raw = proc.store.get(keys.profile("user:u1"))
    assert raw[:1] == FORMAT_V1
    p = decode_profile(raw)
    assert (p["events"], p["traits"]) == (5, {"plan": "pro"})


def test_unknown_bytes_are_a_clear_error_not_a_wrong_profile():
    with pytest.raises(ProfileFormatError, match="unknown profile format"):
        decode_profile(b"\x07garbage")
