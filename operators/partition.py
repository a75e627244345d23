"""The per-partition step: apply a micro-batch of events to state and decide what to emit.

``Partition`` owns one partition's store. ``process`` is one transaction:

1. delete outbox entries whose outputs Kafka has all acknowledged since the last batch;
2. for each item not yet applied (offset > applied offset): dead-letter it, or dedup by
   messageId, update the profile (traits, sliding-window counters, sessions, recency),
   lifecycle stage, and (re)arm its inactivity timer;
3. fire timers due at the clock (event-time watermark while catching up, wall clock once the
   partition is caught up);
4. put the batch's outputs in the outbox (one entry), with the new applied offset, outbox
   sequence and watermark;
5. commit all of it in one WriteBatch.

The caller then produces the returned outputs and acknowledges each (by its id) once Kafka
has.
After a crash, anything in the outbox is produced again (same bytes, same idempotency key) and
the input resumes after the applied offset: no event is applied twice, no output is lost.

No bytewax or Kafka here: the live flow, replay and tests share this code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import orjson

from models.events import ERASURE_REQUESTED
from models.in_event import InEvent
from models.profile import Profile, new_profile
from models.settings import Settings
from operators.analytics import totals
from operators.analytics.alerts import OWNER as ALERTS_OWNER
from operators.analytics.alerts import AlertWindow
from operators.analytics.partials import PartialStats
from operators.customer import activity, dedupe, feedback, lifecycle, limits, scores
from operators.customer.erasure import Erasure
from operators.customer.feedback import FEEDBACK_EVENTS
from operators.customer.timers import DueTimers
from operators.decode import RawRecord, Rejected, Routed, _reject
from operators.effects import ArmTimer, CancelTimer, Count, Effects, Emit, IndexDelete, IndexPut
from operators.identity.stitching import IdentityStitching
from operators.journeys import JourneyEngine, JourneyRegistry
from operators.nba_bandit import Bandit
from operators.parking import Parking
from operators.policy import DeliveryPolicy
from state import changelog, keys, outbox
from state.outbox import Output
from state.profiles import ProfileCache, encode_profile, load_profile
from state.store import PartitionStore
from state.transaction import BatchTransaction, Progress
from state.waiting_timers import WaitingTimers

ERASURE_EVENTS = (ERASURE_REQUESTED, "privacy.erase")

# An input item: one decoded message, a message between partitions, or a Segment batch
# payload (one message of several events, applied whole).
Decoded = InEvent | Rejected | Routed
Item = Decoded | list[InEvent | Rejected]


class Partition(IdentityStitching, Erasure, DueTimers, Parking):
    """One input partition: applies its events to its store; see the module docstring."""

    def __init__(self, store: PartitionStore, settings: Settings,
                 journeys: JourneyRegistry | None = None, partition: int = 0,
                 partitions: int = 1, source: bytes | None = None,
                 restarts: dict[str, int] | None = None, changelog: bool = False) -> None:
        """``source`` is the input topics' identity to record (``flows.input_check``);
        ``restarts`` the offset an input topic starts at after a reset (``--on-reset``);
        ``changelog``: each batch keeps its changes for the changelog topic."""
        self.store = store
        self._source = source
        self._restarts = restarts or {}
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
        self.batch_counts: Counter[tuple] = Counter()  # the last committed batch's alone
        # (due, lateness) in ms of timers fired by the wall clock, drained by the caller.
        self.timer_lateness: list[tuple[int, int]] = []
        self.analytics_every_ms = settings.analytics.every_s * 1000
        # The optional output streams (``outputs``); the engine builds the records only
        # when they go out or analytics fold them.
        out = settings.outputs
        self.analytics_on, self.decisions_out = out.analytics, out.decisions
        self.journey_events_out = out.journey_events
        self.journeys = journeys
        self.policy = DeliveryPolicy(settings.policy)
        self.engine = JourneyEngine(
            journeys, policy=self.policy, nba=settings.nba,
            journey_events=out.journey_events or out.analytics,
            decisions=out.decisions or out.analytics) if journeys is not None else None
        self._load_aggregates()
        # Outputs Kafka acknowledged (ids): their entries are deleted by the next batch once
        # all their outputs are acknowledged.
        self._acked: list[int] = []
        self.unacked = outbox.Unacked.load(store)
        # This batch's outputs acknowledged or parked (id -> entry), and entries dropped
        # whole: ``unacked`` follows them once the batch has committed.
        self._resolving: dict[int, int] = {}
        self._dropped: list[int] = []
        # Mirror every batch to the changelog topic (``state.changelog``): batches whose
        # changes wait for Kafka, and those Kafka has (deleted by the next batch).
        self.changelog = changelog
        self.changelog_pending: list[int] = [
            int(k[len(keys.CHANGELOG):], 16) for k, _ in store.scan(keys.CHANGELOG)]
        self._changelog_acked: list[int] = []
        # The last batch's (sequence, applied offsets, changes), to send.
        self.changelog_out: tuple[int, dict[str, int], list] | None = None
        # Outbox entries Kafka refused for good, with why: parked by the next batch.
        self._refused: list[tuple[int, str]] = []
        self.max_output_bytes = settings.max_output_bytes
        self.app_id = settings.application_id
        self.id_traits = tuple(settings.identity.traits)
        self.stitching = settings.identity.stitching
        self.blocked_emails = frozenset(e.strip().lower() for e in settings.identity.blocked_emails)
        self.max_profile_bytes = settings.limits.max_profile_bytes
        self.refresh_scores = settings.nba.refresh_scores
        self.personal_traits = settings.privacy.personal_traits
        # Events held for a merge, as decoded, by their ``w|`` key (see ``_hold``); a failed
        # batch forgets them (its holds are done again).
        self.held_decoded: dict[bytes, InEvent] = {}
        # Timers due while their customer awaits a merge, known between timer passes.
        self.waiting_timers = WaitingTimers()
        # Items (topic, offset) or timer keys that raised, with why: dead-lettered on retry.
        self._poisoned: dict[tuple, str] = {}
        # Whether this partition has read all of its own input there is (caught up, or the
        # input ended): claims of identifiers are then answered at once (see ``_claim``).
        self.input_done = False
        # Whether this partition's events input has ended (``--until-eof``): events held for
        # a merge and applied after that would otherwise never send their analytics, since
        # partials go out when event time enters a new period and nothing newer comes.
        self.events_ended = False
        self._claims_now = False
        self.txn: BatchTransaction  # the batch being applied (see ``process``)

    def _load_aggregates(self) -> None:
        """The alert windows and analytics partials as committed (they are written with
        every batch that changes them)."""
        raw_alerts = self.store.get(keys.ALERTS)
        self._alerts_raw = raw_alerts  # as committed: a batch that changes nothing writes nothing
        self.alerts = AlertWindow(self.settings.alerts,
                                  orjson.loads(raw_alerts) if raw_alerts else None)
        raw_stats = self.store.get(keys.ANALYTICS)
        self.analytics = PartialStats(orjson.loads(raw_stats) if raw_stats else None)
        if self.engine is not None:  # the cold-start bandit's counts
            self.engine.nba.bandit = Bandit(self.store.get(keys.BANDIT))
        # Whether claims may wait in the store (``_due_claims`` scans only then).
        self._claims_stored = next(iter(self.store.scan(keys.CLAIM)), None) is not None

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
        """Outputs (id, output) not yet acknowledged (produce them again after a restart)."""
        return [r for r in outbox.unacknowledged(self.store) if r[0] in self.unacked]

    def outbox_entry(self, seq: int) -> Output | None:
        """The unacknowledged output with id ``seq`` (None: acknowledged, or parked)."""
        return self.unacked.output(self.store, seq)

    def acknowledge(self, seq: int) -> None:
        """Kafka has the output with this id; the next batch drops it from the outbox."""
        self._acked.append(seq)

    def unsent_changelog(self) -> list[tuple[int, dict[str, int], list]]:
        """Batches whose changes the changelog topic may not have, as one batch to send
        again before anything newer: the keys they changed with the values the store holds
        now (the newest; a deleted key goes as a tombstone), and the last one's sequence
        number and offsets (``state.changelog``)."""
        pending = [(int(k[len(keys.CHANGELOG):], 16), *changelog.decode_pending(v))
                   for k, v in self.store.scan(keys.CHANGELOG)]
        if not pending:
            return []
        changed: dict[bytes, None] = {}
        for _, _, ks in pending:
            changed.update(dict.fromkeys(ks))
        seq, applied, _ = pending[-1]
        return [(seq, applied, [(k, self.store.get(k)) for k in changed])]

    def acknowledge_changelog(self, seq: int) -> None:
        """Kafka has batch ``seq``'s changelog records, and (sent in order) all before it."""
        done = [s for s in self.changelog_pending if s <= seq]
        if done:
            self.changelog_pending = self.changelog_pending[len(done):]
            self._changelog_acked += done

    @property
    def has_acks(self) -> bool:
        return bool(self._acked or self._refused or self._changelog_acked)

    # ----- the transaction -----------------------------------------------------------------
    def process(
        self, items: list[Item], clock_ms: int | None = None,
        drain_horizon_ms: int | None = None, flush_analytics: bool = False,
    ) -> list[tuple[int, Output]]:
        """Apply ``items`` (in offset order) and fire timers due at ``clock_ms``.

        ``flush_analytics`` (the input ended) sends this partition's changed analytics
        counts now instead of at the next period.

        ``clock_ms`` defaults to the event-time watermark. With ``drain_horizon_ms`` (end of
        input), every timer due within that long after its customer's last event fires too.
        Returns the batch's outputs with their ids (``state.outbox``).

        A bug must not stop the flow: if applying an item (or firing a timer) raises, the
        transaction is thrown away, the batch is done again from the same starting point, and
        that item goes to the dead-letter topic (``processing.error``) instead; the timer is
        dropped with a ``timer.error`` record.
        """
        for _ in range(sum(len(i) if type(i) is list else 1 for i in items) + 16):
            acks, self._acked = self._acked, []
            refused, self._refused = self._refused, []
            logged, self._changelog_acked = self._changelog_acked, []
            txn = self.txn = BatchTransaction(self.store, self.progress, self.changelog)
            for seq in logged:  # not mirrored: a batch of only these sends no changelog
                txn.delete(keys.changelog(seq))
            if self.engine is not None:
                self.engine.begin(txn.counts)
            try:
                entries = self._process_once(items, acks, refused, clock_ms,
                                             drain_horizon_ms, flush_analytics)
                txn.commit()
            except Exception as e:  # noqa: BLE001 - see the docstring
                # The whole batch goes; it is done again from the committed state. Profiles it
                # touched may be half changed: the cache forgets them.
                for ref in txn.objects:
                    self.profiles.evict(ref)
                self.held_decoded.clear()
                self.waiting_timers.forget()
                txn.fail()
                self._acked = acks + self._acked
                self._refused = refused + self._refused
                self._changelog_acked = logged + self._changelog_acked
                self._dropped = []
                self._load_aggregates()
                culprit = txn.culprit
                if culprit is None or culprit in self._poisoned:
                    raise
                self._poisoned[culprit] = f"{type(e).__name__}: {e}"[:500]
                self.stats["processing_errors"] += 1
                continue
            self.progress = txn.progress
            self.waiting_timers.committed(txn)
            unacked = self.unacked
            unacked.resolved(self._resolving)
            for seq in self._dropped:
                unacked.dropped(seq)
            self._dropped = []
            outputs: list[tuple[int, Output]] = []
            for seq, entry in entries:
                unacked.added(seq, len(entry.outputs))
                base = outbox.output_id(seq, 0)
                outputs += [(base | i, o) for i, o in enumerate(entry.outputs)]
            txn.outbox = []  # the outputs live on in the caller's hands only (collector)
            self.changelog_out = txn.changelog_entry
            if txn.changelog_entry is not None:
                self.changelog_pending.append(txn.changelog_entry[0])
            self._source, self._restarts = None, {}
            sizes = txn.object_sizes
            for ref, p in txn.objects.items():
                if ref in sizes:
                    self.profiles.put(ref, p, sizes[ref])
                else:  # erased or merged away
                    self.profiles.evict(ref)
            self.analytics.changed = False
            if self.engine is not None:
                self.engine.nba.bandit.changed = False
            # Plain loops, not Counter.update: that one is a Python loop, run every batch.
            stats, counts = self.stats, self.counts
            for name, n in txn.stats.items():
                stats[name] = stats.get(name, 0) + n
            stats["outputs"] = stats.get("outputs", 0) + len(outputs)
            for label, n in txn.counts.items():
                counts[label] = counts.get(label, 0) + n
            self.batch_counts = txn.counts
            self.timer_lateness.extend(txn.lateness)
            return outputs
        raise RuntimeError("too many failing items in one batch")

    def _dead_letter_poisoned(self, item: object, topic: str, why: str) -> None:
        try:
            body = orjson.dumps((item.document() if isinstance(item, InEvent) else None)
                                or getattr(item, "body", None) or {})
        except (TypeError, ValueError):  # what raised may be the very document: keep its bytes
            body = getattr(item, "raw_json", None) or b"{}"
        raw = RawRecord(topic, int(item.part.rpartition("#")[2] or 0), item.offset,  # type: ignore[attr-defined]
                        None, body, [], 0)
        rec = _reject(raw, "processing.error", why, keep=self.settings.dead_letter_keep_bytes,
                      sub=getattr(item, "sub", 0))
        self.txn.stats["dead_lettered"] += 1
        self.txn.counts[("events", topic, "dead_lettered")] += 1
        self.txn.emit(Output(self.topics.dlq, None, orjson.dumps(rec.record)))

    def _process_once(
        self, items: list[Item], acks: list[int], refused: list[tuple[int, str]],
        clock_ms: int | None, drain_horizon_ms: int | None, flush_analytics: bool = False,
    ) -> list[tuple[int, outbox.Entry]]:
        txn = self.txn
        # Parked outputs leave the outbox as acknowledged ones do.
        found, emptied = self.unacked.resolve(acks + [seq for seq, _ in refused] if refused
                                              else acks)
        self._resolving = found
        if self._source is not None and txn.get(keys.SOURCE) != self._source:
            txn.put(keys.SOURCE, self._source)
        for topic, start in self._restarts.items():  # the input was reset: a new log
            txn.progress.applied[topic] = start - 1
        for seq, why in refused:
            refused_out = self.unacked.output(self.store, seq)
            if refused_out is not None:
                self._park(refused_out, why)
        for seq in emptied:
            txn.delete(keys.outbox(seq))
        self._sync_journeys(self.txn.progress.watermark if clock_ms is None else clock_ms)
        for entry in items:
            # A Segment batch payload is one message of several events: a list, applied
            # whole in this transaction (its events share the message's offset).
            group: Sequence[Decoded] = entry if isinstance(entry, list) else (entry,)
            if not group:
                continue
            head = group[0]
            topic = head.part.rpartition("#")[0]
            if head.offset <= self.txn.progress.applied.get(topic, -1):
                self.txn.stats["skipped_already_applied"] += len(group)
                self.txn.counts[("events", topic, "skipped")] += len(group)
                continue
            self.txn.progress.applied[topic] = head.offset
            for item in group:
                self._one(item, topic)
        self.txn.culprit = None
        self._claims_now = self.input_done or drain_horizon_ms is not None
        # Claims that waited for this partition's input to reach their time.
        self._due_claims(self._claims_now)
        self._flush_nba()
        self.txn.wall_clock = clock_ms is not None
        self._fire_timers(self.txn.progress.watermark if clock_ms is None else clock_ms)
        self._flush_nba()
        return self._finish(drain_horizon_ms, flush_analytics)

    def _one(self, item: Decoded, topic: str) -> None:
        """Apply one input item (the offset check is done)."""
        sub = 0 if isinstance(item, Routed) else item.sub
        self.txn.culprit = (topic, item.offset, sub) if sub else (topic, item.offset)
        why = self._poisoned.get(self.txn.culprit)
        if why is not None:
            self._dead_letter_poisoned(item, topic, why)
        elif isinstance(item, Routed):
            self._on_routed(item)
        elif isinstance(item, Rejected):
            if item.key:
                self._index_dead_letter(item.key, topic, item.offset)
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

    def _finish(self, drain_horizon_ms: int | None, flush_analytics: bool
                ) -> list[tuple[int, outbox.Entry]]:
        """The end of a batch: drain, analytics, alerts, profiles written back, prepare."""
        txn = self.txn
        if drain_horizon_ms is not None:
            self._drain(drain_horizon_ms)
            self._flush_nba()
            if not self.txn.progress.drain_pending:
                self._send_analytics()  # end of input: the final partials
        if flush_analytics or (self.events_ended and self.analytics.state["dirty"]):
            self._send_analytics()
        # This partition's alert counts to the owner of the totals (judged there, across
        # partitions); all of them at the end of the input.
        ended = flush_analytics or (drain_horizon_ms is not None
                                    and not txn.progress.drain_pending)
        watermark = txn.progress.watermark
        for hour, counts in self.alerts.take(watermark, force=ended):
            self._route(ALERTS_OWNER, {"kind": "analytics", "scope": "alerts", "id": "window",
                                       "version": hour, "src": self.partition,
                                       "at": watermark, "partial": counts})
        # Written only when changed: an idle batch (acknowledgements, a tick) must stage
        # nothing, or each one would send a changelog batch, whose acknowledgement makes
        # another batch, and so on.
        raw_alerts = orjson.dumps(self.alerts.state)
        if raw_alerts != self._alerts_raw:
            txn.put(keys.ALERTS, raw_alerts)
            self._alerts_raw = raw_alerts  # a failed batch reloads it (``_load_aggregates``)
        if self.analytics.changed:  # most small batches of a tailing flow change nothing
            txn.put(keys.ANALYTICS, orjson.dumps(self.analytics.state))
        if self.engine is not None and self.engine.nba.bandit.changed:
            txn.put(keys.BANDIT, self.engine.nba.bandit.encode())
        pending = txn.progress.timers_pending
        for ref, profile in txn.objects.items():
            pending += (0 if profile.gone else len(profile.timers)) - \
                txn.timers_before.get(ref, 0)
        txn.progress.timers_pending = max(pending, 0)
        if self.engine is not None and self.refresh_scores:
            model = self.engine.nba.loaded()
            if model is not None:  # one batched call for every profile the batch changed
                before = txn.score_inputs
                txn.stats["scores_refreshed"] += scores.refresh(
                    [p for ref, p in txn.objects.items() if not p.gone
                     and scores.stale(p, model, before.get(ref))], model)
        sizes = txn.object_sizes
        for ref, profile in txn.objects.items():
            if profile.gone:
                txn.delete(keys.profile(ref))
            else:
                txn.culprit = txn.blame.get(ref)  # who to blame if it cannot be stored
                raw = encode_profile(profile)
                if len(raw) > self.max_profile_bytes:
                    held_out = sum(profile.dropped.values())
                    raw = limits.shrink(profile, raw, self.max_profile_bytes, encode_profile)
                    txn.stats["limits_dropped"] += sum(profile.dropped.values()) - held_out
                txn.put(keys.profile(ref), raw)
                sizes[ref] = len(raw)
        txn.culprit = None
        # Scratch of this batch only: gone before the collector would walk it.
        txn.score_inputs, txn.blame = {}, {}
        self._park_oversized()
        txn.outbox = outbox.entries(txn.outbox)  # one outbox entry for the batch
        return txn.prepare()


    # ----- events --------------------------------------------------------------------------
    def _profile(self, ref: str, ts_ms: int) -> tuple[Profile, bool]:
        if self.txn.culprit is not None:
            self.txn.blame[ref] = self.txn.culprit
        p = self.txn.objects.get(ref)
        if p is not None and not p.gone:
            self._settle(ref)
            return p, False
        stored = None if p is not None else self._stored(ref)
        created = stored is None
        p = new_profile(ref, ts_ms) if stored is None else stored
        self._first_read(ref, p, created)
        self.txn.objects[ref] = p
        return p, created

    def _peek(self, ref: str) -> Profile | None:
        """The customer's profile as the batch has it, without taking it into the batch (so
        without writing it back): for a look that may change nothing. None: there is none."""
        p = self.txn.objects.get(ref)
        if p is not None:
            return None if p.gone else p
        return self._stored(ref)

    def _first_read(self, ref: str, p: Profile, created: bool) -> None:
        """Note what the batch found of a customer it reads (not yet in ``txn.objects``):
        its timers (``timers_pending``) and its score inputs (``scores.stale``)."""
        txn = self.txn
        txn.timers_before.setdefault(ref, len(p.timers))
        if not created and self.refresh_scores:
            txn.score_inputs.setdefault(ref, (scores.inputs(p), p.scores))

    def _stored(self, ref: str) -> Profile | None:
        """The customer's committed profile: from the cache if it is there, else the store.
        (A profile this batch changed is in ``txn.objects``, looked at first.)"""
        p = self.profiles.get(ref)
        if p is not None:
            return p
        raw = self.txn.get(keys.profile(ref))
        return None if raw is None else load_profile(raw)

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
        p = self._peek(ref)
        return None if p is None else self._take(ref, p)

    def _take(self, ref: str, p: Profile) -> Profile:
        """Take ``p`` (found by ``_peek``) into the batch: it is written back at its end."""
        if ref in self.txn.objects:
            self._settle(ref)
        else:
            self._first_read(ref, p, created=False)
            self.txn.objects[ref] = p
        return p

    def _apply(self, ev: InEvent) -> None:
        ref = self._owner(ev)
        if ref is None:
            return  # forwarded to the partition that owns its customer
        if ev.key in ERASURE_EVENTS:
            # What was due before the request still happens, in order; then it is all gone.
            p = self._existing_profile(ref)
            if p is not None and p.timers and min(p.timers.values()) <= ev.ts_ms:
                self._fire_customer(p, ev.ts_ms)
            self._erase(ref, ev.ts_ms, ev.message_id, ev.key)
            return
        p, created = self._profile(ref, ev.ts_ms)
        if created:
            erased = self.txn.get(keys.erased(ref))
            if erased is not None:
                p.erased_at = int(erased)
        if p.erased_at is not None and ev.ts_ms <= p.erased_at:
            if created:
                del self.txn.objects[ref]
            self.txn.stats["dropped_erased"] += 1  # data from before an erasure, arriving late
            return
        if self._hold(p, ev):
            return  # applied once the merge its customer waits for is
        topic = ev.part.rpartition("#")[0]
        if dedupe.seen_before(p, ev.message_id, self.settings.dedup_recent_ids):
            self.txn.stats["deduplicated"] += 1
            self.txn.counts[("events", topic, "deduplicated")] += 1
            return
        self.txn.stats["applied"] += 1
        self.txn.counts[("events", topic, "applied")] += 1
        if self.analytics_on and self.analytics.due(max(ev.ts_ms, self.txn.progress.watermark),
                                                    self.analytics_every_ms):
            self._send_analytics()  # what changed up to the previous period, before this event
        self.alerts.message(ev.ts_ms, dead=False)
        ts = ev.ts_ms
        # This customer's timers due before this event fire first, whatever the batching.
        if p.timers and min(p.timers.values()) <= ts:
            self._fire_customer(p, ts)
        if ts > self.txn.progress.watermark:
            self.txn.progress.watermark = ts
        held_out = sum(p.dropped.values()) if p.dropped else 0
        activity.record(p, ev, self.session_gap_ms, self.settings.profile_sums,
                        self.settings.limits, self.personal_traits)
        if p.dropped:
            self.txn.stats["limits_dropped"] += sum(p.dropped.values()) - held_out
        to = self.stages.requested(p.lifecycle.stage, ev.key)
        if to is not None:
            fx = Effects()
            lifecycle.request_stage(fx, self.stages, p, to, ts, {"message_id": ev.message_id})
            self._effects(fx)
        if self.stages.inactivity_timers and "inactivity" not in p.timers:
            self._arm(p, "inactivity", p.last_seen + self.stages.inactivity_ms)
        if self.stitching:
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
        if self.analytics_on:
            self.analytics.unsubscribed(channel)
        if self.engine is not None:
            self._effects(self.engine.exit_all(p, at, cause, f"consent.{channel}.opted_out"))

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

    # ----- effects: the one place they are applied to the batch ---------------------------
    def _effects(self, fx: Effects) -> None:
        """Apply what a decision returned, in order."""
        txn = self.txn
        for e in fx.items:
            if type(e) is Emit:
                self._emit(e)
            elif type(e) is ArmTimer:
                p = e.profile
                old = p.timers.get(e.kind)
                if old is not None and old != e.due_ms:
                    txn.delete(keys.timer(old, p.ref, e.kind))
                self._arm(p, e.kind, e.due_ms)
            elif type(e) is CancelTimer:
                old = e.profile.timers.pop(e.kind, None)
                if old is not None:
                    txn.delete(keys.timer(old, e.profile.ref, e.kind))
            elif type(e) is IndexPut:
                txn.put(e.key, b"")
            elif type(e) is Count:
                txn.stats[e.what] += 1
            else:
                assert type(e) is IndexDelete
                txn.delete(e.key)

    def _emit(self, e: Emit) -> None:
        record = e.record
        if e.kind == "dispatch":
            self.alerts.sent(record["channel"], record["at_ms"])
            if self.analytics_on:
                self.analytics.dispatch(record)
            topic = self.topics.dispatch(e.channel)  # type: ignore[arg-type]
        elif e.kind == "decision":
            if self.analytics_on:
                self.analytics.decision(record)
            if not self.decisions_out:
                return
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
            if self.analytics_on:
                self.analytics.journey_event(record)
            if not self.journey_events_out:
                return
            topic = self.topics.journey_events
        ev = self.txn.current
        src = (ev.ts_ms, ev.kafka_ts_ms, ev.read_ns) if ev is not None else None
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
