"""NBA policy value on the simulator, measured exactly with its hidden response model.

1. Training population: simulate, replay with always-on NBA and exploration 1.0 (uniform
   random logging policy), let the simulator's hidden model answer each decision, train.
2. Test population (another seed): replay with the trained model promoted and exploration
   0.1, as the live flow would run. For every decision, the hidden model gives the true
   conversion probability of each eligible action, so the value of any policy on these
   decisions is exact: the model's greedy choice, the oracle (the true best action by net
   value), random, each single action for everyone, and doing nothing.
3. The IPS / DR estimates of ``segue nba evaluate`` on the explored 10 % are compared with
   the exact value (is the offline estimator honest?).

``python -m benchmarks.nba_policy [--customers N --events N]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.common import write_result
from models.nba import NbaModel, promote
from models.nba_train import evaluate, greedy_actions, load_logged, taken_actions, train
from models.settings import Settings
from segue.replay import replay
from segue.simulator import population, respond, simulate, true_conversion

ALWAYS_ON = {"events": ["Signed In", "page:Pricing", "Product Viewed", "page:Home",
                        "page:Docs", "Ticket Created", "Product Added", "page:Blog"],
             "when": "profile.events >= 4", "every": 30 * 86_400}


def settings(exploration: float, models: str | None) -> Settings:
    return Settings.model_validate({"nba": {
        "exploration": exploration, "models_dir": models, "always_on": ALWAYS_ON,
        "goal_events": ["Subscription Upgraded"]}})


def run_population(work: Path, name: str, customers: int, events: int, seed: int,
                   s: Settings) -> Path:
    d = work / name
    d.mkdir()
    with (d / "events.jsonl").open("wb") as f:
        for ev in simulate(customers, events, seed=seed):
            f.write(orjson.dumps(ev) + b"\n")
    t0 = time.monotonic()
    replay(s, None, d / "events.jsonl", d, state_dir=work / f"{name}-state")
    print(f"[nba_policy] {name}: replayed {events:,} events in {time.monotonic() - t0:.0f}s")
    taken = taken_actions(d / "decisions.jsonl")
    people = population(customers, seed)
    with (d / "outcomes.jsonl").open("wb") as f:
        for ev in respond(taken, people, s.nba.horizon_s * 1000, seed=seed):
            f.write(orjson.dumps(ev) + b"\n")
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=40_000)
    ap.add_argument("--events", type=int, default=600_000)
    ap.add_argument("--reuse", metavar="DIR", help="a previous run's work folder: train "
                    "again on its logged decisions, skip the replays")
    args = ap.parse_args()
    work = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="segue-nba-bench-"))
    models = work / "models"
    t0 = time.monotonic()
    s_train = settings(1.0, None)
    d1 = work / "train" if args.reuse else \
        run_population(work, "train", args.customers, args.events, 101, s_train)
    logged = load_logged(d1, [d1 / "events.jsonl", d1 / "outcomes.jsonl"], s_train.nba)
    version = train(logged, models, s_train.nba, source="simulator seed 101").name
    promote(models, version)
    model = NbaModel(models / version)
    s_test = settings(0.1, str(models))
    d2 = work / "test" if args.reuse else \
        run_population(work, "test", args.customers, args.events, 202, s_test)
    test = load_logged(d2, [d2 / "events.jsonl", d2 / "outcomes.jsonl"], s_test.nba)
    people = population(args.customers, 202)
    from segue.simulator import customer_of

    cust = [customer_of(c, people) for c in test.customers]
    idx = [i for i, c in enumerate(cust) if c is not None and test.eligible[i]]
    chosen = greedy_actions(model, test, s_test.nba, idx)
    V = s_test.nba.conversion_value
    cost = {a.name: a.cost for a in s_test.nba.actions}

    def net(c, a: str) -> float:
        return V * (true_conversion(c, a) - true_conversion(c, "do_nothing")) - cost.get(a, 0)

    def value(pick) -> dict:
        conv = inc = nv = 0.0
        for k, i in enumerate(idx):
            c = cust[i]
            a = pick(k, i)
            p = true_conversion(c, a)
            conv += p
            inc += p - true_conversion(c, "do_nothing")
            nv += net(c, a)
        n = len(idx)
        return {"conversion_rate": round(conv / n, 5), "incremental_conversions": round(inc, 1),
                "net_value": round(nv, 1)}

    policies = {
        "model": value(lambda k, i: chosen[k]),
        "oracle": value(lambda k, i: max(test.eligible[i], key=lambda a: net(cust[i], a))),
        "nobody": value(lambda k, i: "do_nothing"),
    }
    rnd = {"conversion_rate": 0.0, "incremental_conversions": 0.0, "net_value": 0.0}
    for i in idx:
        c = cust[i]
        e = test.eligible[i]
        for a in e:
            p = true_conversion(c, a)
            rnd["conversion_rate"] += p / len(e) / len(idx)
            rnd["incremental_conversions"] += (p - true_conversion(c, "do_nothing")) / len(e)
            rnd["net_value"] += net(c, a) / len(e)
    policies["random"] = {k: round(v, 5 if k == "conversion_rate" else 1) for k, v in rnd.items()}
    singles = {a.name: value(lambda k, i, a=a.name: a if a in test.eligible[i] else "do_nothing")
               for a in s_test.nba.actions if a.name != "do_nothing"}
    best = max(singles, key=lambda a: singles[a]["net_value"])
    policies[f"everyone:{best}"] = singles[best]
    # The same model ranking by uplift alone (every cost 0) against the conversion oracle:
    # incremental conversions is then the objective both maximise.
    free = s_test.nba.model_copy(update={"actions": [a.model_copy(update={"cost": 0.0})
                                                     for a in s_test.nba.actions]})
    chosen_free = greedy_actions(model, test, free, idx)

    def uplift_of(c, a: str) -> float:
        return true_conversion(c, a) - true_conversion(c, "do_nothing")

    conv_model = sum(uplift_of(cust[i], chosen_free[k]) for k, i in enumerate(idx))
    conv_oracle = sum(max(uplift_of(cust[i], a) for a in test.eligible[i]) for i in idx)
    o = policies["oracle"]
    m = policies["model"]
    ev = evaluate(model, None, test, s_test.nba)
    result = {
        "setup": {"customers": args.customers, "events": args.events,
                  "replays": f"reused from {work}" if args.reuse else "fresh",
                  "train_decisions": len(logged), "train_conversions": sum(logged.reward),
                  "test_decisions": len(idx), "model": version, "learner": model.meta["learner"],
                  "conversion_value": V, "costs": cost,
                  "model_metrics": model.meta["metrics"]["uplift"]},
        "policies": policies,
        "single_actions": singles,
        "model_share_of_oracle": {
            "net_value_objective": {"net_value": round(m["net_value"] / o["net_value"], 3),
                                    "incremental_conversions": round(
                                        m["incremental_conversions"] /
                                        o["incremental_conversions"], 3)},
            "conversion_objective": {"model_incremental_conversions": round(conv_model, 1),
                                     "oracle_incremental_conversions": round(conv_oracle, 1),
                                     "share": round(conv_model / conv_oracle, 3)}},
        "model_actions": {a: chosen.count(a) for a in sorted(set(chosen))},
        "offline_estimate_vs_exact": {
            "exact_model_conversion_rate": m["conversion_rate"],
            "ips": ev["candidate"]["ips"], "dr": ev["candidate"]["dr"],
            "explored_decisions": ev["explored_decisions"],
            "baseline_inventory_order_dr": ev["baseline"]["dr"]},
        "seconds": round(time.monotonic() - t0, 1),
    }
    write_result("nba_policy", result)


if __name__ == "__main__":
    main()
