"""Run the dataflow: checks first (broker reachable, topics present), then bytewax."""

from __future__ import annotations

import sys
from pathlib import Path

from bytewax._bytewax import cli_main

from flows.dataflow import FlowContext, build_flow
from flows.progress import Progress, ProgressSink
from segue.broker import BrokerError, ensure_topics, wait_for_metadata
from segue.config import Settings


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
) -> Progress:
    """Run until the input ends (``until_eof``) or forever; returns the run's counters."""
    wait_for_metadata(brokers, timeout_s=15)
    if create_topics:
        ensure_topics(brokers, settings)
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    ctx = FlowContext(settings=settings, brokers=brokers, state_dir=state, until_eof=until_eof)
    sink = ProgressSink(every_s=progress_every_s)
    flow = build_flow(ctx, sink)
    try:
        cli_main(flow, workers_per_process=workers, process_id=process_id, addresses=addresses)
    except KeyboardInterrupt:
        print("[segue] interrupted; state is committed per micro-batch", file=sys.stderr)
    return sink.progress


__all__ = ["run_flow", "BrokerError"]
