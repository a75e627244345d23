"""Run the dataflow: checks first (broker reachable, topics present), then bytewax."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from bytewax._bytewax import cli_main

from flows.changelog import check_changelog, check_stores, close_thread_writer, read_tails
from flows.dataflow import FlowContext, build_flow
from flows.group_offsets import GroupOffsets, every
from flows.input_check import check_input, encode_source, fresh_starts, watch_identity
from flows.metrics import serve
from flows.producer import close_thread_producer
from flows.progress import Progress, ProgressSink
from flows.source import partition_count
from flows.topics import BrokerError, ensure_topics, free_port, output_limit, wait_for_metadata
from flows.tuning import batch_gc
from models.settings import Settings
from operators.journeys import journey_registry
from state.store import check_not_in_use, check_writable

GROUP_COMMIT_S = 5.0  # how often applied offsets go to the consumer group (informational)


def run_flow(
    settings: Settings,
    brokers: str,
    state_dir: str | Path,
    *,
    workers: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    until_eof: bool = False,
    progress_every_s: float | None = 5.0,
    create_topics: bool = True,
    journeys_dir: str | Path | None = None,
    drain_horizon_ms: int | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    on_reset: str = "fail",
) -> Progress:
    """Run until the input ends (``until_eof``) or forever; returns the run's counters."""
    wait_for_metadata(brokers, timeout_s=15)
    if create_topics:
        ensure_topics(brokers, settings)
    limit, why = output_limit(brokers, settings)
    if limit < settings.max_output_bytes:
        print(f"[segue] outputs limited to {limit:,} bytes ({why}; max_output_bytes is "
              f"{settings.max_output_bytes:,}): larger ones are parked with an alert",
              file=sys.stderr, flush=True)
        settings = settings.model_copy(update={"max_output_bytes": limit})
    state = Path(state_dir)
    check_writable(state)      # one line saying why, not a traceback from a worker
    check_not_in_use(state)
    t = settings.topics
    identity, restarts, resets = check_input(brokers, state, t.events, t.repartition, on_reset)
    for line in resets:  # nothing skipped without a record
        print(f"[segue] input reset: {line}", file=sys.stderr, flush=True)
    n_parts = partition_count(brokers, t.events)
    tails = None
    if settings.store.changelog:
        check_changelog(brokers, t.changelog, n_parts)
        tails = read_tails(brokers, t.changelog, n_parts)
        check_stores(state, t.events, t.changelog, tails)
    fresh, passed = fresh_starts(brokers, state, t.events, t.repartition, n_parts, restarts,
                                 tails)
    restarts.update(fresh)
    for line in passed:
        print(f"[segue] {line}", file=sys.stderr, flush=True)
    watch_identity(brokers, identity)
    registry = journey_registry(settings, journeys_dir, state / "journey-versions")
    ctx = FlowContext(settings=settings, brokers=brokers, state_dir=state, until_eof=until_eof,
                      journeys=registry, drain_horizon_ms=drain_horizon_ms,
                      partitions=n_parts,
                      metrics=metrics_port is not None, source=encode_source(identity),
                      restarts=restarts, tails=tails)
    if metrics_port is not None:
        serve(metrics_port, metrics_host)
    sink = ProgressSink(every_s=progress_every_s)
    flow = build_flow(ctx, sink)
    group = GroupOffsets(brokers, settings.application_id)
    stop_commits = every(GROUP_COMMIT_S, group, sink.progress.applied_offsets)
    try:
        with batch_gc():
            cli_main(flow, workers_per_process=workers, process_id=process_id,
                     addresses=addresses)
    except KeyboardInterrupt:
        print("[segue] interrupted; state is committed per micro-batch", file=sys.stderr)
    finally:
        stop_commits.set()
        group.commit(dict(sink.progress.applied_offsets))  # where this run ended
        group.close()
        close_thread_producer()
        close_thread_writer()
    return sink.progress


def run_local_cluster(argv: list[str], processes: int) -> int:
    """Run ``segue run`` as ``processes`` cooperating bytewax processes on this machine.

    ``argv`` is the ``segue run`` argument list without ``--processes``. Each child gets its
    ``--process-id`` and the shared ``--addresses``; input partitions and partition stores
    are spread over all workers. SIGINT/SIGTERM are passed on to the children.
    """
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
    metrics_port = None
    if "--metrics-port" in argv:  # one endpoint per process: port, port+1, …
        i = argv.index("--metrics-port")
        metrics_port = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    children = [
        subprocess.Popen([sys.executable, "-m", "segue.cli", "run", *argv,
                          "--process-id", str(i), "--addresses", addresses,
                          *(["--metrics-port", str(metrics_port + i)] if metrics_port else [])])
        for i in range(processes)
    ]

    def forward(signum: int, _frame: object) -> None:
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [c.wait() for c in children]
    return max(abs(c) for c in codes)


__all__ = ["run_flow", "run_local_cluster", "BrokerError"]
