"""Prometheus metrics of a ``segue run`` process (``--metrics-port``; one endpoint per process).

Names follow Prometheus conventions (``segue_`` prefix, ``_total`` counters, base units).
The partition logics feed them after each micro-batch from the partition's labelled counts
(the journey engine's among them), so operators stay free of metrics code.
"""

from __future__ import annotations

from collections import Counter

from prometheus_client import Counter as PCounter
from prometheus_client import Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

EVENTS = PCounter("segue_events_total", "Input messages by topic and what became of them",
                  ["topic", "result"])
DISPATCHES = PCounter("segue_dispatches_total", "Dispatch commands by channel and outcome",
                      ["channel", "outcome"])
DECISIONS = PCounter("segue_decisions_total", "Delivery decisions by outcome (one per "
                     "decision)", ["outcome"])
DECISION_REASONS = PCounter("segue_decision_reasons_total", "Reason codes of delivery "
                            "decisions (a decision may give several)", ["outcome", "reason"])
ALERTS = PCounter("segue_alerts_total", "Alerts raised (segue.alerts) by kind", ["kind"])
JOURNEYS = PCounter("segue_journey_events_total", "Journey entries, exits and conversions",
                    ["journey", "kind"])
LATENCY = Histogram("segue_event_to_dispatch_seconds",
                    "From the causing event's time (clock=event) or Kafka timestamp "
                    "(clock=kafka) to the dispatch's Kafka timestamp", ["clock"],
                    buckets=LATENCY_BUCKETS)
OWN_TIME = Histogram("segue_consume_to_produce_seconds",
                     "Segue's own time per event, in process: from the consumer returning the "
                     "event to its dispatch handed to the producer",
                     buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025,
                              0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
BATCH = Histogram("segue_batch_seconds", "Time to decide one micro-batch (state, journeys, "
                  "policy) in a partition", buckets=LATENCY_BUCKETS)
TIMER_LATENESS = Histogram("segue_timer_lateness_seconds", "Wall-clock lateness of live "
                           "timers: those due once their partition was caught up",
                           buckets=LATENCY_BUCKETS)
TIMER_CATCHUP = Histogram("segue_timer_catchup_seconds", "How overdue timers were that fell "
                          "due before their partition caught up (after a backfill or a "
                          "stop), fired by the wall clock once it had",
                          buckets=(1, 60, 3600, 6 * 3600, 86_400, 7 * 86_400, 30 * 86_400,
                                   365 * 86_400))
TIMERS_PENDING = Gauge("segue_timers_pending", "Durable timers waiting in a partition",
                       ["partition"])
STATE_KEYS = Gauge("segue_state_keys", "Estimated keys in a partition store", ["partition"])
STATE_BYTES = Gauge("segue_state_bytes", "SST bytes of a partition store", ["partition"])
INPUT_LAG = Gauge("segue_input_lag_messages", "End offset minus next offset to read",
                  ["topic", "partition"])
OUTBOX = Gauge("segue_outbox_inflight", "Outputs produced and not yet acknowledged",
               ["partition"])

NBA_DECISIONS = PCounter("segue_nba_decisions_total", "Next-best-action decisions by primary "
                         "action and whether it explored", ["action", "explored"])
NBA_SCORING = Histogram("segue_nba_scoring_seconds", "Time to score one batch of NBA decisions "
                        "(all eligible actions, profile scores, rationale)",
                        buckets=LATENCY_BUCKETS)
NBA_SCORED = PCounter("segue_nba_scored_total", "Customers scored by the NBA model")
NBA_MODEL = Gauge("segue_nba_model_info", "The NBA model version in use (value 1)", ["version"])

BUILD_INFO = Gauge("segue_build_info", "Segue's version and its runtime (value 1): lets "
                   "dashboards and alert rules find every Segue process",
                   ["version", "python", "bytewax"])


def _build_info() -> None:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:  # pragma: no cover - run from a bare source tree
            return "unknown"

    BUILD_INFO.labels(of("segue"), platform.python_version(), of("bytewax")).set(1)


_build_info()

_started: set[int] = set()


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on ``host:port`` (once per process); loopback unless told otherwise,
    so a laptop run does not publish its metrics to the network."""
    if port not in _started:
        start_http_server(port, addr=host)
        _started.add(port)


class PartitionMetrics:
    """Feeds a partition's labelled counts, batch by batch, to Prometheus.

    Runs after every micro-batch: each labelled child is looked up once (``labels`` takes a
    lock and builds a tuple per call) and kept.
    """

    def __init__(self, partition: str) -> None:
        self.partition = partition
        self._children: dict[tuple, PCounter | None] = {}
        self.outbox = OUTBOX.labels(partition)
        self.timers_pending = TIMERS_PENDING.labels(partition)

    def add(self, batch_counts: Counter[tuple]) -> None:
        """One committed batch's counts (``Partition.batch_counts``)."""
        children = self._children
        for key, n in batch_counts.items():
            if key not in children:
                children[key] = _child(key)
            child = children[key]
            if child is not None and n > 0:
                child.inc(n)


def _child(key: tuple) -> PCounter | None:
    """The Prometheus counter a partition count key feeds (None: not exported)."""
    kind = key[0]
    if kind == "events":
        return EVENTS.labels(key[1], key[2])
    if kind == "dispatch":
        return DISPATCHES.labels(key[1], "sent")
    if kind == "dispatch_failed":
        return DISPATCHES.labels(key[1], "failed")
    if kind == "decision":
        return DECISIONS.labels(key[1])
    if kind == "decision_reason":
        return DECISION_REASONS.labels(key[1], key[2])
    if kind == "journey":
        return JOURNEYS.labels(key[2], key[1])
    if kind == "alert":
        return ALERTS.labels(key[1])
    if kind == "nba":
        return NBA_DECISIONS.labels(key[1], str(key[2]).lower())
    return None


def observe_nba(timings: list[tuple[float, int]], version: str | None) -> None:
    """Scoring times of the batches since the last call, and the model in use."""
    for seconds, n in timings:
        NBA_SCORING.observe(seconds)
        NBA_SCORED.inc(n)
    timings.clear()
    name = version or "none"
    if _model[0] != name:
        if _model[0] is not None:
            NBA_MODEL.remove(_model[0])
        NBA_MODEL.labels(name).set(1)
        _model[0] = name


_model: list[str | None] = [None]
