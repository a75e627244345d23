"""Progress of long commands (replay, nba train, bench): a rich progress bar with rate and
time left on a terminal; a plain line now and then when the output goes to a file or a pipe
(logs stay readable, nothing redraws).

>>> import io
>>> out = io.StringIO()
>>> bar = Bar("replay", total=1000, unit="bytes", stream=out, every_s=0)
>>> bar.update(500, note="5,000 events")
>>> bar.close()
>>> "[replay] 50% 5,000 events" in out.getvalue()
True
"""

from __future__ import annotations

import sys
import time
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar:
    """One task's progress: ``update(done, note)`` as it goes, ``close()`` at the end.
    ``total`` None: no percentage or time left (only what is done and the note)."""

    def __init__(self, what: str, total: float | None, unit: str = "", *,
                 stream: IO[str] | None = None, every_s: float = 10.0) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last_line = 0.0
        self._progress: Progress | None = None
        if self.stream.isatty():
            self._progress = Progress(
                TextColumn(f"[bold]{what}[/bold]"), BarColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TextColumn("left"),
                TimeRemainingColumn(), console=Console(file=self.stream), transient=False)
            self._task = self._progress.add_task(what, total=total, note="")
            self._progress.start()

    def update(self, done: float, note: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, note=note)
            return
        now = time.monotonic()
        if now - self._last_line < self.every_s:
            return
        self._last_line = now
        share = f"{100 * done / self.total:.0f}% " if self.total else ""
        print(f"[{self.what}] {share}{note}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
