"""Versioning, rollback, pause/resume and hot reload, on the real processor and store."""

import os

import orjson
import pytest

from models.events import InEvent
from models.settings import Settings
from operators.journeys import JourneyLoadError, JourneyRegistry
from operators.partition import Partition
from state.store import PartitionStore

# Journey mechanics only: no caps, no quiet hours (delivery policy has its own tests).
OPEN_POLICY = Settings(policy={"caps": {}, "send_windows": {}, "consent_defaults": {}})
T0 = 1_767_225_600_000
H = 3_600_000
DAY = 24 * H

PROMO = """\
id: promo
version: {v}
status: {status}
entry: {{event: Promo Start}}
start: w
steps:
  w: {{type: wait, duration: 2d, next: s}}
  s: {{type: send, channel: email, template: promo-v{v}, next: w2}}
  w2: {{type: wait, duration: 1d, next: s2}}
  s2: {{type: send, channel: email, template: promo-v{v}-followup, next: done}}
  done: {{type: end}}
"""


class Harness:
    def __init__(self, tmp_path):
        self.folder = tmp_path / "journeys"
        self.folder.mkdir()
        self._n = 0
        self.offset = 0
        self.write(1)
        self.registry = JourneyRegistry(self.folder, archive=tmp_path / "versions", poll_s=0)
        self.proc = Partition(PartitionStore(tmp_path / "store"), OPEN_POLICY,
                                       self.registry)

    def write(self, v, status="active", keep_only=True):
        if keep_only:
            for f in self.folder.glob("*.yaml"):
                f.unlink()
        p = self.folder / f"promo-v{v}.yaml"
        p.write_text(PROMO.format(v=v, status=status))
        self._n += 1
        os.utime(p, ns=(self._n * 10**9, self._n * 10**9))  # a visibly new file

    def event(self, cid, ts, name="Promo Start"):
        self.offset += 1
        return InEvent(type="track", message_id=f"m{self.offset}", customer_id=cid, key=name,
                       ts_ms=ts, offset=self.offset, part="e#0", user_id=cid)

    def run(self, events=(), clock=None):
        out = self.proc.process(list(events), clock)
        for seq, _ in out:
            self.proc.acknowledge(seq)
        return [orjson.loads(o.value) for _, o in out]


def dispatches(records):
    return [(r["customer_id"], r["template"], r["at_ms"]) for r in records
            if r["type"] == "dispatch"]


def test_in_flight_customers_keep_their_version_and_rollback_loses_no_one(tmp_path):
    h = Harness(tmp_path)
    h.run([h.event("a", T0)])
    h.write(2)  # a new version: new entries only
    h.run([h.event("b", T0 + H)])
    out = h.run(clock=T0 + 2 * DAY + 2 * H)
    assert dispatches(out) == [("a", "promo-v1", T0 + 2 * DAY),
                               ("b", "promo-v2", T0 + 2 * DAY + H)]
    h.write(1)  # roll back: the v2 file is gone, v1 is current again
    h.run([h.event("c", T0 + 2 * DAY + 3 * H)])
    out = h.run(clock=T0 + 5 * DAY + 4 * H)
    assert sorted(dispatches(out)) == [
        ("a", "promo-v1-followup", T0 + 3 * DAY),
        ("b", "promo-v2-followup", T0 + 3 * DAY + H),   # still on v2, from the archive
        ("c", "promo-v1", T0 + 4 * DAY + 3 * H),
        ("c", "promo-v1-followup", T0 + 5 * DAY + 3 * H),
    ]


def test_changing_a_versions_content_is_refused_and_old_definitions_keep_running(tmp_path):
    h = Harness(tmp_path)
    h.run([h.event("a", T0)])
    (h.folder / "promo-v1.yaml").write_text(PROMO.format(v=1, status="active").replace(
        "duration: 2d", "duration: 5d"))
    os.utime(h.folder / "promo-v1.yaml", ns=(99 * 10**9, 99 * 10**9))
    h.run()
    assert any("already ran with different content" in e for e in h.registry.errors)
    out = h.run(clock=T0 + 2 * DAY)
    assert dispatches(out) == [("a", "promo-v1", T0 + 2 * DAY)]


def test_pause_holds_sends_and_resume_releases_them_in_order(tmp_path):
    h = Harness(tmp_path)
    h.run([h.event("a", T0), h.event("b", T0 + H)])
    h.write(1, status="paused")
    out = h.run([h.event("late", T0 + 3 * H)], clock=T0 + 2 * DAY + 2 * H)
    assert dispatches(out) == []  # held, not sent
    held = [(r["customer_id"], r["outcome"], r["reasons"]) for r in out
            if r["type"] == "decision"]
    assert held == [("a", "defer", ["journey.paused"]), ("b", "defer", ["journey.paused"])]
    assert not [r for r in out if r["type"] == "journey.entered"]  # no entries while paused
    h.write(1, status="active")
    out = h.run(clock=T0 + 2 * DAY + 2 * H)
    assert [(c, t) for c, t, _ in dispatches(out)] == [("a", "promo-v1"), ("b", "promo-v1")]
    # Same dispatch ids as the held decisions: resume sends exactly what was held.
    held_ids = {r["dispatch_id"] for r in out if r["type"] == "decision"}
    assert {r["dispatch_id"] for r in out if r["type"] == "dispatch"} <= held_ids
    out = h.run(clock=T0 + 4 * DAY)
    assert [(c, t) for c, t, _ in dispatches(out)] == [("a", "promo-v1-followup"),
                                                       ("b", "promo-v1-followup")]


def test_pause_survives_a_restart(tmp_path):
    h = Harness(tmp_path)
    h.run([h.event("a", T0)])
    h.write(1, status="paused")
    h.run(clock=T0 + 2 * DAY)
    h.proc.store.close()
    h.write(1, status="active")  # resumed while the flow was down
    registry = JourneyRegistry(h.folder, archive=tmp_path / "versions", poll_s=0)
    proc = Partition(PartitionStore(tmp_path / "store"), OPEN_POLICY, registry)
    out = [orjson.loads(o.value) for _, o in proc.process([])]
    assert dispatches(out) == [("a", "promo-v1", T0 + 2 * DAY)]


def test_invalid_folder_at_start_is_a_clear_error(tmp_path):
    (tmp_path / "j.yaml").write_text("id: BAD ID\n")
    with pytest.raises(JourneyLoadError) as e:
        JourneyRegistry(tmp_path)
    assert "j.yaml:1: id:" in str(e.value)


MIN_STAGE = """\
id: onboarding
version: 1
priority: {stage: activation}
min_duration: 3d
entry: {event: Signed Up}
exits:
  - {name: power_user, when: "traits.power == true", goto: power}
start: w
steps:
  w: {type: wait, duration: 10d, next: done}
  done: {type: end}
"""
POWER = """\
id: power
version: 1
priority: {stage: expansion}
entry: {event: Never}
start: s
steps:
  s: {type: send, channel: email, template: power-tips, next: done}
  done: {type: end}
"""


def test_minimum_stage_duration_holds_a_lifecycle_transition(tmp_path):
    folder = tmp_path / "j"
    folder.mkdir()
    (folder / "a.yaml").write_text(MIN_STAGE)
    (folder / "b.yaml").write_text(POWER)
    proc = Partition(PartitionStore(tmp_path / "s"), OPEN_POLICY,
                              JourneyRegistry(folder))

    def ev(off, ts, key="Signed Up", traits=None):
        return InEvent(type="track", message_id=f"m{off}", customer_id="u", key=key, ts_ms=ts,
                       offset=off, part="e#0", traits=traits or {}, user_id="u")

    proc.process([ev(0, T0)])
    # Becomes a power user after one day: the move waits for the 3-day minimum.
    out = [orjson.loads(o.value) for _, o in
           proc.process([ev(1, T0 + DAY, "identify", {"power": True})])]
    assert not [r for r in out if r["type"] == "journey.exited"]
    out = [orjson.loads(o.value) for _, o in proc.process([], clock_ms=T0 + 3 * DAY)]
    exited = [r for r in out if r["type"] == "journey.exited"
              and r["journey"]["id"] == "onboarding"]
    assert [(r["reason"], r["at_ms"]) for r in exited] == [("exit:power_user", T0 + 3 * DAY)]
    assert [(r["template"], r["at_ms"]) for r in out if r["type"] == "dispatch"] == [
        ("power-tips", T0 + 3 * DAY)]
