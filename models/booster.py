"""A LightGBM booster's predictions on a float64 matrix, through LightGBM's C API directly.

``Booster.predict`` builds a predictor object and checks its input on every call, and it
hands the arrays to C with ``ndarray.ctypes.data_as``, whose ``ctypes.cast`` leaves a
reference cycle behind (about 30 objects a micro-batch for the three score models). Those
cycles were the only cyclic garbage of the flow's hot path, and a flow that makes none can
skip the collector's walks between batches (``flows.tuning``). This calls the same two C
functions ``predict`` calls, with plain pointers, and is checked against ``predict`` when a
model loads: a LightGBM whose private names (``_LIB``, ``_handle``) moved, or whose results
differ, is used through ``predict`` instead (and says so once on stderr).

Example:
    >>> import lightgbm as lgb, numpy as np
    >>> x = np.arange(40, dtype=np.float64).reshape(20, 2)
    >>> b = lgb.train({"verbose": -1, "min_data_in_leaf": 1}, lgb.Dataset(x, x[:, 0] > 9), 2)
    >>> p = predictor(b)
    >>> bool(np.array_equal(p(x), b.predict(x)))
    True
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]

# LightGBM's C API constants (c_api.h): stable across its releases.
_FLOAT64 = 1
_ROW_MAJOR = 1
_NORMAL = 0
_CONTRIB = 3
PARAMETERS = b"num_threads=1"
MAX_ROWS = 2**31 - 1  # the C API counts rows in an int32
_said: set[str] = set()


class _Direct:
    """``booster.predict(x, num_threads=1[, pred_contrib=True])`` for a 2-D ``x``, as float64."""

    __slots__ = ("_booster", "_contrib", "_lib", "_params", "_type")

    def __init__(self, booster: Any, contrib: bool) -> None:
        from lightgbm import basic

        self._lib = basic._LIB
        self._booster = booster  # its _handle and best_iteration are read at each call
        self._type = ctypes.c_int(_CONTRIB if contrib else _NORMAL)
        self._contrib = contrib
        self._params = ctypes.c_char_p(PARAMETERS)

    def _check(self, code: int) -> None:
        if code != 0:
            from lightgbm.basic import LightGBMError

            raise LightGBMError(self._lib.LGBM_GetLastError().decode())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] > MAX_ROWS:
            raise ValueError(f"expected a matrix of at most {MAX_ROWS} rows, got shape {x.shape}")
        nrow, ncol = x.shape
        b = self._booster  # read at each call, as predict does: the booster may be reloaded
        handle, iterations = b._handle, ctypes.c_int(b.best_iteration)
        start = ctypes.c_int(0)
        wanted = ctypes.c_int64(0)
        self._check(self._lib.LGBM_BoosterCalcNumPredict(
            handle, ctypes.c_int(nrow), self._type, start, iterations, ctypes.byref(wanted)))
        out = np.empty(wanted.value, dtype=np.float64)
        got = ctypes.c_int64(0)
        # c_void_p from an address: no ctypes.cast, so no reference cycle.
        self._check(self._lib.LGBM_BoosterPredictForMat(
            handle, ctypes.c_void_p(x.ctypes.data), ctypes.c_int(_FLOAT64),
            ctypes.c_int32(nrow), ctypes.c_int32(ncol), ctypes.c_int(_ROW_MAJOR), self._type,
            start, iterations, self._params, ctypes.byref(got), ctypes.c_void_p(out.ctypes.data)))
        if got.value != wanted.value:
            raise ValueError(f"LightGBM returned {got.value} predictions, {wanted.value} wanted")
        if self._contrib or out.size != nrow:  # a row per input row, as predict shapes it
            width = out.size // nrow if nrow else (ncol + 1) * b.num_model_per_iteration()
            return out.reshape(nrow, width)
        return out


def predictor(booster: Any, contrib: bool = False, probe: np.ndarray | None = None) -> Predict:
    """``booster.predict`` (single-threaded; feature contributions with ``contrib``) for a
    float64 matrix: the direct call when it gives what ``predict`` gives on ``probe`` (by
    default a few rows made from the booster's feature count), else ``predict`` itself."""
    kwargs: dict[str, Any] = {"num_threads": 1, "pred_contrib": contrib}

    def public(x: np.ndarray) -> np.ndarray:
        return booster.predict(x, **kwargs)

    try:
        direct = _Direct(booster, contrib)
        if probe is None:
            n = booster.num_feature()
            # Small whole numbers: valid for numeric and categorical features alike.
            probe = (np.arange(4 * n, dtype=np.float64) % 5).reshape(4, n)
        if np.array_equal(direct(probe), public(probe), equal_nan=True):
            return direct
        why = "it disagreed with Booster.predict on a probe"
    except Exception as e:  # whatever fails, predict stays the reference
        why = f"{type(e).__name__}: {e}"
    if why not in _said:
        _said.add(why)
        print(f"[segue] LightGBM's C API is not called directly ({why}): predictions go "
              "through Booster.predict, slower and leaving reference cycles to collect",
              file=sys.stderr, flush=True)
    return public
