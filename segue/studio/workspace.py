"""The journeys folder as Studio sees it: the live files, drafts, version history and audit.

The folder stays what the flow reads (``segue run --journeys DIR`` reloads it within
seconds): Studio writes a journey file only when a person publishes, pauses, resumes or rolls
back. Everything else lives in ``DIR/.studio/``, which the flow never reads (it loads
``DIR/*.yaml`` only):

- ``drafts/<id>.yaml``: the draft being edited (any text, valid or not);
- ``history/<id>@v<N>.yaml``: every version Studio has seen or published, as its text;
- ``audit.jsonl``: who published, paused, resumed or rolled back what, and when.

A version's content never changes once published (the flow refuses that: customers in
flight stay on the version they entered), so a publish always takes the next version
number, and a rollback republishes an older version's text as it was.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from models.journey import SCHEMA_COMMENT, Journey, JourneyFileError, load_dir, load_journey


class StudioError(Exception):
    """An action Studio refuses; the message says why (shown to the person as it is)."""


@dataclass(frozen=True)
class Checked:
    """A journey text after validation: the journey when valid, else the problems."""

    text: str
    doc: dict | None  # the parsed mapping (also when it does not validate)
    journey: Journey | None
    errors: list[dict]  # {line, field, message, text: 'file:line: field: message'}


_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>[^:]+): (?P<message>.*)$")


def _parse_errors(message: str, name: str) -> list[dict]:
    out = []
    for line in message.splitlines():
        m = _ERROR.match(line)
        if m is None:
            plain = line.split(": ", 1)[-1]
            out.append({"line": None, "field": None, "message": plain,
                        "text": f"{name}: {plain}"})
            continue
        if m["field"] == "not valid YAML":
            out.append({"line": int(m["line"]), "field": None,
                        "message": f"not valid YAML: {m['message']}",
                        "text": f"{name}:{m['line']}: not valid YAML: {m['message']}"})
            continue
        out.append({"line": int(m["line"]), "field": m["field"], "message": m["message"],
                    "text": f"{name}:{m['line']}: {m['field']}: {m['message']}"})
    return out


def check_text(text: str, name: str) -> Checked:
    """Validate a journey's YAML with the loader the flow uses (errors as ``name:line``)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    with tempfile.TemporaryDirectory(prefix="segue-studio-") as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        try:
            j = load_journey(path)
        except JourneyFileError as e:
            msg = str(e).replace(str(path), name)
            return Checked(text, doc if isinstance(doc, dict) else None, None,
                           _parse_errors(msg, name))
    return Checked(text, doc, j, [])


def to_yaml(doc: dict) -> str:
    """A journey mapping as the YAML a person would write (field order kept)."""
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False,
                          width=100)
    return f"{SCHEMA_COMMENT}\n{body}"


def _with_version(text: str, version: int) -> str:
    """``text`` with its top-level ``version:`` set (comments and layout kept)."""
    new, n = re.subn(r"(?m)^version:\s*\S+", f"version: {version}", text, count=1)
    if n:
        return new
    return re.sub(r"(?m)^(id:.*)$", rf"\1\nversion: {version}", text, count=1)


def _with_status(text: str, status: str) -> str:
    new, n = re.subn(r"(?m)^status:\s*\S+", f"status: {status}", text, count=1)
    if n:
        return new
    return re.sub(r"(?m)^(version:.*)$", rf"\1\nstatus: {status}", text, count=1)


class Workspace:
    """One journeys folder: read it, keep drafts, publish, pause, resume, roll back."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise StudioError(f"{self.folder}: no such folder (give --journeys DIR)")
        self.meta = self.folder / ".studio"
        self.drafts = self.meta / "drafts"
        self.history = self.meta / "history"
        self.audit_path = self.meta / "audit.jsonl"
        for d in (self.drafts, self.history):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.snapshot_history()

    # ----- reading ------------------------------------------------------------------------
    def scan(self) -> tuple[dict[str, tuple[Path, Journey]], list[str]]:
        """The newest valid version of each journey in the folder with its file, and the
        folder's problems, from one reading."""
        loaded, errors = load_dir(self.folder)
        newest: dict[str, tuple[Path, Journey]] = {}
        for path, j in loaded:
            if j.id not in newest or j.version > newest[j.id][1].version:
                newest[j.id] = (path, j)
        return newest, errors

    def files(self) -> dict[str, tuple[Path, Journey]]:
        """The newest valid version of each journey in the folder, with its file."""
        return self.scan()[0]

    def current(self, jid: str) -> tuple[Path, Journey]:
        found = self.files().get(jid)
        if found is None:
            raise StudioError(f"no journey {jid!r} in {self.folder}")
        return found

    def snapshot_history(self) -> None:
        """Keep every version found in the folder in the history (its text as it is), so a
        rollback can republish it after its file is replaced."""
        for path, j in load_dir(self.folder)[0]:
            dest = self.history / f"{j.id}@v{j.version}.yaml"
            if not dest.exists():
                dest.write_text(_with_status(path.read_text(), "active"))

    def versions(self, jid: str) -> list[dict]:
        """Every version of a journey Studio knows, newest first, with who published it."""
        who = {(a["journey"], a.get("version")): a for a in self.audit()
               if a["action"] in ("publish", "rollback")}
        out = []
        for f in self.history.glob(f"{jid}@v*.yaml"):
            v = int(f.stem.rsplit("@v", 1)[1])
            a = who.get((jid, v))
            out.append({"version": v, "published_by": a["who"] if a else None,
                        "published_at": a["at"] if a else None,
                        "action": a["action"] if a else "found in the folder"})
        return sorted(out, key=lambda r: -r["version"])

    def version_text(self, jid: str, version: int) -> str:
        f = self.history / f"{jid}@v{version}.yaml"
        if not f.exists():
            raise StudioError(f"{jid} has no version {version}")
        return f.read_text()

    def diff(self, jid: str, a: int, b: int) -> str:
        """A unified diff from version ``a`` to version ``b``."""
        old, new = self.version_text(jid, a), self.version_text(jid, b)
        return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                            f"{jid} v{a}", f"{jid} v{b}"))

    def next_version(self, jid: str) -> int:
        known = [r["version"] for r in self.versions(jid)]
        found = self.files().get(jid)
        if found is not None:
            known.append(found[1].version)
        return max(known, default=0) + 1

    # ----- drafts -------------------------------------------------------------------------
    def _draft_path(self, jid: str) -> Path:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", jid):
            raise StudioError(f"{jid!r} is not a journey id (lower-case letters, digits, - _)")
        return self.drafts / f"{jid}.yaml"

    def draft(self, jid: str) -> Checked | None:
        p = self._draft_path(jid)
        if not p.exists():
            return None
        return check_text(p.read_text(), f"{jid}.yaml (draft)")

    def start_draft(self, jid: str) -> Checked:
        """The draft of a journey: the saved one, else the current version's text with the
        next version number."""
        found = self.draft(jid)
        if found is not None:
            return found
        path, j = self.current(jid)
        text = _with_version(path.read_text(), self.next_version(jid))
        return self.save_draft(jid, text=text)

    def save_draft(self, jid: str, *, text: str | None = None, doc: dict | None = None) -> Checked:
        """Keep a draft (from the YAML pane's text, or the forms' mapping) and validate it.
        The draft keeps its journey id and the next version number whatever was typed."""
        if (text is None) == (doc is None):
            raise StudioError("give the draft as text or as a document, not both")
        if doc is not None:
            doc = {**doc, "id": jid}
            doc.pop("status", None)
            text = to_yaml(doc)
        assert text is not None
        with self._lock:
            self._draft_path(jid).write_text(text)
        return check_text(text, f"{jid}.yaml (draft)")

    def discard_draft(self, jid: str) -> bool:
        p = self._draft_path(jid)
        if p.exists():
            p.unlink()
            return True
        return False

    def new_journey(self, jid: str, who: str) -> Checked:
        """A new journey's first draft: an entry, one send and an end."""
        if jid in self.files() or self._draft_path(jid).exists():
            raise StudioError(f"journey {jid!r} already exists")
        doc: dict[str, Any] = {
            "id": jid, "name": jid.replace("-", " ").capitalize(), "version": 1,
            "priority": {"stage": "activation", "value": 0},
            "entry": {"event": "Signed Up", "reentry": "never"},
            "goals": [], "start": "welcome",
            "steps": {"welcome": {"type": "send", "channel": "email", "template": "welcome",
                                  "next": "done"},
                      "done": {"type": "end"}}}
        self._audit(who, "new", jid, None)
        return self.save_draft(jid, doc=doc)

    # ----- publishing ---------------------------------------------------------------------
    def file_of(self, jid: str) -> str:
        """The name of the file that holds (or will hold) a journey."""
        found = self.files().get(jid)
        return found[0].name if found else f"{jid}.yaml"

    def copy_with(self, dest: Path, name: str | None = None, text: str | None = None) -> None:
        """The folder's journey files copied into ``dest``, file ``name`` replaced by
        ``text`` (for checking or replaying the folder as it would be)."""
        dest.mkdir(parents=True, exist_ok=True)
        for f in self.folder.iterdir():
            if f.suffix in (".yaml", ".yml") and f.name != name:
                (dest / f.name).write_text(f.read_text())
        if name is not None and text is not None:
            (dest / name).write_text(text)

    def _write_checked(self, path: Path, text: str) -> None:
        """Write a journey file only if the whole folder still loads with it (references
        between journeys, unique versions), atomically."""
        with tempfile.TemporaryDirectory(prefix="segue-studio-") as tmp:
            self.copy_with(Path(tmp), path.name, text)
            errors = load_dir(tmp)[1]
            if errors:
                raise StudioError("\n".join(e.replace(tmp + "/", "") for e in errors))
        tmp_path = path.with_name(f".{path.name}.tmp")
        tmp_path.write_text(text)
        os.replace(tmp_path, path)

    def release(self, jid: str, purpose: str) -> tuple[int, str]:
        """The draft as it would be published: (next version, its text, active); refused when
        there is no draft or it does not validate."""
        checked = self.draft(jid)
        if checked is None:
            raise StudioError(f"{jid} has no draft to {purpose}")
        if checked.journey is None:
            raise StudioError("the draft does not validate: "
                              + "; ".join(e["text"] for e in checked.errors))
        version = self.next_version(jid)
        return version, _with_status(_with_version(checked.text, version), "active")

    def publish(self, jid: str, who: str) -> int:
        """Make the draft the journey's newest version: the flow's new entries get it."""
        with self._lock:
            version, text = self.release(jid, "publish")
            path = self.folder / self.file_of(jid)
            self._write_checked(path, text)
            (self.history / f"{jid}@v{version}.yaml").write_text(text)
            self._draft_path(jid).unlink()
            self._audit(who, "publish", jid, version)
            return version

    def set_status(self, jid: str, status: str, who: str) -> int:
        """Pause (``paused``) or resume (``active``) the current version."""
        if status not in ("active", "paused"):
            raise StudioError(f"{status!r}: a journey is paused or active")
        with self._lock:
            path, j = self.current(jid)
            if j.status == status:
                raise StudioError(f"{jid} v{j.version} is already {status}")
            self._write_checked(path, _with_status(path.read_text(), status))
            self._audit(who, "pause" if status == "paused" else "resume", jid, j.version)
            return j.version

    def rollback(self, jid: str, who: str, to: int | None = None) -> int:
        """Give new entries an earlier version again (default: the one before the current).
        Customers already on the newer version stay on it (the flow keeps every version)."""
        with self._lock:
            path, j = self.current(jid)
            older = [r["version"] for r in self.versions(jid) if r["version"] < j.version]
            target = to if to is not None else max(older, default=None)
            if target is None or target not in older:
                raise StudioError(f"{jid} v{j.version} has no earlier version"
                                  + (f" {to}" if to is not None else "") + " to roll back to")
            text = self.version_text(jid, target)
            self._write_checked(path, _with_status(text, j.status))
            self._audit(who, "rollback", jid, target, {"from": j.version})
            return target

    # ----- audit --------------------------------------------------------------------------
    def _audit(self, who: str, action: str, jid: str, version: int | None,
               extra: dict | None = None) -> None:
        rec = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "at_ms": int(time.time() * 1000), "who": who, "action": action,
               "journey": jid, "version": version, **(extra or {})}
        with self.audit_path.open("ab") as f:
            f.write(orjson.dumps(rec) + b"\n")

    def audit(self) -> list[dict]:
        if not self.audit_path.exists():
            return []
        return [orjson.loads(x) for x in self.audit_path.read_bytes().splitlines() if x.strip()]

    def last_change(self, jid: str) -> dict | None:
        for a in reversed(self.audit()):
            if a["journey"] == jid and a["action"] != "new":
                return a
        return None
