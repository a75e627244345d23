"""Studio's live numbers: the output topics read in the background, folded into the
dashboard's figures and the per-node journey counts."""

from __future__ import annotations

import threading
import time

from models.settings import Settings
from segue.dashboard import DashboardState, TopicTail
from segue.studio.counts import JourneyCounts


class _Fold:
    """Feeds each record read to both the dashboard's state and the node counts."""

    def __init__(self, dash: DashboardState, counts: JourneyCounts,
                 lock: threading.Lock) -> None:
        self.dash, self.counts, self.lock = dash, counts, lock

    def add(self, kind: str, r: dict) -> None:
        with self.lock:
            self.dash.add(kind, r)
            if kind == "journey":
                self.counts.add_journey_event(r)
            elif kind == "analytics":
                self.counts.add_analytics(r)


class LiveView:
    """Reads the topics of ``settings`` on ``brokers`` from ``since_ms`` (Kafka time) in a
    daemon thread; ``figures()`` and ``counts`` are safe to read from request handlers."""

    def __init__(self, brokers: str, settings: Settings, since_ms: int | None) -> None:
        self.brokers, self.settings, self.since_ms = brokers, settings, since_ms
        self.dash = DashboardState()
        self.counts = JourneyCounts()
        self.lock = threading.Lock()
        self.error: str | None = None
        self.updated = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="studio-live", daemon=True)

    def start(self) -> LiveView:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        tail: TopicTail | None = None
        complete = False
        fold = _Fold(self.dash, self.counts, self.lock)
        made = 0.0
        while not self._stop.is_set():
            try:
                # Topics that do not exist yet (Studio started before the flow made them) are
                # not read: look again every 10 s until the journey events are among them.
                if tail is not None and not complete and time.monotonic() - made > 10:
                    tail.consumer.close()
                    tail = None
                if tail is None:
                    with self.lock:  # a new reader reads from the start again: count anew
                        self.dash, self.counts = DashboardState(), JourneyCounts()
                        fold = _Fold(self.dash, self.counts, self.lock)
                    tail = TopicTail(self.brokers, self.settings, self.since_ms)
                    made = time.monotonic()
                    complete = any(tp.topic == self.settings.topics.journey_events
                                   for tp in tail.consumer.assignment())
                    self.error = None if complete else (
                        f"{self.settings.topics.journey_events} does not exist yet on "
                        f"{self.brokers} (is segue run started with this prefix?)")
                tail.poll(fold, 0.5)
                self.updated = time.time()
            except Exception as e:  # noqa: BLE001 - shown on the page; retried
                self.error = f"reading {self.brokers}: {e}"
                tail = None
                self._stop.wait(5)

    def figures(self) -> dict:
        with self.lock:
            f = self.dash.figures()
            f["trends"] = self.dash.trends()
        f["error"] = self.error
        return f

    def versions(self, jid: str) -> dict[int, dict]:
        with self.lock:
            return self.counts.versions(jid)

    def totals(self, jid: str) -> dict:
        with self.lock:
            t = self.counts.totals(jid)
            # The analytics totals (compacted, whole history) win over the events read
            rows, source = self.dash.pipeline()
            if source.startswith("totals") and jid in rows:
                r = rows[jid]
                t.update(entered=r["entered"], active=r["active"], converted=r["converted"],
                         conversion_rate=round(r["converted"] / r["entered"], 4)
                         if r["entered"] else None)
            return t
