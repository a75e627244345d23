"""LightGBM predictions through its C API (``models.booster``): the same numbers as
``Booster.predict``, no reference cycles, and ``predict`` itself when the two disagree."""

from __future__ import annotations

import gc

import lightgbm as lgb
import numpy as np
import pytest

from models import booster


@pytest.fixture(scope="module")
def models() -> dict[str, lgb.Booster]:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 6))
    x[:, 5] = rng.integers(0, 4, size=400)  # a categorical column, as the uplift model's action
    y = (x[:, 0] + (x[:, 5] == 2) + rng.normal(scale=0.5, size=400) > 0.5).astype(float)
    params = {"verbose": -1, "min_data_in_leaf": 5}
    binary = lgb.train({**params, "objective": "binary"},
                       lgb.Dataset(x, y, categorical_feature=[5]), 20)
    regression = lgb.train({**params, "objective": "regression"}, lgb.Dataset(x, x[:, 1] * 3), 20)
    return {"binary": binary, "regression": regression}


@pytest.mark.parametrize("kind", ["binary", "regression"])
@pytest.mark.parametrize("contrib", [False, True])
def test_the_direct_call_gives_what_predict_gives(models, kind, contrib):
    b = models[kind]
    p = booster.predictor(b, contrib=contrib)
    assert isinstance(p, booster._Direct), "the C API path, not the fallback"
    x = np.random.default_rng(9).normal(size=(37, 6))
    x[:, 5] = np.arange(37) % 5
    got, want = p(x), b.predict(x, num_threads=1, pred_contrib=contrib)
    assert got.shape == want.shape
    assert np.array_equal(got, want)
    one = p(x[:1])
    assert np.array_equal(one, b.predict(x[:1], num_threads=1, pred_contrib=contrib))
    assert p(x[:0]).size == 0  # no rows: nothing (predict itself fails on contributions)


def test_predictions_leave_no_cyclic_garbage(models):
    p = booster.predictor(models["binary"])
    x = np.ones((10, 6))
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            p(x)
        gc.collect()
        found = len(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert found == 0


class _Wrapped:
    """A booster whose ``predict`` adds ``shift``, or one without LightGBM's private names."""

    def __init__(self, b: lgb.Booster, shift: float = 0.0, private: bool = True) -> None:
        self._b, self._shift = b, shift
        if private:
            self._handle, self.best_iteration = b._handle, b.best_iteration

    def num_feature(self) -> int:
        return self._b.num_feature()

    def predict(self, x, **kw):
        return self._b.predict(x, **kw) + self._shift


def test_predict_itself_is_used_when_the_direct_call_disagrees_or_cannot_be_made(models,
                                                                                 capsys):
    b = models["binary"]
    x = np.zeros((3, 6))
    differs = booster.predictor(_Wrapped(b, shift=1.0))
    assert not isinstance(differs, booster._Direct)
    assert np.array_equal(differs(x), b.predict(x) + 1.0)
    unknown = booster.predictor(_Wrapped(b, private=False))
    assert not isinstance(unknown, booster._Direct)
    assert np.array_equal(unknown(x), b.predict(x))
    said = capsys.readouterr().err
    assert "disagreed with Booster.predict" in said and "AttributeError" in said
    booster.predictor(_Wrapped(b, shift=1.0))
    assert capsys.readouterr().err == "", "said once a process"


def test_missing_values_predict_the_same_both_ways(models):
    b = models["binary"]
    x = np.full((3, 6), np.nan)
    x[1, 0] = 2.0
    p = booster.predictor(b, probe=x)
    assert isinstance(p, booster._Direct)
    assert np.array_equal(p(x), b.predict(x, num_threads=1))
