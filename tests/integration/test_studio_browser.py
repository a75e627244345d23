"""Segue Studio in a real browser: headless Debian Chromium driven by Playwright, against
``segue studio`` started as a user starts it (a subprocess of the CLI).

What a person does: open a journey and read its node counts, change a wait by clicking and
typing, see a bad condition refused at its field, backtest the draft against the current
version, publish and watch a running ``segue run`` put new customers on the new version, and
watch the live dashboard update. Each screen is written to ``build/studio-screenshots/``.

Chromium is not optional here: without it these tests fail (``make test`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml

from flows.topics import free_port
from models.settings import Settings
from segue.kafka_io import consume_all, event_records, produce_records
from segue.replay import replay
from tests.conftest import ROOT, Job, wait_for

pytestmark = pytest.mark.integration

JID = "abandoned-cart"
SHOTS = ROOT / "build" / "studio-screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own probe starts it: no sandbox as root, and no background connections
# (the network is closed; Chromium would retry them many at a time).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed; `make test` installs it "
                    "(apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def _page(browser, url: str):  # noqa: ANN001, ANN202
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(url)
    return page


def _shot(page, name: str) -> None:  # noqa: ANN001
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


class StudioProcess:
    def __init__(self, *args: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "segue.cli", "studio", "--port", str(self.port), *args],
            cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"segue studio exited:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/journeys", timeout=30) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(up, 90, 0.3, "segue studio to answer")

    def api(self, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.url}{path}", method="POST" if body is not None
                                     else "GET", data=orjson.dumps(body) if body is not None
                                     else None, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return orjson.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ----- offline: counts, editing, validation, backtest --------------------------------------
@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    tmp = tmp_path_factory.mktemp("studio-offline")
    folder = tmp / "journeys"
    shutil.copytree(ROOT / "journeys", folder)
    events = tmp / "events.jsonl"
    subprocess.run([sys.executable, "-m", "segue.cli", "simulate", "--customers", "400",
                    "--events", "6000", "--seed", "5", "--out", str(events)], check=True,
                   cwd=ROOT, capture_output=True)
    studio = StudioProcess("--journeys", str(folder), "--events", str(events),
                           log=tmp / "studio.log")
    yield studio, folder, events
    studio.stop()


def _independent_counts(events: Path, tmp: Path) -> dict:
    replay(Settings(), ROOT / "journeys", events, tmp / "out", state_dir=tmp / "state")
    customers: dict[str, set] = defaultdict(set)
    visits: Counter = Counter()
    for line in (tmp / "out" / "journey-events.jsonl").read_bytes().splitlines():
        r = orjson.loads(line)
        if r["journey"]["id"] == JID and r["type"] == "journey.step":
            customers[r["journey"]["node"]].add(r["customer_id"])
            visits[r["journey"]["node"]] += 1
    return {n: (len(c), visits[n]) for n, c in customers.items()}


def _node_counts(page, node: str) -> str:  # noqa: ANN001
    return page.locator(f'#graph [data-node="{node}"] .counts').text_content() or ""


def test_open_a_journey_and_see_its_node_counts(browser, offline, tmp_path: Path) -> None:  # noqa: ANN001
    studio, _, events = offline
    expected = _independent_counts(events, tmp_path)
    page = _page(browser, f"{studio.url}/")
    page.wait_for_selector(f'#journeys tr[data-journey="{JID}"]')
    _shot(page, "01-journeys")
    page.click(f'#journeys a[href="#/j/{JID}"]')
    page.wait_for_selector('#graph [data-node="reminder"]')
    for node in ("wait_24h", "reminder", "wait_48h", "discount"):
        customers, visits = expected[node]
        assert _node_counts(page, node).startswith(f"{customers:,} customers · {visits:,} "
                                                   "visits")
    page.click('#graph [data-node="reminder"]')
    table = page.locator("#node-counts").inner_text()
    assert f"customers\t{expected['reminder'][0]}" in table
    _shot(page, "02-journey-canvas")
    assert page.errors == []


def _start_draft(studio: StudioProcess, folder: Path, duration: str | None = None) -> None:
    (folder / ".studio" / "drafts" / f"{JID}.yaml").unlink(missing_ok=True)
    doc = studio.api(f"/api/journeys/{JID}/draft", {})["doc"]
    if duration:
        doc["steps"]["wait_24h"]["duration"] = duration
        studio.api(f"/api/journeys/{JID}/draft", {"doc": doc})


def test_change_a_wait_duration_by_clicking_and_typing(browser, offline) -> None:  # noqa: ANN001
    studio, folder, _ = offline
    (folder / ".studio" / "drafts" / f"{JID}.yaml").unlink(missing_ok=True)
    page = _page(browser, f"{studio.url}/#/j/{JID}")
    page.click("#edit")
    page.wait_for_selector("#draft-pill")
    page.click('#graph [data-node="wait_24h"]')
    field = page.locator('[data-field="steps.wait_24h.duration"] input')
    assert field.input_value() == "24h"
    field.click()
    field.fill("")
    field.type("1h")
    page.wait_for_function("document.querySelector('#yaml').value.includes('duration: 1h')")
    page.wait_for_function("document.querySelector('#graph [data-node=\"wait_24h\"] .text')"
                           ".textContent === '1h'")
    draft = yaml.safe_load((folder / ".studio" / "drafts" / f"{JID}.yaml").read_text())
    assert draft["steps"]["wait_24h"]["duration"] == "1h"
    assert draft["version"] == 2
    # the live file is not touched before publish
    assert yaml.safe_load((folder / f"{JID}.yaml").read_text())["version"] == 1
    _shot(page, "03-edit-wait")
    assert page.errors == []


def test_a_bad_condition_is_shown_at_its_field(browser, offline) -> None:  # noqa: ANN001
    studio, folder, _ = offline
    _start_draft(studio, folder)
    page = _page(browser, f"{studio.url}/#/j/{JID}")
    page.wait_for_selector("#draft-pill")
    page.click('#graph [data-node="@entry"]')
    cond = page.locator('[data-field="entry.when"] input')
    cond.click()
    cond.type("traits.plan ==")
    err = page.locator('[data-field="entry.when"] .err')
    err.wait_for()
    assert "invalid condition 'traits.plan =='" in err.inner_text()
    page.wait_for_selector("#yaml-errors .errors")
    assert f"{JID}.yaml (draft):" in page.locator("#yaml-errors").inner_text()
    assert ": entry.when: invalid condition" in page.locator("#yaml-errors").inner_text()
    assert page.locator("#publish").is_disabled()
    _shot(page, "04-validation-error")
    cond.fill("traits.plan == 'pro'")
    page.wait_for_selector("#yaml-errors .ok")
    assert page.locator('[data-field="entry.when"] .err').count() == 0
    assert page.locator("#publish").is_enabled()
    assert page.errors == []


def test_backtest_shows_the_two_versions_counts_differ(browser, offline) -> None:  # noqa: ANN001
    studio, folder, _ = offline
    _start_draft(studio, folder, "1h")
    page = _page(browser, f"{studio.url}/#/j/{JID}")
    page.wait_for_selector("#draft-pill")
    page.click('[data-tab="backtest"]')
    page.click("#run-backtest")
    page.wait_for_selector("#backtest-steps", timeout=120_000)
    cells = page.locator('#backtest-steps tr[data-step="reminder"] td').all_inner_texts()
    # step, v1 customers, v1 visits, draft customers, draft visits, change
    assert cells[0] == "reminder"
    assert cells[2] != cells[4], cells  # visits differ: reminders an hour after the cart
    changed = page.locator("#backtest-customers tr").count() - 1
    assert changed > 0
    heads = page.locator("#backtest-steps th").all_inner_texts()
    assert "v1 visits" in heads and "draft v2 visits" in heads
    _shot(page, "05-backtest")
    assert page.errors == []


# ----- live: publish to a running flow, and the dashboard ---------------------------------
def _track(cid: str, event: str = "Product Added") -> dict:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"type": "track", "messageId": f"m-{cid}-{event}", "timestamp": now,
            "userId": cid, "event": event, "properties": {"product_id": "p1", "price": 10}}


def _entered(job: Job) -> dict[str, int]:
    recs = [orjson.loads(m.value()) for m in consume_all(job.broker.bootstrap,
                                                         job.topics.journey_events, 10)]
    return {r["customer_id"]: r["journey"]["version"] for r in recs
            if r["type"] == "journey.entered"}


def test_publish_and_a_running_flow_uses_the_new_version(browser, broker, tmp_path: Path) -> None:  # noqa: ANN001
    job = Job(broker, tmp_path)
    folder = tmp_path / "journeys"
    folder.mkdir()
    shutil.copy(ROOT / "journeys" / f"{JID}.yaml", folder)
    run = job.start_run("--journeys", str(folder))
    studio = StudioProcess("--journeys", str(folder), "--brokers", broker.bootstrap,
                           "--config", str(job.config), "--since", "all",
                           log=tmp_path / "studio.log")
    try:
        produce_records(broker.bootstrap, job.topics.events, event_records([_track("pub-a")]))
        wait_for(lambda: _entered(job).get("pub-a"), 90, 0.5, "pub-a to enter v1")
        assert _entered(job)["pub-a"] == 1

        page = _page(browser, f"{studio.url}/#/j/{JID}")
        # live counts: pub-a is on the entry and the first wait of v1
        page.wait_for_function("(document.querySelector('#graph [data-node=\"@entry\"] .counts')"
                               "||{}).textContent === '1 customers · 1 entries'", timeout=30_000)
        page.click("#edit")
        page.wait_for_selector("#draft-pill")
        page.click('#graph [data-node="wait_24h"]')
        field = page.locator('[data-field="steps.wait_24h.duration"] input')
        field.fill("2h")
        page.wait_for_function("document.querySelector('#yaml').value.includes('duration: 2h')")
        page.wait_for_function("!document.querySelector('#publish').disabled")
        page.click("#publish")
        page.wait_for_selector("#edit")  # back to the current version, now v2
        assert "v2 active" in page.locator(".toolbar .pill").first.inner_text()
        assert yaml.safe_load((folder / f"{JID}.yaml").read_text())["version"] == 2
        _shot(page, "06-published")

        # New customers get v2 once the running flow reloads the folder (within seconds);
        # pub-a stays on v1.
        n = 0

        def on_v2() -> bool:
            nonlocal n
            n += 1
            produce_records(broker.bootstrap, job.topics.events,
                            event_records([_track(f"pub-b{n}")]))
            time.sleep(1.5)
            return 2 in _entered(job).values()
        wait_for(on_v2, 90, 0.1, "a new customer on v2")
        entered = _entered(job)
        assert entered["pub-a"] == 1
        # once one new customer got v2, every later one did too
        first = min(i for i in range(1, n + 1) if entered.get(f"pub-b{i}") == 2)
        assert all(entered[f"pub-b{i}"] == 2 for i in range(first, n + 1))

        # a backtest on the last hour of the events topic: what the flow has read so far
        doc = studio.api(f"/api/journeys/{JID}/draft", {})["doc"]
        doc["steps"]["wait_24h"]["duration"] = "30m"
        studio.api(f"/api/journeys/{JID}/draft", {"doc": doc})
        b = studio.api(f"/api/journeys/{JID}/backtest", {"hours": 1})
        assert (b["current"]["version"], b["draft"]["version"]) == (2, 3)
        assert b["draft"]["events"] == n + 1  # pub-a and every pub-b
        assert b["current"]["counts"]["entered_customers"] == n + 1
        (folder / ".studio" / "drafts" / f"{JID}.yaml").unlink()  # no draft left

        # the page's version history records who published
        page.reload()
        page.click('[data-tab="history"]')
        page.wait_for_selector("#versions")
        assert "publish" in page.locator("#versions").inner_text()

        # the live dashboard updates by itself as the flow works (no reload)
        dash = _page(browser, f"{studio.url}/#/dashboard")
        dash.wait_for_function(f"document.querySelector('#dash-journeys') && document"
                               f".querySelector('#dash-journeys').innerText.includes('{JID}')",
                               timeout=30_000)
        before = int(dash.locator("#records-read").inner_text().replace(",", ""))
        produce_records(broker.bootstrap, job.topics.events,
                        event_records([_track(f"pub-c{i}") for i in range(3)]))
        # three entries and their first steps, read from the topics and pushed to the page
        dash.wait_for_function(
            "Number(document.querySelector('#records-read').textContent.replace(/,/g, '')) "
            f">= {before + 6}", timeout=60_000)
        _shot(dash, "07-live-dashboard")
        assert page.errors == [] and dash.errors == []
    finally:
        studio.stop()
        run.terminate()
        try:
            run.wait(20)
        except subprocess.TimeoutExpired:
            run.kill()
