"""The flow's garbage-collector policy (``flows.tuning``): young generations collected between
batches while small, survivors frozen out of the collector's walks, cycles still found."""

from __future__ import annotations

import gc
import weakref

import pytest

from flows import tuning


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref:
    """A reference cycle nobody holds; its weak reference dies when a collection finds it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def _restore_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_outside_a_flow_it_does_nothing():
    kept = [[i] for i in range(tuning.SETTLE_AT + 100)]
    assert tuning.settle_garbage() is False
    assert gc.get_freeze_count() == 0
    assert len(kept) > tuning.SETTLE_AT


def test_between_batches_it_collects_young_cycles_and_freezes_what_survives(monkeypatch):
    monkeypatch.setattr(tuning, "SETTLE_EVERY_S", 3600.0)  # by count only, whatever the clock
    with tuning.batch_gc():
        assert gc.get_threshold() == tuning.GC_THRESHOLDS
        dead = _cycle()
        survivors = [[i] for i in range(tuning.SETTLE_AT + 100)]
        assert dead() is not None  # the high threshold has not collected it yet
        assert tuning.settle_garbage() is True
        assert dead() is None, "a young cycle must be collected before freezing"
        assert gc.get_count()[0] < tuning.SETTLE_AT
        frozen = gc.get_freeze_count()
        assert frozen >= len(survivors)
        # Frozen objects are still freed by reference counting.
        del survivors
        assert gc.get_freeze_count() < frozen - tuning.SETTLE_AT
        # Too little new since: nothing to do.
        assert tuning.settle_garbage() is False
    assert gc.get_freeze_count() == 0, "leaving the flow unfreezes"
    assert gc.get_threshold() != tuning.GC_THRESHOLDS


def test_a_cycle_among_frozen_objects_is_found_by_the_backstop(monkeypatch):
    monkeypatch.setattr(tuning, "FULL_FROM", 2 * tuning.SETTLE_AT)
    monkeypatch.setattr(tuning, "FULL_EVERY_S", 0.0)
    with tuning.batch_gc():
        a, b = Node(), Node()
        a.other, b.other = b, a
        dead = weakref.ref(a)
        held = [[i] for i in range(tuning.SETTLE_AT + 100)]
        assert tuning.settle_garbage() is True  # the cycle is alive: frozen with the rest
        del a, b
        gc.collect()
        assert dead() is not None, "frozen: not even a full collection walks it"
        for _ in range(3):  # net allocations past FULL_FROM: the backstop runs
            held.append([[i] for i in range(tuning.SETTLE_AT + 100)])
            tuning.settle_garbage()
            if dead() is None:
                break
        assert dead() is None, "the backstop's full collection must find it"


def _young_collections() -> int:
    return gc.get_stats()[1]["collections"]


def _settle_once() -> None:
    """Allocate past SETTLE_AT (kept until the freeze) and settle."""
    held = [[i] for i in range(tuning.SETTLE_AT + 100)]
    assert tuning.settle_garbage() is True
    del held


def test_once_collections_find_nothing_settles_only_freeze_until_an_audit(monkeypatch):
    monkeypatch.setattr(tuning, "SETTLE_EVERY_S", 3600.0)
    monkeypatch.setattr(tuning, "AUDIT_EVERY_S", 3600.0)
    monkeypatch.setattr(tuning, "AUDIT_SHARE", 1e9)  # AUDIT_EVERY_S alone paces audits here
    with tuning.batch_gc():
        for _ in range(tuning.CLEAN_BEFORE_SKIPPING):
            dead = _cycle()
            _settle_once()
            assert dead() is None, "until enough clean collections, each settle collects"
        # Those collections each found a cycle: as many clean ones are needed before skipping.
        for _ in range(tuning.CLEAN_BEFORE_SKIPPING):
            before = _young_collections()
            _settle_once()
            assert _young_collections() == before + 1
        frozen = _cycle()
        before = _young_collections()
        _settle_once()
        assert _young_collections() == before, "after clean collections, a settle only freezes"
        assert frozen() is not None
        # An audit collects again and, finding a cycle, brings collecting back.
        monkeypatch.setattr(tuning, "AUDIT_EVERY_S", 0.0)
        dead = _cycle()
        _settle_once()
        assert dead() is None
        monkeypatch.setattr(tuning, "AUDIT_EVERY_S", 3600.0)
        dead = _cycle()
        _settle_once()
        assert dead() is None, "garbage found: settles collect again"
        assert frozen() is not None, "what was frozen waits for the backstop"
    gc.collect()
    assert frozen() is None, "unfrozen after the flow, a full collection frees it"


def test_a_full_collection_that_finds_garbage_brings_young_collections_back(monkeypatch):
    monkeypatch.setattr(tuning, "SETTLE_EVERY_S", 3600.0)
    monkeypatch.setattr(tuning, "AUDIT_EVERY_S", 3600.0)
    with tuning.batch_gc():
        for _ in range(tuning.CLEAN_BEFORE_SKIPPING):
            _settle_once()
        frozen = _cycle()
        _settle_once()  # skipping: frozen with the cycle in it
        assert frozen() is not None
        monkeypatch.setattr(tuning, "FULL_FROM", 0)
        monkeypatch.setattr(tuning, "FULL_EVERY_S", 0.0)
        tuning._pacer.full_after = 0
        _settle_once()  # the backstop: a full collection finds the frozen cycle
        assert frozen() is None
        monkeypatch.setattr(tuning, "FULL_EVERY_S", 3600.0)
        before = _young_collections()
        _settle_once()
        assert _young_collections() == before + 1, "garbage was found: settles collect again"


def test_audits_wait_in_proportion_to_how_long_the_last_one_took(monkeypatch):
    clock = [1000.0]

    class SlowCollector:  # the collector as the policy sees it: each run takes 50 ms
        def __getattr__(self, name):
            return getattr(gc, name)

        def collect(self, *generation):
            clock[0] += 0.05
            return gc.collect(*generation)

    monkeypatch.setattr(tuning, "_clock", lambda: clock[0])
    monkeypatch.setattr(tuning, "gc", SlowCollector())
    monkeypatch.setattr(tuning, "SETTLE_EVERY_S", 3600.0)
    gc.collect()  # no garbage left from before: the settles below find none
    with tuning.batch_gc():
        for _ in range(tuning.CLEAN_BEFORE_SKIPPING):
            _settle_once()  # clean collections: skipping from now on
        assert tuning._pacer.audit_took == pytest.approx(0.05)
        wait = 0.05 / tuning.AUDIT_SHARE
        assert wait > tuning.AUDIT_EVERY_S + 1
        clock[0] += tuning.AUDIT_EVERY_S + 0.5
        before = _young_collections()
        _settle_once()
        assert _young_collections() == before, "a slow audit pushes the next one back"
        clock[0] += wait - tuning.AUDIT_EVERY_S
        _settle_once()
        assert _young_collections() == before + 1, "its share of the time spent: audit"
        # However slow the last one was, the next audit is at most AUDIT_WAIT_MAX_S away.
        tuning._pacer.audit_took = 1_000.0
        clock[0] += tuning.AUDIT_WAIT_MAX_S - 0.5
        _settle_once()
        assert _young_collections() == before + 1
        clock[0] += 1.0
        _settle_once()
        assert _young_collections() == before + 2, "a slow audit delays the next one, bounded"
