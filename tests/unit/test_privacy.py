"""Personal data (issue 15, item 8): phone and ip are hashed (or dropped, or kept) per the
privacy setting, as emails are; erasing a customer lists where their dead letters are."""

import hashlib

import orjson

from flows.topics import topic_specs
from models.identifiers import hash_personal
from models.settings import Settings
from operators.decode import RawRecord, decode
from operators.partition import Partition
from state import keys
from state.profiles import decode_profile
from state.store import PartitionStore

T0 = 1_767_225_600_000


def dec(off, value, key=b"u1"):
    out = decode(RawRecord("segue.events", 0, off, key, value, [], T0 + 10**9),
                 max_bytes=65536, max_future_skew_ms=86_400_000)
    out.part = "segue.events#0"
    return out


def identify(off, **traits):
    return dec(off, orjson.dumps({"type": "identify", "messageId": f"m{off}", "userId": "u1",
                                  "traits": traits, "timestamp": "2026-01-01T10:00:00Z"}))


def profile(proc):
    return decode_profile(proc.store.get(keys.profile("user:u1")))


def test_phone_and_ip_are_stored_as_digests_by_default(tmp_path):
    proc = Partition(PartitionStore(tmp_path / "p"), Settings())
    proc.process([identify(0, phone="+1 (555) 010-99", ip="203.0.113.9", plan="pro")])
    traits = profile(proc)["traits"]
    assert traits == {"phone_sha256": hash_personal("phone", "+155501099"),
                      "ip_sha256": hashlib.sha256(b"203.0.113.9").hexdigest(), "plan": "pro"}
    raw = b"".join(v for _, v in proc.store.scan(b""))
    assert b"203.0.113.9" not in raw and b"555" not in raw  # nowhere in the store


def test_the_setting_drops_or_keeps_them(tmp_path):
    s = Settings(privacy={"personal_traits": {"phone": "drop", "ip": "keep"}})
    proc = Partition(PartitionStore(tmp_path / "p"), s)
    proc.process([identify(0, phone="+15550100", ip="203.0.113.9")])
    assert profile(proc)["traits"] == {"ip": "203.0.113.9"}


def test_erasure_says_where_the_customers_dead_letters_are(tmp_path):
    s = Settings()
    proc = Partition(PartitionStore(tmp_path / "p"), s)
    proc.process([identify(0, plan="pro"), dec(1, b"{broken"), dec(2, b"[1]"),
                  dec(3, b"{other", key=b"someone-else")])
    out = proc.process([dec(4, orjson.dumps({
        "type": "track", "messageId": "e1", "userId": "u1", "event": "Erasure Requested",
        "timestamp": "2026-01-01T11:00:00Z"}))])
    (erased,) = [orjson.loads(o.value) for _, o in out
                 if orjson.loads(o.value).get("type") == "privacy.erased"]
    dead = erased["dead_letters"]
    assert dead["topic"] == s.topics.dlq and dead["count"] == 2
    (entry,) = dead["by_key"]
    assert entry["key_sha256"] == hashlib.sha256(b"u1").hexdigest()
    assert entry["source"] == {"topic": "segue.events", "partition": 0, "first_offset": 1,
                               "last_offset": 2}
    assert proc.store.get(keys.dead_letters(b"u1")) is None  # forgotten here
    assert proc.store.get(keys.dead_letters(b"someone-else")) is not None


def test_the_dead_letter_topic_has_a_retention():
    assert topic_specs(Settings())["segue.dlq"]["retention.ms"] == str(30 * 86_400_000)
    forever = Settings(privacy={"dlq_retention_days": 0})
    assert topic_specs(forever)["segue.dlq"]["retention.ms"] == "-1"


def test_erasure_takes_the_customers_outputs_out_of_the_outbox_and_keeps_the_others(tmp_path):
    """Outputs still waiting for Kafka's acknowledgement: the erased customer's leave the
    outbox at once; another customer's of the same batch stay until acknowledged."""
    proc = Partition(PartitionStore(tmp_path / "p"), Settings())

    def signed_up(off, user):
        return dec(off, orjson.dumps({"type": "track", "messageId": f"m{off}", "userId": user,
                                      "event": "Signed Up", "timestamp": "2026-01-01T10:00:00Z"}),
                   key=user.encode())

    first = proc.process([signed_up(0, "u1"), signed_up(1, "u2")])
    assert {o.key for _, o in first} == {"u1", "u2"}
    proc.process([dec(2, orjson.dumps({
        "type": "track", "messageId": "e1", "userId": "u1", "event": "Erasure Requested",
        "timestamp": "2026-01-01T11:00:00Z"}))])
    waiting = [o for _, o in proc.unacknowledged()]
    assert [o for o in waiting if o.key == "u1"] == []
    assert [o.value for o in waiting if o.key == "u2"] == [o.value for _, o in first
                                                           if o.key == "u2"]
    assert proc.stats["erased_outbox_entries"] == sum(1 for _, o in first if o.key == "u1")
    stored = b"".join(v for k, v in proc.store.scan(keys.OUTBOX))
    assert b'"u1"' not in stored and b'"u2"' in stored
    # Acknowledgements of the first batch arriving now leave the copies waiting; theirs
    # empty the outbox.
    n_u2 = sum(1 for _, o in first if o.key == "u2")
    for seq, _ in first:
        proc.acknowledge(seq)
    proc.process([])
    assert [o.key for _, o in proc.unacknowledged()].count("u2") == n_u2
    for seq, _ in proc.unacknowledged():
        proc.acknowledge(seq)
    proc.process([])
    assert proc.unacknowledged() == [] and list(proc.store.scan(keys.OUTBOX)) == []
