"""Segue Studio's web app: the HTTP API and the page (``segue studio``).

Every action of the page is an API call here, so what the browser can do, a script can do:

- ``GET /api/journeys``: every journey, its status, version, draft and numbers;
- ``GET /api/journeys/{id}``: the current version, the draft, the canvas graph, node counts
  per version, versions;
- ``POST /api/journeys/{id}/draft`` (``{"yaml": …}`` or ``{"doc": …}``): keep and validate
  the draft; ``DELETE`` discards it; ``POST /api/journeys`` (``{"id": …}``) starts a new one;
- ``POST /api/journeys/{id}/backtest`` (``{"events": FILE}``): current vs draft;
- ``POST /api/journeys/{id}/publish|pause|resume|rollback`` (rollback: ``{"version": N}``);
- ``GET /api/journeys/{id}/diff?a=N&b=M``, ``GET /api/audit``;
- ``GET /api/dashboard`` (a snapshot) and ``GET /api/live`` (server-sent events).

Access: with a token (required when bound beyond loopback) every request carries it, as
``Authorization: Bearer …`` or the cookie the page sets from ``/?token=…``.
"""

from __future__ import annotations

import asyncio
import getpass
import hmac
import ipaddress
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import yaml
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from models.settings import Settings
from segue.replay import replay
from segue.studio import graph
from segue.studio.backtest import backtest, events_from_topic
from segue.studio.counts import JourneyCounts
from segue.studio.live import LiveView
from segue.studio.workspace import Checked, StudioError, Workspace

STATIC = Path(__file__).parent / "static"
COOKIE = "segue_studio_token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _JSON(JSONResponse):
    def render(self, content: object) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def _error(message: str, status: int = 400) -> Response:
    return _JSON({"error": message}, status_code=status)


def _checked(c: Checked | None) -> dict | None:
    if c is None:
        return None
    return {"yaml": c.text, "doc": c.doc, "errors": c.errors, "valid": c.journey is not None,
            "version": c.journey.version if c.journey else (c.doc or {}).get("version"),
            "graph": graph.build(c.doc) if isinstance(c.doc, dict) else None}


class Studio:
    """The app's state: the workspace, the settings, the live view and the replay counts."""

    def __init__(self, journeys: str | Path, settings: Settings, events: list[str],
                 live: LiveView | None, token: str | None) -> None:
        self.ws = Workspace(journeys)
        self.settings = settings
        self.events = [str(e) for e in events]
        self.live = live
        self.token = token
        self._replay: tuple[tuple, JourneyCounts] | None = None
        self._replay_lock = threading.Lock()
        self.replay_error: str | None = None
        if self.events and self.live is None:  # ready by the time the page is first opened
            threading.Thread(target=self.replay_counts, name="studio-counts",
                             daemon=True).start()

    def who(self, request: Request) -> str:
        name = request.headers.get("x-segue-user", "").strip()[:80]
        if name:
            return name
        return "token holder" if self.token else f"local:{getpass.getuser()}"

    def replay_counts(self) -> JourneyCounts | None:
        """Node counts from a replay of the first events file over the folder as it is now
        (when no broker is given); made again when the folder changes."""
        if not self.events:
            return None
        sig = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.ws.folder.iterdir()
                           if p.suffix in (".yaml", ".yml")))
        with self._replay_lock:  # one replay at a time; the others wait for its counts
            return self._replay_for(sig)

    def _replay_for(self, sig: tuple) -> JourneyCounts:
        if self._replay is None or self._replay[0] != sig:
            import tempfile

            from operators.journeys import JourneyLoadError
            from segue.replay import ReplayError

            with tempfile.TemporaryDirectory(prefix="segue-studio-counts-") as tmp:
                try:
                    replay(self.settings, self.ws.folder, self.events[0], Path(tmp) / "out",
                           state_dir=Path(tmp) / "state")
                    counts, self.replay_error = JourneyCounts.from_replay(Path(tmp) / "out"), None
                except (JourneyLoadError, ReplayError, OSError) as e:
                    # e.g. an invalid file in the folder: no counts until it is fixed
                    counts, self.replay_error = JourneyCounts(), str(e).splitlines()[0]
                self._replay = (sig, counts)
        return self._replay[1]

    def counts_source(self) -> str:
        if self.live is not None:
            return "live: segue.journey-events and segue.analytics"
        if self.events:
            failed = f" (failed: {self.replay_error})" if self.replay_error else ""
            return f"replay of {Path(self.events[0]).name}{failed}"
        return "none (give --brokers or --events)"

    def versions(self, jid: str) -> dict[int, dict]:
        if self.live is not None:
            return self.live.versions(jid)
        counts = self.replay_counts()
        return counts.versions(jid) if counts else {}

    def totals(self, jid: str) -> dict:
        if self.live is not None:
            return self.live.totals(jid)
        counts = self.replay_counts()
        return counts.totals(jid) if counts else {}


def create_app(studio: Studio) -> Starlette:
    ws = studio.ws

    def journey_list() -> dict:
        rows = []
        files, errors = ws.scan()
        drafts = {p.stem for p in ws.drafts.glob("*.yaml")}
        for jid in sorted(set(files) | drafts):
            path, j = files.get(jid, (None, None))
            change = ws.last_change(jid)
            rows.append({
                "id": jid, "name": j.name if j else "", "file": path.name if path else None,
                "status": j.status if j else "draft", "version": j.version if j else None,
                "draft": jid in drafts, "stage": j.priority.stage if j else None,
                "target_conversion": j.target.conversion if j and j.target else None,
                "numbers": studio.totals(jid) if j else {},
                "last_change": change or ({"at_ms": int(path.stat().st_mtime * 1000),
                                           "action": "file modified", "who": None}
                                          if path else None)})
        return {"journeys": rows, "folder": str(ws.folder), "errors": errors,
                "counts_source": studio.counts_source(), "events": studio.events,
                "live": studio.live is not None,
                "events_topic": studio.settings.topics.events}

    async def list_journeys(request: Request) -> Response:
        return _JSON(await run_in_threadpool(journey_list))

    def journey_detail(jid: str) -> dict:
        files = ws.files()
        draft = ws.draft(jid)
        if jid not in files and draft is None:
            raise StudioError(f"no journey {jid!r}")
        current = None
        if jid in files:
            path, j = files[jid]
            text = path.read_text()
            doc = yaml.safe_load(text)
            current = {"file": path.name, "yaml": text, "version": j.version,
                       "status": j.status, "doc": doc, "graph": graph.build(doc)}
        return {"id": jid, "current": current, "draft": _checked(draft),
                "versions": ws.versions(jid), "counts": studio.versions(jid),
                "counts_source": studio.counts_source(), "next_version": ws.next_version(jid)}

    async def get_journey(request: Request) -> Response:
        jid = request.path_params["jid"]
        try:
            return _JSON(await run_in_threadpool(journey_detail, jid))
        except StudioError as e:
            return _error(str(e), 404)

    async def body(request: Request) -> dict:
        raw = await request.body()
        if not raw:
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise StudioError(f"the request body is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise StudioError("the request body must be a JSON object")
        return data

    async def save_draft(request: Request) -> Response:
        jid = request.path_params["jid"]
        try:
            data = await body(request)
            if "yaml" in data and isinstance(data["yaml"], str):
                c = ws.save_draft(jid, text=data["yaml"])
            elif "doc" in data and isinstance(data["doc"], dict):
                c = ws.save_draft(jid, doc=data["doc"])
            elif not data:
                c = ws.start_draft(jid)
            else:
                raise StudioError("give {'yaml': text} or {'doc': mapping}")
        except StudioError as e:
            return _error(str(e))
        return _JSON(_checked(c))

    async def discard_draft(request: Request) -> Response:
        jid = request.path_params["jid"]
        try:
            return _JSON({"discarded": ws.discard_draft(jid)})
        except StudioError as e:
            return _error(str(e))

    async def new_journey(request: Request) -> Response:
        try:
            data = await body(request)
            jid = str(data.get("id", "")).strip()
            return _JSON(_checked(ws.new_journey(jid, studio.who(request))), status_code=201)
        except StudioError as e:
            return _error(str(e))

    def topic_backtest(jid: str, hours: object) -> dict:
        """A backtest on the last ``hours`` of the events topic (Kafka time)."""
        import tempfile

        if studio.live is None:
            raise StudioError("no broker: start Studio with --brokers to backtest on the "
                              "events topic")
        try:
            h = float(hours)  # type: ignore[arg-type]
        except (TypeError, ValueError) as e:
            raise StudioError(f"hours: {hours!r} is not a number") from e
        if not h > 0:
            raise StudioError("hours: must be above 0")
        topic = studio.settings.topics.events
        with tempfile.TemporaryDirectory(prefix="segue-backtest-topic-") as tmp:
            path = Path(tmp) / "events.jsonl"
            n = events_from_topic(studio.live.brokers, topic,
                                  int(time.time() * 1000 - h * 3_600_000), path)
            if n == 0:
                raise StudioError(f"{topic} has no events in the last {h:g} h")
            result = backtest(ws, studio.settings, jid, path)
        result["events"] = f"{topic}, last {h:g} h ({n:,} events)"
        return result

    async def run_backtest(request: Request) -> Response:
        jid = request.path_params["jid"]
        try:
            data = await body(request)
            if data.get("hours") is not None:
                result = await run_in_threadpool(topic_backtest, jid, data["hours"])
            else:
                events = data.get("events") or (studio.events[0] if studio.events else None)
                if not events:
                    raise StudioError("no events file: start Studio with --events FILE, or "
                                      "with --brokers to backtest on the events topic")
                if str(events) not in studio.events:
                    raise StudioError(f"{events}: not one of the events files Studio was "
                                      f"started with ({', '.join(studio.events)})")
                result = await run_in_threadpool(backtest, ws, studio.settings, jid, events)
        except StudioError as e:
            return _error(str(e))
        return _JSON(result)

    def action(name: str):  # noqa: ANN202
        async def handler(request: Request) -> Response:
            jid = request.path_params["jid"]
            who = studio.who(request)
            try:
                data = await body(request)
                if name == "publish":
                    v = ws.publish(jid, who)
                elif name == "pause":
                    v = ws.set_status(jid, "paused", who)
                elif name == "resume":
                    v = ws.set_status(jid, "active", who)
                else:
                    to = data.get("version")
                    v = ws.rollback(jid, who, int(to) if to is not None else None)
            except (StudioError, ValueError) as e:
                return _error(str(e))
            return _JSON({"journey": jid, "action": name, "version": v, "who": who})
        return handler

    async def diff(request: Request) -> Response:
        jid = request.path_params["jid"]
        try:
            a, b = int(request.query_params["a"]), int(request.query_params["b"])
            return _JSON({"diff": ws.diff(jid, a, b)})
        except (KeyError, ValueError):
            return _error("give ?a=VERSION&b=VERSION")
        except StudioError as e:
            return _error(str(e), 404)

    async def audit(request: Request) -> Response:
        return _JSON({"audit": ws.audit()[-500:]})

    def dashboard_snapshot() -> dict:
        if studio.live is None:
            return {"error": "no broker: start Studio with --brokers to see the live "
                             "dashboard"}
        return studio.live.figures()

    async def dashboard(request: Request) -> Response:
        return _JSON(dashboard_snapshot())

    async def live(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            while True:
                snap = await run_in_threadpool(dashboard_snapshot)
                snap["sent_at_ms"] = int(time.time() * 1000)
                yield b"data: " + orjson.dumps(snap, option=orjson.OPT_NON_STR_KEYS) + b"\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(2)
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def index(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None and studio.token and hmac.compare_digest(token.encode(),
                                                                     studio.token.encode()):
            r = RedirectResponse("/", status_code=303)
            r.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return r
        return FileResponse(STATIC / "index.html")

    routes = [
        Route("/", index),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Route("/api/journeys", list_journeys),
        Route("/api/journeys", new_journey, methods=["POST"]),
        Route("/api/journeys/{jid}", get_journey),
        Route("/api/journeys/{jid}/draft", save_draft, methods=["POST"]),
        Route("/api/journeys/{jid}/draft", discard_draft, methods=["DELETE"]),
        Route("/api/journeys/{jid}/backtest", run_backtest, methods=["POST"]),
        *[Route(f"/api/journeys/{{jid}}/{n}", action(n), methods=["POST"])
          for n in ("publish", "pause", "resume", "rollback")],
        Route("/api/journeys/{jid}/diff", diff),
        Route("/api/audit", audit),
        Route("/api/dashboard", dashboard),
        Route("/api/live", live),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(TokenGate, studio=studio)])


class TokenGate:
    """Refuses every request without the token, when Studio has one."""

    def __init__(self, app, studio: Studio) -> None:  # noqa: ANN001
        self.app, self.studio = app, studio

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        token = self.studio.token
        if scope["type"] != "http" or not token:
            return await self.app(scope, receive, send)
        request = Request(scope)
        given = request.cookies.get(COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if request.url.path == "/" and "token" in request.query_params:
            given = request.query_params["token"]
        if hmac.compare_digest(given.encode(), token.encode()):
            return await self.app(scope, receive, send)
        if request.url.path.startswith("/api/"):
            response = _error("a token is required: send 'Authorization: Bearer <token>' "
                              "(the one given to segue studio --token)", 401)
        else:
            response = Response("Segue Studio needs its token: open /?token=<token> (the one "
                                "given to segue studio --token).\n", status_code=401,
                                media_type="text/plain")
        await response(scope, receive, send)
