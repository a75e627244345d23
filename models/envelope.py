"""The envelope every output record shares, and its content-derived idempotency key.

The hot path builds outputs as plain dicts with these helpers (compiled with the rest of the
hot path); ``models.outputs`` holds the pydantic models that document the same shapes.
"""

from __future__ import annotations

import hashlib

SCHEMA_VERSION = 1


def idempotency_key(*parts: object) -> str:
    """A stable key from content: the same parts give the same key on every run.

    >>> idempotency_key("lifecycle", "u1", "awareness", "m1") == idempotency_key(
    ...     "lifecycle", "u1", "awareness", "m1")
    True
    """
    # str() only where needed: most parts are already strings (measured 15 % faster). Exact
    # type: a str subclass (an enum) keeps its str() form, as before.
    text = "\x1f".join([p if type(p) is str else str(p) for p in parts])
    h = hashlib.blake2b(text.encode(), digest_size=16)
    return h.hexdigest()


def envelope(_kind: str, _key: str, /, *, customer_id: str | None, journey: dict | None,
             at_ms: int, cause: dict, **fields: object) -> dict:
    """One output record: the fields every output has, then its own ``fields``.

    ``_key`` is its idempotency key, built by the caller from the content that makes this
    output what it is. (The two positional names start with ``_`` because compiled code binds
    ``**fields`` by name even past ``/``: an alert's own ``kind`` field must not collide.)

    >>> r = envelope("lifecycle.changed", "k1", customer_id="u1", journey=None, at_ms=5,
    ...              cause={"message_id": "m1"}, to_stage="activation")
    >>> list(r)
    ['schema_version', 'type', 'idempotency_key', 'customer_id', 'journey', 'at_ms', 'cause', \
'to_stage']
    >>> envelope("alert.x", "k2", customer_id=None, journey=None, at_ms=5, cause={},
    ...          kind="x")["kind"]
    'x'
    """
    return {"schema_version": SCHEMA_VERSION, "type": _kind, "idempotency_key": _key,
            "customer_id": customer_id, "journey": journey, "at_ms": at_ms, "cause": cause,
            **fields}


def journey_ref(jid: str, version: int, node: str | None, instance: int | None) -> dict:
    """The ``journey`` field of an output: which journey version, step and entry."""
    return {"id": jid, "version": version, "node": node, "instance": instance}
