"""Fixtures: one real Tansu broker per test session (free loopback port), a topic prefix per
test, and helpers to run ``segue`` as a user would (a subprocess of the real CLI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from models.settings import Settings
from segue.broker import EmbeddedBroker, ensure_topics
from segue.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = EmbeddedBroker(log_path=log).start()
    yield b
    b.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "broker" in getattr(item, "fixturenames", ()):
        b = item.funcargs.get("broker") if hasattr(item, "funcargs") else None
        if b is not None:
            rep.sections.append(("Tansu broker log (tail)", b.log()))
        tmp = item.funcargs.get("tmp_path") if hasattr(item, "funcargs") else None
        if isinstance(tmp, Path):
            # What each `segue run` of the test printed: the flow's side of a timeout.
            for log in sorted(tmp.glob("job*/logs/run-*.log")):
                text = log.read_text(errors="replace")
                rep.sections.append((f"{log.parent.parent.name} {log.name} (tail)", text[-3000:]))


class Job:
    """A test's own topics and state, and the ``segue`` commands to run against them."""

    def __init__(self, broker: EmbeddedBroker, tmp: Path, overrides: dict | None = None) -> None:
        self.broker = broker
        self.prefix = f"t{uuid.uuid4().hex[:8]}."
        data = {"prefix": self.prefix, "partitions": 4, **(overrides or {})}
        self.config = tmp / "segue.yaml"
        self.config.write_text(yaml.safe_dump(data))
        self.settings: Settings = load_settings(self.config)
        self.state_dir = tmp / "state"
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self._n = 0
        ensure_topics(broker.bootstrap, self.settings)

    @property
    def topics(self):  # noqa: ANN201
        return self.settings.topics

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "segue.cli", *args]

    def start_run(self, *extra: str, state_dir: Path | None = None) -> subprocess.Popen:
        """Start ``segue run`` in the background; its output goes to a log file."""
        self._n += 1
        log = open(self.logs / f"run-{self._n}.log", "wb")  # noqa: SIM115
        return subprocess.Popen(
            self.cli("run", "--brokers", self.broker.bootstrap, "--state-dir",
                     str(state_dir or self.state_dir), "--config", str(self.config),
                     "--progress-every", "0", *extra),
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )

    def run_until_eof(self, *extra: str, state_dir: Path | None = None,
                      timeout: float = 300) -> str:
        p = self.start_run("--until-eof", *extra, state_dir=state_dir)
        try:
            rc = p.wait(timeout)
        finally:
            if p.poll() is None:
                p.kill()
        out = (self.logs / f"run-{self._n}.log").read_text()
        assert rc == 0, f"segue run exited {rc}:\n{out[-3000:]}"
        return out

    def replay(self, events: list[dict], out: Path, *extra: str, timeout: float = 300) -> str:
        """Write ``events`` as JSON lines beside ``out`` and run ``segue replay`` on them with
        this job's config (it must succeed); returns what it printed on stderr."""
        import orjson

        path = out.parent / f"{out.name}-events.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        r = subprocess.run(self.cli("replay", "--events", str(path), "--out", str(out),
                                    "--config", str(self.config), *extra),
                           capture_output=True, text=True, cwd=ROOT, timeout=timeout)
        assert r.returncode == 0, r.stderr
        return r.stderr

    def last_log(self) -> str:
        return (self.logs / f"run-{self._n}.log").read_text()


@pytest.fixture
def job_factory(broker: EmbeddedBroker, tmp_path: Path):  # noqa: ANN201
    made: list[subprocess.Popen] = []

    def make(**overrides: object) -> Job:
        sub = tmp_path / f"job{len(made)}"
        sub.mkdir()
        made.append(sub)  # type: ignore[arg-type]
        return Job(broker, sub, overrides)

    return make


def kill9(p: subprocess.Popen) -> None:
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)


class FragileRules(dict):
    """Privacy rules (``Partition.personal_traits``) that raise when asked about a trait named
    ``explode``: a bug inside applying one event, after its profile changed (the event count
    goes up before the traits are read). A fault injected through what the code is given: the
    code that applies events is compiled, and a compiled caller would not see a replaced
    function."""

    def __contains__(self, key: object) -> bool:
        if key == "explode":
            raise RuntimeError("a bug")
        return super().__contains__(key)


def wait_for(predicate, timeout: float, every: float = 0.05, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


OUTPUT_FILES = ("dispatches", "decisions", "journey-events", "customer-events")


def live_outputs(bootstrap: str, topics) -> dict[str, list[dict]]:  # noqa: ANN001
    """Every record of the output topics, by the name replay gives its file."""
    import orjson

    from models.journey import CHANNELS
    from segue.kafka_io import consume_all

    def read(topic: str) -> list[dict]:
        return [orjson.loads(m.value()) for m in consume_all(bootstrap, topic)]

    from models.settings import PolicySettings

    extra = sorted(set(PolicySettings().fallback.values()) - set(CHANNELS) - {"enrich"})
    return {"dispatches": [r for ch in (*CHANNELS, *extra) for r in read(topics.dispatch(ch))],
            "decisions": read(topics.decisions),
            "journey-events": read(topics.journey_events),
            "customer-events": read(topics.customer_events)}


def replay_outputs(out_dir: Path) -> dict[str, list[dict]]:
    """What ``segue replay`` wrote to ``out_dir``, by file."""
    import orjson

    return {name: [orjson.loads(x) for x in (out_dir / f"{name}.jsonl").read_bytes()
                   .splitlines()] for name in OUTPUT_FILES}
