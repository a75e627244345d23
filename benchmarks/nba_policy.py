"""NBA policy value on the simulator, measured exactly with its hidden response model.

1. Training population (seed 101): simulate, replay with always-on NBA and exploration 1.0
   (uniform random logging policy), let the simulator's hidden model answer each decision,
   train.
2. Test populations (other seeds): replay with the trained model promoted and exploration
   0.1, as the live flow would run. For every decision, the hidden model gives the true
   conversion probability of each eligible action, so the value of any policy on these
   decisions is exact: the model's greedy choice, the oracle (the true best action by net
   value), random, each single action for everyone, and doing nothing.
3. The IPS / DR estimates of ``segue nba evaluate`` on the explored 10 % are compared with
   the exact value (is the offline estimator honest?).

Seeds: 202 is the development seed (the learner's settings were chosen while looking at
it, over several rounds); 303, 404 and 505 were declared untouched before any run on them
and decide nothing: they are run once, for the report (``--seeds`` says which to run).

``python -m benchmarks.nba_policy [--customers N --events N] [--seeds 303,404,505]
[--reuse DIR]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.common import write_result
from models.nba import NbaModel, promote
from models.nba_train import evaluate, greedy_actions, load_logged, taken_actions, train
from models.settings import Settings
from segue.replay import replay
from segue.simulator import customer_of, population, respond, simulate, true_conversion

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


TRAIN_SEED = 101
DEV_SEED = 202
UNTOUCHED_SEEDS = (303, 404, 505)


def exact_report(model: NbaModel, d: Path, customers: int, seed: int, s: Settings) -> dict:
    """Every policy's exact value on one test population's decisions (folder ``d``)."""
    test = load_logged(d, [d / "events.jsonl", d / "outcomes.jsonl"], s.nba)
    people = population(customers, seed)
    cust = [customer_of(c, people) for c in test.customers]
    idx = [i for i, c in enumerate(cust) if c is not None and test.eligible[i]]
    chosen = greedy_actions(model, test, s.nba, idx)
    V = s.nba.conversion_value
    cost = {a.name: a.cost for a in s.nba.actions}

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
               for a in s.nba.actions if a.name != "do_nothing"}
    best = max(singles, key=lambda a: singles[a]["net_value"])
    policies[f"everyone:{best}"] = singles[best]
    # The same model ranking by uplift alone (every cost 0) against the conversion oracle:
    # incremental conversions is then the objective both maximise.
    free = s.nba.model_copy(update={"actions": [a.model_copy(update={"cost": 0.0})
                                                for a in s.nba.actions]})
    chosen_free = greedy_actions(model, test, free, idx)

    def uplift_of(c, a: str) -> float:
        return true_conversion(c, a) - true_conversion(c, "do_nothing")

    conv_model = sum(uplift_of(cust[i], chosen_free[k]) for k, i in enumerate(idx))
    conv_oracle = sum(max(uplift_of(cust[i], a) for a in test.eligible[i]) for i in idx)
    o = policies["oracle"]
    m = policies["model"]
    ev = evaluate(model, None, test, s.nba)
    return {
        "seed": seed,
        "decisions": len(idx),
        "policies": policies,
        "single_actions": singles,
        "model_share_of_oracle": {
            "net_value_objective": {"net_value": round(m["net_value"] / o["net_value"], 4),
                                    "incremental_conversions": round(
                                        m["incremental_conversions"] /
                                        o["incremental_conversions"], 4)},
            "conversion_objective": {"model_incremental_conversions": round(conv_model, 1),
                                     "oracle_incremental_conversions": round(conv_oracle, 1),
                                     "share": round(conv_model / conv_oracle, 4)}},
        "model_actions": {a: chosen.count(a) for a in sorted(set(chosen))},
        "offline_estimate_vs_exact": {
            "exact_model_conversion_rate": m["conversion_rate"],
            "exact_model_net_value_per_decision": round(m["net_value"] / len(idx), 4),
            "ips": ev["candidate"]["ips"], "dr": ev["candidate"]["dr"],
            "dr_net_value_per_decision": ev["candidate"]["net_value"],
            "explored_decisions": ev["explored_decisions"],
            "baseline_inventory_order_dr": ev["baseline"]["dr"],
            "baseline_inventory_order_dr_net_value": ev["baseline"]["net_value"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=40_000)
    ap.add_argument("--events", type=int, default=600_000)
    ap.add_argument("--seeds", default=",".join(map(str, UNTOUCHED_SEEDS)),
                    help=f"test populations to report (default: the untouched "
                         f"{', '.join(map(str, UNTOUCHED_SEEDS))}; {DEV_SEED} is the "
                         "development seed)")
    ap.add_argument("--reuse", metavar="DIR", help="a previous run's work folder: train "
                    "again on its logged decisions; replay only populations it lacks")
    args = ap.parse_args()
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--seeds: a comma-separated list of integers, not {args.seeds!r}")
    if TRAIN_SEED in seeds:
        ap.error(f"--seeds: {TRAIN_SEED} is the training population")
    work = Path(args.reuse) if args.reuse else Path(tempfile.mkdtemp(prefix="segue-nba-bench-"))
    models = work / "models"
    t0 = time.monotonic()
    s_train = settings(1.0, None)
    d1 = work / "train"
    if not (d1 / "decisions.jsonl").exists():
        d1 = run_population(work, "train", args.customers, args.events, TRAIN_SEED, s_train)
    logged = load_logged(d1, [d1 / "events.jsonl", d1 / "outcomes.jsonl"], s_train.nba)
    version = train(logged, models, s_train.nba, source=f"simulator seed {TRAIN_SEED}").name
    promote(models, version)
    model = NbaModel(models / version)
    s_test = settings(0.1, str(models))
    reports = []
    for seed in seeds:
        name = "test" if seed == DEV_SEED else f"test-{seed}"
        d = work / name
        if not (d / "decisions.jsonl").exists():
            d = run_population(work, name, args.customers, args.events, seed, s_test)
        rep = exact_report(model, d, args.customers, seed, s_test)
        rep["untouched"] = seed in UNTOUCHED_SEEDS
        reports.append(rep)
        share = rep["model_share_of_oracle"]["net_value_objective"]["net_value"]
        print(f"[nba_policy] seed {seed}: model {share:.1%} of the oracle's net value")
    shares = sorted(r["model_share_of_oracle"]["net_value_objective"]["net_value"]
                    for r in reports)
    result = {
        "setup": {"customers": args.customers, "events": args.events,
                  "replays": f"reused from {work}" if args.reuse else "fresh",
                  "train_seed": TRAIN_SEED, "dev_seed": DEV_SEED,
                  "untouched_seeds": list(UNTOUCHED_SEEDS),
                  "train_decisions": len(logged), "train_conversions": sum(logged.reward),
                  "model": version, "learner": model.meta["learner"],
                  "conversion_value": s_test.nba.conversion_value,
                  "costs": {a.name: a.cost for a in s_test.nba.actions},
                  "params": model.meta["params"],
                  "model_metrics": model.meta["metrics"]["uplift"]},
        "net_value_share_of_oracle": {
            "seeds": [r["seed"] for r in reports], "per_seed": [
                r["model_share_of_oracle"]["net_value_objective"]["net_value"] for r in reports],
            "median": statistics.median(shares) if shares else None,
            "min": shares[0] if shares else None, "max": shares[-1] if shares else None},
        "populations": reports,
        "seconds": round(time.monotonic() - t0, 1),
    }
    write_result("nba_policy", result)


if __name__ == "__main__":
    main()
