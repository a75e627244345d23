"""Output records. Every output is JSON with ``schema_version``, an ``idempotency_key`` derived
from content (never wall time or randomness), the customer, and the event or timer that caused
it. The pydantic models document the contract (``schemas/*.schema.json``); the hot path builds
plain dicts of the same shape.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1


def idempotency_key(*parts: object) -> str:
    """A stable key from content: the same parts give the same key on every run.

    >>> idempotency_key("lifecycle", "u1", "awareness", "m1") == idempotency_key(
    ...     "lifecycle", "u1", "awareness", "m1")
    True
    """
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16)
    return h.hexdigest()


def envelope(kind: str, key: str, /, *, customer_id: str | None, journey: dict | None,
             at_ms: int, cause: dict, **fields: object) -> dict:
    """One output record: the fields every output has, then its own ``fields``.

    ``key`` is its idempotency key, built by the caller from the content that makes this
    output what it is.

    >>> r = envelope("lifecycle.changed", "k1", customer_id="u1", journey=None, at_ms=5,
    ...              cause={"message_id": "m1"}, to_stage="activation")
    >>> list(r)
    ['schema_version', 'type', 'idempotency_key', 'customer_id', 'journey', 'at_ms', 'cause', \
'to_stage']
    """
    return {"schema_version": SCHEMA_VERSION, "type": kind, "idempotency_key": key,
            "customer_id": customer_id, "journey": journey, "at_ms": at_ms, "cause": cause,
            **fields}


def journey_ref(jid: str, version: int, node: str | None, instance: int | None) -> dict:
    """The ``journey`` field of an output: which journey version, step and entry."""
    return {"id": jid, "version": version, "node": node, "instance": instance}


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
