"""The journeys a flow runs: the folder's files (reloaded when they change), their versions,
and the built-in always-on next-best-action journey."""


from __future__ import annotations

import threading
import time as _time
from pathlib import Path
from typing import Any

from models.journey import (
    Journey,
    load_dir,
)
from models.settings import NbaSettings
from state.journey_versions import JourneyVersions, VersionConflict

STAGE_PRIORITY = ("at-risk", "win-back", "activation", "retention", "expansion", "advocacy",
                  "consideration", "awareness")


class JourneyLoadError(Exception):
    """The journeys folder has invalid files; the message lists them."""


class JourneyRegistry:
    """The journeys of a folder: the newest version per id is the one new entries get.

    Reloaded when files change (``maybe_reload``); an invalid folder on reload keeps the last
    good definitions running and records the errors.
    """

    def __init__(self, folder: str | Path | None, archive: str | Path | None = None,
                 poll_s: float = 2.0, builtin: list[Journey] | None = None) -> None:
        self.folder = Path(folder) if folder else None
        self.builtin = list(builtin or [])  # from settings (always-on NBA), not from files
        self.versions = JourneyVersions(archive)
        self.poll_s = poll_s
        self.current: dict[str, Journey] = {}
        self._active: list[Journey] = []
        self._by_event: dict[str, list[Journey]] = {}
        self._always: list[Journey] = []
        self.errors: list[str] = []
        self.generation = 0
        self._signature: tuple = ()
        self._checked = 0.0
        self._lock = threading.RLock()
        if self.folder is not None:
            errors = self._load()
            if errors:
                raise JourneyLoadError("\n".join(errors))
        elif self.builtin:
            self._install([])

    @classmethod
    def of(cls, journeys: list[Journey]) -> JourneyRegistry:
        reg = cls(None)
        reg._install(journeys)
        return reg

    def _folder_signature(self) -> tuple:
        assert self.folder is not None
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                                for p in self.folder.iterdir() if p.suffix in (".yaml", ".yml")))
        except OSError:
            return ()

    def _load(self) -> list[str]:
        assert self.folder is not None
        sig = self._folder_signature()
        loaded, errors = load_dir(self.folder)
        if errors:
            self._signature = sig
            self.errors = errors
            return errors
        try:
            self._install([j for _, j in loaded])
        except VersionConflict as e:
            self.errors = [str(e)]
            self._signature = sig
            return self.errors
        self._signature = sig
        self.errors = []
        return []

    def _install(self, journeys: list[Journey]) -> None:
        journeys = [*journeys, *self.builtin]
        newest: dict[str, Journey] = {}
        for j in journeys:
            self.versions.add(j)
            if j.id not in newest or j.version > newest[j.id].version:
                newest[j.id] = j
        active = sorted((j for j in newest.values() if j.status == "active"), key=priority_key)
        by_event: dict[str, list[Journey]] = {}
        for j in active:
            for name in j.entry.events():
                by_event.setdefault(name, []).append(j)
        with self._lock:
            self.current = newest
            self._active = active
            self._by_event = by_event
            self._always = [j for j in active if not j.entry.events()]
            self.generation += 1

    def maybe_reload(self) -> bool:
        """Re-read the folder if its files changed (at most every ``poll_s``)."""
        if self.folder is None:
            return False
        now = _time.monotonic()
        if now - self._checked < self.poll_s:
            return False
        with self._lock:  # one worker thread reloads; the others see the result
            if now - self._checked < self.poll_s:
                return False
            self._checked = now
            if self._folder_signature() == self._signature:
                return False
            before = self.generation
            self._load()
            return self.generation != before

    def spec(self, jid: str, version: int) -> Journey | None:
        return self.versions.get(jid, version)

    def status(self, jid: str) -> str:
        j = self.current.get(jid)
        return j.status if j is not None else "removed"

    def entries(self) -> list[Journey]:
        """Active journeys, in conflict-priority order."""
        return self._active

    def entries_for(self, event_key: str) -> list[Journey]:
        """Active journeys this event may start: its trigger's, and condition-only ones."""
        triggered = self._by_event.get(event_key, [])
        if not self._always:
            return triggered
        return sorted([*triggered, *self._always], key=priority_key)


ALWAYS_ON = "nba-always-on"


def always_on_journey(nba: NbaSettings) -> Journey | None:
    """The always-on next-best-action mode as a built-in journey: entered on the trigger
    events (when the condition holds), one ``nba`` step over the inventory, re-entered at
    most every ``nba.always_on.every``."""
    ao = nba.always_on
    if ao is None:
        return None
    return Journey.model_validate({
        "id": ALWAYS_ON, "name": "Always-on next best action", "version": 1,
        "priority": {"stage": ao.priority_stage, "value": 0},
        "entry": {"event": list(ao.events), "when": ao.when,
                  "reentry": {"after": f"{ao.every}s"}},
        "start": "decide", "steps": {"decide": {"type": "nba"}},
    })


def journey_registry(settings: Any, journeys_dir: str | Path | None,
                     archive: str | Path | None) -> JourneyRegistry | None:
    """The registry a flow runs: the folder's journeys plus the built-in ones the settings
    ask for (always-on NBA); None when there are none."""
    builtin = [j for j in (always_on_journey(settings.nba),) if j is not None]
    if journeys_dir is None and not builtin:
        return None
    return JourneyRegistry(journeys_dir, archive=archive, builtin=builtin)


def priority_key(j: Journey) -> tuple:
    return (STAGE_PRIORITY.index(j.priority.stage), -j.priority.value, j.id)
