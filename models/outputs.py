"""Output records. Every output is JSON with ``schema_version``, an ``idempotency_key`` derived
from content (never wall time or randomness), the customer, and the event or timer that caused
it. The pydantic models document the contract (``schemas/*.schema.json``); the hot path builds
plain dicts of the same shape.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The envelope helpers that build these shapes live in ``models.envelope`` (compiled with the
# hot path).
from models.envelope import SCHEMA_VERSION


class DlqReason(BaseModel):
    code: str = Field(description="Machine-readable: json.invalid, schema.invalid, too_large, …")
    detail: str
    fields: list[str] = Field(default_factory=list, description="Offending fields, if any")


class DlqSource(BaseModel):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


class DeadLetter(BaseModel):
    """A message on ``segue.dlq``: the original bytes (base64), its headers and the reason."""

    schema_version: int = SCHEMA_VERSION
    idempotency_key: str
    reason: DlqReason
    source: DlqSource
    key_b64: str | None = Field(description="the key (its first KiB), base64")
    value_b64: str = Field(description="the value (up to dlq_keep_bytes of it), base64")
    headers: list[tuple[str, str]] = Field(description="(name, base64 value) pairs, up to "
                                           "16 KiB of them")
    value_truncated: bool = Field(default=False, description="value_b64 is a prefix; "
                                  "only present when true")
    value_bytes: int | None = Field(default=None, description="size of the whole value "
                                    "(when truncated)")
    value_sha256: str | None = Field(default=None, description="of the whole value "
                                     "(when truncated)")
    key_truncated: bool = False
    key_bytes: int | None = None


class Cause(BaseModel):
    message_id: str | None = Field(default=None, description="The event that caused it")
    timer: str | None = Field(default=None, description="Or the timer kind that fired")
    due_ms: int | None = None


class LifecycleChanged(BaseModel):
    """A message on ``segue.customer-events`` when a customer's lifecycle stage changes."""

    schema_version: int = SCHEMA_VERSION
    type: Literal["lifecycle.changed"] = "lifecycle.changed"
    idempotency_key: str
    customer_id: str
    journey: None = None
    from_stage: str | None
    to_stage: str
    at_ms: int = Field(description="Event time of the change (ms since epoch)")
    cause: Cause


# ----- the output contract: one model per output topic (schemas/*.schema.json) -------------
# Every record also carries the envelope fields. The flow builds plain dicts; these models are
# what downstream consumers validate against, and ``tests/unit/test_output_schemas.py`` holds
# every record the flow emits in a broad replay to them (no field left undocumented).


class JourneyRef(BaseModel):
    """Which journey version, step and entry an output belongs to."""

    model_config = ConfigDict(extra="forbid")
    id: str
    version: int = Field(ge=1)
    node: str | None = Field(default=None, description="the step (absent on analytics)")
    instance: int | None = Field(default=None, description="the customer's n-th entry")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1]
    type: str
    idempotency_key: str = Field(description="content-derived: the same on every run and retry")
    customer_id: str | None
    journey: JourneyRef | None
    at_ms: int = Field(description="event time of the moment it was decided (ms since epoch)")
    cause: dict[str, Any] = Field(description="the event (message_id) or timer that caused it")


class DispatchRecord(_Record):
    """A dispatch command on ``segue.dispatch.<channel>``: what a channel sender sends."""

    type: Literal["dispatch"]
    customer_id: str
    journey: JourneyRef
    dispatch_id: str = Field(description="the send's id (fallbacks get their own)")
    attempt: int = Field(ge=1, description="2: the retry after a reported failure")
    channel: str = Field(description="the channel to send on (after fallback)")
    original_channel: str = Field(description="the channel the step asked for")
    template: str
    purpose: Literal["marketing", "transactional"]
    action: str | None = Field(description="the NBA action, if an nba step chose it")
    personalization: dict[str, Any] = Field(description="profile values the step asked for")


class DecisionRecord(_Record):
    """A delivery decision on ``segue.decisions``: the audit log of every send step."""

    type: Literal["decision"]
    customer_id: str
    journey: JourneyRef
    dispatch_id: str
    channel: str
    original_channel: str
    template: str
    outcome: Literal["send", "defer", "drop", "holdout"]
    reasons: list[str] = Field(description="reason codes: ok, quiet_hours, cap.*, consent.*, …")
    next_eligible_ms: int | None = Field(description="for defer: when it is tried again")
    action: str | None
    nba: dict[str, Any] | None = Field(description="the NBA rationale, for nba steps")


class JourneyEventRecord(_Record):
    """An entry, step, exit or goal on ``segue.journey-events``."""

    type: str = Field(pattern=r"^journey\.[a-z_]+$",
                      description="journey.entered, .step, .exited, .converted, or an exit's "
                      "emit")
    customer_id: str
    journey: JourneyRef
    reason: str | None = Field(default=None, description="entered: trigger, …; exited: why")
    step_type: str | None = Field(default=None, description="step: its type")
    until_ms: int | None = Field(default=None, description="wait steps: when they end")
    event: str | None = Field(default=None, description="wait_event steps: the awaited event")
    case: int | str | None = Field(default=None, description="branch: the case taken")
    variant: str | None = Field(default=None, description="split: the customer's arm")
    holdout: bool | str | None = Field(default=None, description="holdout: the arm")
    action: str | None = Field(default=None, description="nba steps: the action chosen")
    explored: bool | None = Field(default=None, description="nba steps: chosen at random")
    model: str | None = Field(default=None, description="nba steps: the model version")
    target: str | None = Field(default=None, description="goto steps: the journey gone to")
    entered_ms: int | None = Field(default=None, description="exited: when the run began")


class StepStats(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: str
    visits: int
    dropped: int
    drop_off_rate: float | None


class AnalyticsRecord(_Record):
    """A journey version's or a channel's running total on ``segue.analytics`` (the newest
    record per subject is the total)."""

    type: Literal["analytics.journey", "analytics.channel"]
    customer_id: None
    channel: str | None
    partitions_reporting: int
    # analytics.journey
    entered: int | None = None
    active: int | None = None
    exited: int | None = None
    completed: int | None = None
    converted: int | None = None
    conversion_rate: float | None = None
    finished_conversion_rate: float | None = None
    exited_by_reason: dict[str, int] | None = None
    avg_time_in_journey_s: float | None = None
    steps: list[StepStats] | None = None
    split: list[dict[str, Any]] | None = Field(default=None, description="per arm: customers, "
                                               "converted, rate, vs_control (lift, interval, "
                                               "verdict)")
    holdout: dict[str, Any] | None = None
    target_conversion: float | None = None
    # analytics.channel
    sent: int | None = None
    failed: int | None = None
    decisions: int | None = None
    capped: int | None = None
    opted_out_at_send: int | None = None
    unsubscribed: int | None = None
    delivery_rate: float | None = None
    failure_rate: float | None = None
    unsubscribe_rate: float | None = None
    fatigue_rate: float | None = None


class AlertRecord(_Record):
    """An alert on ``segue.alerts``; the fields after ``subject`` depend on the kind (README:
    topics)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(pattern=r"^alert\.[a-z_]+$", description="alert.channel_failure, "
                      ".dlq_rate, .step_dropoff, .conversion_below_target, .lag_growing, "
                      ".output_parked")
    customer_id: None
    subject: str = Field(description="what it is about: a channel, input, a journey step, …")
    partition: int | None = Field(default=None, description="the partition that raised it")
    rate: float | None = None
    threshold: float | int | None = None


class CustomerEventRecord(_Record):
    """A change to a customer on ``segue.customer-events``: lifecycle, identity, erasure."""

    type: Literal["lifecycle.changed", "identity.merged", "identity.link_refused",
                  "identity.loop", "privacy.erased"]
    from_stage: str | None = None
    to_stage: str | None = None
    customer_ref: str | None = Field(default=None, description="identity: the customer's ref")
    merged_from: str | None = None
    merged_ref: str | None = None
    reason: str | None = Field(default=None, description="identity.link_refused: why")
    identifier: str | None = Field(default=None, description="the identifier refused "
                                   "(emails as email:<hashed>)")
    held_by: str | None = Field(default=None, description="the customer that holds it")
    customer_ref_sha256: str | None = Field(default=None, description="privacy.erased: who")
    deleted: dict[str, Any] | None = None
    dead_letters: list[Any] | dict[str, Any] | None = None


# Output topic (as replay names its file) -> the model of its records.
OUTPUT_MODELS: dict[str, type[_Record]] = {
    "dispatches": DispatchRecord, "decisions": DecisionRecord,
    "journey-events": JourneyEventRecord, "analytics": AnalyticsRecord,
    "alerts": AlertRecord, "customer-events": CustomerEventRecord,
}
