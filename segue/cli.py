"""``segue``: the command line. Each subcommand's ``--help`` says what it does."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import orjson

from segue import __version__, native
from segue.config import ConfigError, load_settings

EPILOG = """Topics (default prefix 'segue.'): events (input, key = customer id), dlq (dead
letters with the reason), dispatch.<channel>, decisions, journey-events, customer-events,
analytics (journey and experiment totals), alerts; <app-id>.repartition is internal.
Each command has its own --help. See README.md."""


def _settings(args: argparse.Namespace):
    from flows.kafka import configure, resolve

    s = load_settings(getattr(args, "config", None), prefix=getattr(args, "prefix", None),
                      app_id=getattr(args, "app_id", None))
    # Every Kafka client of this process: the file's kafka:, SEGUE_KAFKA_*, --kafka-option.
    configure(resolve(s.kafka, getattr(args, "kafka_option", None)))
    models = getattr(args, "models", None)
    if models:
        s = s.model_copy(update={"nba": s.nba.model_copy(update={"models_dir": models})})
    return s


def cmd_broker(args: argparse.Namespace) -> int:
    from segue.broker import EmbeddedBroker, ensure_topics

    settings = _settings(args)
    broker = EmbeddedBroker(port=args.port, log_path=args.log)
    stop = {"now": False}

    def _stop(*_: object) -> None:
        stop["now"] = True

    broker.start()
    interrupted = False
    try:
        created = ensure_topics(broker.bootstrap, settings)
        # Handlers first: a Ctrl-C right after the message below still stops cleanly.
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        print(f"Tansu broker ready at {broker.bootstrap} (memory storage; log: "
              f"{broker.log_path})")
        print(f"topics created: {', '.join(created) or '(none new)'}")
        print(f"  export SEGUE_BROKERS={broker.bootstrap}")
        print("Ctrl-C stops it (all topics are lost: memory storage).", flush=True)
        while not stop["now"] and broker.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        ok = broker.running or interrupted
        broker.stop()
    print("broker stopped" if ok else f"broker exited unexpectedly; log:\n{broker.log()}")
    return 0 if ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    from flows.run import run_flow, run_local_cluster

    settings = _settings(args)
    if args.processes > 1 and args.process_id is None:
        argv = ["--brokers", args.brokers, "--state-dir", args.state_dir,
                "--workers", str(args.workers), "--progress-every", str(args.progress_every)]
        argv += ["--until-eof"] if args.until_eof else []
        argv += ["--journeys", args.journeys] if args.journeys else []
        argv += ["--horizon", args.horizon] if args.horizon else []
        argv += ["--metrics-port", str(args.metrics_port)] if args.metrics_port else []
        argv += ["--metrics-host", args.metrics_host, "--on-reset", args.on_reset]
        argv += ["--config", args.config] if args.config else []
        argv += ["--prefix", args.prefix] if args.prefix else []
        argv += ["--app-id", args.app_id] if args.app_id else []
        for opt in args.kafka_option or []:
            argv += ["--kafka-option", opt]
        argv += ["--models", args.models] if args.models else []
        return run_local_cluster(argv, args.processes)
    addresses = args.addresses.split(",") if args.addresses else None
    print(f"[segue] run: input {settings.topics.events} on {args.brokers}, "
          f"state in {args.state_dir}, {args.workers} worker(s)", file=sys.stderr, flush=True)
    if not args.journeys:
        print("[segue] no journeys loaded (give --journeys DIR, e.g. --journeys journeys for "
              "the shipped ones): profiles, lifecycle and identity only", file=sys.stderr,
              flush=True)
    horizon = _duration(args.horizon) if args.horizon else None
    progress = run_flow(
        settings, args.brokers, args.state_dir, workers=args.workers,
        process_id=args.process_id, addresses=addresses, until_eof=args.until_eof,
        progress_every_s=args.progress_every, journeys_dir=args.journeys,
        drain_horizon_ms=horizon, metrics_port=args.metrics_port,
        metrics_host=args.metrics_host, on_reset=args.on_reset,
    )
    print(progress.line(), file=sys.stderr, flush=True)
    return 0


def _positive_rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a rate must be above 0 events/s")
    return v


def _brokers(text: str) -> str:
    """``host:port[,host:port…]``, each port a number: a typo is refused, not guessed."""
    for part in text.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not host:port (in --brokers {text!r})")
    return text


def _duration(text: str) -> int:
    from models.journey import parse_duration_ms

    try:
        return parse_duration_ms(text)
    except ValueError as e:
        raise ValueError(f"--horizon: {e}") from e


def cmd_journeys(args: argparse.Namespace) -> int:
    from models.journey import JourneyFileError, load_journey
    from segue.journey_view import as_mermaid, as_text

    if args.action == "validate":
        return _validate_journeys(args.path, args.json)
    if args.action == "schema":
        import json

        from models.journey import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    try:
        j = load_journey(args.path)
    except JourneyFileError as e:
        for line in str(e).splitlines():
            print(f"error  {line}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(j.model_dump(mode="json", exclude_none=True),
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(as_text(j))
    if args.mermaid == "-":
        print(as_mermaid(j))
    elif args.mermaid:
        Path(args.mermaid).write_text(as_mermaid(j))
        print(f"Mermaid diagram written to {args.mermaid}", file=sys.stderr)
    return 0


def _validate_journeys(folder: str, as_json: bool) -> int:
    """``journeys validate``: every file of ``folder`` with its journey or its problems."""
    from models.journey import load_dir

    loaded, errors = load_dir(folder)
    problems = [line for e in errors for line in e.splitlines()]
    files: dict[str, dict] = {}
    for path, j in loaded:
        files[str(path)] = {"file": str(path), "id": j.id, "version": j.version,
                            "status": j.status, "steps": len(j.steps), "errors": []}
    for line in problems:
        name = line.split(":", 1)[0]
        files.setdefault(name, {"file": name, "errors": []})["errors"].append(line)
    bad = sum(1 for f in files.values() if f["errors"])
    if as_json:
        doc = {"folder": folder, "files": sorted(files.values(), key=lambda f: f["file"]),
               "errors": len(problems)}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 1 if problems else 0
    for f in sorted(files.values(), key=lambda f: f["file"]):
        if not f["errors"]:
            print(f"ok  {f['file']}: {f['id']} v{f['version']} ({f['status']}, "
                  f"{f['steps']} steps)")
    for line in problems:
        print(f"error  {line}", file=sys.stderr)
    sys.stderr.flush()
    print(f"{len(files)} journey file(s), {len(problems)} error(s)"
          + (f" in {bad} file(s)" if problems else ""))
    return 1 if problems else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from operators.journeys import JourneyLoadError
    from segue.replay import ReplayError, replay, summary_table

    settings = _settings(args)
    if not args.journeys:
        print("[segue] no journeys loaded (give --journeys DIR, e.g. --journeys journeys for "
              "the shipped ones)", file=sys.stderr, flush=True)
    try:
        summary = replay(settings, args.journeys, args.events, args.out, args.state_dir,
                         horizon_ms=_duration(args.horizon), progress=True)
    except (ReplayError, JourneyLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary_table(summary))
    print(f"\nwrote {', '.join(sorted(p.name for p in Path(args.out).glob('*.json*')))} "
          f"to {args.out}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from models.settings import Settings

    if args.action == "validate":
        if not args.file:
            print("error: config validate needs a FILE", file=sys.stderr)
            return 2
        settings = load_settings(args.file)  # ConfigError -> one line per problem, exit 2
        t = settings.topics
        print(f"ok  {args.file}: topics {t.events}, {t.dlq}, …; "
              f"{len(settings.lifecycle.transitions)} lifecycle rules; caps on "
              f"{', '.join(sorted(settings.policy.caps))}")
        return 0
    from flows.kafka import masked, resolve

    settings = load_settings(args.file) if args.file else Settings()
    doc = settings.model_dump(mode="json", by_alias=True)
    # The Kafka options in effect (file, SEGUE_KAFKA_*), secrets never printed.
    doc["kafka"] = masked(resolve(settings.kafka, getattr(args, "kafka_option", None)))
    sys.stdout.write(yaml.safe_dump(doc,
                                    sort_keys=False))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from segue.kafka_io import event_records, produce_records
    from segue.simulator import simulate

    settings = _settings(args)
    if args.respond_to:
        from models.nba_train import taken_actions
        from segue.simulator import population, respond

        if not args.out:
            print("error: --respond-to writes to --out FILE", file=sys.stderr)
            return 2
        src = Path(args.respond_to)
        if not src.is_file():
            print(f"error: {src}: no such file", file=sys.stderr)
            return 2
        taken = taken_actions(src)
        n = 0
        with open(args.out, "wb") as f:
            for ev in respond(taken, population(args.customers, args.seed),
                              settings.nba.horizon_s * 1000, seed=args.seed):
                f.write(orjson.dumps(ev) + b"\n")
                n += 1
        print(f"{len(taken):,} decisions → {n:,} conversions (hidden response model) "
              f"written to {args.out}")
        return 0
    events = simulate(args.customers, args.events, seed=args.seed, start=args.start,
                      days=args.days)
    if args.out:
        n = 0
        with open(args.out, "wb") as f:
            for ev in events:
                f.write(orjson.dumps(ev) + b"\n")
                n += 1
        print(f"wrote {n:,} events for {args.customers:,} customers to {args.out}")
        return 0
    from segue.broker import ensure_topics, wait_for_metadata

    wait_for_metadata(args.brokers)
    ensure_topics(args.brokers, settings)
    if args.rate:
        events = _live(events)
    t0 = time.monotonic()
    n = produce_records(args.brokers, settings.topics.events, event_records(events),
                        rate=args.rate)
    secs = time.monotonic() - t0
    print(f"produced {n:,} events for {args.customers:,} customers to "
          f"{settings.topics.events} in {secs:.1f}s ({n / max(secs, 1e-9):,.0f}/s)")
    return 0


def _live(events):
    """With --rate the stream is live: each event is stamped with the time it is sent."""
    from datetime import UTC, datetime

    for ev in events:
        ev = dict(ev)
        ev["timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        yield ev


def cmd_profile(args: argparse.Namespace) -> int:
    from state.inspect import find_profile, partition_stores, profile_view, some_customers

    if not partition_stores(args.state_dir):
        print(f"error: no partition stores under {args.state_dir}", file=sys.stderr)
        return 2
    found = find_profile(args.state_dir, args.customer)
    if found is None:
        picks, _ = some_customers(args.state_dir)
        hint = f"; customers there include: {', '.join(picks)}" if picks else \
            " (no customers yet)"
        print(f"error: customer {args.customer!r} not found in {args.state_dir}{hint}",
              file=sys.stderr)
        return 1
    path, profile = found
    view = profile_view(profile)
    view["store"] = path.name
    sys.stdout.write(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def cmd_nba(args: argparse.Namespace) -> int:
    from models.nba import ModelError, NbaModel, promote, promoted_version
    from models.nba_train import (
        TrainError,
        load_logged,
        outside_training,
        promotion_gate,
        train,
    )

    settings = _settings(args)
    models = Path(args.models or settings.nba.models_dir or "nba-models")
    try:
        if args.action == "show":
            current = promoted_version(models)
            versions = sorted(p for p in models.glob("v*") if (p / "meta.json").is_file())
            if not versions:
                print(f"no model versions in {models} (segue nba train --from DIR)")
                return 1
            for v in versions:
                meta = orjson.loads((v / "meta.json").read_bytes())
                up = meta["metrics"]["uplift"]
                d = meta["data"]
                print(f"{'*' if v.name == current else ' '} {v.name}  {d['decisions']:,} "
                      f"decisions ({d['explored']:,} explored, {d['conversions']:,} "
                      f"conversions)  valid AUC {up.get('auc', float('nan')):.3f}  "
                      f"trained {meta['created_at']}")
            print(f"(* promoted; {models / 'current'})")
            return 0
        if not args.from_dir:
            print(f"error: nba {args.action} needs --from DIR", file=sys.stderr)
            return 2
        if args.action == "evaluate" and not args.candidate:
            print("error: nba evaluate needs --candidate VERSION (see segue nba show)",
                  file=sys.stderr)
            return 2
        src = Path(args.from_dir)
        events = args.events or [str(p) for p in (src / "events.jsonl", src / "outcomes.jsonl")
                                 if p.is_file()]
        if not events:
            print(f"error: no events to find outcomes in: pass --events FILE (or put "
                  f"events.jsonl in {src})", file=sys.stderr)
            return 2
        logged = load_logged(src, events, settings.nba)
        print(f"{len(logged):,} decisions ({sum(logged.explored):,} explored), "
              f"{sum(logged.reward):,} converted within {settings.nba.horizon_s // 3600} h"
              + (f"; {logged.skipped_lines} unreadable lines skipped"
                 if logged.skipped_lines else ""))
        if args.action == "train":
            from models.nba_train import SCORE_MODELS
            from segue.progress import Bar

            bar = Bar("nba train", total=1 + len(SCORE_MODELS), every_s=0)
            try:
                path = train(logged, models, settings.nba, source=str(src),
                             progress=lambda stage, done, total: bar.update(
                                 done, f"{done}/{total} {stage}"))
            finally:
                bar.close()
            meta = orjson.loads((path / "meta.json").read_bytes())
            for name, m in meta["metrics"].items():
                print(f"  {name}: {m}")
            print(f"model {meta['version']} written to {path}")
            print(f"next: segue nba evaluate --models {models} --candidate {meta['version']} "
                  f"--baseline {promoted_version(models) or 'inventory'} --from DIR")
            return 0
        cand = NbaModel(models / args.candidate)
        base = None if args.baseline in ("inventory", "none") else \
            NbaModel(models / args.baseline)
        logged, inside = outside_training(logged, cand, base)
        if inside:
            print(f"left out {inside:,} decisions inside the training data of "
                  f"{args.candidate}{'' if base is None else ' or ' + args.baseline}; "
                  f"evaluating on the other {len(logged):,}")
        # The gate: better than the inventory order and than the model in use, each with
        # 95 % confidence, and some uplift learned (--baseline adds one more comparison).
        current = promoted_version(models)
        names = ["inventory", *([current] if current and current != args.candidate else []),
                 args.baseline]
        baselines = [None if n in ("inventory", "none") else NbaModel(models / n)
                     for n in dict.fromkeys(names)]
        if current and current != args.candidate:
            logged, also = outside_training(logged, *[b for b in baselines if b is not None])
            inside += also
        gate = promotion_gate(cand, baselines, logged, settings.nba)
        for g in gate["against"]:
            r = g["evaluation"]
            if g is gate["against"][0]:
                c = r["candidate"]
                print(f"candidate {c['version']:16} IPS {_ci(c['ips'])}  DR {_ci(c['dr'])}  "
                      f"net value {_ci(c['net_value'])}")
            b = r["baseline"]
            print(f"baseline  {b['version']:16} IPS {_ci(b['ips'])}  DR {_ci(b['dr'])}  "
                  f"net value {_ci(b['net_value'])}")
            # The gate judges the net value difference; the conversion one is for reference.
            print(f"  difference (DR, paired) {_ci(g['dr_difference'])}, net value "
                  f"{_ci(g['net_value_difference'])}"
                  f"{'' if g['passed'] else '  not better on net value'}")
        print(f"on {gate['against'][0]['evaluation']['explored_decisions']:,} explored "
              f"decisions; largest predicted uplift {gate['learned_uplift']:.4f}")
        chosen = next(g for g in gate["against"]
                      if g["baseline"] == ("inventory_order" if args.baseline in
                                           ("inventory", "none") else args.baseline))
        res = dict(chosen["evaluation"])
        res["left_out_training_range"] = inside
        res["gate"] = {k: v for k, v in gate.items() if k != "against"} | {
            "against": [{k: v for k, v in g.items() if k != "evaluation"}
                        for g in gate["against"]]}
        if args.out:
            Path(args.out).write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
        if not gate["passed"]:
            print(f"not promoted: {'; '.join(gate['why'])} (promoted stays "
                  f"{current or 'none'})")
            return 1
        if args.dry_run:
            print(f"{args.candidate} passes the gate; --dry-run: not promoted")
            return 0
        promote(models, args.candidate)
        print(f"promoted {args.candidate}: running flows load it within "
              f"{settings.nba.reload_s:g} s")
        return 0
    except (TrainError, ModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _ci(e: dict) -> str:
    return f"{e['mean']:.4f} [{e['ci95'][0]:.4f}, {e['ci95'][1]:.4f}]"


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.__main__ import BENCHMARKS
    from benchmarks.__main__ import main as bench_main

    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    return bench_main(args.names)


def _since_ms(text: str) -> int | None:
    """``--since DURATION`` as the Kafka time to read from (None: ``all``, the beginning)."""
    if text == "all":
        return None
    from models.journey import parse_duration_ms

    try:
        return int(time.time() * 1000) - parse_duration_ms(text)
    except ValueError as e:
        raise ValueError(f"--since: {e} (or 'all')") from e


def cmd_dashboard(args: argparse.Namespace) -> int:
    from segue.broker import wait_for_metadata
    from segue.dashboard import run_dashboard

    settings = _settings(args)
    wait_for_metadata(args.brokers)
    return run_dashboard(args.brokers, settings, once=args.once, every_s=args.every,
                         since_ms=_since_ms(args.since))


def cmd_studio(args: argparse.Namespace) -> int:
    from segue.studio.app import Studio, create_app, is_loopback
    from segue.studio.live import LiveView
    from segue.studio.workspace import StudioError

    token = args.token or os.environ.get("SEGUE_STUDIO_TOKEN") or None
    if not is_loopback(args.host) and not token:
        print(f"error: --host {args.host} is reachable beyond this machine: give --token "
              "(or SEGUE_STUDIO_TOKEN); every request must then carry it", file=sys.stderr)
        return 2
    for f in args.events or []:
        if not Path(f).is_file():
            print(f"error: --events {f}: no such file", file=sys.stderr)
            return 2
    settings = _settings(args)
    live = None
    if args.brokers:
        live = LiveView(args.brokers, settings, _since_ms(args.since)).start()
    try:
        studio = Studio(args.journeys, settings, args.events or [], live, token)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    where = f"http://{args.host}:{args.port}/"
    print(f"[studio] Segue Studio on {where}" + ("?token=…" if token else "")
          + f" | journeys {args.journeys} | counts: {studio.counts_source()}", flush=True)
    uvicorn.run(create_app(studio), host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from segue.demo import run_demo

    return run_demo(customers=args.customers, events=args.events, seed=args.seed,
                    state_dir=args.state_dir)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="segue",
        description="Real-time customer-journey orchestration on Kafka.",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version",
                   version=f"segue {__version__} ({native.summary()})")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", metavar="FILE", help="settings file (YAML); default: built-in")
        sp.add_argument("--prefix", help="topic name prefix (default 'segue.')")
        sp.add_argument("--kafka-option", action="append", metavar="KEY=VALUE",
                        help="a librdkafka option for every client, e.g. "
                        "security.protocol=SASL_SSL (repeatable; also kafka: in the config "
                        "file and SEGUE_KAFKA_<NAME> variables)")
        sp.add_argument("--app-id", help="application id: names the internal topic "
                        "(<app-id>.repartition) and stamps its messages (default: the prefix "
                        "without its dot)")

    b = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (Tansu)",
                       description="Start Tansu on loopback (memory storage), create Segue's "
                       "topics, print the bootstrap address; Ctrl-C stops it.")
    b.add_argument("--port", type=int, help="port to listen on (default: a free one)")
    b.add_argument("--log", metavar="FILE", help="broker log file (default: a temp file)")
    common(b)
    b.set_defaults(fn=cmd_broker)

    r = sub.add_parser("run", help="run the stateful dataflow",
                       description="Consume <prefix>events, keep per-customer state in one "
                       "RocksDB store per input partition under --state-dir, emit outputs. "
                       "Safe to kill -9 at any moment and restart with the same arguments.")
    r.add_argument("--brokers", required=BROKERS is None, default=BROKERS, metavar="HOST:PORT",
                   type=_brokers,
                   help="bootstrap servers (default: $SEGUE_BROKERS)")
    r.add_argument("--state-dir", required=True, metavar="DIR")
    r.add_argument("--workers", type=int, default=1, help="worker threads in this process")
    r.add_argument("--processes", type=int, default=1,
                   help="run this many cooperating processes on this machine")
    r.add_argument("--process-id", type=int, help="this process's index in a bytewax cluster")
    r.add_argument("--addresses", help="comma-separated host:port of every cluster process")
    r.add_argument("--until-eof", action="store_true",
                   help="stop once the input is drained (timers then fire in event time)")
    r.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS",
                   help="print a progress line this often (0: never)")
    r.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus /metrics here (with --processes N: PORT..PORT+N-1)")
    r.add_argument("--on-reset", choices=("fail", "from-start", "from-end"), default="fail",
                   help="when the input is not the log the state was built from (broker "
                   "replaced, topic recreated): stop and say so (default), read the affected "
                   "partitions' new log from its beginning, or from its end (what is skipped "
                   "is printed)")
    r.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDR",
                   help="address /metrics listens on (default loopback only; 0.0.0.0 for "
                   "a scraper on another host or container)")
    r.add_argument("--journeys", metavar="DIR",
                   help="journey folder (reloaded when its files change)")
    r.add_argument("--models", metavar="DIR", help="NBA model folder (its promoted version "
                   "is reloaded while running)")
    r.add_argument("--horizon", metavar="DURATION",
                   help="with --until-eof: at the end, fire timers due up to this long after "
                   "each customer's last event (as segue replay does), e.g. 35d")
    common(r)
    r.set_defaults(fn=cmd_run)

    cf = sub.add_parser("config", help="validate a settings file, or show the effective one",
                        description="Settings files (segue.yaml): validate one, or print "
                        "every setting in effect.")
    cfs = cf.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = cfs.add_parser("validate", help="check a settings file (one line per problem)",
                       description="Check FILE; exit 0 when valid, else one line per problem "
                       "and exit 2.")
    v.add_argument("file", metavar="FILE", help="segue.yaml")
    v = cfs.add_parser("show", help="print every setting with its value (defaults included)",
                       description="Print the settings in effect as YAML: FILE's (or the "
                       "built-in defaults) with the Kafka options, secrets shown as ***.")
    v.add_argument("file", nargs="?", metavar="FILE", help="segue.yaml (default: built-in)")
    v.add_argument("--kafka-option", action="append", metavar="KEY=VALUE",
                   help="a librdkafka option, as run takes it")
    cf.set_defaults(fn=cmd_config)

    jn = sub.add_parser("journeys", help="validate and show journey files",
                        description="Journey files: validate a folder, show one journey as "
                        "text or a Mermaid diagram, print the JSON Schema for editors.")
    jns = jn.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = jns.add_parser("validate", help="check every journey file in a folder",
                       description="Check every *.yaml/*.yml in DIR: one line per problem "
                       "(file:line: field: why); exit 1 when any file has a problem.")
    v.add_argument("path", nargs="?", default="journeys", metavar="DIR",
                   help="journey folder (default: journeys)")
    v.add_argument("--json", action="store_true",
                   help="one JSON document: every file with its journey or its problems")
    v = jns.add_parser("show", help="one journey as text (or JSON, or a Mermaid diagram)",
                       description="Print FILE's journey: entry, steps and where each leads.")
    v.add_argument("path", metavar="FILE", help="a journey file")
    v.add_argument("--mermaid", metavar="FILE",
                   help="also write the graph as a Mermaid diagram to FILE ('-': print it)")
    v.add_argument("--json", action="store_true", help="the validated journey as JSON")
    jns.add_parser("schema", help="the JSON Schema of journey files (for editors)",
                   description="Print the JSON Schema that journey files follow.")
    jn.set_defaults(fn=cmd_journeys)

    rp = sub.add_parser("replay", help="run journeys over an event file, offline",
                        description="The flow's own operators over a JSON-lines event file, in "
                        "event time, without Kafka. Writes dispatches.jsonl, decisions.jsonl, "
                        "journey-events.jsonl, customer-events.jsonl, dlq.jsonl, alerts.jsonl, "
                        "analytics.jsonl, summary.json.")
    rp.add_argument("--journeys", metavar="DIR", help="journey folder")
    rp.add_argument("--events", required=True, metavar="FILE.jsonl",
                    help="JSON lines, one event each: a file, a pipe, or - (standard input)")
    rp.add_argument("--out", required=True, metavar="DIR")
    rp.add_argument("--state-dir", metavar="DIR", help="default: a fresh temporary directory")
    rp.add_argument("--models", metavar="DIR", help="NBA model folder (promoted version)")
    rp.add_argument("--horizon", default="35d", metavar="DURATION",
                    help="after the input, fire timers due up to this long after each "
                    "customer's last event (default 35d)")
    common(rp)
    rp.set_defaults(fn=cmd_replay)

    s = sub.add_parser("simulate", help="generate a synthetic customer stream",
                       description="A deterministic (by --seed) population with lifecycle "
                       "archetypes, time zones, sessions and heavy-tailed activity.")
    s.add_argument("--customers", type=int, default=1000)
    s.add_argument("--events", type=int, default=10_000)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--start", default="2026-01-01T00:00:00Z", help="event time of the stream")
    s.add_argument("--days", type=float, default=30.0, help="event-time span")
    dest = s.add_mutually_exclusive_group(required=BROKERS is None)
    dest.add_argument("--brokers", metavar="HOST:PORT", default=BROKERS, type=_brokers,
                      help="produce to <prefix>events (default: $SEGUE_BROKERS)")
    dest.add_argument("--out", metavar="FILE.jsonl", help="write JSON lines instead")
    s.add_argument("--respond-to", metavar="DECISIONS.jsonl",
                   help="instead of events: the conversions the simulator's hidden response "
                   "model gives the logged NBA decisions (same --customers and --seed)")
    s.add_argument("--rate", type=_positive_rate,
                   help="events per second (live: events are stamped when sent)")
    common(s)
    s.set_defaults(fn=cmd_simulate)

    pr = sub.add_parser("profile", help="print one customer's state as JSON",
                        description="Look the customer up in every partition store (read-only; "
                        "works while the flow runs).")
    pr.add_argument("customer")
    pr.add_argument("--state-dir", required=True, metavar="DIR")
    pr.add_argument("--json", action="store_true",
                    help="JSON (the only format; accepted so scripts can say so)")
    pr.set_defaults(fn=cmd_profile)

    nb = sub.add_parser("nba", help="train, evaluate, promote next-best-action models",
                        description="Next-best-action models: train a version from logged "
                        "decisions, evaluate it against another (promoting it when better), "
                        "list the versions. Each action has its own --help.")
    nbs = nb.add_subparsers(dest="action", metavar="ACTION", required=True)

    def models_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--models", metavar="DIR", help="model folder (default: "
                        "nba.models_dir, else ./nba-models)")

    def logged_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--from", dest="from_dir", metavar="DIR",
                        help="logged decisions: a segue replay --out folder "
                        "(DIR/decisions.jsonl)")
        sp.add_argument("--events", nargs="+", metavar="FILE.jsonl",
                        help="events to find outcomes in (default: DIR/events.jsonl and "
                        "DIR/outcomes.jsonl)")

    t = nbs.add_parser("train", help="fit a new model version from logged decisions",
                       description="Fit a new model version from logged decisions and the "
                       "outcomes found in the events; prints its metrics and the evaluate "
                       "command to run next.")
    logged_args(t)
    models_arg(t)
    common(t)
    t = nbs.add_parser("evaluate", help="compare a candidate with the inventory order and "
                       "the model in use; promote it when better than both",
                       description="IPS and doubly robust policy value of --candidate, the "
                       "inventory order, the promoted model and --baseline on the explored "
                       "decisions logged outside their training data; promotes the candidate "
                       "only when it learned some uplift and beats each of them with 95 %% "
                       "confidence (running flows reload it).")
    t.add_argument("--candidate", metavar="VERSION", help="e.g. v002 (see segue nba show)")
    t.add_argument("--baseline", default="inventory", metavar="VERSION",
                   help="one more version to beat, or 'inventory' (the default; the "
                   "inventory order and the promoted model are always compared)")
    logged_args(t)
    t.add_argument("--out", metavar="FILE.json", help="write the estimates here")
    t.add_argument("--dry-run", action="store_true", help="never promote")
    models_arg(t)
    common(t)
    t = nbs.add_parser("show", help="the model versions; * marks the promoted one",
                       description="List the model versions in the model folder with their "
                       "data and validation AUC; * marks the promoted one.")
    models_arg(t)
    common(t)
    nb.set_defaults(fn=cmd_nba)

    bn = sub.add_parser("bench", help="run benchmarks, write benchmarks/results/",
                        description="Each benchmark runs on the embedded broker (or offline) "
                        "and writes benchmarks/results/<name>.json with machine info, versions "
                        "and the git commit; see benchmarks/results/README.md. Benchmarks "
                        "never fail on timing. Some need extras: pip install '.[bench]'.")
    bn.add_argument("names", nargs="*", metavar="NAME", help="default: all")
    bn.add_argument("--list", action="store_true", help="list the benchmarks")
    bn.set_defaults(fn=cmd_bench)

    db = sub.add_parser("dashboard", help="the journey orchestration dashboard, in the terminal",
                        description="Active journeys, trigger activity in the last hour, NBA "
                        "stats, dispatches and alerts, from Segue's output topics; refreshes "
                        "live (Ctrl-C quits), or --once prints a snapshot.")
    db.add_argument("--brokers", required=BROKERS is None, default=BROKERS, metavar="HOST:PORT",
                    type=_brokers,
                    help="bootstrap servers (default: $SEGUE_BROKERS)")
    db.add_argument("--once", action="store_true", help="print one snapshot and exit")
    db.add_argument("--since", default="24h", metavar="DURATION",
                    help="read the output topics from this long ago (Kafka time), e.g. 1h, "
                    "7d, or 'all'; journey totals always come whole from segue.analytics "
                    "(default 24h)")
    db.add_argument("--every", type=float, default=2.0, metavar="SECONDS", help="refresh period")
    common(db)
    db.set_defaults(fn=cmd_dashboard)

    st = sub.add_parser("studio", help="see, edit, backtest and publish journeys in the browser",
                        description="A web app over a journeys folder: the journeys with their "
                        "live numbers, each as a graph with counts on every node, point-and-"
                        "click editing with the YAML in sync, a backtest of the draft against "
                        "the current version on an events file, publish/pause/resume/rollback "
                        "(running flows pick changes up), and the live dashboard. Drafts, "
                        "history and the audit log live in DIR/.studio/.")
    st.add_argument("--journeys", required=True, metavar="DIR", help="journey folder")
    st.add_argument("--brokers", default=BROKERS, metavar="HOST:PORT", type=_brokers,
                    help="read live numbers and the dashboard from the output topics "
                    "(default: $SEGUE_BROKERS; none: counts come from --events)")
    st.add_argument("--events", action="append", metavar="FILE",
                    help="an events file (JSON lines) for backtests, and for node counts "
                    "without a broker (repeatable)")
    st.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                    "127.0.0.1; any other needs --token)")
    st.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    st.add_argument("--token", help="a token every request must carry (default: "
                    "$SEGUE_STUDIO_TOKEN); required beyond loopback")
    st.add_argument("--since", default="24h", metavar="DURATION",
                    help="read the output topics from this long ago (default 24h, or 'all')")
    common(st)
    st.set_defaults(fn=cmd_studio)

    d = sub.add_parser("demo", help="everything on the embedded broker, then a summary",
                       description="Start Tansu, simulate customers, run the flow to the end of "
                       "the input, print what it decided. No external services.")
    d.add_argument("--customers", type=int, default=5000)
    d.add_argument("--events", type=int, default=100_000)
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--state-dir", help="default: a fresh temporary directory")
    d.set_defaults(fn=cmd_demo)
    return p


# What `segue broker` tells users to export: the default of every --brokers.
BROKERS = os.environ.get("SEGUE_BROKERS") or None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `segue replay … | head`
        sys.stderr.close()
        return 0
    except Exception as e:  # a clear message, not a traceback, for expected failures
        from confluent_kafka import KafkaException

        from flows.input_check import InputResetError
        from operators.journeys import JourneyLoadError
        from segue.broker import BrokerError
        from state.store import StateError

        if isinstance(e, KafkaException):  # e.g. an unknown or invalid --kafka-option
            print(f"error: Kafka client: {e.args[0].str() if e.args else e}", file=sys.stderr)
            return 2
        if isinstance(e, BrokerError | ValueError | TimeoutError | JourneyLoadError |
                      StateError | InputResetError):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
