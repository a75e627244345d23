"""The image's build and install steps (``Dockerfile``), run in a virtualenv here since no
Docker engine runs on our machines: wheels built from a read-only copy of the source, Segue
installed from those wheels alone, and the installed ``segue`` doing the job (a replay whose
outputs equal the development install's), without the embedded broker."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from segue.simulator import simulate
from tests.conftest import ROOT, replay_outputs

pytestmark = pytest.mark.integration

# What the Dockerfile's build stage copies (checked against it in tests/unit/test_deploy.py).
SOURCE = ["pyproject.toml", "README.md", "setup.py", "native-modules.txt", "segue", "flows",
          "operators", "models", "state", "benchmarks", "deploy", "journeys"]


def read_only_copy(dst: Path) -> None:
    for part in SOURCE:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dst / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst / part)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def writable_again(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, **kw)


def test_wheels_from_a_read_only_source_install_a_segue_that_does_the_job(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    read_only_copy(src)
    try:
        built = run(["sh", str(src / "deploy/docker/build-wheels.sh"), str(src),
                     str(tmp_path / "wheels")])
        assert built.returncode == 0, built.stderr[-3000:]
        assert not (src / "build").exists() and not list(src.glob("*.egg-info"))
    finally:
        writable_again(src)
    wheels = sorted(p.name for p in (tmp_path / "wheels").iterdir())
    assert any(w.startswith("segue-") for w in wheels)
    # The hot path is compiled into the wheel (mypyc, setup.py): a platform wheel.
    assert any(w.startswith("segue-") and "linux" in w for w in wheels), wheels
    assert not any(w.startswith("calfkit") for w in wheels)  # the embedded broker stays out

    venv = tmp_path / "opt-segue"
    installed = run(["sh", str(ROOT / "deploy/docker/install.sh"), str(tmp_path / "wheels"),
                     str(venv)])
    assert installed.returncode == 0, installed.stderr[-3000:]
    segue = str(venv / "bin" / "segue")

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in simulate(300, 3000, seed=5)))
    outs = {}
    for name, cmd in (("image", [segue]), ("dev", [sys.executable, "-m", "segue.cli"])):
        r = run([*cmd, "replay", "--journeys", str(ROOT / "journeys"), "--events", str(events),
                 "--out", str(tmp_path / name)], cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        outs[name] = replay_outputs(tmp_path / name)
    assert outs["image"]["dispatches"], "the replay dispatched nothing"
    assert outs["image"] == outs["dev"]

    # Without the embedded broker, `segue broker` says what to do in one line, and leaves
    # no broker log behind.
    import tempfile

    logs = set(Path(tempfile.gettempdir()).glob("tansu-*.log"))
    r = run([segue, "broker"], cwd=tmp_path)
    assert r.returncode != 0
    assert "segue[embedded]" in r.stderr and "Traceback" not in r.stderr
    assert set(Path(tempfile.gettempdir()).glob("tansu-*.log")) <= logs
