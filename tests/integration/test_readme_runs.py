"""The README's shell blocks run as written (issue 19): every ``sh`` block is either run here,
in a scratch folder with the project's ``segue`` on PATH, or listed below with the reason it
cannot run in a test. Sizes above 20,000 events are cut by three, and the fixed broker port
is replaced by a free one; nothing else is changed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from segue.broker import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

# First line of a block → why it is not run here.
NOT_RUN = {
    "make demo": "the set-up commands themselves (CI runs make test; make demo has its own "
                 "test of the demo)",
    "export SEGUE_BROKERS=b-1.example": "needs a secured external Kafka cluster",
    "docker build": "no Docker engine on our machines (tests/integration/test_image_steps.py "
                    "runs the image's steps)",
    "make lint": "the development loop: lint and the unit tests run in CI already",
}


def blocks() -> list[tuple[int, str]]:
    text = (ROOT / "README.md").read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(1))
            for m in re.finditer(r"```sh\n(.*?)```", text, re.S)]


def scaled(block: str, port: int) -> str:
    """``block`` as the test runs it: a third of the events and customers where it simulates
    more than 20,000 events (every --customers alike, so the population stays the same one),
    a free port for 19092, the project's segue for .venv/bin/segue."""
    if any(int(n) > 20_000 for n in re.findall(r"--events (\d+)", block)):
        block = re.sub(r"(--events|--customers) (\d+)",
                       lambda m: f"{m.group(1)} {int(m.group(2)) // 3}", block)
    block = block.replace(".venv/bin/segue", "segue").replace("19092", str(port))
    # `nba evaluate` exits 1 when the candidate is not better (documented): not a failure.
    return re.sub(r"^(segue nba evaluate .*)$", r"\1 || [ $? -eq 1 ]", block, flags=re.M)


def test_every_readme_shell_block_is_run_or_says_why_not():
    seen = {prefix: False for prefix in NOT_RUN}
    for _line, block in blocks():
        first = block.strip().splitlines()[0]
        for prefix in NOT_RUN:
            if first.startswith(prefix):
                seen[prefix] = True
    assert all(seen.values()), f"NOT_RUN names blocks the README no longer has: {seen}"


@pytest.mark.parametrize("line,block", [b for b in blocks() if not any(
    b[1].strip().startswith(p) for p in NOT_RUN)], ids=lambda x: f"README.md:{x}"
    if isinstance(x, int) else "")
def test_readme_block_runs_as_written(tmp_path, line, block):
    for shipped in ("journeys", "deploy"):
        os.symlink(ROOT / shipped, tmp_path / shipped)
    port = free_port()
    script = scaled(block, port)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("SEGUE_BROKERS", None)
    r = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"README.md:{line} failed:\n{script}\n{r.stdout[-2000:]}\n" \
                              f"{r.stderr[-3000:]}"
    if "segue profile" in block:
        start = r.stdout.index("{")
        profile = orjson.loads(r.stdout[start:r.stdout.rindex("}") + 1])
        assert profile["id"] and profile["events"] > 0
    if "nba train" in block:
        assert (tmp_path / "nba-models" / "v001" / "meta.json").is_file()
        assert "candidate v001" in r.stdout and "difference (DR, paired)" in r.stdout
