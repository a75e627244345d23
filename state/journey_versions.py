"""Every journey version the flow has ever run, kept under ``<state-dir>/journey-versions/``.

Customers in flight stay on the version they entered, even after its file is edited, rolled
back or deleted; so each version's spec is archived the first time it is loaded, and a
version's content may never change afterwards (bump ``version`` instead).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from models.journey import Journey


class VersionConflict(Exception):
    """A file redefines an archived version with different content."""


class JourneyVersions:
    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder) if folder else None
        self._mem: dict[tuple[str, int], Journey] = {}
        if self.folder and self.folder.is_dir():
            for f in sorted(self.folder.glob("*.json")):
                j = Journey.model_validate(json.loads(f.read_text()))
                self._mem[(j.id, j.version)] = j

    def get(self, jid: str, version: int) -> Journey | None:
        return self._mem.get((jid, version))

    def add(self, j: Journey) -> None:
        key = (j.id, j.version)
        old = self._mem.get(key)
        if old is not None:
            if old.fingerprint() != j.fingerprint():
                raise VersionConflict(
                    f"{j.id} version {j.version} already ran with different content; "
                    f"give the changed journey a new version number")
            return
        self._mem[key] = j
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{j.id}@{j.version}.json.tmp"
            tmp.write_text(json.dumps(j.model_dump(mode="json"), sort_keys=True))
            os.replace(tmp, self.folder / f"{j.id}@{j.version}.json")
