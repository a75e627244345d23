"""The first hour with the command line (issue 19): mistyped input is refused with what was
typed; commands do what they say and no more (no file unless asked, pipes read, --json where
a script wants it, each sub-action its own --help); nothing is left behind."""

import subprocess
import sys

import orjson
import pytest

from tests.conftest import ROOT


def segue(*args: str, cwd=ROOT, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "segue.cli", *args], capture_output=True,
                       cwd=cwd, timeout=120, input=stdin)
    r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode()
    return r


@pytest.mark.parametrize("brokers", ["localhost:19092x", "localhost", ":9092",
                                     "a:9092,b:notaport", "h:70000"])
def test_a_mistyped_brokers_list_is_refused(brokers):
    out = segue("simulate", "--customers", "2", "--events", "5", "--brokers", brokers)
    assert out.returncode == 2
    assert f"in --brokers {brokers!r}" in out.stderr and "Traceback" not in out.stderr


def test_a_rate_must_be_positive():
    out = segue("simulate", "--customers", "2", "--events", "5", "--out", "/dev/null",
                "--rate", "-5")
    assert out.returncode == 2 and "'-5': a rate must be above 0" in out.stderr


def test_replay_without_journeys_says_none_are_loaded(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_bytes(orjson.dumps({"type": "track", "messageId": "m1", "userId": "u1",
                                     "event": "Signed In",
                                     "timestamp": "2026-01-01T10:00:00Z"}) + b"\n")
    out = segue("replay", "--events", str(events), "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    assert "no journeys loaded (give --journeys DIR" in out.stderr


def test_journeys_show_writes_no_file_unless_asked(tmp_path):
    path = str(ROOT / "journeys" / "retention.yaml")
    out = segue("journeys", "show", path, cwd=tmp_path)
    assert out.returncode == 0 and "retention" in out.stdout
    assert list(tmp_path.iterdir()) == []
    out = segue("journeys", "show", path, "--mermaid", "-", cwd=tmp_path)
    assert "flowchart" in out.stdout and list(tmp_path.iterdir()) == []
    doc = orjson.loads(segue("journeys", "show", path, "--json", cwd=tmp_path).stdout)
    assert doc["id"] == "retention" and doc["version"] >= 1 and doc["steps"]


def test_journeys_validate_counts_each_problem_and_echoes_a_bad_channel(tmp_path):
    good = (ROOT / "journeys" / "abandoned-cart.yaml").read_text()
    (tmp_path / "ok.yaml").write_text(good)
    (tmp_path / "bad.yaml").write_text(
        good.replace("id: abandoned-cart", "id: cart-2").replace("channel: email\n",
                                                                  "channel: emial\n", 1)
        .replace("duration: 24h, next: discount", "duration: 2x4h, next: discount"))
    out = segue("journeys", "validate", str(tmp_path))
    assert out.returncode == 1
    problems = [x for x in out.stderr.splitlines() if x.startswith("error  ")]
    assert len(problems) == 2, out.stderr
    assert "steps.reminder.channel: 'emial' is not one of: email, sms" in problems[0]
    assert "2 journey file(s), 2 error(s) in 1 file(s)" in out.stdout
    doc = orjson.loads(segue("journeys", "validate", str(tmp_path), "--json").stdout)
    by_file = {f["file"].rsplit("/", 1)[-1]: f for f in doc["files"]}
    assert doc["errors"] == 2 and len(by_file["bad.yaml"]["errors"]) == 2
    assert by_file["ok.yaml"]["errors"] == [] and by_file["ok.yaml"]["id"] == "abandoned-cart"


def test_config_errors_echo_what_was_typed(tmp_path):
    cfg = tmp_path / "segue.yaml"
    cfg.write_text("partitions: maybe\n")
    out = segue("config", "validate", str(cfg))
    assert out.returncode == 2 and "'maybe'" in out.stderr and "Traceback" not in out.stderr


def test_each_sub_action_has_its_own_help():
    train = segue("nba", "train", "--help").stdout
    assert "--from" in train and "--candidate" not in train
    evaluate = segue("nba", "evaluate", "--help").stdout
    assert "--candidate" in evaluate and "--dry-run" in evaluate
    assert "--dry-run" not in segue("nba", "show", "--help").stdout
    assert "--json" in segue("journeys", "validate", "--help").stdout
    assert "--mermaid" not in segue("journeys", "validate", "--help").stdout
    top = segue("--help").stdout
    for topic in ("alerts", "analytics", "repartition", "dispatch.<channel>"):
        assert topic in top


def test_replay_reads_a_pipe_and_standard_input(tmp_path):
    from segue.simulator import simulate

    data = b"".join(orjson.dumps(e) + b"\n" for e in simulate(40, 400, seed=3))
    (tmp_path / "e.jsonl").write_bytes(data)
    journeys = str(ROOT / "journeys")
    from_file = segue("replay", "--journeys", journeys, "--events", str(tmp_path / "e.jsonl"),
                      "--out", str(tmp_path / "a"))
    from_stdin = segue("replay", "--journeys", journeys, "--events", "-", "--out",
                       str(tmp_path / "b"), stdin=data)
    assert from_file.returncode == 0 and from_stdin.returncode == 0, from_stdin.stderr
    for name in ("dispatches", "decisions", "journey-events"):
        a = (tmp_path / "a" / f"{name}.jsonl").read_bytes()
        assert a and a == (tmp_path / "b" / f"{name}.jsonl").read_bytes()
    # A process substitution is a pipe, not a file.
    piped = subprocess.run(["bash", "-c", f"{sys.executable} -m segue.cli replay --journeys "
                            f"{journeys} --events <(cat {tmp_path / 'e.jsonl'}) --out "
                            f"{tmp_path / 'c'}"], capture_output=True, cwd=ROOT, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert (tmp_path / "c" / "dispatches.jsonl").read_bytes() == \
        (tmp_path / "a" / "dispatches.jsonl").read_bytes()
    missing = segue("replay", "--events", str(tmp_path / "nope.jsonl"), "--out",
                    str(tmp_path / "d"))
    assert missing.returncode == 2 and "nope.jsonl: no such file" in missing.stderr


def test_profile_of_an_unknown_customer_names_some_that_exist(tmp_path):
    from segue.simulator import simulate

    data = b"".join(orjson.dumps(e) + b"\n" for e in simulate(20, 200, seed=3))
    (tmp_path / "e.jsonl").write_bytes(data)
    state = tmp_path / "state"
    assert segue("replay", "--events", str(tmp_path / "e.jsonl"), "--out", str(tmp_path / "o"),
                 "--state-dir", str(state)).returncode == 0
    out = segue("profile", "user-nobody", "--state-dir", str(state))
    assert out.returncode == 1 and "customers there include: " in out.stderr
    suggested = out.stderr.split("customers there include: ")[1].strip().split(", ")
    shown = segue("profile", suggested[0], "--state-dir", str(state), "--json")
    assert shown.returncode == 0 and orjson.loads(shown.stdout)["id"]


def test_a_broker_that_stops_cleanly_leaves_no_log_behind():
    from segue.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        log = b.log_path
        assert log.exists()
    assert not log.exists()


def test_long_commands_report_progress(tmp_path):
    from segue.simulator import simulate

    data = b"".join(orjson.dumps(e) + b"\n" for e in simulate(300, 6000, seed=4))
    (tmp_path / "e.jsonl").write_bytes(data)
    out = segue("replay", "--events", str(tmp_path / "e.jsonl"), "--out", str(tmp_path / "o"))
    assert out.returncode == 0, out.stderr
    lines = [x for x in out.stderr.splitlines() if x.startswith("[replay] ")]
    assert lines and "% 5,000 events, " in lines[0] and lines[0].endswith("/s")
    assert "[replay]" not in out.stdout  # the summary table stays clean for scripts
