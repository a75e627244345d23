"""Settings: one validated model with documented defaults (``segue.config`` reads YAML).

Example:
    >>> s = Settings()
    >>> s.topics.events
    'segue.events'
    >>> Settings(prefix="t1.").topics.dispatch("email")
    't1.dispatch.email'
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from models.conditions import Condition

STAGES = (
    "awareness",
    "consideration",
    "activation",
    "retention",
    "expansion",
    "advocacy",
    "at-risk",
    "win-back",
)
Stage = Literal[
    "awareness",
    "consideration",
    "activation",
    "retention",
    "expansion",
    "advocacy",
    "at-risk",
    "win-back",
]
DAY_S = 86_400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topics:
    """Topic names, all under one prefix (default ``segue.``); the internal topic under the
    application id (default: the prefix without its dot, so ``segue.repartition``)."""

    def __init__(self, prefix: str, app_id: str | None = None) -> None:
        self.prefix = prefix
        self.events = f"{prefix}events"
        self.dlq = f"{prefix}dlq"
        self.customer_events = f"{prefix}customer-events"
        self.decisions = f"{prefix}decisions"
        self.journey_events = f"{prefix}journey-events"
        # Internal: events and merges between partitions, one application's own.
        self.repartition = f"{app_id}.repartition" if app_id else f"{prefix}repartition"
        # Internal: every partition store's changes (``state.changelog``), compacted.
        self.changelog = f"{app_id}.changelog" if app_id else f"{prefix}changelog"
        self.alerts = f"{prefix}alerts"
        self.analytics = f"{prefix}analytics"

    def dispatch(self, channel: str) -> str:
        return f"{self.prefix}dispatch.{channel}"

    def all_outputs(self) -> list[str]:
        return [self.dlq, self.customer_events, self.decisions, self.journey_events, self.alerts,
                self.analytics]


class LifecycleTransition(_Strict):
    """Move a customer to ``to`` when one of ``on`` happens while in one of ``from_``.

    ``on`` holds event keys: a track event's name (``Order Completed``), ``page:<name>``,
    ``screen:<name>``, a call type (``identify``), or ``*`` for any event. ``from_`` holds
    stages, ``none`` for a customer without a stage yet, or ``*`` for any stage.
    """

    on: list[str] = Field(min_length=1)
    to: Stage
    from_: list[str] = Field(default=["*"], alias="from")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, v: object) -> object:
        # YAML 1.1 reads an unquoted `on:` key as the boolean true.
        if isinstance(v, dict) and True in v and "on" not in v:
            v = {("on" if k is True else k): x for k, x in v.items()}
        return v


DEFAULT_TRANSITIONS = [
    LifecycleTransition(on=["Subscription Cancelled"], to="at-risk", **{"from": ["*"]}),
    LifecycleTransition(on=["*"], to="win-back", **{"from": ["at-risk"]}),
    LifecycleTransition(
        on=["Invite Sent", "Referral Sent", "Review Submitted"],
        to="advocacy",
        **{"from": ["retention", "expansion"]},
    ),
    LifecycleTransition(
        on=["Subscription Upgraded", "Plan Upgraded"],
        to="expansion",
        **{"from": ["activation", "retention", "win-back"]},
    ),
    LifecycleTransition(
        on=["Order Completed", "Subscription Renewed"],
        to="retention",
        **{"from": ["none", "awareness", "consideration", "activation", "win-back"]},
    ),
    LifecycleTransition(
        on=["Signed Up", "Account Created", "Feature Activated"],
        to="activation",
        **{"from": ["none", "awareness", "consideration"]},
    ),
    LifecycleTransition(
        on=["Trial Started", "Product Added", "Checkout Started", "page:Pricing"],
        to="consideration",
        **{"from": ["none", "awareness"]},
    ),
    LifecycleTransition(on=["*"], to="awareness", **{"from": ["none"]}),
]


class LifecycleRules(_Strict):
    """Lifecycle stage rules; the first matching transition wins."""

    transitions: list[LifecycleTransition] = Field(default=DEFAULT_TRANSITIONS)
    min_stage_duration_s: int = Field(
        default=3 * DAY_S,
        ge=0,
        description="A stage change requested earlier than this after the last change waits "
        "(on a durable timer) until the minimum has passed; the newest request wins.",
    )
    inactivity_s: int = Field(
        default=21 * DAY_S, gt=0, description="No activity for this long moves the customer."
    )
    inactivity_stage: Stage = "at-risk"
    inactivity_from: list[str] = Field(
        default=["activation", "retention", "expansion", "advocacy", "win-back"]
    )


class ProfileSum(_Strict):
    """Sum ``value`` by ``by`` over ``event``'s properties; journeys read the leader as
    ``profile.top.<name>`` (e.g. the content category a customer spent most time on)."""

    name: str
    event: str
    by: str
    value: str


class IdentitySettings(_Strict):
    """Identity resolution limits (as Segment's identity rules): links beyond a limit are
    refused with a reason instead of growing a customer without bound."""

    max_links: dict[str, int] = Field(
        default={"user": 5, "email": 10, "device": 20, "trait": 10, "anon": 50},
        description="most identifiers of each kind one customer may hold")
    traits: list[str] = Field(default=[], description="traits that also identify a customer")
    max_hops: int = Field(default=8, ge=2, description="forwarding limit (loop guard)")
    stitching: bool = Field(
        default=True, description="claim the identifiers events carry and merge customers "
        "that share one (anonymous history into the sign-up, two ids of one person). Off, "
        "for ids resolved upstream (a CDP's canonical id): every event belongs to its "
        "userId, else its anonymousId; links and merges made before are still followed")
    max_users_per_identifier: int = Field(
        default=1, ge=1, description="an email, device or trait id claimed by more distinct "
        "user ids than this never merges them (a shared or placeholder address)")
    blocked_emails: list[str] = Field(
        default=["test@test.com", "test@example.com", "email@example.com", "none@none.com",
                 "no@email.com", "noemail@noemail.com", "null@null.com", "a@a.com"],
        description="placeholder addresses that never identify anyone (as are addresses "
                    "whose local part is noreply, no-reply or donotreply)")


class OutputSettings(_Strict):
    """Which of the optional output streams the flow produces. Dispatch commands, dead
    letters, customer events and alerts always go out; a stream switched off is not built
    (a deployment that does not read it saves its cost and the broker's). The dashboard,
    Studio's counts and replay's per-journey table read journey events, decisions and
    analytics: with those off they show none."""

    decisions: bool = Field(default=True, description="segue.decisions: every delivery "
                            "decision with its reasons (the audit log)")
    journey_events: bool = Field(default=True, description="segue.journey-events: entries, "
                                 "steps, exits and goals (also exits' `emit` events)")
    analytics: bool = Field(default=True, description="segue.analytics: journey and channel "
                            "totals, with the partials partitions send for them and the "
                            "alerts judged on them (step drop-off, conversion below target)")


class ProfileLimits(_Strict):
    """Bounds on one customer's state, so that no sender can grow a profile (or the merge
    that hands it over) without limit. What a limit keeps out is counted in the profile's
    ``dropped`` and in the run's ``limits_dropped``; nothing else changes."""

    max_counters: int = Field(default=500, ge=1, description="distinct event names with "
                              "sliding-window counters; later new names are not counted")
    max_traits: int = Field(default=200, ge=1, description="distinct trait names")
    max_trait_bytes: int = Field(default=4096, ge=64, description="a trait value larger than "
                                 "this (as JSON) is not stored")
    max_sum_keys: int = Field(default=200, ge=1, description="distinct keys of one profile sum")
    max_groups: int = Field(default=20, ge=1, description="groups (accounts) one customer "
                            "belongs to")
    max_profile_bytes: int = Field(
        default=256 * 1024, ge=16 * 1024, description="a stored profile over this is trimmed: "
        "the least recently active counters first, then the largest traits")


class PrivacySettings(_Strict):
    """Personal data in traits. Emails are always kept as their SHA-256 only (``email_sha256``,
    also the identity link); the traits named here are hashed (``<name>_sha256``), dropped,
    or kept as sent."""

    personal_traits: dict[str, Literal["hash", "drop", "keep"]] = Field(
        default={"phone": "hash", "ip": "hash"},
        description="trait name -> hash (stored as <name>_sha256), drop, or keep")
    dlq_retention_days: int = Field(
        default=30, ge=0, description="retention of the dead-letter topic Segue creates (it "
        "holds raw payloads); 0 keeps them forever")


class PolicySettings(_Strict):
    """Delivery policy: caps, send windows, consent defaults, fallback (seeds 000 and 001)."""

    caps: dict[str, dict[Literal["day", "week"], int]] = Field(default={
        "email": {"day": 2, "week": 2},
        "push": {"day": 3, "week": 3},
        "sms": {"day": 1, "week": 1},
        "in_app": {"week": 5},
        "ads": {"day": 5},
        "total": {"week": 8},
    }, description="per channel and 'total' across channels; sliding windows in event time")
    send_windows: dict[str, str] = Field(default={
        "email": "09:00-20:00", "push": "08:00-22:00", "sms": "09:00-21:00",
    }, description="local time of the customer; channels not listed send around the clock")
    blackout_dates: list[str] = Field(default=[], description="YYYY-MM-DD, customer's local date")
    default_timezone: str = "UTC"
    consent_defaults: dict[str, Literal["opted_in", "opted_out"]] = Field(
        default={"sms": "opted_out"},
        description="marketing consent before any Consent Updated event (others: opted_in)")
    fallback: dict[str, str] = Field(default={
        "sms": "email", "push": "inbox", "email": "in_app", "in_app": "badge",
    }, description="next channel when one is capped, unconsented, suppressed or failing; "
                   "'enrich' ends a chain with a silent profile update")
    max_defer_s: int = Field(default=7 * DAY_S, ge=0,
                             description="a capped send waits at most this long, else drops")

    @field_validator("send_windows")
    @classmethod
    def _windows(cls, v: dict[str, str]) -> dict[str, str]:
        import re

        for ch, w in v.items():
            if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d", w):
                raise ValueError(f"{ch}: {w!r} is not a window like 09:00-20:00")
            if w[:5] >= w[6:]:
                raise ValueError(f"{ch}: {w!r} must end after it starts (windows do not "
                                 "cross midnight; 00:00-24:00 is around the clock)")
        return v


class AlertSettings(_Strict):
    """Thresholds for alerts on ``segue.alerts`` (channel failure and DLQ rate: judged on the
    totals of all partitions, per hour of event time)."""

    channel_failure_rate: float = Field(default=0.2, gt=0, le=1,
                                        description="failed / sent dispatches of a channel")
    channel_min_sends: int = Field(default=20, ge=1, description="no verdict on fewer sends")
    dlq_rate: float = Field(default=0.05, gt=0, le=1, description="dead letters / messages")
    dlq_min_messages: int = Field(default=100, ge=1)
    step_dropoff_share: float = Field(
        default=0.5, gt=0, le=1, description="share of a journey's exits since its last "
        "analytics total that left at one step before the end (and at least twice that "
        "step's share before)")
    step_min_exits: int = Field(default=50, ge=1, description="no verdict on fewer exits")
    lag_growth_checks: int = Field(default=6, ge=2, description="input lag grew this many "
                                   "checks in a row (one check every 10 s)")
    lag_min_messages: int = Field(default=10_000, ge=1, description="and is at least this")


class AnalyticsSettings(_Strict):
    """Journey and channel analytics on ``segue.analytics``."""

    every_s: int = Field(default=3600, gt=0, description="a partition sends what changed "
                         "each time its event time enters a new period of this length")
    min_customers_per_arm: int = Field(default=100, ge=1, description="below this a split "
                                       "or holdout comparison says 'needs more data'")
    sequential_tau: float = Field(
        default=0.02, gt=0, le=1,
        description="splits and holdouts are judged by an always-valid sequential test "
                    "(mSPRT): the spread of the absolute lifts it is tuned to find (0.02: "
                    "about 2 points; smaller finds small lifts sooner and large ones later)")


NBA_CHANNELS = Literal["email", "sms", "push", "in_app", "webhook", "ads", "inbox", "content",
                       "none"]


class NbaAction(_Strict):
    """One action of the next-best-action inventory.

    Eligible when every rule holds: ``stages`` (lifecycle), ``plans`` / ``tiers`` (the
    ``plan`` / ``tier`` traits), ``when`` (a condition, as in journeys), ``vip`` (``allow``,
    ``never`` or ``only`` for customers matching ``nba.vip_when``) and ``blackout`` (the
    customer's local dates, ``YYYY-MM-DD`` or ``YYYY-MM-DD..YYYY-MM-DD``). ``cost`` is in the
    same unit as ``nba.conversion_value``. Channel ``none`` is "do nothing".
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    channel: NBA_CHANNELS
    template: str = ""
    cost: float = Field(default=0.0, ge=0)
    stages: list[Stage] = Field(default=[], description="allowed stages (empty: all)")
    plans: list[str] = Field(default=[], description="allowed 'plan' traits (empty: all)")
    tiers: list[str] = Field(default=[], description="allowed 'tier' traits (empty: all)")
    when: Condition | None = None
    vip: Literal["allow", "never", "only"] = "allow"
    blackout: list[str] = Field(default=[])

    @field_validator("blackout")
    @classmethod
    def _dates(cls, v: list[str]) -> list[str]:
        import re

        for d in v:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.\.\d{4}-\d{2}-\d{2})?", d):
                raise ValueError(f"{d!r} is not YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD")
        return v


DEFAULT_ACTIONS = [
    NbaAction(name="educational_email", channel="email", template="guide-best-practices",
              cost=0.05),
    NbaAction(name="feature_tip", channel="in_app", template="feature-spotlight", cost=0.01,
              stages=["activation", "retention", "expansion", "advocacy"]),
    NbaAction(name="upgrade_offer", channel="email", template="upgrade-offer",
              cost=0.10, when="traits.plan != 'enterprise'", vip="allow"),
    NbaAction(name="discount", channel="email", template="discount-15", cost=2.0,
              vip="never"),
    NbaAction(name="csm_outreach", channel="webhook", template="csm-task", cost=8.0,
              plans=["pro", "enterprise"]),
    NbaAction(name="content_recommendation", channel="content", template="content-for-you",
              cost=0.01),
    NbaAction(name="do_nothing", channel="none"),
]


class NbaAlwaysOn(_Strict):
    """Always-on next best action: outside any journey, decide for a customer on these events
    (at most once per ``every``), when ``when`` holds."""

    events: list[str] = Field(min_length=1, description="trigger event keys")
    when: Condition | None = Field(default=None,
                                   description="condition, e.g. profile.events >= 5")
    every: int = Field(default=7 * DAY_S, gt=0, description="seconds between decisions")
    priority_stage: Stage = "retention"


class NbaSettings(_Strict):
    """Next best action: inventory, exploration, the model folder and the training goal."""

    actions: list[NbaAction] = Field(default=DEFAULT_ACTIONS, min_length=1)
    exploration: float = Field(
        default=0.1, ge=0, le=1,
        description="share of decisions that pick uniformly among eligible actions (the "
        "randomised data offline evaluation and training need)")
    models_dir: str | None = Field(
        default=None, description="model folder (segue nba train/evaluate); its promoted "
        "model is reloaded while running. None: rank by inventory order")
    reload_s: float = Field(default=5.0, gt=0, description="how often to look for a newly "
                            "promoted model")
    cold_start: Literal["thompson", "inventory"] = Field(
        default="inventory", description="without a promoted model: 'inventory' takes the "
        "inventory order; 'thompson' samples each action's conversion rate per lifecycle "
        "stage from what the partition has seen and takes the best draw (learns from day "
        "one, but each decision then depends on the partition's earlier ones, so live runs "
        "and replays agree only as far as they apply events in the same order)")
    refresh_scores: bool = Field(
        default=True, description="with a promoted model, refresh the churn risk, upgrade "
        "probability and CLV of every profile a micro-batch changes (one batched call); "
        "conditions on scores.* compute them at their moment either way")
    goal_events: list[str] = Field(default=["Subscription Upgraded", "Order Completed"],
                                   min_length=1, description="a conversion, for training")
    horizon_s: int = Field(default=7 * DAY_S, gt=0,
                           description="a conversion counts this long after a decision")
    conversion_value: float = Field(default=100.0, gt=0,
                                    description="value of one conversion (ranks against cost)")
    vip_when: Condition = Field(default="traits.vip == true", description="who is a VIP")
    always_on: NbaAlwaysOn | None = None

    @field_validator("actions")
    @classmethod
    def _unique(cls, v: list[NbaAction]) -> list[NbaAction]:
        names = [a.name for a in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate action names: {', '.join(dup)}")
        return v

    def action(self, name: str) -> NbaAction | None:
        return next((a for a in self.actions if a.name == name), None)


class RetentionSettings(_Strict):
    """How long the topics Segue creates keep their records (``retention.ms``; 0: forever).
    Applied when Segue creates a topic; change an existing topic with your cluster's tools
    (``kafka-configs --alter --add-config retention.ms=…``). ``segue.events`` is kept
    forever (state rebuilds and replays read it), ``segue.analytics`` is compacted (the
    newest total per key), the DLQ follows ``privacy.dlq_retention_days``."""

    dispatch_days: int = Field(default=0, ge=0, description="segue.dispatch.<channel>")
    decisions_days: int = Field(default=0, ge=0, description="segue.decisions (the audit log)")
    journey_events_days: int = Field(default=0, ge=0)
    customer_events_days: int = Field(default=0, ge=0)
    alerts_days: int = Field(default=0, ge=0)
    repartition_days: int = Field(
        default=0, ge=0, description="the internal topic: a message deleted before the flow "
        "read it (a flow stopped for longer) is a lost merge or forwarded event, so forever "
        "unless you bound how long the flow may stand still")


class StoreSettings(_Strict):
    block_cache_mb: int = Field(default=64, ge=8, description="Shared by all partition stores.")
    write_buffer_mb: int = Field(default=16, ge=1)
    profile_cache_mb: int = Field(
        default=256, ge=0,
        description="Decoded profiles of recently active customers kept in memory, for all "
                    "partitions together (0: none; idle customers are always read from disk).")
    changelog: bool = Field(
        default=True,
        description="Mirror every partition store to the compacted changelog topic "
                    "(<app_id>.changelog): a process that starts without a partition's store "
                    "(new host, lost disk, rescaled cluster) rebuilds it from there. Off: the "
                    "state lives only in --state-dir.")


class Settings(_Strict):
    """Everything the flow reads; defaults are production defaults."""

    prefix: str = Field(default="segue.", pattern=r"^[A-Za-z0-9._-]*$")
    app_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9._-]+$",
        description="application id (as Kafka Streams' application.id): names the internal "
                    "topic (<app_id>.repartition) and stamps every internal message; messages "
                    "of another application are ignored. Default: the prefix without its dot")
    partitions: int = Field(default=8, ge=1, description="Partitions of topics Segue creates.")
    max_event_bytes: int = Field(default=64 * 1024, ge=1024)
    max_batch_bytes: int = Field(
        default=512 * 1024, ge=1024, description="a Segment batch payload ({\"batch\": "
        "[...]}) up to this size is split into its events (each within max_event_bytes)")
    max_output_bytes: int = Field(
        default=1_000_000, ge=64 * 1024,
        description="No output (key + value) is larger: one that would be is parked in the "
                    "state store with an alert instead of produced. At start-up the flow "
                    "lowers it to the broker's and topics' limits where they report one.")
    dlq_keep_bytes: int = Field(
        default=256 * 1024, ge=1024,
        description="A dead letter carries the original value whole up to this size; a "
                    "larger one keeps this prefix, its size and its SHA-256.")
    max_future_skew_s: int = Field(
        default=DAY_S,
        ge=0,
        description="Events stamped later than their Kafka timestamp plus this are dead-lettered.",
    )
    session_gap_s: int = Field(default=30 * 60, gt=0)
    dedup_recent_ids: int = Field(
        default=64, ge=1, description="messageIds remembered per customer for deduplication."
    )
    batch_size: int = Field(default=2000, ge=1, description="Max messages per poll per partition.")
    lifecycle: LifecycleRules = LifecycleRules()
    profile_sums: list[ProfileSum] = Field(default=[
        ProfileSum(name="content_seconds", event="Content Viewed", by="category", value="seconds")
    ])
    identity: IdentitySettings = IdentitySettings()
    limits: ProfileLimits = ProfileLimits()
    privacy: PrivacySettings = PrivacySettings()
    kafka: dict[str, str | int | float | bool] = Field(
        default={}, description="librdkafka options for every Kafka client (security.protocol, "
        "sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, …); "
        "SEGUE_KAFKA_<NAME> and --kafka-option key=value override them")
    policy: PolicySettings = PolicySettings()
    alerts: AlertSettings = AlertSettings()
    nba: NbaSettings = NbaSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    outputs: OutputSettings = OutputSettings()
    store: StoreSettings = StoreSettings()
    retention: RetentionSettings = RetentionSettings()

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix, self.app_id)

    @property
    def application_id(self) -> str:
        """What internal messages are stamped with (``app_id``, else from the prefix)."""
        return self.app_id or self.prefix.rstrip(".") or "segue"

    @property
    def dead_letter_keep_bytes(self) -> int:
        """``dlq_keep_bytes``, lowered where a dead letter holding that much (base64 is 4/3
        of it) would not fit in ``max_output_bytes``."""
        return max(min(self.dlq_keep_bytes, (self.max_output_bytes - 32 * 1024) * 3 // 4), 1024)
