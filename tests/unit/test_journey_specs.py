"""Journey files: clear errors (file, line, field, why), the condition language, schema."""

import json
import subprocess
import sys

import pytest

from models.conditions import ConditionError, Context, compile_condition
from models.journey import JourneyFileError, load_dir, load_journey
from tests.conftest import ROOT

GOOD = """\
id: welcome
version: 1
entry: {event: Signed Up}
start: hello
steps:
  hello: {type: send, channel: email, template: welcome, next: done}
  done: {type: end}
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("change,line,field,why", [
    (("next: done}", "next: nowhere}"), 1, "(journey)", "unknown step 'nowhere'"),
    (("channel: email", "channel: pigeon"), 6, "steps.hello.channel",
     "'pigeon' is not one of: email, sms"),
    (("version: 1", "version: zero"), 2, "version", "valid integer"),
    (("entry: {event: Signed Up}", "entry: {reentry: never}"), 3, "entry",
     "needs an 'event' and/or a 'when'"),
    (("  done: {type: end}", "  done: {type: wait, duration: 2 fortnights, next: hello}"), 7,
     "steps.done.duration", "not a duration"),
    (("entry: {event: Signed Up}", "entry: {event: Signed Up, when: \"traits.x >\"}"), 3,
     "entry.when", "invalid condition"),
    (("type: send,", "type: teleport,"), 6, "steps.hello", "does not match any of the expected"),
])
def test_invalid_file_names_file_line_field_and_why(tmp_path, change, line, field, why):
    p = write(tmp_path, "j.yaml", GOOD.replace(*change))
    with pytest.raises(JourneyFileError) as e:
        load_journey(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: {field}: "), msg
    assert why in msg, msg


def test_yaml_syntax_error_and_instant_loop(tmp_path):
    p = write(tmp_path, "bad.yaml", "id: x\nsteps: [unclosed\n")
    with pytest.raises(JourneyFileError) as e:
        load_journey(p)
    assert f"{p}:" in str(e.value) and "not valid YAML" in str(e.value)
    loop = GOOD.replace("next: done}", "next: back}") + "  back: {type: branch, cases: " \
        "[{when: 'true', next: hello}], default: done}\n"
    with pytest.raises(JourneyFileError) as e:
        load_journey(write(tmp_path, "loop.yaml", loop))
    assert "loop without a wait: hello -> back -> hello" in str(e.value)


def test_folder_checks_duplicates_and_unknown_goto(tmp_path):
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    write(tmp_path, "c.yaml", GOOD.replace("welcome", "other").replace(
        "  done: {type: end}", "  done: {type: goto, journey: missing}"))
    loaded, errors = load_dir(tmp_path)
    assert len(loaded) == 3
    assert any("also defined in" in e for e in errors)
    assert any("unknown journey 'missing'" in e for e in errors)


def test_cli_validate_reports_every_problem_without_traceback(tmp_path):
    write(tmp_path, "ok.yaml", GOOD)
    write(tmp_path, "bad1.yaml", GOOD.replace("version: 1", "version: -3").replace("welcome",
                                                                                  "w2"))
    write(tmp_path, "bad2.yaml", "{{{")
    r = subprocess.run([sys.executable, "-m", "segue.cli", "journeys", "validate",
                        str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert "bad1.yaml:2: version: Input should be greater than or equal to 1" in r.stderr
    assert "bad2.yaml:1: not valid YAML" in r.stderr
    assert "ok  " in r.stdout and "2 error(s)" in r.stdout


def test_shipped_journeys_validate_and_show_writes_mermaid(tmp_path):
    loaded, errors = load_dir(ROOT / "journeys")
    assert not errors and len(loaded) >= 3
    out = tmp_path / "a.mmd"
    r = subprocess.run([sys.executable, "-m", "segue.cli", "journeys", "show",
                        str(ROOT / "journeys" / "activation-retention.yaml"), "--mermaid",
                        str(out)], capture_output=True, text=True, cwd=ROOT, check=True)
    lines = r.stdout.splitlines()
    first = next(x for x in lines if "▶" in x)
    assert first.split()[1:3] == ["adoption", "branch"]
    assert "traits.adoption_score > 70 → high_day1 | else → low_day1" in first
    assert lines.index(next(x for x in lines if " high_welcome " in x)) < lines.index(
        next(x for x in lines if " low_day1 " in x))  # depth first: the high path first
    mmd = out.read_text()
    assert mmd.startswith("flowchart TD") and "high_csat_reply -->|\"CSAT Submitted\"| csat" in mmd


def test_checked_in_journey_schema_matches_model():
    from models.journey import json_schema
    assert json.loads((ROOT / "schemas" / "journey.schema.json").read_text()) == json_schema()


@pytest.mark.parametrize("text,ctx,expected", [
    ("traits.plan == 'pro' and traits.seats >= 10", Context(traits={"plan": "pro", "seats": 12}),
     True),
    ("traits.plan in ['pro', 'team']", Context(traits={"plan": "free"}), False),
    ("not exists(traits.email)", Context(), True),
    ("traits.score > 3", Context(traits={"score": "high"}), False),  # mismatched types: false
    ("event.properties['Order Id'] == 'o1'", Context(event_props={"Order Id": "o1"}), True),
    ("journey.days >= 30 or profile.stage == 'at-risk'", Context(journey={"days": 31}), True),
    ("lower(traits.country) == 'de'", Context(traits={"country": "DE"}), True),
    ("count('Order Completed', '30d') > 1", Context(counts={("Order Completed", "30d"): 2}),
     True),
])
def test_conditions(text, ctx, expected):
    assert compile_condition(text)(ctx) is expected


@pytest.mark.parametrize("text,why", [
    ("__import__('os').system('x')", "unknown function"),
    ("traits.a; drop", "unexpected character"),
    ("os.system('x')", "unknown name"),
    ("traits.a ==", "expected a value"),
    ("traits.a == 1 1", "unexpected token"),
    ("shell('rm')", "unknown function"),
])
def test_conditions_refuse_what_they_do_not_know(text, why):
    with pytest.raises(ConditionError) as e:
        compile_condition(text)
    assert why in str(e.value)


def test_shipped_journey_files_point_editors_at_the_schema():
    from models.journey import SCHEMA_COMMENT, SCHEMA_ID

    schema = json.loads((ROOT / "schemas" / "journey.schema.json").read_text())
    assert schema["$id"] == SCHEMA_ID and "2020-12" in schema["$schema"]
    for path in sorted((ROOT / "journeys").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == SCHEMA_COMMENT, path
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target == (ROOT / "schemas" / "journey.schema.json").resolve()
