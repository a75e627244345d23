"""The NBA learner on real randomised data: Kevin Hillstrom's MineThatData e-mail test.

64,000 customers were randomly sent the men's e-mail, the women's e-mail or nothing. The same
learner the flow trains (one LightGBM classifier with the action as a categorical feature,
the parameters of ``models.nba_train``) is fitted on half of them, per outcome (conversion,
visit); its policy (the arm with the highest predicted outcome) is evaluated on the other half
by inverse propensity weighting (the arms were randomised, so this is unbiased), against
sending everyone the men's e-mail, the women's e-mail, nobody, and random. The difference to
the best single arm is paired per customer, with a 95 % normal confidence interval. Qini
curves per arm are saved as PNG.

Skips (exit 0, with a message) when ``../shared/data/hillstrom/hillstrom.csv`` is absent.
``python -m benchmarks.nba_hillstrom``
"""

from __future__ import annotations

import csv
import math
import random
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np

from benchmarks.common import RESULTS, write_result
from models.nba_train import PARAMS, select_trees

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hillstrom" / "hillstrom.csv"
ARMS = {"Mens E-Mail": "mens_email", "Womens E-Mail": "womens_email",
        "No E-Mail": "do_nothing"}
ACTIONS = ["do_nothing", "mens_email", "womens_email"]
FEATURES = ["recency", "history", "mens", "womens", "zip_code", "newbie", "channel"]
CATS = {"zip_code": ["Urban", "Surburban", "Rural"], "channel": ["Phone", "Web", "Multichannel"]}


def load(path: Path) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    rows, arms, outcomes = [], [], {"conversion": [], "visit": []}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            rows.append([float(CATS[k].index(r[k])) if k in CATS else float(r[k])
                         for k in FEATURES])
            arms.append(ARMS[r["segment"]])
            outcomes["conversion"].append(int(r["conversion"]))
            outcomes["visit"].append(int(r["visit"]))
    return np.asarray(rows), arms, {k: np.asarray(v, dtype=float) for k, v in outcomes.items()}


def ci(terms: np.ndarray) -> dict:
    m = float(terms.mean())
    se = float(terms.std(ddof=1) / math.sqrt(len(terms)))
    return {"mean": round(m, 5), "ci95": [round(m - 1.96 * se, 5), round(m + 1.96 * se, 5)]}


def qini(uplift: np.ndarray, treated: np.ndarray, control: np.ndarray, y: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray, float]:
    """Qini curve (x: share targeted, y: incremental outcomes) and its coefficient (area
    between the curve and the random-targeting line, per customer)."""
    order = np.argsort(-uplift, kind="stable")
    t = treated[order]
    c = control[order]
    yy = y[order]
    yt = np.cumsum(yy * t)
    yc = np.cumsum(yy * c)
    nt = np.cumsum(t)
    nc = np.cumsum(c)
    q = yt - yc * np.divide(nt, nc, out=np.zeros_like(nt, dtype=float), where=nc > 0)
    x = np.arange(1, len(q) + 1) / len(q)
    random_line = x * q[-1]
    coef = float(np.trapezoid(q - random_line, x) / max(t.sum(), 1))
    return x, q, coef


def sklift_comparison(x: np.ndarray, a: np.ndarray, y: np.ndarray, test: np.ndarray,
                      pred: np.ndarray) -> dict | str:
    """Per e-mail against no e-mail, on the held-out half: scikit-uplift's own metrics
    (``qini_auc_score``, ``uplift_at_k`` at 30 %, strategy ``overall``) of our learner's
    uplift, next to scikit-uplift's reference learners (SoloModel, TwoModels,
    ClassTransformation, each over a LightGBM classifier of the same parameters) fitted on
    the same training rows."""
    try:
        from lightgbm import LGBMClassifier
        from sklift.metrics import qini_auc_score, uplift_at_k
        from sklift.models import ClassTransformation, SoloModel, TwoModels
    except ImportError:
        return "scikit-uplift not installed (pip install '.[bench]')"
    out: dict = {}
    for k in (1, 2):
        pair = (a == k) | (a == 0)
        tr, te = pair & ~test, pair & test
        treat_tr, treat_te = (a[tr] == k).astype(int), (a[te] == k).astype(int)
        te_rows = np.flatnonzero(test)
        ours = (pred[:, k] - pred[:, 0])[np.isin(te_rows, np.flatnonzero(te))]

        def metrics(uplift: np.ndarray, y_te=y[te], t_te=treat_te) -> dict:
            return {"qini_auc_score": round(float(qini_auc_score(y_te, uplift, t_te)), 5),
                    "uplift_at_30": round(float(uplift_at_k(y_te, uplift, t_te,
                                                            strategy="overall", k=0.3)), 5)}

        arm = {"segue_s_learner": metrics(ours)}

        def lgbm() -> LGBMClassifier:
            return LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15,
                                  min_child_samples=100, verbose=-1, random_state=7)

        for name, model in (("SoloModel", SoloModel(lgbm())),
                            ("TwoModels", TwoModels(lgbm(), lgbm(), method="vanilla")),
                            ("ClassTransformation", ClassTransformation(lgbm()))):
            model.fit(x[tr], y[tr], treat_tr)
            arm[f"sklift_{name}"] = metrics(np.asarray(model.predict(x[te])))
        out[f"{ACTIONS[k]}_vs_none"] = arm
    return out


# A figure published with its split: scikit-uplift's tutorial "Example of usage model from
# sklift.models in sklearn.pipeline" (notebooks/pipeline_usage_EN.ipynb, maks-sh/scikit-uplift)
# keeps the women's e-mail and no e-mail, target visit, splits with
# train_test_split(test_size=0.5, random_state=42), fits ClassTransformation over
# XGBClassifier(max_depth=2) with CatBoostEncoder and prints uplift@30% (strategy overall).
PUBLISHED = {"source": "scikit-uplift notebooks/pipeline_usage_EN.ipynb",
             "learner": "ClassTransformation(XGBClassifier(max_depth=2)), CatBoostEncoder",
             "outcome": "visit", "arm": "womens_email_vs_none",
             "split": "sklearn train_test_split(test_size=0.5, random_state=42)",
             "uplift_at_30": 0.0660}


def published_split(x: np.ndarray, a: np.ndarray, y: np.ndarray) -> dict | str:
    """Our S-learner and scikit-uplift's ClassTransformation (over LightGBM) on the split of
    the published figure, scored by ``sklift.metrics.uplift_at_k`` like the figure."""
    try:
        from lightgbm import LGBMClassifier
        from sklearn.model_selection import train_test_split
        from sklift.metrics import qini_auc_score, uplift_at_k
        from sklift.models import ClassTransformation
    except ImportError:
        return "scikit-uplift not installed (pip install '.[bench]')"
    rows = np.flatnonzero((a == 2) | (a == 0))  # the notebook drops the men's e-mail first
    tr, te = train_test_split(rows, test_size=0.5, random_state=42)
    t_tr, t_te = (a[tr] == 2).astype(int), (a[te] == 2).astype(int)
    cat_idx = [FEATURES.index(k) for k in CATS] + [len(FEATURES)]
    xa = np.column_stack([x, np.where(a == 2, 1, 0)])
    booster = lgb.train(PARAMS, lgb.Dataset(xa[tr], y[tr], categorical_feature=cat_idx,
                                            params={"verbose": -1}), num_boost_round=200)
    xt = x[te]
    ours = (booster.predict(np.column_stack([xt, np.ones(len(te))])) -
            booster.predict(np.column_stack([xt, np.zeros(len(te))])))
    ct = ClassTransformation(LGBMClassifier(n_estimators=200, learning_rate=0.05,
                                            num_leaves=15, min_child_samples=100,
                                            verbose=-1, random_state=7))
    ct.fit(x[tr], y[tr], t_tr)

    def metrics(uplift: np.ndarray) -> dict:
        return {"uplift_at_30": round(float(uplift_at_k(y[te], uplift, t_te,
                                                        strategy="overall", k=0.3)), 5),
                "qini_auc_score": round(float(qini_auc_score(y[te], uplift, t_te)), 5)}

    return {"published": PUBLISHED, "rows": {"train": len(tr), "test": len(te)},
            "segue_s_learner_200_trees": metrics(ours),
            "sklift_ClassTransformation_lightgbm": metrics(np.asarray(ct.predict(xt)))}


def main() -> int:
    if not DATA.is_file():
        print(f"skipped: {DATA} not found (the shared Hillstrom data set)")
        return 0
    x, arms, outcomes = load(DATA)
    n = len(arms)
    rng = random.Random(2008)
    test = np.zeros(n, dtype=bool)
    test[rng.sample(range(n), n // 2)] = True
    a = np.asarray([ACTIONS.index(s) for s in arms])
    share = {k: float((a[~test] == k).mean()) for k in range(3)}
    result: dict = {"data": {"rows": n, "train": int((~test).sum()), "test": int(test.sum()),
                             "arms": {ACTIONS[k]: int((a == k).sum()) for k in range(3)}},
                    "learner": "S-learner: one LightGBM classifier, action as a categorical "
                    "feature (models.nba_train.PARAMS)", "outcomes": {}}
    cat_idx = [FEATURES.index(k) for k in CATS] + [len(FEATURES)]
    curves = {}
    for outcome, y in outcomes.items():
        xa = np.column_stack([x, a])
        # As `segue nba train` does: a fifth of the training half picks the number of trees
        # by the held-out policy value, then the whole training half is fitted again.
        tr_idx = np.flatnonzero(~test)
        va = np.zeros(n, dtype=bool)
        va[tr_idx[::5]] = True
        fit = ~test & ~va
        ds = lgb.Dataset(xa[fit], y[fit], categorical_feature=cat_idx, params={"verbose": -1})
        probe = lgb.train(PARAMS, ds, num_boost_round=400)
        vi = np.flatnonzero(va)
        trees, _ = select_trees(probe, x[vi], 0, a[vi], y[vi], np.full(len(vi), 3.0),
                                np.zeros(3), np.ones((len(vi), 3), dtype=bool), 1.0, 400)
        booster = lgb.train(PARAMS, lgb.Dataset(xa[~test], y[~test], categorical_feature=cat_idx,
                                                params={"verbose": -1}), num_boost_round=trees)
        xt = x[test]
        pred = np.column_stack([booster.predict(np.column_stack([xt, np.full(len(xt), k)]))
                                for k in range(3)])
        choice = pred.argmax(axis=1)
        at, yt = a[test], y[test]
        prop = np.asarray([share[k] for k in at])

        def terms(policy: np.ndarray, at=at, yt=yt, prop=prop) -> np.ndarray:
            return (policy == at) * yt / prop

        pols = {"model": choice, "everyone_mens_email": np.full(len(at), 1),
                "everyone_womens_email": np.full(len(at), 2), "nobody": np.full(len(at), 0)}
        est = {name: ci(terms(p)) for name, p in pols.items()}
        est["random"] = ci(yt)  # arms were drawn at random: the observed mean
        best = max(("everyone_mens_email", "everyone_womens_email"),
                   key=lambda k: est[k]["mean"])
        diff = ci(terms(choice) - terms(pols[best]))
        result["outcomes"][outcome] = {
            "policy_value": est,
            "model_actions": {ACTIONS[k]: int((choice == k).sum()) for k in range(3)},
            "trees": trees,
            "best_single_arm": best,
            "model_minus_best_arm": diff,
            "model_beats_best_arm": "yes, significant at 95 %" if diff["ci95"][0] > 0 else
            ("no: worse, significant at 95 %" if diff["ci95"][1] < 0 else
             "not significant at 95 % (the interval covers 0)"),
        }
        qs = {}
        for k in (1, 2):
            treated = (at == k).astype(float)
            control = (at == 0).astype(float)
            keep = (treated + control) > 0
            qx, qy, coef = qini(pred[keep, k] - pred[keep, 0], treated[keep], control[keep],
                                yt[keep])
            qs[ACTIONS[k]] = (qx, qy, coef)
        result["outcomes"][outcome]["qini_coefficient"] = {k: round(v[2], 5)
                                                           for k, v in qs.items()}
        result["outcomes"][outcome]["scikit_uplift"] = sklift_comparison(
            x, a, y, test, pred)
        curves[outcome] = qs
        if outcome == PUBLISHED["outcome"]:
            result["published_split"] = published_split(x, a, y)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install '.[bench]'): no Qini PNGs", file=sys.stderr)
    else:
        for outcome, qs in curves.items():
            fig, ax = plt.subplots(figsize=(6, 4.5))
            for name, (qx, qy, coef) in qs.items():
                ax.plot(qx, qy, label=f"{name} (Qini coef. {coef:.4f})")
                ax.plot([0, 1], [0, qy[-1]], "--", linewidth=0.8, color="grey")
            ax.set_xlabel("share of customers targeted (by predicted uplift)")
            ax.set_ylabel(f"incremental {outcome}s")
            ax.set_title(f"Hillstrom held-out Qini curves: {outcome}")
            ax.legend()
            fig.tight_layout()
            png = RESULTS / f"hillstrom_qini_{outcome}.png"
            fig.savefig(png, dpi=110)
            plt.close(fig)
            print(f"wrote {png}")
    write_result("nba_hillstrom", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
