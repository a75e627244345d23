"""``segue dashboard``: the seed's "Journey Orchestration Dashboard", live in the terminal.

It reads the journey totals from the compacted ``segue.analytics`` topic and the other output
topics (journey events, decisions, dispatches, customer events, DLQ) from ``--since`` ago
(24 h by default, Kafka time), and keeps reading; ``--once`` prints one snapshot and exits.
"Last hour" is measured in event time, ending at the newest record seen, so a replayed or
simulated history shows what its last hour looked like.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import orjson
from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from flows.kafka import client_config
from models.journey import CHANNELS
from models.settings import Settings

HOUR_MS = 3_600_000


class DashboardState:
    """Aggregates of the output topics, updated record by record."""

    def __init__(self) -> None:
        self.entered: Counter[str] = Counter()
        self.exited: Counter[str] = Counter()
        self.completed: Counter[str] = Counter()
        self.converted: Counter[str] = Counter()
        self.decisions: list[tuple[int, str, list[str], str | None, str]] = []
        self.dispatches: Counter[str] = Counter()
        self.dlq = 0
        self.merges = 0
        self.alerts: list[dict] = []
        self.newest = 0
        # Next best action: one entry per decision (its first record)
        self.nba_seen: set[str] = set()
        self.nba_actions: Counter[str] = Counter()
        self.nba_confidence: list[float] = []
        self.nba_explored = 0
        self.nba_models: Counter[str] = Counter()
        # Newest analytics totals (segue.analytics) per journey version and per channel
        self.journey_totals: dict[str, dict] = {}
        self.channel_totals: dict[str, dict] = {}
        self.records = 0

    def add(self, kind: str, r: dict) -> None:
        self.records += 1
        at = r.get("at_ms") or 0
        self.newest = max(self.newest, at)
        if kind == "journey":
            jid = r["journey"]["id"]
            t = r["type"]
            if t == "journey.entered":
                self.entered[jid] += 1
            elif t == "journey.exited":
                self.exited[jid] += 1
                reason = str(r.get("reason", ""))
                if not reason.startswith("consent.") and reason != "merged":
                    self.completed[jid] += 1  # ran to its end or left by a planned exit
            elif t == "journey.converted":
                self.converted[jid] += 1
        elif kind == "decision":
            self.decisions.append((at, r["outcome"], r["reasons"], r.get("action"),
                                   r.get("channel") or ""))
            nba = r.get("nba")
            if isinstance(nba, dict) and r.get("dispatch_id") not in self.nba_seen:
                self.nba_seen.add(r.get("dispatch_id"))
                ranked = nba.get("ranked") or [{}]
                top = ranked[0]
                self.nba_actions[f"{top.get('action')} ({top.get('channel')})"] += 1
                if top.get("confidence") is not None:
                    self.nba_confidence.append(top["confidence"])
                self.nba_explored += bool(nba.get("explored"))
                self.nba_models[nba.get("model") or "none"] += 1
        elif kind == "dispatch":
            self.dispatches[r["channel"]] += 1
        elif kind == "dlq":
            self.dlq += 1
        elif kind == "customer" and r.get("type") == "identity.merged":
            self.merges += 1
        elif kind == "alert":
            self.alerts.append(r)
        elif kind == "analytics" and r.get("type") == "analytics.journey":
            self.journey_totals[f"{r['journey']['id']} v{r['journey']['version']}"] = r
        elif kind == "analytics" and r.get("type") == "analytics.channel":
            self.channel_totals[r["channel"]] = r

    def pipeline(self) -> tuple[dict[str, dict], str]:
        """Per journey: entered, active, completed, converted; from the analytics totals
        (all versions summed) when there are any, else from the journey events read."""
        rows: dict[str, dict] = {}
        if self.journey_totals:
            for r in self.journey_totals.values():
                row = rows.setdefault(r["journey"]["id"], {"entered": 0, "active": 0,
                                                           "completed": 0, "converted": 0})
                for k in row:
                    row[k] += r.get(k) or 0
            return rows, "totals from segue.analytics"
        for jid in self.entered:
            rows[jid] = {"entered": self.entered[jid],
                         "active": self.entered[jid] - self.exited[jid],
                         "completed": self.completed[jid], "converted": self.converted[jid]}
        return rows, "from the journey events read"

    def figures(self) -> dict:
        """The dashboard's numbers as plain data: the terminal view and Studio's live page
        both show these."""
        now = self.newest
        rows, source = self.pipeline()
        # The hour up to the newest decision: a replayed or simulated history ends in a quiet
        # stretch, and an empty panel would say nothing.
        end = max((d[0] for d in self.decisions), default=now)
        recent = [d for d in self.decisions if d[0] > end - HOUR_MS]
        fired = len(recent)
        executed = sum(1 for d in recent if d[1] == "send")
        failed = sum(1 for d in recent if "delivery.failed" in d[2])
        capped = sum(1 for d in recent if d[1] != "send" and any(x.startswith("cap.")
                                                                  for x in d[2]))
        opted = sum(1 for d in recent if d[1] != "send" and any(
            x.startswith(("consent.", "suppressed.")) for x in d[2]))
        quiet = sum(1 for d in recent if d[1] == "defer" and "quiet_hours" in d[2])
        reasons: Counter[str] = Counter(x for d in recent if d[1] != "send" for x in d[2])
        n_nba = sum(self.nba_actions.values())
        conf = self.nba_confidence
        alerts = [f"⚠ {a['type'].removeprefix('alert.')} on {a['subject']}: rate "
                  f"{a['rate']:.1%} (threshold {a['threshold']:.0%})"
                  for a in self.alerts[-5:]]
        for name, r in sorted(self.journey_totals.items()):
            target, rate = r.get("target_conversion"), r.get("finished_conversion_rate")
            if target is not None and rate is not None and r["exited"] > 0:
                mark = "✓" if rate >= target else "⚠"
                word = "meets" if rate >= target else "below"
                alerts.append(f"{mark} {name} conversion {word} target ({rate:.1%} vs "
                              f"{target:.0%} target)")
        if fired and failed / fired > 0.1:
            alerts.append(f"channel failures: {failed / fired:.0%} of sends in the last hour")
        if self.dlq:
            alerts.append(f"{self.dlq:,} messages dead-lettered (see the DLQ topic)")
        return {
            "as_of_ms": now or None, "journeys": rows, "journeys_source": source,
            "activity_label": "last hour" if now - end < HOUR_MS else "last hour of activity",
            "activity": {"triggers_fired": fired, "actions_executed": executed,
                         "delivery_rate": executed / fired if fired else 0,
                         "failed_deliveries": failed, "suppressed_cap": capped,
                         "suppressed_opt_out": opted, "deferred_quiet_hours": quiet},
            "suppressions_by_reason": dict(reasons.most_common(12)),
            "nba": {"decisions": n_nba,
                    "avg_confidence": sum(conf) / len(conf) if conf else None,
                    "model": self.nba_models.most_common(1)[0][0] if self.nba_models else "none",
                    "explored_rate": self.nba_explored / max(n_nba, 1),
                    "top_actions": self.nba_actions.most_common(5)},
            "dispatches_by_channel": {ch: self.dispatches[ch] for ch in CHANNELS
                                      if self.dispatches[ch]},
            "merges": self.merges, "dlq": self.dlq, "alerts": alerts,
            "records_read": self.records,
        }

    def render(self) -> Group:
        f = self.figures()
        now = self.newest
        title = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC") \
            if now else "no data yet"
        rows, source = f["journeys"], f["journeys_source"]
        head = Text(f"ACTIVE JOURNEYS: {sum(1 for r in rows.values() if r['active'] > 0)} | "
                    f"Total customers in journeys: "
                    f"{sum(max(r['active'], 0) for r in rows.values()):,}"
                    f"   (as of {title})", style="bold")
        table = Table(title=f"JOURNEY PIPELINE ({source})", expand=False)
        for col in ("Journey", "Active", "Completed", "Converted", "Conv. Rate"):
            table.add_column(col, justify="left" if col == "Journey" else "right")
        for jid in sorted(rows, key=lambda j: -rows[j]["entered"]):
            r = rows[jid]
            rate = r["converted"] / r["entered"] if r["entered"] else 0
            table.add_row(jid, f"{max(r['active'], 0):,}", f"{r['completed']:,}",
                          f"{r['converted']:,}", f"{rate:.1%}")
        a = f["activity"]
        activity = Text("\n".join([
            f"Triggers fired: {a['triggers_fired']:,}",
            f"Actions executed: {a['actions_executed']:,} ({a['delivery_rate']:.1%} delivery "
            "rate)",
            f"Failed deliveries: {a['failed_deliveries']:,}",
            f"Suppressed (frequency cap): {a['suppressed_cap']:,}",
            f"Suppressed (opt-out): {a['suppressed_opt_out']:,}",
            f"Deferred (quiet hours): {a['deferred_quiet_hours']:,}",
        ]))
        nba = f["nba"]
        n_nba = nba["decisions"]
        avg = (f"{nba['avg_confidence']:.1%} (model {nba['model']})"
               if nba["avg_confidence"] is not None else
               "n/a (no model promoted: inventory order)")
        nba_lines = [f"NBA decisions: {n_nba:,} | Avg confidence: {avg} | explored "
                     f"{nba['explored_rate']:.1%}", "Top recommended actions:"]
        nba_lines += [f"  {i}. {name}: {n:,} [{n / n_nba:.1%}]"
                      for i, (name, n) in enumerate(nba["top_actions"], 1)] \
            or ["  (none yet)"]
        channels = ", ".join(f"{ch} {n:,}" for ch, n in f["dispatches_by_channel"].items())
        return Group(
            head,
            table,
            *self._trends(),
            Panel(activity, title=f"REAL-TIME TRIGGER ACTIVITY ({f['activity_label']})",
                  expand=False),
            Panel(Text("\n".join(nba_lines)), title="NEXT BEST ACTION STATS", expand=False),
            Text(f"Dispatches by channel: {channels or 'none'} | identity merges: "
                 f"{self.merges:,}"),
            Panel(Text("\n".join(f["alerts"]) or "none"), title="ALERTS", expand=False),
        )

    def trends(self) -> list[str]:
        """The analytics lines (overall rates, experiment verdicts) as text."""
        panels = self._trends()
        return str(panels[0].renderable).splitlines() if panels else []

    def _trends(self) -> list:
        """Totals from segue.analytics: overall rates and the experiments' verdicts."""
        if not self.journey_totals:
            return []
        js = self.journey_totals.values()
        entered = sum(r["entered"] for r in js)
        exited = sum(r["exited"] for r in js)
        conv = sum(r["converted"] for r in js)
        done = sum(r["completed"] for r in js)
        ch = self.channel_totals.values()
        sent = sum(r["sent"] for r in ch)
        decisions = sum(r["decisions"] for r in ch)
        lines = [f"Overall conversion rate: {conv / max(entered, 1):.1%} of {entered:,} entries",
                 f"Journey completion rate: {done / max(exited, 1):.1%} of {exited:,} ended runs",
                 f"Avg touches per journey entry: {sent / max(entered, 1):.2f}",
                 f"Channel fatigue rate (held back by caps): "
                 f"{sum(r['capped'] for r in ch) / max(decisions, 1):.1%}",
                 f"Unsubscribe rate: {sum(r['unsubscribed'] for r in ch) / max(sent, 1):.2%} "
                 f"of sends"]
        for name, r in sorted(self.journey_totals.items()):
            for arm in r.get("split") or []:
                c = arm.get("vs_control")
                if c:
                    lines.append(f"{name} split {arm['variant']} vs control: lift "
                                 f"{c['lift']:+.1%} [{c['ci'][0]:+.1%}, {c['ci'][1]:+.1%}] "
                                 f"→ {c['verdict']}")
            h = r.get("holdout")
            if h and h.get("ci"):
                lines.append(f"{name} holdout: lift {h['lift']:+.1%} [{h['ci'][0]:+.1%}, "
                             f"{h['ci'][1]:+.1%}] → {h['verdict']}")
        return [Panel(Text("\n".join(lines)), title="PERFORMANCE (segue.analytics)",
                      expand=False)]


class TopicTail:
    """Reads the compacted analytics topic from its beginning (the totals) and the other
    output topics from ``since_ms`` (Kafka time; None: from their beginning) with
    assign(), then keeps reading new records."""

    def __init__(self, brokers: str, settings: Settings, since_ms: int | None = None) -> None:
        t = settings.topics
        self.kinds = {t.journey_events: "journey", t.decisions: "decision", t.dlq: "dlq",
                      t.customer_events: "customer", t.alerts: "alert",
                      t.analytics: "analytics",
                      **{t.dispatch(ch): "dispatch" for ch in CHANNELS}}
        md = AdminClient(client_config(brokers)).list_topics(timeout=10).topics
        self.consumer = Consumer(client_config(brokers, **{
            "group.id": "segue-dashboard", "enable.auto.commit": False,
            "enable.partition.eof": True, "log.connection.close": False}))
        parts = []
        for name in self.kinds:
            if name not in md:
                continue
            start = 0 if since_ms is None or name == t.analytics else since_ms
            parts += [TopicPartition(name, p, start) for p in md[name].partitions]
        if since_ms is not None:  # a time -> the first offset at or after it
            timed = [tp for tp in parts if tp.topic != t.analytics]
            found = {(tp.topic, tp.partition): tp.offset for tp in
                     self.consumer.offsets_for_times(timed, timeout=10)} if timed else {}
            parts = [tp if tp.topic == t.analytics else TopicPartition(
                tp.topic, tp.partition, found.get((tp.topic, tp.partition), -1)
                if found.get((tp.topic, tp.partition), -1) >= 0 else OFFSET_END)
                for tp in parts]
        self.consumer.assign(parts)
        self.open = {(tp.topic, tp.partition) for tp in parts}
        # Records older than since_ms are skipped as they come too: a broker that does not
        # look offsets up by time (Tansu answers 0) then costs reading, not wrong numbers.
        self.since_ms, self.analytics = since_ms, t.analytics

    def poll(self, state: DashboardState, max_s: float) -> bool:
        """Read what is there (up to ``max_s``); True once every partition reached its end."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            msgs = self.consumer.consume(5000, 0.2)
            if not msgs and not self.open:
                return True
            for m in msgs:
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        self.open.discard((m.topic(), m.partition()))
                    continue
                if self.since_ms is not None and m.topic() != self.analytics \
                        and m.timestamp()[1] < self.since_ms:
                    continue
                if m.value():
                    state.add(self.kinds[m.topic()], orjson.loads(m.value()))
            if not self.open and not msgs:
                return True
        return not self.open


def run_dashboard(brokers: str, settings: Settings, once: bool, every_s: float = 2.0,
                  console: Console | None = None, since_ms: int | None = None) -> int:
    console = console or Console()
    state = DashboardState()
    tail = TopicTail(brokers, settings, since_ms)
    if once:
        tail.poll(state, 60)
        console.print(state.render())
        return 0
    from rich.live import Live

    with Live(state.render(), console=console, refresh_per_second=1) as live:
        try:
            while True:
                tail.poll(state, every_s)
                live.update(state.render())
        except KeyboardInterrupt:
            return 0
