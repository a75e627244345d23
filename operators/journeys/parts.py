"""What the parts of ``JourneyEngine`` read of one another, declared once.

The engine (``operators.journeys.runner``) is built from parts: send delivery
(``delivery``) and next-best-action steps (``nba_steps``). Each reads the engine's state and
calls methods another part defines; they are declared here as annotations only, for the type
checker and the compiler (which enforces types at run time). None of them is a class
attribute, so the method resolution order is that of the parts themselves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from mypy_extensions import mypyc_attr

# Real imports, not TYPE_CHECKING ones: a compiled module builds these annotations at import.
from models.profile import Profile
from operators.effects import Effects
from operators.journeys.registry import JourneyRegistry
from operators.nba import NbaDecider, Request
from operators.policy import DeliveryPolicy


@mypyc_attr(native_class=False)
class EngineParts:
    """The state and methods the parts of a journey engine share (annotations only)."""

    registry: JourneyRegistry
    policy: DeliveryPolicy
    nba: NbaDecider
    conflict_delay_ms: int
    counts: Counter[tuple]
    nba_pending: set[str]
    _nba: list[Request]
    _moment: list[Any]  # delivery._Intent (which imports this module)

    # Defined by the engine or by one of its parts (see their signatures there).
    _advance: Callable[..., None]
    _decision: Callable[..., None]
    _step_event: Callable[..., None]
    _intend: Callable[..., None]
    _dispatch_id: Callable[..., str]
    _resolve: Callable[[Effects, Profile, int], None]
    _settle: Callable[[Effects, Profile], None]
    _flush_nba: Callable[..., None]
