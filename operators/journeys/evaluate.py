"""Condition evaluation (compiled once per text) and stable split assignment."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from models.conditions import Context, compile_condition

_compiled: dict[str, Callable[[Context], bool]] = {}


def condition(text: str) -> Callable[[Context], bool]:
    fn = _compiled.get(text)
    if fn is None:
        fn = _compiled[text] = compile_condition(text)
    return fn


def bucket(*parts: object) -> float:
    """A stable number in [0, 100) from content (split and holdout assignment).

    >>> bucket("u1", "cart", "split") == bucket("u1", "cart", "split")
    True
    """
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h) / 2**64 * 100
