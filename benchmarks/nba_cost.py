"""Decision cost: microseconds per scored customer at batch sizes 1, 64 and 1024.

A model is trained (``models.nba_train.train``) on synthetic logged decisions over the shipped
inventory, then ``NbaDecider.decide`` (the flow's own call: uplift of every eligible action,
profile scores, and the pred_contrib rationale of the executed action) is timed on batches of
feature rows; "scoring only" leaves the rationale out.

``python -m benchmarks.nba_cost``
"""

from __future__ import annotations

import random
import tempfile
import time

from benchmarks.common import write_result
from models import features as F
from models.nba import NbaModel
from models.nba_train import Logged, train
from models.settings import NbaSettings
from operators.nba import Candidate, NbaDecider, Request


def synthetic(n: int, nba: NbaSettings, seed: int = 5) -> Logged:
    rng = random.Random(seed)
    names = [a.name for a in nba.actions]
    log = Logged()
    for i in range(n):
        row = [rng.expovariate(0.3) for _ in F.NAMES]
        row[F.NAMES.index("adoption_score")] = float(rng.randint(20, 100))
        for c in F.CATEGORICAL:
            row[F.NAMES.index(c)] = float(rng.randint(0, 5))
        a = rng.choice(names)
        p = 0.03 + (0.1 if a == "upgrade_offer" and row[F.NAMES.index("adoption_score")] > 70
                    else 0.0) + (0.05 if a == "discount" and row[5] > 3 else 0.0)
        log.rows.append(row)
        log.decided.append(a)
        log.received.append(a)
        log.eligible.append(names)
        log.explored.append(True)
        log.customers.append(f"c{i}")
        log.at.append(i)
        log.reward.append(int(rng.random() < p))
        log.churn.append(int(rng.random() < 0.2))
        log.upgrade.append(int(rng.random() < 0.05))
        log.revenue.append(rng.expovariate(0.01) if rng.random() < 0.1 else 0.0)
    return log


def main() -> None:
    nba = NbaSettings()
    work = tempfile.mkdtemp(prefix="segue-nba-cost-")
    # 200 trees of depth ≤ 5, as tree selection chose on the simulator (nba_policy); no
    # explored decisions, so no selection here: the cost is for a model of that size.
    log = synthetic(20_000, nba)
    log.explored = [False] * len(log)
    path = train(log, work, nba, source="synthetic", rounds=200)
    model = NbaModel(path)
    decider = NbaDecider(nba.model_copy(update={"exploration": 0.1}), None, None,
                         lambda *a: 50.0)
    cands = [Candidate(a.name, a.channel, a.template, a.cost, a) for a in nba.actions]
    rows = synthetic(2048, nba, seed=9).rows
    out: dict = {"model": {"trees": model.meta["metrics"]["uplift"]["trees"],
                           "actions": len(model.actions), "features": len(F.NAMES)},
                 "us_per_customer": {}}
    for batch in (1, 64, 1024):
        res = {}
        for label, explain in (("full_decision", True), ("scoring_only", False)):
            reqs = [Request((i,), rows[i % len(rows)], {}, cands, {}) for i in range(batch)]
            reps = max(3, 3000 // batch)
            decider.decide(reqs, model=model, explain=explain)  # warm up
            t0 = time.perf_counter()
            for _ in range(reps):
                decider.decide(reqs, model=model, explain=explain)
            res[label] = round((time.perf_counter() - t0) / reps / batch * 1e6, 1)
        out["us_per_customer"][f"batch_{batch}"] = res
    out["note"] = ("7 actions scored per customer (6 + do_nothing baseline) and 3 profile "
                   "scores; full decision adds the pred_contrib rationale of the executed action")
    write_result("nba_cost", out)


if __name__ == "__main__":
    main()
