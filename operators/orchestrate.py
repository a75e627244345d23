"""The per-partition step: apply a micro-batch of events to state and decide what to emit.

``PartitionProcessor`` owns one partition's store. ``process`` is one transaction:

1. delete outbox entries Kafka has acknowledged since the last batch;
2. for each item not yet applied (offset > applied offset): dead-letter it, or dedup by
   messageId, update the profile (traits, sliding-window counters, sessions, recency),
   lifecycle stage, and (re)arm its inactivity timer;
3. fire timers due at the clock (event-time watermark while catching up, wall clock once the
   partition is caught up);
4. put every output in the outbox, with the new applied offset, outbox sequence and watermark;
5. commit all of it in one WriteBatch.

The caller then produces the returned outbox entries and acknowledges them once Kafka has.
After a crash, anything in the outbox is produced again (same bytes, same idempotency key) and
the input resumes after the applied offset: no event is applied twice, no output is lost.

No bytewax or Kafka here: the live flow, replay and tests share this code.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from dataclasses import dataclass, field

import orjson

from models.events import ERASURE_REQUESTED, InEvent
from models.identifiers import kind_of, primary_ref, value_of, winner
from models.outputs import SCHEMA_VERSION, idempotency_key
from models.profile import Profile, new_profile
from models.settings import Settings
from operators.analytics import totals
from operators.analytics.alerts import AlertWindow
from operators.analytics.partials import PartialStats
from operators.customer import activity, feedback, lifecycle
from operators.customer.feedback import FEEDBACK_EVENTS
from operators.decode import RawRecord, Rejected, Routed, _reject
from operators.effects import ArmTimer, CancelTimer, Count, Effects, Emit, IndexPut
from operators.identity.merge import identifiers, merge_profile_data
from operators.identity.routing import home_partition
from operators.journeys import JourneyEngine, JourneyRegistry
from operators.policy import DeliveryPolicy
from state import keys
from state.profiles import ProfileCache, decode_profile, encode_profile
from state.store import PartitionStore
from state.transaction import BatchTransaction, Progress

ERASURE_EVENTS = (ERASURE_REQUESTED, "privacy.erase")
MAX_TIMERS_PER_PASS = 20_000
DRAIN_CUSTOMERS = 5_000


@dataclass(slots=True, frozen=True)
class Output:
    """One message to produce."""

    topic: str
    key: str | None
    value: bytes
    partition: int | None = None  # explicit for the repartition topic; else by key
    # (event time, Kafka time) of the event that caused it, for latency metrics; not stored.
    src: tuple[int, int] | None = field(default=None, compare=False)

    def encode(self) -> bytes:
        return orjson.dumps([self.topic, self.key, self.value.decode(), self.partition])

    @staticmethod
    def decode(raw: bytes) -> Output:
        topic, key, value, partition = orjson.loads(raw)
        return Output(topic, key, value.encode(), partition)


class PartitionProcessor:
    """Applies events of one input partition to its store; see the module docstring."""

    def __init__(self, store: PartitionStore, settings: Settings,
                 journeys: JourneyRegistry | None = None, partition: int = 0,
                 partitions: int = 1) -> None:
        self.store = store
        self.settings = settings
        self.topics = settings.topics
        self.partition = partition
        self.partitions = partitions
        self.stages = lifecycle.StageRules(settings.lifecycle)
        self.session_gap_ms = settings.session_gap_s * 1000
        # What is committed: applied offsets, outbox sequence, watermark, timers pending.
        self.progress = Progress.load(store)
        # Decoded profiles of recently active customers; the budget is shared by partitions.
        self.profiles = ProfileCache(settings.store.profile_cache_mb * 2**20 // partitions)
        # Totals since start, folded in from each committed batch.
        self.stats: Counter[str] = Counter()
        # Labelled counts for metrics: ("events", topic, result), ("journey", kind, id), …
        self.counts: Counter[tuple] = Counter()
        # Wall-clock lateness (ms) of timers fired by the wall clock, drained by the caller.
        self.timer_lateness: list[int] = []
        self.analytics_every_ms = settings.analytics.every_s * 1000
        self.journeys = journeys
        self.policy = DeliveryPolicy(settings.policy)
        self.engine = JourneyEngine(journeys, policy=self.policy,
                                    nba=settings.nba) if journeys is not None else None
        self._load_aggregates()
        # Outbox entries Kafka acknowledged: deleted by the next batch.
        self._acked: list[int] = []
        # Items (topic, offset) or timer keys that raised, with why: dead-lettered on retry.
        self._poisoned: dict[object, str] = {}
        self.txn: BatchTransaction  # the batch being applied (see ``process``)

    def _load_aggregates(self) -> None:
        """The alert windows and analytics partials as committed (they are written with
        every batch that changes them)."""
        raw_alerts = self.store.get(keys.ALERTS)
        self.alerts = AlertWindow(self.settings.alerts,
                                  orjson.loads(raw_alerts) if raw_alerts else None)
        raw_stats = self.store.get(keys.ANALYTICS)
        self.analytics = PartialStats(orjson.loads(raw_stats) if raw_stats else None)

    @property
    def applied(self) -> dict[str, int]:
        """Last applied offset per input topic (events, repartition), as committed."""
        return self.progress.applied

    @property
    def watermark(self) -> int:
        return self.progress.watermark

    @property
    def timers_pending(self) -> int:
        return self.progress.timers_pending

    @property
    def drain_pending(self) -> bool:
        """The end-of-input drain stopped early: call ``process`` with the horizon again."""
        return self.progress.drain_pending

    # ----- outbox -------------------------------------------------------------------------
    def unacknowledged(self) -> list[tuple[int, Output]]:
        """Outbox entries not yet acknowledged (produce them again after a restart)."""
        return [
            (int(k[len(keys.OUTBOX):], 16), Output.decode(v))
            for k, v in self.store.scan(keys.OUTBOX)
        ]

    def outbox_entry(self, seq: int) -> Output | None:
        raw = self.store.get(keys.outbox(seq))
        return Output.decode(raw) if raw is not None else None

    def acknowledge(self, seq: int) -> None:
        """Kafka has the output with this sequence number; drop it from the outbox next batch."""
        self._acked.append(seq)

    @property
    def has_acks(self) -> bool:
        return bool(self._acked)

    # ----- the transaction -----------------------------------------------------------------
    def process(
        self, items: list[InEvent | Rejected], clock_ms: int | None = None,
        drain_horizon_ms: int | None = None, flush_analytics: bool = False,
    ) -> list[tuple[int, Output]]:
        """Apply ``items`` (in offset order) and fire timers due at ``clock_ms``.

        ``flush_analytics`` (the input ended) sends this partition's changed analytics
        counts now instead of at the next period.

        ``clock_ms`` defaults to the event-time watermark. With ``drain_horizon_ms`` (end of
        input), every timer due within that long after its customer's last event fires too.
        Returns the new outbox entries.

        A bug must not stop the flow: if applying an item (or firing a timer) raises, the
        transaction is thrown away, the batch is done again from the same starting point, and
        that item goes to the dead-letter topic (``processing.error``) instead; the timer is
        dropped with a ``timer.error`` record.
        """
        for _ in range(len(items) + 16):
            acks, self._acked = self._acked, []
            txn = self.txn = BatchTransaction(self.store, self.progress)
            if self.engine is not None:
                self.engine.begin(txn.counts)
            try:
                entries = self._process_once(items, acks, clock_ms, drain_horizon_ms,
                                             flush_analytics)
                txn.commit()
            except Exception as e:  # noqa: BLE001 - see the docstring
                # The whole batch goes; it is done again from the committed state. Profiles it
                # touched may be half changed: the cache forgets them.
                for ref in txn.objects:
                    self.profiles.evict(ref)
                txn.fail()
                self._acked = acks + self._acked
                self._load_aggregates()
                culprit = txn.culprit
                if culprit is None or culprit in self._poisoned:
                    raise
                self._poisoned[culprit] = f"{type(e).__name__}: {e}"[:500]
                self.stats["processing_errors"] += 1
                continue
            self.progress = txn.progress
            sizes = txn.object_sizes
            for ref, p in txn.objects.items():
                if ref in sizes:
                    self.profiles.put(ref, p, sizes[ref])
                else:  # erased or merged away
                    self.profiles.evict(ref)
            self.analytics.changed = False
            self.stats.update(txn.stats)
            self.stats["outputs"] += len(entries)
            self.counts.update(txn.counts)
            self.timer_lateness.extend(txn.lateness)
            return entries
        raise RuntimeError("too many failing items in one batch")

    def _dead_letter_poisoned(self, item: object, topic: str, why: str) -> None:
        body = (item.document() if isinstance(item, InEvent) else None) \
            or getattr(item, "body", None) or {}
        raw = RawRecord(topic, int(item.part.rpartition("#")[2] or 0), item.offset,  # type: ignore[attr-defined]
                        None, orjson.dumps(body), [], 0)
        rec = _reject(raw, "processing.error", why)
        self.txn.stats["dead_lettered"] += 1
        self.txn.counts[("events", topic, "dead_lettered")] += 1
        self.txn.emit(Output(self.topics.dlq, None, orjson.dumps(rec.record)))

    def _process_once(
        self, items: list[InEvent | Rejected], acks: list[int], clock_ms: int | None,
        drain_horizon_ms: int | None, flush_analytics: bool = False,
    ) -> list[tuple[int, Output]]:
        txn = self.txn
        for seq in acks:
            txn.delete(keys.outbox(seq))
        self._sync_journeys(self.txn.progress.watermark if clock_ms is None else clock_ms)
        for item in items:
            topic = item.part.rpartition("#")[0]
            if item.offset <= self.txn.progress.applied.get(topic, -1):
                self.txn.stats["skipped_already_applied"] += 1
                self.txn.counts[("events", topic, "skipped")] += 1
                continue
            self.txn.progress.applied[topic] = item.offset
            self.txn.culprit = (topic, item.offset)
            why = self._poisoned.get(self.txn.culprit)
            if why is not None:
                self._dead_letter_poisoned(item, topic, why)
            elif isinstance(item, Routed):
                self._on_routed(item)
            elif isinstance(item, Rejected):
                self.txn.stats["dead_lettered"] += 1
                self.txn.counts[("events", topic, "dead_lettered")] += 1
                self.alerts.message(self.txn.progress.watermark, dead=True)
                self.txn.emit(
                    Output(self.topics.dlq, item.key.decode("utf-8", "replace") if item.key
                           else None, orjson.dumps(item.record))
                )
            else:
                self.txn.current = item
                self._apply(item)
                self.txn.current = None
        self.txn.culprit = None
        self._flush_nba()
        self.txn.wall_clock = clock_ms is not None
        self._fire_timers(self.txn.progress.watermark if clock_ms is None else clock_ms)
        self._flush_nba()
        if drain_horizon_ms is not None:
            self._drain(drain_horizon_ms)
            self._flush_nba()
            if not self.txn.progress.drain_pending:
                self._send_analytics()  # end of input: the final partials
        if flush_analytics:
            self._send_analytics()
        fx = Effects()
        for alert in self.alerts.check(self.partition):
            totals.raise_alert(fx, alert, self.txn.progress.watermark, alert["hour_start_ms"],
                               {"window_start_ms": alert["hour_start_ms"]}, self.partition)
        self._effects(fx)
        txn.put(keys.ALERTS, orjson.dumps(self.alerts.state))
        if self.analytics.changed:  # most small batches of a tailing flow change nothing
            txn.put(keys.ANALYTICS, orjson.dumps(self.analytics.state))
        pending = txn.progress.timers_pending
        for ref, profile in txn.objects.items():
            pending += (0 if profile.get("_gone") else len(profile.get("timers", {}))) - \
                txn.timers_before.get(ref, 0)
        txn.progress.timers_pending = max(pending, 0)
        sizes = txn.object_sizes
        for ref, profile in txn.objects.items():
            if profile.get("_gone"):
                txn.delete(keys.profile(ref))
            else:
                txn.culprit = txn.blame.get(ref)  # who to blame if it cannot be stored
                raw = encode_profile(profile)
                txn.put(keys.profile(ref), raw)
                sizes[ref] = len(raw)
        txn.culprit = None
        return txn.prepare()

    def next_timer_due(self) -> int | None:
        for k, _ in self.store.scan(keys.TIMER, start=self._floor_key(self.progress)):
            return keys.parse_timer(k)[0]
        return None

    @staticmethod
    def _floor_key(progress: Progress) -> bytes:
        return b"%s%016x" % (keys.TIMER, progress.timer_floor)

    # ----- events --------------------------------------------------------------------------
    def _profile(self, ref: str, ts_ms: int) -> tuple[Profile, bool]:
        if self.txn.culprit is not None:
            self.txn.blame[ref] = self.txn.culprit
        p = self.txn.objects.get(ref)
        if p is not None and not p.get("_gone"):
            self._settle(ref)
            return p, False
        stored = None if p is not None else self._stored(ref)
        created = stored is None
        p = new_profile(ref, ts_ms) if stored is None else stored
        self.txn.timers_before.setdefault(ref, len(p["timers"]))
        self.txn.objects[ref] = p
        return p, created

    def _stored(self, ref: str) -> Profile | None:
        """The customer's committed profile: from the cache if it is there, else the store.
        (A profile this batch changed is in ``txn.objects``, looked at first.)"""
        p = self.profiles.get(ref)
        if p is not None:
            return p
        raw = self.txn.get(keys.profile(ref))
        return None if raw is None else decode_profile(raw)

    def _settle(self, ref: str) -> None:
        """Decisions waiting for the end of the batch are made before anything else touches
        their customer, so the outcome never depends on where a batch ended."""
        eng = self.engine
        if eng is not None and ref in eng.nba_pending:
            self._effects(eng.flush_nba(ref))

    def _flush_nba(self) -> None:
        if self.engine is not None and self.engine.nba_pending:
            self._effects(self.engine.flush_nba())

    def _existing_profile(self, ref: str) -> Profile | None:
        p = self.txn.objects.get(ref)
        if p is not None:
            if p.get("_gone"):
                return None
            self._settle(ref)
            return p
        p = self._stored(ref)
        if p is None:
            return None
        self.txn.objects[ref] = p
        self.txn.timers_before.setdefault(ref, len(p.get("timers", {})))
        return p

    def _apply(self, ev: InEvent) -> None:
        ref = self._owner(ev)
        if ref is None:
            return  # forwarded to the partition that owns its customer
        if ev.key in ERASURE_EVENTS:
            self._erase(ref, ev)
            return
        p, created = self._profile(ref, ev.ts_ms)
        if created:
            erased = self.txn.get(keys.erased(ref))
            if erased is not None:
                p["erased_at"] = int(erased)
        if p.get("erased_at") is not None and ev.ts_ms <= p["erased_at"]:
            if created:
                del self.txn.objects[ref]
            self.txn.stats["dropped_erased"] += 1  # data from before an erasure, arriving late
            return
        topic = ev.part.rpartition("#")[0]
        if activity.seen_before(p, ev.message_id, self.settings.dedup_recent_ids):
            self.txn.stats["deduplicated"] += 1
            self.txn.counts[("events", topic, "deduplicated")] += 1
            return
        self.txn.stats["applied"] += 1
        self.txn.counts[("events", topic, "applied")] += 1
        if self.analytics.due(max(ev.ts_ms, self.txn.progress.watermark), self.analytics_every_ms):
            self._send_analytics()  # what changed up to the previous period, before this event
        self.alerts.message(ev.ts_ms, dead=False)
        ts = ev.ts_ms
        # This customer's timers due before this event fire first, whatever the batching.
        if p["timers"] and min(p["timers"].values()) <= ts:
            self._fire_customer(p, ts)
        if ts > self.txn.progress.watermark:
            self.txn.progress.watermark = ts
        activity.record(p, ev, self.session_gap_ms, self.settings.profile_sums)
        to = self.stages.requested(p["lifecycle"]["stage"], ev.key)
        if to is not None:
            fx = Effects()
            lifecycle.request_stage(fx, self.stages, p, to, ts, {"message_id": ev.message_id})
            self._effects(fx)
        if "inactivity" not in p["timers"]:
            self._arm(p, "inactivity", p["last_seen"] + self.stages.inactivity_ms)
        self._link(p, ev)
        if ev.key in FEEDBACK_EVENTS:
            fb = feedback.apply(p, ev)
            if fb is not None:
                self._on_feedback(p, ev, fb)
        if self.engine is not None:
            self._effects(self.engine.on_event(p, ev))

    # ----- consent, suppression, channel feedback ------------------------------------------
    def _on_feedback(self, p: Profile, ev: InEvent, fb: feedback.Feedback) -> None:
        cause = {"message_id": ev.message_id}
        if fb.opted_out is not None:
            self._opted_out(p, fb.opted_out, ev.ts_ms, cause)
        elif fb.failed_channel is not None:
            self.txn.stats["delivery_failures"] += 1
            self.alerts.failed(fb.failed_channel, ev.ts_ms)
            if fb.failed_dispatch is not None and self.engine is not None:
                self._effects(self.engine.on_delivery_failed(p, fb.failed_dispatch, ev.ts_ms,
                                                             cause))

    def _opted_out(self, p: Profile, channel: str, at: int, cause: dict) -> None:
        """An opt-out takes effect at once and takes the customer out of active journeys."""
        self.txn.stats["opt_outs"] += 1
        self.analytics.unsubscribed(channel)
        if self.engine is not None:
            self._effects(self.engine.exit_all(p, at, cause, f"consent.{channel}.opted_out"))

    # ----- erasure ---------------------------------------------------------------------------
    def _erased_since(self, ref: str, at: int) -> bool:
        """Was this customer erased at or after ``at``? (Then data from ``at`` is stale.)"""
        raw = self.txn.get(keys.erased(ref))
        return raw is not None and at <= int(raw)

    def _erase(self, ref: str, ev: InEvent) -> None:
        """Right to erasure: everything held on the customer goes, before any later event of
        theirs; what remains is an audit record without personal data."""
        txn = self.txn
        assert txn is not None
        if self._erased_since(ref, ev.ts_ms):
            self.txn.stats["erasure_repeated"] += 1  # a retried (or older) request: done already
            return
        p = self._existing_profile(ref)
        deleted = {"profile": 0, "timers": 0, "links": 0, "held": 0}
        if p is not None:
            deleted["profile"] = 1
            for kind, due in p["timers"].items():
                txn.delete(keys.timer(due, ref, kind))
                deleted["timers"] += 1
            for jid, run in p.get("journeys", {}).items():
                if run.get("held") and run["held"].get("indexed"):
                    txn.delete(keys.held(jid, run["held"]["at"], ref))
                    deleted["held"] += 1
            for x in sorted(set(p["links"]) | set(p["merged_from"])):
                if x != ref:
                    deleted["links"] += 1
                    self._route(x, {"kind": "unlink", "id": x, "ref": ref})
            # Outputs decided before the request still go out (they are already on their way),
            # but their copies in the outbox go now instead of on Kafka's acknowledgement.
            for k, v in self.store.scan(keys.OUTBOX):
                if Output.decode(v).key == p["id"]:
                    txn.delete(k)
                    self.txn.stats["erased_outbox_entries"] += 1
            p.clear()
            p["_gone"] = True
        self.txn.objects.setdefault(ref, {"_gone": True})
        txn.delete(keys.profile(ref))
        txn.delete(keys.link(ref))
        txn.delete(keys.redirect(ref))
        txn.put(keys.erased(ref), b"%d" % ev.ts_ms)  # late data from before this is dropped
        self.txn.stats["erasures"] += 1
        digest = hashlib.sha256(ref.encode()).hexdigest()
        record = {"schema_version": SCHEMA_VERSION, "type": "privacy.erased",
                  "idempotency_key": idempotency_key("erased", digest, ev.message_id),
                  "customer_id": None, "customer_ref_sha256": digest, "journey": None,
                  "at_ms": ev.ts_ms, "cause": {"event": ev.key}, "deleted": deleted}
        self.txn.emit(Output(self.topics.customer_events, digest, orjson.dumps(record)))

    # ----- identity ------------------------------------------------------------------------
    def home(self, ref: str) -> int:
        return home_partition(value_of(ref), self.partitions)

    def _owner(self, ev: InEvent) -> str | None:
        """The reference of the customer this event belongs to, if this partition owns it;
        else forward the event to the partition that does and return None."""
        if ev.canonical is None:
            primary = primary_ref(ev.user_id, ev.anonymous_id)
            cached = self.txn.objects.get(primary)
            if cached is not None and not cached.get("_gone"):
                return primary  # owned here, already loaded in this batch: no lookups
            if self.home(primary) != self.partition:  # producer used another partitioner
                self._forward(ev, None, primary)
                return None
            raw = self.txn.get(keys.link(primary))
            ref = raw.decode() if raw is not None else primary
        else:
            ref = ev.canonical
            primary = ""
        if ref != primary and self.home(ref) != self.partition:
            self._forward(ev, ref, ref)
            return None
        moved = self.txn.get(keys.redirect(ref))
        if moved is not None:
            self._forward(ev, moved.decode(), moved.decode())
            return None
        return ref

    def _forward(self, ev: InEvent, canonical: str | None, target: str) -> None:
        if ev.hops >= self.settings.identity.max_hops:
            self.txn.stats["identity_loops"] += 1
            self._emit_identity("identity.loop", ev.customer_id, target, ev.ts_ms,
                                {"message_id": ev.message_id}, reason="identity.max_hops")
            return
        self.txn.stats["forwarded"] += 1
        self._route(target, {"kind": "event", "canonical": canonical, "hops": ev.hops + 1,
                             "event": ev.document(), "kafka_ts": ev.kafka_ts_ms})

    def _route(self, target: str, body: dict) -> None:
        """Send ``body`` to the partition that owns ``target``; handle it now if that is us."""
        part = self.home(target)
        if part == self.partition and body["kind"] != "event":
            self._on_routed(Routed(body["kind"], body, -1, ""))
            return
        self.txn.emit(Output(self.topics.repartition, value_of(target), orjson.dumps(body),
                                part))

    def _link(self, p: Profile, ev: InEvent) -> None:
        """Claim the event's identifiers this customer does not hold yet (within limits)."""
        ids = identifiers(ev, tuple(self.settings.identity.traits))
        new = sorted(ids.difference(p["links"]))
        if not new:
            return
        limits = self.settings.identity.max_links
        for x in new:
            kind = kind_of(x)
            held = sum(1 for y in p["links"] if kind_of(y) == kind)
            if held >= limits.get(kind, 10):
                self.txn.stats["links_refused"] += 1
                self._emit_identity("identity.link_refused", p["id"], p["ref"], ev.ts_ms,
                                    {"message_id": ev.message_id},
                                    reason=f"identity.limit.{kind}",
                                    identifier=x if kind != "email" else "email:<hashed>")
                continue
            p["links"].append(x)
            self._route(x, {"kind": "claim", "id": x, "canonical": p["ref"], "at": ev.ts_ms,
                            "cause": ev.message_id})

    def _on_routed(self, m: Routed) -> None:
        b = m.body
        if m.kind == "claim":
            self._claim(b["id"], b["canonical"], b["at"], b.get("cause"))
        elif m.kind == "merge_out":
            self._merge_out(b["from"], b["into"], b["at"], b.get("hops", 0))
        elif m.kind == "merge":
            self._merge_in(b["from"], b["into"], b.get("profile"), b["at"], b.get("hops", 0))
        elif m.kind == "analytics":
            self._on_partial(b)
        elif m.kind == "relink":
            self.txn.put(keys.link(b["id"]), b["canonical"].encode())
        elif m.kind == "unlink":  # erasure of the customer it pointed to
            txn = self.txn
            assert txn is not None
            for key in (keys.link(b["id"]), keys.redirect(b["id"])):
                v = txn.get(key)
                if v is not None and v.decode() == b["ref"]:
                    txn.delete(key)
        else:
            self.txn.stats["internal_unknown"] += 1

    # ----- analytics -------------------------------------------------------------------------
    def _send_analytics(self) -> None:
        """This partition's changed partials to the partitions that own their totals."""
        for target, body in self.analytics.take():
            self._route(target, {"kind": "analytics", "src": self.partition,
                                 "at": self.txn.progress.watermark, **body})

    def _on_partial(self, b: dict) -> None:
        fx = Effects()
        totals.on_partial(fx, self.txn, b, self.journeys, self.settings, self.partition)
        self._effects(fx)

    def _claim(self, x: str, c: str, at: int, cause: str | None) -> None:
        """At x's home: x belongs to customer c. Merges when x already belongs to another."""
        txn = self.txn
        assert txn is not None
        raw = txn.get(keys.link(x))
        cur = raw.decode() if raw is not None else None
        if cur is None:
            moved = txn.get(keys.redirect(x))
            if moved is not None:
                cur = moved.decode()
            elif x != c and self._existing_profile(x) is not None:
                cur = x  # x is a customer of its own (e.g. anonymous history): merge it
        if cur is None or cur == c:
            if x != c:
                txn.put(keys.link(x), c.encode())
            return
        w = winner(cur, c)
        loser = c if w == cur else cur
        txn.put(keys.link(x), w.encode())
        self._route(loser, {"kind": "merge_out", "from": loser, "into": w, "at": at, "hops": 0})

    def _merge_out(self, loser: str, w: str, at: int, hops: int) -> None:
        """At the loser's home: hand its whole state to the winner, leave a redirect."""
        txn = self.txn
        assert txn is not None
        if loser == w:
            return
        moved = txn.get(keys.redirect(loser))
        if moved is not None:
            r = moved.decode()
            if r != w and hops < self.settings.identity.max_hops:
                # Already merged into r: r and w are one customer too.
                w2 = winner(r, w)
                l2 = r if w2 == w else w
                self._route(l2, {"kind": "merge_out", "from": l2, "into": w2, "at": at,
                                 "hops": hops + 1})
            return
        txn.put(keys.redirect(loser), w.encode())
        txn.put(keys.link(loser), w.encode())
        p = self._existing_profile(loser)
        snapshot = None
        if p is not None:
            for kind, due in list(p["timers"].items()):
                txn.delete(keys.timer(due, loser, kind))
            for jid, run in p.get("journeys", {}).items():
                if run.get("held") and run["held"].get("indexed"):
                    txn.delete(keys.held(jid, run["held"]["at"], loser))
                    run["held"]["indexed"] = False
            snapshot = {k: v for k, v in p.items() if k != "_gone"}
            p.clear()
            p["_gone"] = True
            for y in snapshot["links"]:
                if y != loser:
                    self._route(y, {"kind": "relink", "id": y, "canonical": w})
        self._route(w, {"kind": "merge", "from": loser, "into": w, "profile": snapshot,
                        "at": at, "hops": hops})

    def _merge_in(self, loser: str, w: str, snapshot: dict | None, at: int, hops: int) -> None:
        """At the winner's home: fold the loser's state in, exactly once."""
        txn = self.txn
        assert txn is not None
        moved = txn.get(keys.redirect(w))
        if moved is not None and hops < self.settings.identity.max_hops:
            r = moved.decode()
            self._route(r, {"kind": "merge", "from": loser, "into": r, "profile": snapshot,
                            "at": at, "hops": hops + 1})
            return
        if self._erased_since(w, at):  # merged history from before an erasure: dropped
            self.txn.stats["dropped_erased"] += 1
            return
        p, _ = self._profile(w, snapshot["first_seen"] if snapshot else at)
        if loser in p["merged_from"]:
            return  # a redelivered merge
        p["merged_from"].append(loser)
        if snapshot is not None:  # what the loser had absorbed counts as merged here too
            for ref in snapshot.get("merged_from", []):
                if ref not in p["merged_from"]:
                    p["merged_from"].append(ref)
        if loser not in p["links"]:
            p["links"].append(loser)
        if snapshot is not None:
            merge_profile_data(p, snapshot, self.settings.dedup_recent_ids)
            fx = Effects()
            lifecycle.merge(fx, p, snapshot)
            self._effects(fx)
            if self.engine is not None:
                self._effects(self.engine.adopt_runs(p, snapshot, at))
            if "inactivity" not in p["timers"]:
                self._arm(p, "inactivity", p["last_seen"] + self.stages.inactivity_ms)
        self.txn.stats["merges"] += 1
        self._emit_identity("identity.merged", p["id"], w, at, {"merge": loser},
                            merged_from=value_of(loser), merged_ref=loser)

    def _emit_identity(self, kind: str, customer: str, ref: str, at: int, cause: dict,
                       **extra: object) -> None:
        record = {"schema_version": SCHEMA_VERSION, "type": kind,
                  "idempotency_key": idempotency_key(kind, ref, at, orjson.dumps(cause),
                                                     extra.get("identifier"),
                                                     extra.get("merged_ref")),
                  "customer_id": customer, "customer_ref": ref, "journey": None, "at_ms": at,
                  "cause": cause, **extra}
        self.txn.emit(Output(self.topics.customer_events, customer, orjson.dumps(record)))

    # ----- effects: the one place they are applied to the batch ---------------------------
    def _effects(self, fx: Effects) -> None:
        """Apply what a decision returned, in order."""
        txn = self.txn
        for e in fx.items:
            if type(e) is Emit:
                self._emit(e)
            elif type(e) is ArmTimer:
                p = e.profile
                old = p["timers"].get(e.kind)
                if old is not None and old != e.due_ms:
                    txn.delete(keys.timer(old, p["ref"], e.kind))
                self._arm(p, e.kind, e.due_ms)
            elif type(e) is CancelTimer:
                old = e.profile["timers"].pop(e.kind, None)
                if old is not None:
                    txn.delete(keys.timer(old, e.profile["ref"], e.kind))
            elif type(e) is IndexPut:
                txn.put(e.key, b"")
            elif type(e) is Count:
                txn.stats[e.what] += 1
            else:
                txn.delete(e.key)

    def _emit(self, e: Emit) -> None:
        record = e.record
        if e.kind == "dispatch":
            self.alerts.sent(record["channel"], record["at_ms"])
            self.analytics.dispatch(record)
            topic = self.topics.dispatch(e.channel)  # type: ignore[arg-type]
        elif e.kind == "decision":
            self.analytics.decision(record)
            topic = self.topics.decisions
        elif e.kind == "customer_event":
            topic = self.topics.customer_events
        elif e.kind == "alert":
            self.txn.counts[("alert", record["type"].removeprefix("alert."))] += 1
            topic = self.topics.alerts
        elif e.kind == "analytics":
            self.txn.counts[("analytics", record["type"].removeprefix("analytics."))] += 1
            topic = self.topics.analytics
        else:
            self.analytics.journey_event(record)
            topic = self.topics.journey_events
        ev = self.txn.current
        src = (ev.ts_ms, ev.kafka_ts_ms) if ev is not None else None
        self.txn.emit(Output(topic, e.key, orjson.dumps(record), src=src))

    # ----- journeys: reloads, resumes -----------------------------------------------------
    def _sync_journeys(self, clock_ms: int) -> None:
        """After a reload (or at start), release sends held by journeys now active."""
        reg = self.journeys
        if reg is None or self.engine is None:
            return
        reg.maybe_reload()
        if reg.generation == self.txn.progress.journeys_generation:
            return
        self.txn.progress.journeys_generation = reg.generation
        for jid, spec in sorted(reg.current.items()):
            if spec.status != "active":
                continue
            prefix = keys.held_prefix(jid)
            for k, _ in list(self.txn.scan(prefix)):
                held_at = int(k[len(prefix):len(prefix) + 16], 16)
                cid = k[len(prefix) + 17:].decode()
                at = max(clock_ms, held_at)  # released now, never before it was held
                p, created = self._profile(cid, at)
                if created:
                    del self.txn.objects[cid]
                    self.txn.delete(k)
                    continue
                self._effects(self.engine.release_held(p, jid, at))
                self.txn.stats["journey_sends_released"] += 1

    # ----- timers --------------------------------------------------------------------------
    def _arm(self, p: Profile, kind: str, due_ms: int) -> None:
        if due_ms < self.txn.progress.timer_floor:
            self.txn.progress.timer_floor = max(due_ms, 0)
        key = keys.timer(due_ms, p["ref"], kind)
        p["timers"][kind] = due_ms
        self.txn.put(key, b"")
        self.txn.armed.append((due_ms, key))

    def _fire_customer(self, p: Profile, upto: int) -> None:
        """Fire this customer's timers due at or before ``upto``, earliest first."""
        for _ in range(1000):
            due_now = [(d, k) for k, d in p["timers"].items() if d <= upto]
            if not due_now:
                return
            first = min(d for d, _ in due_now)
            kinds = [k for d, k in due_now if d == first]
            for kind in kinds:
                del p["timers"][kind]
                self.txn.delete(keys.timer(first, p["ref"], kind))
            self.txn.stats["timers_fired"] += len(kinds)
            outer = self.txn.culprit
            self.txn.culprit = ("timer", p["ref"], first)
            why = self._poisoned.get(self.txn.culprit)
            if why is None:
                self._on_timers(p, first, kinds)
            else:  # it raised before: dropped, and said so
                self._emit_identity("timer.error", p["id"], p["ref"], first,
                                    {"timer": ",".join(kinds), "due_ms": first}, reason=why)
            self.txn.culprit = outer

    def _drain(self, horizon_ms: int) -> None:
        """End of input: fire every timer due within ``horizon_ms`` of its customer's last
        event (and what those timers arm in turn), customer by customer, at most
        ``DRAIN_CUSTOMERS`` per transaction; ``drain_pending`` says whether to call again."""
        done = self.txn.progress.drained
        n = 0
        self.txn.progress.drain_pending = False
        for k, _ in self.store.scan(keys.TIMER):
            _, cid, _ = keys.parse_timer(k)
            if cid in done:
                continue
            if n >= DRAIN_CUSTOMERS:
                self.txn.progress.drain_pending = True
                break
            done.add(cid)
            n += 1
            p, created = self._profile(cid, 0)
            if created:
                del self.txn.objects[cid]
                continue
            self._fire_customer(p, p["last_seen"] + horizon_ms)
        for cid, p in list(self.txn.objects.items()):
            if cid not in done:
                done.add(cid)
                self._fire_customer(p, p["last_seen"] + horizon_ms)

    def _fire_timers(self, clock_ms: int) -> None:
        txn = self.txn
        assert txn is not None
        heap: list[tuple[int, bytes]] = []
        truncated = False
        for k, _ in self.store.scan(keys.TIMER, start=self._floor_key(txn.progress)):
            due = int(k[2:18], 16)
            if due > clock_ms:
                break
            if len(heap) >= MAX_TIMERS_PER_PASS:
                truncated = True
                break
            heap.append((due, k))
        heap.extend(t for t in self.txn.armed if t[0] <= clock_ms)
        self.txn.armed = []
        heapq.heapify(heap)
        fired = 0
        while heap and fired < MAX_TIMERS_PER_PASS:
            due, k = heapq.heappop(heap)
            if txn.get(k) is None:  # already fired or replaced in this transaction
                continue
            _, cid, kind = keys.parse_timer(k)
            p, created = self._profile(cid, due)
            if created:  # profile gone (e.g. erased): drop the stale timer
                del self.txn.objects[cid]
                txn.delete(k)
                continue
            if p["timers"].get(kind) != due:
                txn.delete(k)
                continue
            if self.txn.wall_clock and len(self.txn.lateness) < 10_000:
                self.txn.lateness.append(clock_ms - due)
            # All of this customer's timers due now fire together (one moment).
            before = self.txn.stats["timers_fired"]
            armed = len(self.txn.armed)
            self._fire_customer(p, due)
            fired += self.txn.stats["timers_fired"] - before
            for t in self.txn.armed[armed:]:  # what firing armed, if already due
                if t[0] <= clock_ms:
                    heapq.heappush(heap, t)
        self.txn.armed = []
        if heap or truncated:  # stopped early: what is left starts the next scan
            rest = [d for d, _ in heap]
            self.txn.progress.timer_floor = min(rest) if rest else self.txn.progress.timer_floor
        else:
            self.txn.progress.timer_floor = max(self.txn.progress.timer_floor, clock_ms + 1)

    def _on_timers(self, p: Profile, due: int, kinds: list[str]) -> None:
        journey_kinds = [k for k in kinds if k.startswith(("j:", "jx:", "jd:"))]
        for kind in kinds:
            if kind not in journey_kinds:
                fx = Effects()
                lifecycle.on_timer(fx, self.stages, p, kind, due)
                self._effects(fx)
        if journey_kinds and self.engine is not None:
            self._effects(self.engine.on_timers(p, due, journey_kinds))
