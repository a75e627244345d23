"""Segue Studio's HTTP API: every action a person takes in the browser, through the API.

Counts are checked against an independent reading of a ``segue replay`` of the same events;
file changes are checked on disk and with the loader the flow uses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest
import yaml
from starlette.testclient import TestClient

from models.journey import load_dir
from models.settings import Settings
from segue.replay import replay
from segue.studio.app import Studio, create_app

ROOT = Path(__file__).resolve().parents[2]
JID = "abandoned-cart"


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("studio-events") / "events.jsonl"
    subprocess.run([sys.executable, "-m", "segue.cli", "simulate", "--customers", "400",
                    "--events", "6000", "--seed", "5", "--out", str(out)], check=True,
                   cwd=ROOT, capture_output=True)
    return out


@pytest.fixture(scope="module")
def replayed(events: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shipped journeys replayed over the events: per journey version and step, the
    customers and visits, read straight from the records."""
    out = tmp_path_factory.mktemp("studio-replay")
    replay(Settings(), ROOT / "journeys", events, out / "out", state_dir=out / "state")
    steps: dict[tuple, set] = defaultdict(set)
    visits: Counter = Counter()
    entered: Counter = Counter()
    for line in (out / "out" / "journey-events.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        j = r["journey"]
        if r["type"] == "journey.step":
            steps[(j["id"], j["node"])].add(r["customer_id"])
            visits[(j["id"], j["node"])] += 1
        elif r["type"] == "journey.entered":
            entered[j["id"]] += 1
    return {"customers": {k: len(v) for k, v in steps.items()}, "visits": visits,
            "entered": entered}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    dest = tmp_path / "journeys"
    shutil.copytree(ROOT / "journeys", dest)
    return dest


@pytest.fixture
def client(folder: Path, events: Path) -> TestClient:
    return TestClient(create_app(Studio(folder, Settings(), [str(events)], None, None)))


def _draft_with(client: TestClient, duration: str) -> dict:
    doc = client.post(f"/api/journeys/{JID}/draft", json={}).json()["doc"]
    doc["steps"]["wait_24h"]["duration"] = duration
    r = client.post(f"/api/journeys/{JID}/draft", json={"doc": doc})
    assert r.status_code == 200, r.text
    return r.json()


def test_journeys_list_has_every_journey_with_numbers(client: TestClient,
                                                      replayed: dict) -> None:
    r = client.get("/api/journeys")
    assert r.status_code == 200
    rows = {j["id"]: j for j in r.json()["journeys"]}
    on_disk = {j.id: j for _, j in load_dir(ROOT / "journeys")[0]}
    assert set(rows) == set(on_disk)
    for jid, j in on_disk.items():
        assert rows[jid]["version"] == j.version and rows[jid]["status"] == j.status
        assert rows[jid]["numbers"]["entered"] == replayed["entered"][jid]
    assert r.json()["counts_source"] == "replay of events.jsonl"


def test_journey_graph_and_node_counts(client: TestClient, replayed: dict) -> None:
    d = client.get(f"/api/journeys/{JID}").json()
    g = d["current"]["graph"]
    ids = {n["id"] for n in g["nodes"]}
    assert ids == {"@entry", *d["current"]["doc"]["steps"]}
    assert {"from": "@entry", "to": "wait_24h", "label": "", "broken": False} in g["edges"]
    # every node below its predecessor on the canvas
    pos = {n["id"]: n for n in g["nodes"]}
    assert pos["wait_24h"]["y"] > pos["@entry"]["y"] and pos["reminder"]["y"] > pos["wait_24h"]["y"]
    counts = d["counts"]["1"]["nodes"]
    for step in ("wait_24h", "reminder", "discount"):
        assert counts[step]["customers"] == replayed["customers"][(JID, step)]
        assert counts[step]["visits"] == replayed["visits"][(JID, step)]
    assert d["counts"]["1"]["entered"] == replayed["entered"][JID]


def test_draft_from_the_forms_keeps_yaml_in_sync(client: TestClient, folder: Path) -> None:
    d = _draft_with(client, "1h")
    assert d["valid"] and d["errors"] == []
    assert d["version"] == 2  # a draft always takes the next version
    saved = yaml.safe_load((folder / ".studio" / "drafts" / f"{JID}.yaml").read_text())
    assert saved["steps"]["wait_24h"]["duration"] == "1h"
    assert yaml.safe_load(d["yaml"]) == saved
    # the live file is untouched until publish
    assert yaml.safe_load((folder / f"{JID}.yaml").read_text())["steps"]["wait_24h"][
        "duration"] == "24h"


def test_bad_condition_is_reported_at_its_field_and_line(client: TestClient) -> None:
    client.post(f"/api/journeys/{JID}/draft", json={})
    text = client.post(f"/api/journeys/{JID}/draft", json={}).json()["yaml"]
    bad = text.replace("  event: Product Added\n",
                       "  event: Product Added\n  when: traits.plan ==\n")
    d = client.post(f"/api/journeys/{JID}/draft", json={"yaml": bad}).json()
    assert not d["valid"]
    [err] = d["errors"]
    line = bad.splitlines().index("  when: traits.plan ==") + 1
    assert err["field"] == "entry.when" and err["line"] == line
    assert err["text"].startswith(f"{JID}.yaml (draft):{line}: entry.when: invalid condition")
    r = client.post(f"/api/journeys/{JID}/publish")
    assert r.status_code == 400 and "does not validate" in r.json()["error"]


def test_broken_yaml_and_bad_requests_get_clear_errors(client: TestClient) -> None:
    d = client.post(f"/api/journeys/{JID}/draft", json={"yaml": "id: x\n  steps: [\n"}).json()
    assert not d["valid"] and "not valid YAML" in d["errors"][0]["message"]
    r = client.post(f"/api/journeys/{JID}/draft", content=b"{not json")
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    assert client.get("/api/journeys/nope").status_code == 404
    r = client.post(f"/api/journeys/{JID}/backtest", json={"events": "/etc/passwd"})
    assert r.status_code == 400 and "not one of the events files" in r.json()["error"]


def test_publish_pause_resume_rollback_and_history(client: TestClient, folder: Path) -> None:
    _draft_with(client, "1h")
    r = client.post(f"/api/journeys/{JID}/publish", headers={"X-Segue-User": "ana"})
    assert r.json() == {"journey": JID, "action": "publish", "version": 2, "who": "ana"}
    loaded = {j.id: j for _, j in load_dir(folder)[0]}  # what the flow loads
    assert loaded[JID].version == 2 and loaded[JID].steps["wait_24h"].duration == 3_600_000
    assert not (folder / ".studio" / "drafts" / f"{JID}.yaml").exists()

    assert client.post(f"/api/journeys/{JID}/pause").json()["version"] == 2
    assert {j.id: j for _, j in load_dir(folder)[0]}[JID].status == "paused"
    assert client.post(f"/api/journeys/{JID}/pause").status_code == 400  # already paused
    client.post(f"/api/journeys/{JID}/resume")
    assert {j.id: j for _, j in load_dir(folder)[0]}[JID].status == "active"

    diff = client.get(f"/api/journeys/{JID}/diff?a=1&b=2").json()["diff"]
    assert "-version: 1" in diff and "+version: 2" in diff and "duration: 1h" in diff

    assert client.post(f"/api/journeys/{JID}/rollback", json={}).json()["version"] == 1
    assert {j.id: j for _, j in load_dir(folder)[0]}[JID].version == 1
    # a rolled-back version number is never reused: the next publish is v3
    _draft_with(client, "2h")
    assert client.post(f"/api/journeys/{JID}/publish").json()["version"] == 3
    versions = [v["version"] for v in client.get(f"/api/journeys/{JID}").json()["versions"]]
    assert versions == [3, 2, 1]
    audit = [(a["action"], a["version"], a["who"])
             for a in client.get("/api/audit").json()["audit"]]
    assert audit[0] == ("publish", 2, "ana")
    assert [a[0] for a in audit] == ["publish", "pause", "resume", "rollback", "publish"]
    assert all(a[2] for a in audit)


def test_publish_refuses_what_the_folder_would_not_load(client: TestClient) -> None:
    doc = client.post(f"/api/journeys/{JID}/draft", json={}).json()["doc"]
    doc["steps"]["done"] = {"type": "goto", "journey": "no-such-journey"}
    client.post(f"/api/journeys/{JID}/draft", json={"doc": doc})
    r = client.post(f"/api/journeys/{JID}/publish")
    assert r.status_code == 400 and "unknown journey 'no-such-journey'" in r.json()["error"]


def test_new_journey_publishes_as_version_one(client: TestClient, folder: Path) -> None:
    assert client.post("/api/journeys", json={"id": "welcome-series"}).status_code == 201
    assert client.post("/api/journeys", json={"id": "Bad Id"}).status_code == 400
    assert client.post("/api/journeys", json={"id": JID}).status_code == 400
    assert client.post("/api/journeys/welcome-series/publish").json()["version"] == 1
    assert {j.id: j for _, j in load_dir(folder)[0]}["welcome-series"].version == 1


def test_backtest_compares_draft_and_current_on_the_same_events(client: TestClient,
                                                                 replayed: dict) -> None:
    _draft_with(client, "1h")
    b = client.post(f"/api/journeys/{JID}/backtest", json={}).json()
    cur, dr = b["current"], b["draft"]
    assert (cur["version"], dr["version"]) == (1, 2)
    # the current side is exactly what a plain replay of the folder gives
    assert cur["counts"]["nodes"]["reminder"]["visits"] == replayed["visits"][(JID, "reminder")]
    # the same customers enter (the trigger did not change); re-entries may differ
    assert cur["counts"]["entered_customers"] == dr["counts"]["entered_customers"]
    # an hour instead of a day: reminders reach customers before they buy
    assert dr["counts"]["nodes"]["reminder"]["visits"] != cur["counts"]["nodes"]["reminder"][
        "visits"]
    assert b["customers_changed"] > 0 and b["changed"]
    for c in b["changed"]:
        assert c["current"] != c["draft"]
    assert sum(dr["sends_by_channel"].values()) > 0


def test_token_is_required_when_configured(folder: Path, events: Path) -> None:
    c = TestClient(create_app(Studio(folder, Settings(), [str(events)], None, "s3cret")))
    assert c.get("/api/journeys").status_code == 401
    assert c.get("/").status_code == 401
    assert c.get("/api/journeys", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/journeys", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    r = c.get("/?token=s3cret", follow_redirects=False)
    assert r.status_code == 303
    assert c.get("/api/journeys").status_code == 200  # the cookie it set
    r = c.post(f"/api/journeys/{JID}/pause")
    assert r.json()["who"] == "token holder"


def test_studio_refuses_to_listen_beyond_loopback_without_a_token(folder: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "segue.cli", "studio", "--journeys", str(folder),
                        "--host", "0.0.0.0"], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 2
    assert "give --token" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "segue.cli", "studio", "--journeys",
                        str(folder / "nope")], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 2 and "no such folder" in r.stderr


def test_dashboard_without_a_broker_says_so(client: TestClient) -> None:
    assert "start Studio with --brokers" in client.get("/api/dashboard").json()["error"]


def test_split_arms_carry_lift_interval_and_verdict(tmp_path: Path) -> None:
    """A split's node shows each arm's result from the version's newest analytics total."""
    from tests.unit.test_analytics import _events

    folder = tmp_path / "journeys"
    shutil.copytree(ROOT / "tests" / "journeys-analytics", folder)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in _events()))
    settings = Settings(analytics={"every_s": 600})
    c = TestClient(create_app(Studio(folder, settings, [str(events)], None, None)))
    counts = c.get("/api/journeys/ab-real").json()["counts"]["1"]
    replay(settings, folder, events, tmp_path / "out", state_dir=tmp_path / "state")
    latest = [orjson.loads(x) for x in (tmp_path / "out" / "analytics.jsonl").read_bytes()
              .splitlines()]
    newest = [r for r in latest if r["type"] == "analytics.journey"
              and r["journey"]["id"] == "ab-real"][-1]
    assert counts["split"] == newest["split"]
    arms = {a["variant"]: a for a in counts["split"]}
    assert arms["treatment"]["vs_control"]["verdict"] == "significant"
    assert arms["treatment"]["vs_control"]["lift"] > 0 and arms["treatment"]["vs_control"]["ci"]
    assert counts["nodes"]["split"]["customers"] == counts["entered_customers"]


def test_an_invalid_file_in_the_folder_is_listed_not_fatal(folder: Path, events: Path) -> None:
    (folder / "broken.yaml").write_text("id: broken\nversion: 1\nentry: {event: X}\n"
                                        "start: a\nsteps: {a: {type: wait}}\n")
    c = TestClient(create_app(Studio(folder, Settings(), [str(events)], None, None)))
    d = c.get("/api/journeys").json()
    assert any(e.startswith(f"{folder / 'broken.yaml'}:") for e in d["errors"])
    assert "failed" in d["counts_source"]  # no counts from a folder the flow would not load
    assert JID in {j["id"] for j in d["journeys"]}
    _draft_with(c, "1h")
    r = c.post(f"/api/journeys/{JID}/publish")
    assert r.status_code == 400 and "broken.yaml" in r.json()["error"]
