"""Identity stitching inside the partition step: which customer an event belongs to, forwarding
to the partition that owns it, claims of identifiers, and merges handed from the loser's home
partition to the winner's through ``segue.repartition``.

A merge is one transaction on each side with its outbox, so a crash mid-merge leaves the old
state or the merged one, never half; a redelivered merge is ignored."""

from __future__ import annotations

import orjson
from mypy_extensions import trait

from models.envelope import SCHEMA_VERSION, idempotency_key
from models.events import ERASURE_REQUESTED
from models.identifiers import kind_of, primary_ref, value_of, winner
from models.in_event import InEvent
from models.profile import Profile, from_plain, mark_gone, plain
from operators.customer import lifecycle, limits
from operators.decode import RawRecord, Routed, decode
from operators.effects import Effects
from operators.identity.merge import identifiers, merge_profile_data
from operators.identity.routing import home_partition
from operators.partition_parts import PartitionParts
from state import keys
from state.outbox import Output
from state.windows import upgrade as upgrade_counters

MAX_HELD = 10_000  # events one customer may hold back while its claims are answered
# Held events kept decoded in memory as well (by their ``w|`` key), so that a release does
# not decode them again; beyond this many the rest are decoded from the store when released.
MAX_HELD_DECODED = 50_000


def _over_limit(before: set[str], after: set[str], limits: dict[str, int]) -> str | None:
    """The first kind of identifier ``after`` holds more of than ``limits`` allows (10 for a
    kind not named) and more of than ``before`` did; None when the merge fits."""
    for kind in sorted({kind_of(x) for x in after}):
        n = sum(1 for x in after if kind_of(x) == kind)
        if n > limits.get(kind, 10) and n > sum(1 for x in before if kind_of(x) == kind):
            return kind
    return None


@trait
class IdentityStitching(PartitionParts):
    """The partition's identity handling (a part of ``Partition``)."""

    def _unindex(self, p: Profile, ref: str) -> tuple[int, int]:
        """Delete the index keys of ``ref``'s timers and held sends (the customer leaves this
        partition: merged away or erased); returns how many of each went."""
        txn = self.txn
        for kind, due in p.timers.items():
            txn.delete(keys.timer(due, ref, kind))
        held = 0
        for jid, run in p.journeys.items():
            if run.held and run.held.get("indexed"):
                txn.delete(keys.held(jid, run.held["at"], ref))
                run.held["indexed"] = False
                held += 1
        return len(p.timers), held

    def _moved_on(self, w: str, hops: int, body: dict) -> bool:
        """If ``w`` was itself merged into another customer, send ``body`` (a message meant
        for ``w``) on to it, one hop more, and say so."""
        moved = self.txn.get(keys.redirect(w))
        if moved is None or hops >= self.settings.identity.max_hops:
            return False
        r = moved.decode()
        self._route(r, {**body, "into": r, "hops": hops + 1})
        return True

    # ----- identity ------------------------------------------------------------------------
    def home(self, ref: str) -> int:
        return home_partition(value_of(ref), self.partitions)

    def _owner(self, ev: InEvent) -> str | None:
        """The reference of the customer this event belongs to, if this partition owns it;
        else forward the event to the partition that does and return None."""
        if ev.canonical is None:
            primary = primary_ref(ev.user_id, ev.anonymous_id)
            cached = self.txn.objects.get(primary)
            if cached is not None and not cached.gone:
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
        body["app"] = self.app_id  # receivers ignore what another application sent
        self.txn.emit(Output(self.topics.repartition, value_of(target), orjson.dumps(body),
                                part))

    def _link(self, p: Profile, ev: InEvent) -> None:
        """Claim the event's identifiers this customer does not hold yet (within limits)."""
        links = p.links
        if not ev.traits and ev.device_id is None and ev.type != "alias":
            # Most events carry only ids the customer holds already: no set, no sort.
            uid, aid = ev.user_id, ev.anonymous_id
            if (not uid or f"user:{uid}" in links) and (not aid or f"anon:{aid}" in links):
                return
        ids = identifiers(ev, self.id_traits, self.blocked_emails)
        new = sorted(ids.difference(links))
        if not new:
            return
        limits = self.settings.identity.max_links
        for x in new:
            kind = kind_of(x)
            held = sum(1 for y in p.links if kind_of(y) == kind)
            if held >= limits.get(kind, 10):
                self.txn.stats["links_refused"] += 1
                self._emit_identity("identity.link_refused", p.id, p.ref, ev.ts_ms,
                                    {"message_id": ev.message_id},
                                    reason=f"identity.limit.{kind}",
                                    identifier=x if kind != "email" else "email:<hashed>")
                continue
            p.links.append(x)
            # The customer's next events wait until this claim is answered (a merge of the
            # history behind x, or "no merge"): they are evaluated on the merged state.
            p.awaiting[x] = ev.ts_ms
            self._route(x, {"kind": "claim", "id": x, "canonical": p.ref, "at": ev.ts_ms,
                            "cause": ev.message_id})

    def _on_routed(self, m: Routed) -> None:
        b = m.body
        if m.kind == "claim":
            self._claim(b["id"], b["canonical"], b["at"], b.get("cause"))
        elif m.kind == "claimed":
            self._answered(b["to"], b["id"], b.get("refused", False))
        elif m.kind == "merge_out":
            self._merge_out(b["from"], b["into"], b["at"], b.get("hops", 0), b.get("for"),
                            b.get("checked", False), b.get("erased", False))
        elif m.kind == "merge_check":
            self._merge_check(b["from"], b["into"], b["links"], b["at"], b.get("hops", 0),
                              b.get("for"))
        elif m.kind == "merge":
            self._merge_in(b["from"], b["into"], b.get("profile"), b["at"], b.get("hops", 0),
                           b.get("for"))
        elif m.kind == "analytics":
            self._on_partial(b)
        elif m.kind == "relink":
            self.txn.put(keys.link(b["id"]), b["canonical"].encode())
        elif m.kind == "unlink":  # erasure of the customer it pointed to
            txn = self.txn
            assert txn is not None
            x = b["id"]
            for key in (keys.link(x), keys.redirect(x)):
                v = txn.get(key)
                if v is not None and v.decode() == b["ref"]:
                    txn.delete(key)
                    if "at" in b and kind_of(x) in ("user", "anon") \
                            and not self._erased_since(x, b["at"]):
                        # x's events from before the request belonged to the erased
                        # customer: one still unread here is dropped when it comes (the
                        # marker), not kept as a customer of its own.
                        txn.put(keys.erased(x), b"%d" % b["at"])
            for key, v in list(txn.scan(keys.CLAIM)):  # its claim still waiting here: gone
                x, c, _ = orjson.loads(v)
                if x == b["id"] and c == b["ref"]:
                    txn.delete(key)
                    if "at" in b and kind_of(x) in ("user", "anon") \
                            and txn.get(keys.link(x)) is None \
                            and txn.get(keys.redirect(x)) is None:
                        # The claim would have merged x's own history (a customer of its
                        # own, if any) into the erased customer: it goes too, and x's late
                        # events from before the request with it (the marker drops them).
                        self._erase(x, b["at"], str(b.get("cause") or ""),
                                    str(b.get("event") or ERASURE_REQUESTED))
            raw = txn.get(keys.claimants(b["id"]))
            if raw is not None:  # no raw id of the erased customer stays here
                users = [u for u in orjson.loads(raw) if u != b["ref"]]
                if users:
                    txn.put(keys.claimants(b["id"]), orjson.dumps(users))
                else:
                    txn.delete(keys.claimants(b["id"]))
        elif m.kind == "foreign":  # another application's (see ``decode_routed``)
            self.txn.stats["internal_foreign"] += 1
        else:
            self.txn.stats["internal_unknown"] += 1

    def _claim(self, x: str, c: str, at: int, cause: str | None) -> None:
        """At x's home: x belongs to customer c. Merges when x already belongs to another.

        While this partition has not read its own input up to the claim's time, events of x
        older than the claim may still be unread here (an anonymous visitor's page views
        before the sign-up): the claim waits for them (``k|`` keys, answered by
        ``_due_claims``), so the merge takes x's whole history whatever the timing."""
        txn = self.txn
        assert txn is not None
        if at > txn.progress.watermark and not self._claims_now:
            txn.put(keys.claim(at, x, c), orjson.dumps([x, c, cause]))
            txn.stats["claims_waiting"] += 1
            self._claims_stored = True
            return
        self._claim_now(x, c, at, cause)

    def _due_claims(self, everything: bool) -> None:
        """Answer the waiting claims this partition's input has now reached (all of them
        when ``everything``: the input is caught up or has ended)."""
        if not self._claims_stored:  # the common case: no scan on every batch
            return
        txn = self.txn
        assert txn is not None
        upto = txn.progress.watermark
        left = False
        for k, v in list(txn.scan(keys.CLAIM)):
            at = int(k[2:18], 16)
            if not everything and at > upto:
                left = True
                break
            txn.delete(k)
            x, c, cause = orjson.loads(v)
            self._claim_now(x, c, at, cause)
        self._claims_stored = left

    def _claim_now(self, x: str, c: str, at: int, cause: str | None) -> None:
        txn = self.txn
        assert txn is not None
        raw = txn.get(keys.link(x))
        cur = raw.decode() if raw is not None else None
        if cur is None:
            moved = txn.get(keys.redirect(x))
            if moved is not None:
                cur = moved.decode()
            elif x != c and self._peek(x) is not None:
                cur = x  # x is a customer of its own (e.g. anonymous history): merge it
        if cur is None or cur == c:
            if x != c:
                txn.put(keys.link(x), c.encode())
            self._route(c, {"kind": "claimed", "id": x, "to": c})
            return
        if kind_of(cur) == "user" and kind_of(c) == "user" and kind_of(x) != "user" \
                and self._shared(x, cur, c):
            # Two people behind one address (a shared inbox, a family device): never merged.
            self.txn.stats["links_refused"] += 1
            self._emit_identity("identity.link_refused", value_of(c), c, at,
                                {"message_id": cause}, reason="identity.shared_identifier",
                                identifier=x if kind_of(x) != "email" else "email:<hashed>",
                                held_by=value_of(cur))
            self._route(c, {"kind": "claimed", "id": x, "to": c})
            return
        w = winner(cur, c)
        loser = c if w == cur else cur
        txn.put(keys.link(x), w.encode())
        self._route(loser, {"kind": "merge_out", "from": loser, "into": w, "at": at, "hops": 0,
                            "for": {"id": x, "to": c}})

    # ----- events that wait for the merges their customer claimed ------------------------
    def _answer(self, answers: dict | None, refused: bool = False) -> None:
        if answers:
            body = {"kind": "claimed", "id": answers["id"], "to": answers["to"]}
            if refused:
                body["refused"] = True
            self._route(answers["to"], body)

    def _answered(self, ref: str, x: str, refused: bool = False) -> None:
        """At the claimant's home: its claim of ``x`` is answered (``refused``: x stays with
        the customer that had it); once none is left, what it held back is applied, in
        order."""
        # Looked at first, taken into the batch (written back) only when it changes.
        p = self._peek(ref)
        if p is None:
            return
        if refused and x in p.links:
            self._take(ref, p).links.remove(x)
        if not p.awaiting or x not in p.awaiting:
            return
        del self._take(ref, p).awaiting[x]
        if not p.awaiting:
            self._release(p)

    def _hold(self, p: Profile, ev: InEvent) -> bool:
        """Keep ``ev`` back while its customer awaits a claim's answer (bounded)."""
        if not p.awaiting:
            return False
        n = p.held_events
        if n >= MAX_HELD:  # never unbounded: apply as it comes, and say so
            self.txn.stats["held_overflow"] += 1
            return False
        p.held_events = n + 1
        # The event's own bytes, behind a small header: no decode and encode to hold it.
        body = ev.raw_json if ev.raw is None and ev.raw_json is not None \
            else orjson.dumps(ev.document())
        key = keys.waiting(p.ref, p.held_seq)
        self.txn.put(key, orjson.dumps([ev.kafka_ts_ms, ev.hops, ev.part, ev.offset])
                     + b"\n" + body)
        if len(self.held_decoded) < MAX_HELD_DECODED:
            self.held_decoded[key] = ev
        p.held_seq += 1
        self.txn.stats["held_for_merge"] += 1
        return True

    def _release(self, p: Profile) -> None:
        ref = p.ref
        # The held events are w|<ref>|<seq> for the last ``held_events`` sequence numbers
        # (held in order, released from the oldest). When each is still decoded in memory,
        # no store scan is needed: the common case, held and released within seconds.
        n, decoded = p.held_events, self.held_decoded
        held = [keys.waiting(ref, seq) for seq in range(p.held_seq - n, p.held_seq)]
        found: list[tuple[bytes, bytes | None]] = \
            [(k, None) for k in held] if n > 0 and all(k in decoded for k in held) \
            else list(self.txn.scan(keys.waiting(ref)))
        skew = self.settings.max_future_skew_s * 1000
        for k, v in found:
            if p.awaiting or p.gone:
                return  # a released event claimed again: the rest waits for that
            if self.txn.deleted(k):
                # Released meanwhile: a released event's claim was answered at once (an
                # identifier this partition owns), and that answer released the rest.
                continue
            self.txn.delete(k)
            p.held_events -= 1
            ev = decoded.pop(k, None)  # as held: its part, hops and offset too
            if ev is None:  # held before a restart, or beyond MAX_HELD_DECODED
                if v is None:
                    continue  # listed from memory: cannot happen
                head, _, body = v.partition(b"\n")
                kafka_ts, hops, part, offset = orjson.loads(head)
                again = decode(RawRecord(self.topics.events, self.partition, offset, None, body,
                                         [], kafka_ts), max_bytes=1 << 30,
                               max_future_skew_ms=skew)
                if not isinstance(again, InEvent):
                    continue  # validated when it came in: cannot happen
                ev = again
                ev.part, ev.hops = part, hops
            ev.canonical, ev.sub = ref, 0
            outer = self.txn.culprit
            self.txn.culprit = (ev.part.rpartition("#")[0], ev.offset)  # blamed if it raises
            self._apply(ev)
            self.txn.culprit = outer

    def _shared(self, x: str, cur: str, c: str) -> bool:
        """Whether more distinct user ids than allowed claim ``x`` (kept at x's home, at most
        one more than the limit)."""
        key = keys.claimants(x)
        raw = self.txn.get(key)
        users = orjson.loads(raw) if raw else [cur]
        limit = self.settings.identity.max_users_per_identifier
        if c not in users and len(users) <= limit:
            users.append(c)
            self.txn.put(key, orjson.dumps(users))
        return len(users) > limit

    def _merge_out(self, loser: str, w: str, at: int, hops: int,
                   answers: dict | None = None, checked: bool = False,
                   erased: bool = False) -> None:
        """At the loser's home: hand its whole state to the winner, leave a redirect.
        ``answers`` is the claim this merge answers (the claimant waits for it)."""
        txn = self.txn
        assert txn is not None
        if loser == w:
            self._answer(answers)
            return
        moved = txn.get(keys.redirect(loser))
        if moved is not None:
            r = moved.decode()
            if r != w and hops < self.settings.identity.max_hops:
                # Already merged into r: r and w are one customer too.
                w2 = winner(r, w)
                l2 = r if w2 == w else w
                self._route(l2, {"kind": "merge_out", "from": l2, "into": w2, "at": at,
                                 "hops": hops + 1, "for": answers})
            else:
                self._answer(answers)
            return
        p = self._peek(loser)  # taken into the batch below, where it changes
        if erased:
            # The winner was erased after this merge was asked for: the history it would have
            # taken goes the same way, and nothing here points to the winner any more.
            self._drop_erased_loser(loser, None if p is None else self._take(loser, p))
            self._answer(answers)
            return
        if p is not None and not checked:
            # First ask the winner whether the two customers' links fit the limits together
            # (it answers with a checked merge_out, or refuses): a merge never makes a
            # customer hold more identifiers of a kind than identity.max_links allows.
            self._route(w, {"kind": "merge_check", "from": loser, "into": w,
                            "links": sorted({*p.links, loser}), "at": at, "hops": hops,
                            "for": answers})
            return
        txn.put(keys.redirect(loser), w.encode())
        txn.put(keys.link(loser), w.encode())
        snapshot = None
        if p is not None:
            p = self._take(loser, p)
            self._unindex(p, loser)
            snapshot = plain(p)
            snapshot.pop("awaiting", None)
            mark_gone(p)
            for y in snapshot["links"]:
                if y != loser:
                    self._route(y, {"kind": "relink", "id": y, "canonical": w})
        self._route(w, {"kind": "merge", "from": loser, "into": w, "profile": snapshot,
                        "at": at, "hops": hops, "for": answers})
        # What the loser held back goes after its state, to be applied on the merged one.
        for k, v in list(txn.scan(keys.waiting(loser))):
            txn.delete(k)
            self.held_decoded.pop(k, None)
            head, _, body = v.partition(b"\n")
            kafka_ts, hops, _part, _offset = orjson.loads(head)
            self._route(w, {"kind": "event", "canonical": w, "hops": hops + 1,
                            "event": orjson.loads(body), "kafka_ts": kafka_ts})

    def _merge_check(self, loser: str, w: str, links: list[str], at: int, hops: int,
                     answers: dict | None) -> None:
        """At the winner's home: may ``loser`` (holding ``links``) merge into ``w``? Yes: the
        loser hands its state over (a checked merge_out). No, when together they would hold
        more identifiers of a kind than allowed and more than ``w`` holds already: the
        customers stay apart, ``identity.link_refused`` says why, and the claim that asked
        for the merge is answered as refused."""
        if self._moved_on(w, hops, {"kind": "merge_check", "from": loser, "links": links,
                                    "at": at, "for": answers}):
            return
        if self._erased_since(w, at):  # erased meanwhile: the loser's history goes too
            self._route(loser, {"kind": "merge_out", "from": loser, "into": w, "at": at,
                                "hops": hops, "for": answers, "checked": True,
                                "erased": True})
            return
        p = self._peek(w)  # read only: not written back
        mine = set(p.links) | {w} if p is not None else {w}
        kind = _over_limit(mine, mine | set(links), self.settings.identity.max_links)
        if kind is None:
            self._route(loser, {"kind": "merge_out", "from": loser, "into": w, "at": at,
                                "hops": hops, "for": answers, "checked": True})
            return
        self.txn.stats["links_refused"] += 1
        claimant = answers["to"] if answers else w
        x = answers["id"] if answers else loser
        self._emit_identity("identity.link_refused", value_of(claimant), claimant, at,
                            {"merge": loser}, reason=f"identity.limit.{kind}",
                            identifier=x if kind_of(x) != "email" else "email:<hashed>",
                            held_by=value_of(loser if claimant != loser else w))
        if answers and answers["to"] != loser:
            # x's home linked x to the claimant (the winner) when it asked for this merge:
            # x stays with the customer that had it.
            self._route(x, {"kind": "relink", "id": x, "canonical": loser})
        self._answer(answers, refused=True)

    def _drop_erased_loser(self, loser: str, p: Profile | None) -> None:
        txn = self.txn
        assert txn is not None
        self.txn.stats["dropped_erased"] += 1
        if p is not None:
            self._unindex(p, loser)
            for y in p.links:
                if y != loser:
                    self._route(y, {"kind": "unlink", "id": y, "ref": loser})
            mark_gone(p)
        for k, _ in list(txn.scan(keys.waiting(loser))):
            txn.delete(k)
            self.held_decoded.pop(k, None)
        for key in (keys.profile(loser), keys.link(loser), keys.redirect(loser)):
            txn.delete(key)

    def _merge_in(self, loser: str, w: str, snapshot: dict | None, at: int, hops: int,
                  answers: dict | None = None) -> None:
        """At the winner's home: fold the loser's state in, exactly once; then the events
        that waited for it (if this answers the winner's claim) are applied."""
        if self._moved_on(w, hops, {"kind": "merge", "from": loser, "profile": snapshot,
                                    "at": at, "for": answers}):
            return
        self._fold_in(loser, w, snapshot, at)
        self._answer(answers)

    def _fold_in(self, loser: str, w: str, handed: dict | None, at: int) -> None:
        if self._erased_since(w, at):  # merged history from before an erasure: dropped
            self.txn.stats["dropped_erased"] += 1
            return
        snapshot = None if handed is None else from_plain(handed)
        if snapshot is not None:  # an earlier version hands over counters of the old shape
            upgrade_counters(snapshot.counters)
        p, _ = self._profile(w, snapshot.first_seen if snapshot else at)
        if loser in p.merged_from:
            return  # a redelivered merge
        p.merged_from.append(loser)
        if snapshot is not None:  # what the loser had absorbed counts as merged here too
            for ref in snapshot.merged_from:
                if ref not in p.merged_from:
                    p.merged_from.append(ref)
        if loser not in p.links:
            p.links.append(loser)
        if snapshot is not None:
            merge_profile_data(p, snapshot, self.settings.dedup_recent_ids)
            self.txn.stats["limits_dropped"] += limits.enforce(p, self.settings.limits)
            fx = Effects()
            lifecycle.merge(fx, p, snapshot)
            self._effects(fx)
            if self.engine is not None:
                self._effects(self.engine.adopt_runs(p, snapshot, at))
            if self.stages.inactivity_timers and "inactivity" not in p.timers:
                self._arm(p, "inactivity", p.last_seen + self.stages.inactivity_ms)
        self.txn.stats["merges"] += 1
        self._emit_identity("identity.merged", p.id, w, at, {"merge": loser},
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
