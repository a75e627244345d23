"""Segue's topics on a Kafka cluster: which ones a flow needs, creating the missing ones, and
waiting for a broker to answer. Used by ``segue run``, ``segue broker``, the demo and tests.
"""

from __future__ import annotations

import socket
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from flows.kafka import client_config
from models.journey import CHANNELS
from models.settings import Settings


def free_port() -> int:
    """A free TCP port on loopback (the embedded broker, a local cluster's workers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerError(RuntimeError):
    """The broker could not be started or reached; the message says why."""


def wait_for_metadata(bootstrap: str, timeout_s: float = 20.0) -> None:
    """Block until the broker answers a metadata request. A broker that refuses the login
    (or the TLS handshake) is said so, not reported as absent."""
    # librdkafka's log goes to AuthLog, not stderr: connection refusals while a broker boots
    # are expected, not news.
    errors: list[str] = []

    class AuthLog:
        """librdkafka's log lines (instead of stderr): the ones about logging in are kept."""

        def log(self, _level: int, fmt: str, *args: object) -> None:
            msg = fmt % args if args else fmt
            if "SASL" in msg or "uthentication" in msg or "SSL handshake" in msg:
                errors.append(msg)

    admin = AdminClient(client_config(bootstrap, **{"socket.timeout.ms": 2000,
                                                    "logger": AuthLog()}))
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except KafkaException as e:
            last = e
        admin.poll(0)  # delivers the log lines to AuthLog
        if errors and time.monotonic() > deadline - timeout_s + 3:
            break  # refused, not slow: no need to wait out the timeout
        time.sleep(0.1)
    admin.poll(0)
    if errors:  # the broker answered, but not to these credentials or this protocol
        raise BrokerError(
            f"could not authenticate with the Kafka cluster at {bootstrap}: "
            f"{errors[-1].split(': ', 2)[-1]}. Check security.protocol, sasl.mechanism, "
            "sasl.username and sasl.password (kafka: in the config file, SEGUE_KAFKA_<NAME> "
            "or --kafka-option)")
    raise BrokerError(f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f}s ({last})")



# Explicit configs: Tansu reports none for a topic created without them (tansu.md).
_KEEP = {"cleanup.policy": "delete", "retention.ms": "-1"}
_COMPACT = {"cleanup.policy": "compact", "retention.ms": "-1"}


def topic_specs(settings: Settings, channels: tuple[str, ...] = CHANNELS) -> dict[str, dict]:
    t = settings.topics
    r = settings.retention

    def kept(days: int) -> dict:
        """Deleted after ``days`` (0: kept forever)."""
        return {**_KEEP, "retention.ms": str(days * 86_400_000) if days else "-1"}

    specs = {
        t.events: _KEEP,
        # Dead letters hold raw payloads: kept only as long as the privacy setting says.
        t.dlq: kept(settings.privacy.dlq_retention_days),
        t.customer_events: kept(r.customer_events_days),
        t.decisions: kept(r.decisions_days),
        t.journey_events: kept(r.journey_events_days),
        t.repartition: kept(r.repartition_days),
        t.alerts: kept(r.alerts_days),
        # The newest record per key (a journey version, a channel) is its total.
        t.analytics: _COMPACT,
    }
    if settings.store.changelog:
        # Compaction waits an hour: a batch cut off at the log's end by a crash must not let
        # the cleaner drop the older values its records superseded before it is sent again.
        specs[t.changelog] = {**_COMPACT, "min.compaction.lag.ms": "3600000"}
    # Fallback chains may end on a channel no journey names (in_app -> badge): its topic too.
    targets = {ch for ch in settings.policy.fallback.values() if ch != "enrich"}
    for ch in (*channels, *sorted(targets - set(channels))):
        specs[t.dispatch(ch)] = kept(r.dispatch_days)
    return specs


def ensure_topics(
    bootstrap: str, settings: Settings, channels: tuple[str, ...] = CHANNELS,
    timeout_s: float = 15,
) -> list[str]:
    """Create Segue's topics that do not exist yet; returns the names it created."""
    admin = AdminClient(client_config(bootstrap))
    md = admin.list_topics(timeout=timeout_s).topics
    existing = set(md)
    # The repartition and changelog topics mirror the input's partitions: partition p of
    # each belongs to the same stateful logic.
    events = md.get(settings.topics.events)
    n_events = len(events.partitions) if events is not None and events.partitions else None
    mirrors = (settings.topics.repartition, settings.topics.changelog)
    want = {name: (n_events or settings.partitions) if name in mirrors
            else settings.partitions for name in topic_specs(settings, channels)}
    new = [
        NewTopic(name, want[name], 1, config=dict(cfg))
        for name, cfg in topic_specs(settings, channels).items()
        if name not in existing
    ]
    if not new:
        return []
    for name, fut in admin.create_topics(new, operation_timeout=timeout_s).items():
        try:
            fut.result()
        except KafkaException as e:
            if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise BrokerError(f"could not create topic {name}: {e}") from e
    # Wait until the new topics show up in metadata with all their partitions.
    deadline = time.monotonic() + timeout_s
    names = {n.topic for n in new}
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(n in topics and len(topics[n].partitions) == want[n] for n in names):
            break
        time.sleep(0.05)
    return sorted(names)


def output_limit(bootstrap: str, settings: Settings, timeout_s: float = 10) -> tuple[int, str]:
    """The largest output Segue may produce: ``max_output_bytes``, lowered to the output
    topics' ``max.message.bytes`` and the brokers' ``message.max.bytes`` where they report
    them (a broker may report neither; then the setting stands). Returns (bytes, why)."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = AdminClient(client_config(bootstrap))
    limit, why = settings.max_output_bytes, "max_output_bytes"
    md = admin.list_topics(timeout=timeout_s)
    outputs = [t for t in topic_specs(settings) if t != settings.topics.events]
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in outputs if t in md.topics]
    resources += [ConfigResource(ResourceType.BROKER, str(b)) for b in md.brokers]
    wanted = {"max.message.bytes", "message.max.bytes"}
    for res in resources:
        try:
            configs = admin.describe_configs([res])[res].result(timeout_s)
        except (KafkaException, ValueError, TypeError):
            continue  # not reported (Tansu answers topics only): the setting stands
        for name, entry in configs.items():
            if name in wanted and entry.value and entry.value.isdigit() \
                    and int(entry.value) < limit:
                limit, why = int(entry.value), f"{res.name} {name}"
    return limit, why
