"""Next-best-action models: the artifact on disk, batch scoring, explanations, reloading.

Uplift model: one LightGBM classifier of P(conversion within the horizon | features, action)
with the action as a categorical feature (an "S-learner"). The uplift of action ``a`` for a
customer is ``P(a) - P(do_nothing)``. Chosen over one model per action (T-learner) because the
actions share most of what predicts conversion and each has few randomised examples: one model
learns the shared part from all decisions; scoring a customer is one batched call over its
eligible actions; and the explanation of an uplift is simply the difference of two rows'
feature contributions (``pred_contrib``), which sums exactly to the difference of raw scores.

Predictive scores kept on the profile, each its own model over the same features: churn risk
(no activity, or a cancellation, within the horizon), upgrade probability and CLV (revenue
within the horizon).

Artifact: ``<models_dir>/<version>/`` with ``meta.json`` and one LightGBM text model per file;
``<models_dir>/current`` names the promoted version. The flow re-reads ``current`` every
``nba.reload_s`` and swaps models without a restart.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from models import features as F
from models.booster import predictor

ACTION_FEATURE = "action"
DO_NOTHING = "do_nothing"
SCORE_MODELS = ("churn_risk", "upgrade_probability", "clv")


class ModelError(Exception):
    """A model folder that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why ``action`` beats doing nothing for this customer: per-feature contributions to
    the difference in raw (log-odds) score, largest first."""

    action_effect: float
    features: list[tuple[str, float, float]]  # (feature, value, contribution)


class NbaModel:
    """A loaded model version."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.meta = orjson.loads((self.path / "meta.json").read_bytes())
        except (OSError, orjson.JSONDecodeError) as e:
            raise ModelError(f"{self.path}: no readable meta.json ({e})") from e
        if self.meta.get("features_version") != F.VERSION:
            raise ModelError(f"{self.path}: trained on features v"
                             f"{self.meta.get('features_version')}, this flow builds v{F.VERSION}")
        self.version: str = self.meta["version"]
        self.actions: list[str] = self.meta["actions"]
        if DO_NOTHING not in self.actions:
            raise ModelError(f"{self.path}: no '{DO_NOTHING}' action to measure uplift against")
        self.code = {a: float(i) for i, a in enumerate(self.actions)}
        # Imported here: loading LightGBM (and the scikit-learn and pandas it pulls in where
        # installed) took over a second of every start, model or not.
        import lightgbm as lgb

        try:
            self.uplift = lgb.Booster(model_file=str(self.path / "uplift.txt"))
            self.scorers = {name: lgb.Booster(model_file=str(self.path / f"{name}.txt"))
                            for name in SCORE_MODELS if (self.path / f"{name}.txt").exists()}
            # Predictions without the wrapper's per-call cost and reference cycles
            # (models.booster; checked against predict, which stays the fallback).
            self._conversion = predictor(self.uplift)
            self._contributions = predictor(self.uplift, contrib=True)
            self._scores = {name: predictor(b) for name, b in self.scorers.items()}
        except lgb.basic.LightGBMError as e:
            raise ModelError(f"{self.path}: {e}") from e

    # ----- scoring ---------------------------------------------------------------------------
    def conversion(self, rows: list[list[float]], actions: list[str]) -> np.ndarray:
        """P(conversion) for each (row, action) pair, in one batched call."""
        x = np.empty((len(rows), len(F.NAMES) + 1), dtype=np.float64)
        x[:, :-1] = rows
        x[:, -1] = [self.code[a] for a in actions]
        return self._conversion(x)

    def uplifts(self, rows: list[list[float]], candidates: list[list[str]]
                ) -> list[tuple[float, dict[str, float]]]:
        """For each customer row: P(conversion | do nothing) and P(conversion | a) for each of
        its candidate actions the model knows, in one call for the whole batch."""
        flat_rows: list[list[float]] = []
        flat_actions: list[str] = []
        spans = []
        for row, cands in zip(rows, candidates, strict=True):
            known = [a for a in cands if a in self.code and a != DO_NOTHING]
            spans.append(known)
            flat_rows += [row] * (len(known) + 1)
            flat_actions += [DO_NOTHING, *known]
        if not flat_rows:
            return []
        probs = self.conversion(flat_rows, flat_actions)
        out = []
        i = 0
        for known in spans:
            base = float(probs[i])
            out.append((base, {a: float(probs[i + 1 + k]) for k, a in enumerate(known)}))
            i += len(known) + 1
        return out

    def explain(self, rows: list[list[float]], actions: list[str]) -> list[Explanation]:
        """Feature contributions to ``score(row, action) - score(row, do_nothing)``, for
        each (row, action) pair; pairs with the same row (a customer's top actions) share one
        do-nothing row."""
        uniq: dict[int, int] = {}
        xs: list[list[float]] = []
        codes: list[float] = []
        base_of: list[int] = []
        for row in rows:
            k = uniq.get(id(row))
            if k is None:
                k = uniq[id(row)] = len(xs)
                xs.append(row)
                codes.append(self.code[DO_NOTHING])
            base_of.append(k)
        first_action = len(xs)
        xs += rows
        codes += [self.code[a] for a in actions]
        x = np.empty((len(xs), len(F.NAMES) + 1), dtype=np.float64)
        x[:, :-1] = xs
        x[:, -1] = codes
        contrib = self._contributions(x)
        out = []
        for k, row in enumerate(rows):
            diff = contrib[first_action + k] - contrib[base_of[k]]
            feats = [(F.NAMES[j], row[j], float(diff[j])) for j in range(len(F.NAMES))
                     if abs(diff[j]) > 1e-9]
            feats.sort(key=lambda t: -abs(t[2]))
            out.append(Explanation(float(diff[len(F.NAMES)]), feats))
        return out

    def scores(self, rows: list[list[float]]) -> list[dict[str, float]]:
        """Churn risk, upgrade probability and CLV for each row (those the version has)."""
        if not rows or not self.scorers:
            return [{} for _ in rows]
        x = np.asarray(rows, dtype=np.float64)
        # As Python floats once per column (tolist): indexing numpy per value costs more.
        cols = {name: p(x).tolist() for name, p in self._scores.items()}
        return F.score_rows(cols, len(rows))  # compiled: round(v, 4) without its decimals


def rationale_text(exp: Explanation, cats: dict | None = None, top: int = 3) -> list[str]:
    """The largest positive reasons, in a person's words: ``pricing page viewed 3× in 7 days
    (+0.21)`` (contributions in log-odds)."""
    pos = [t for t in exp.features if t[2] > 0][:top]
    return [f"{F.describe(name, value, cats)} ({c:+.2f})" for name, value, c in pos]


class ModelRegistry:
    """The promoted model of a folder, re-read when ``current`` changes (one per folder and
    process, shared by all partitions)."""

    _shared: dict[tuple[str, float], ModelRegistry] = {}
    _shared_lock = threading.Lock()

    def __init__(self, models_dir: str | Path, reload_s: float = 5.0) -> None:
        self.dir = Path(models_dir)
        self.reload_s = reload_s
        self.model: NbaModel | None = None
        self.error: str | None = None
        self.loads = 0
        self._stamp: tuple | None = None
        self._checked = -1e18
        self._lock = threading.Lock()
        self.refresh(force=True)

    @classmethod
    def shared(cls, models_dir: str | Path, reload_s: float = 5.0) -> ModelRegistry:
        key = (str(Path(models_dir).resolve()), reload_s)
        with cls._shared_lock:
            reg = cls._shared.get(key)
            if reg is None:
                reg = cls._shared[key] = cls(models_dir, reload_s)
            return reg

    def current(self) -> NbaModel | None:
        self.refresh()
        return self.model

    def refresh(self, force: bool = False) -> bool:
        """Load the promoted version if ``current`` changed; a bad version keeps the last
        good one (and says why in ``error``). Returns whether a new model was loaded."""
        now = time.monotonic()
        if not force and now - self._checked < self.reload_s:
            return False
        with self._lock:
            self._checked = now
            pointer = self.dir / "current"
            try:
                st = pointer.stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except OSError:
                return False
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            version = pointer.read_text().strip()
            if self.model is not None and self.model.version == version:
                return False
            try:
                self.model = NbaModel(self.dir / version)
            except (ModelError, KeyError, OSError) as e:
                self.error = str(e)
                return False
            self.error = None
            self.loads += 1
            return True


def promoted_version(models_dir: str | Path) -> str | None:
    try:
        return (Path(models_dir) / "current").read_text().strip() or None
    except OSError:
        return None


def promote(models_dir: str | Path, version: str) -> None:
    """Make ``version`` the one running flows load (atomically)."""
    d = Path(models_dir)
    NbaModel(d / version)  # refuse a version that does not load
    tmp = d / ".current.tmp"
    tmp.write_text(version + "\n")
    tmp.replace(d / "current")
