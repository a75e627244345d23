"""A sink for per-partition progress: the console line while running and the run summary."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter

from bytewax.outputs import DynamicSink, StatelessSinkPartition


class Progress:
    """Latest counters per input partition (cumulative since this process started)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.parts: dict[str, dict] = {}
        self.applied_offsets: dict[str, int] = {}
        self.started = time.monotonic()

    def update(self, part: str, stats: dict, applied: int) -> None:
        with self._lock:
            self.parts[part] = stats
            self.applied_offsets[part] = applied

    def totals(self) -> Counter[str]:
        with self._lock:
            total: Counter[str] = Counter()
            for stats in self.parts.values():
                total.update(stats)
            return total

    def line(self) -> str:
        t = self.totals()
        secs = max(time.monotonic() - self.started, 1e-9)
        seen = t["applied"] + t["deduplicated"] + t["dead_lettered"]
        return (
            f"[segue] {seen:,} events ({seen / secs:,.0f}/s): applied {t['applied']:,}, "
            f"duplicates {t['deduplicated']:,}, dead-lettered {t['dead_lettered']:,}, "
            f"outputs {t['outputs']:,}, timers fired {t['timers_fired']:,}"
        )


class _Part(StatelessSinkPartition):
    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def write_batch(self, items: list) -> None:
        for _key, (part, stats, applied, _inflight) in items:
            self._progress.update(part, stats, applied)


class ProgressSink(DynamicSink):
    """Collects the orchestrate step's counters; optionally prints a line every few seconds."""

    def __init__(self, progress: Progress | None = None, every_s: float | None = None) -> None:
        self.progress = progress or Progress()
        if every_s:
            threading.Thread(target=self._report, args=(every_s,), daemon=True).start()

    def _report(self, every_s: float) -> None:
        while True:
            time.sleep(every_s)
            print(self.progress.line(), file=sys.stderr, flush=True)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Part:
        return _Part(self.progress)
