"""Customer references: ``kind:value`` identifiers, how they rank, and email hashing.

An identifier is ``kind:value``: ``user:<userId>``, ``anon:<anonymousId>``,
``email:<sha256 of the normalised address>``, ``device:<context.device.id>``, or
``trait:<name>:<value>`` for configured traits. A customer's reference (its state key) is the
identifier it was created under; when two customers join, the one whose reference ranks first
(user, then email, device, trait, anon; then by value) survives, whatever order events arrive
in. Raw email addresses are hashed and never reach state, logs or metrics.

>>> winner("anon:a1", "user:u1")
'user:u1'
>>> kind_of("email:ab12"), value_of("trait:acct:7")
('email', 'acct:7')
"""

from __future__ import annotations

import hashlib

KIND_RANK = {"user": 0, "email": 1, "device": 2, "trait": 3, "anon": 4}


def hash_email(email: str) -> str:
    """SHA-256 of the trimmed, lower-cased address.

    >>> hash_email(" Ann@Example.COM ") == hash_email("ann@example.com")
    True
    """
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def hash_personal(name: str, value: str) -> str:
    """SHA-256 of a personal trait, normalised so that one number or address is one digest:
    a phone keeps its digits (and a leading +), anything else is trimmed and lower-cased.

    >>> hash_personal("phone", "+1 (555) 010-99") == hash_personal("phone", "+155501099")
    True
    """
    if name == "phone":
        v = value.strip()
        value = ("+" if v.startswith("+") else "") + "".join(c for c in v if c.isdigit())
    else:
        value = value.strip().lower()
    return hashlib.sha256(value.encode()).hexdigest()


def kind_of(ref: str) -> str:
    return ref.split(":", 1)[0]


def value_of(ref: str) -> str:
    return ref.split(":", 1)[1]


def primary_ref(user_id: str | None, anonymous_id: str | None) -> str:
    return f"user:{user_id}" if user_id else f"anon:{anonymous_id}"


def rank(ref: str) -> tuple[int, str]:
    return (KIND_RANK.get(kind_of(ref), 9), ref)


def winner(a: str, b: str) -> str:
    """The reference that survives when ``a`` and ``b`` turn out to be one customer."""
    return min(a, b, key=rank)


# ----- merging profiles ------------------------------------------------------------------------
