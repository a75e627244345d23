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
        # When the first input message was applied and when the last one was: the rate from
        # first to last message leaves start-up (and idle time after the input) out.
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._seen: dict[str, int] = {}

    def update(self, part: str, stats: dict, applied: int) -> None:
        seen = _seen(stats)
        with self._lock:
            self.parts[part] = stats
            self.applied_offsets[part] = applied
            if seen > self._seen.get(part, 0):
                now = time.monotonic()
                if self.first_at is None:
                    self.first_at = now
                self.last_at = now
                self._seen[part] = seen

    def rates(self) -> tuple[int, float | None, float | None]:
        """(messages seen, messages/s from the first to the last, start-up seconds)."""
        seen = _seen(self.totals())
        with self._lock:
            first, last = self.first_at, self.last_at
        if first is None or last is None:
            return seen, None, None
        span = last - first
        return seen, (seen / span if span > 0 else None), first - self.started

    def totals(self) -> Counter[str]:
        with self._lock:
            total: Counter[str] = Counter()
            for stats in self.parts.values():
                total.update(stats)
            return total

    def now_line(self, since: tuple[float, int] | None) -> tuple[str, tuple[float, int]]:
        """The periodic line: the current rate (since the previous line), the input lag and
        the time to catch up at that rate, then the totals; and the mark for the next call."""
        seen = _seen(self.totals())
        mark = (time.monotonic(), seen)
        parts = []
        if since is not None and mark[0] > since[0]:
            rate = (seen - since[1]) / (mark[0] - since[0])
            parts.append(f"now {rate:,.0f}/s")
            lag = input_lag()
            if lag is not None:
                eta = f", catching up in {_span(lag / rate)}" if rate > 0 and lag else \
                    (", caught up" if not lag else ", not catching up")
                parts.append(f"lag {lag:,}{eta}")
        head = f"[segue] {'; '.join(parts)} | " if parts else "[segue] "
        return head + self.line().removeprefix("[segue] "), mark

    def line(self) -> str:
        t = self.totals()
        seen, rate, startup = self.rates()
        speed = f"{rate:,.0f}/s first to last" if rate is not None else "no rate yet"
        started = f", start-up {startup:.1f}s" if startup is not None else ""
        return (
            f"[segue] {seen:,} events ({speed}{started}): applied {t['applied']:,}, "
            f"duplicates {t['deduplicated']:,}, dead-lettered {t['dead_lettered']:,}, "
            f"outputs {t['outputs']:,}, timers fired {t['timers_fired']:,}"
            + (f", outputs parked {t['outputs_parked']:,} (see segue.alerts)"
               if t["outputs_parked"] else "")
            + (f", kept out by profile limits {t['limits_dropped']:,}"
               if t["limits_dropped"] else "")
            + (f", ignored {t['internal_foreign']:,} internal messages of another application"
               if t["internal_foreign"] else "")
        )


def input_lag() -> int | None:
    """Messages of the input topic not yet read by this process (the lag gauge's sum), or None
    before any partition has reported it."""
    from flows.metrics import INPUT_LAG

    values = [smp.value for fam in INPUT_LAG.collect() for smp in fam.samples]
    return int(sum(values)) if values else None


def _span(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _seen(stats: dict) -> int:
    """Input messages a partition has taken in: applied, duplicates, dead letters."""
    return stats.get("applied", 0) + stats.get("deduplicated", 0) + \
        stats.get("dead_lettered", 0)


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
        mark = None
        while True:
            time.sleep(every_s)
            text, mark = self.progress.now_line(mark)
            print(text, file=sys.stderr, flush=True)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Part:
        return _Part(self.progress)
