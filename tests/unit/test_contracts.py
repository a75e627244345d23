"""Contracts users rely on: schemas in sync with models, config errors, CLI help."""

import subprocess
import sys
from pathlib import Path

import pytest

from models.schemas import DIR, render
from segue.config import ConfigError, load_settings
from segue.simulator import simulate


def test_checked_in_schemas_match_the_models():
    for name, text in render().items():
        assert (DIR / name).read_text() == text, f"run: python -m models.schemas ({name})"


def test_bad_config_file_names_the_field(tmp_path):
    f = tmp_path / "segue.yaml"
    f.write_text("lifecycle:\n  inactivity_s: 0\nbogus: 1\n")
    with pytest.raises(ConfigError) as e:
        load_settings(f)
    msg = str(e.value)
    assert "lifecycle.inactivity_s" in msg and "bogus" in msg


def test_cli_help_lists_commands_and_bad_config_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "segue.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for cmd in ("broker", "run", "simulate", "profile", "demo"):
        assert cmd in out
    f = tmp_path / "bad.yaml"
    f.write_text("partitions: zero\n")
    r = subprocess.run([sys.executable, "-m", "segue.cli", "simulate", "--out",
                        str(tmp_path / "x.jsonl"), "--config", str(f)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "partitions" in r.stderr and "Traceback" not in r.stderr


def test_simulator_is_deterministic_heavy_tailed_and_in_time_order():
    a = list(simulate(customers=2000, events=20_000, seed=9))
    assert a == list(simulate(customers=2000, events=20_000, seed=9))
    assert a != list(simulate(customers=2000, events=20_000, seed=10))
    stamps = [e["timestamp"] for e in a]
    assert stamps == sorted(stamps)
    per: dict[str, int] = {}
    for e in a:
        k = e.get("userId") or e["anonymousId"]
        per[k] = per.get(k, 0) + 1
    counts = sorted(per.values(), reverse=True)
    top = sum(counts[: len(counts) // 10])
    assert top > 0.3 * sum(counts)  # the top 10 % send far more than 10 % of events
    kinds = {e["type"] for e in a}
    assert {"track", "page", "identify"} <= kinds
    assert len({e["context"]["timezone"] for e in a}) > 5


def test_the_readme_configuration_example_is_valid():
    import yaml

    from models.settings import Settings

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = text.index("```yaml\nprefix: segue.") + len("```yaml\n")
    block = text[start:text.index("```", start)].replace(", ...]", "]")
    s = Settings.model_validate(yaml.safe_load(block))  # YAML's `on:` key included
    assert s.lifecycle.transitions[0].on == ["Order Completed"]
    assert s.nba.always_on is not None and s.analytics.every_s == 3600


def test_every_dead_letter_reason_in_use_is_documented():
    import re
    from pathlib import Path

    from operators.decode import REASON_CODES

    root = Path(__file__).resolve().parents[2]
    used = set()
    for path in (root / "operators").rglob("*.py"):
        used |= set(re.findall(r'_reject\(\s*\w+,\s*"([a-z._]+)"', path.read_text()))
        used |= set(re.findall(r'return "([a-z]+\.[a-z_]+)", ', path.read_text()))
    assert len(used) >= 10 and used <= set(REASON_CODES), used
    readme = (root / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z._]+)` \| ", readme, flags=re.M))
    assert set(REASON_CODES) <= documented
