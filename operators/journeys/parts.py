"""What the parts of ``JourneyEngine`` read of one another, declared once.

The engine (``operators.journeys.runner``) is built from parts: send delivery
(``delivery``) and next-best-action steps (``nba_steps``). Each reads the engine's state and
calls methods another part defines; they are declared here for the type checker and the
compiler (which enforces types at run time): the state as annotations, the methods as stubs
the engine or a part overrides (this class comes last in the method resolution order). The
parts and this class are mypyc traits, so that the engine is a native class (see
``operators.partition_parts``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mypy_extensions import trait

# Real imports, not TYPE_CHECKING ones: a compiled module builds these annotations at import.
from models.conditions import Context
from models.in_event import InEvent
from models.journey import Journey
from models.profile import Profile, Run
from operators.effects import Effects
from operators.journeys.registry import JourneyRegistry
from operators.nba import NbaDecider, Request
from operators.policy import DeliveryPolicy


@trait
class EngineParts:
    """The state and methods the parts of a journey engine share (see the module docstring)."""

    registry: JourneyRegistry
    policy: DeliveryPolicy
    nba: NbaDecider
    conflict_delay_ms: int
    counts: Counter[tuple]
    nba_pending: set[str]
    _nba: list[Request]
    _moment: list[Any]  # delivery._Intent (which imports this module)

    # Defined by the engine or by one of its parts.
    def _advance(self, fx: Effects, p: Profile, jid: str, run: Run, spec: Journey,
                 node: str | None, at: int, ev: InEvent | None, cause: dict) -> None:
        raise NotImplementedError

    def _decision(self, fx: Effects, p: Profile, spec: Journey, run: Run, intent: dict,
                  outcome: str, reasons: list[str], at: int, next_ms: int | None,
                  channel: str | None = None) -> None:
        raise NotImplementedError

    def _step_event(self, fx: Effects, p: Profile, spec: Journey, run: Run, node: str,
                    step_type: str, at: int, cause: dict, extra: dict) -> None:
        raise NotImplementedError

    def _intend(self, p: Profile, jid: str, run: Run, spec: Journey, node: str, channel: str,
                template: str, purpose: str, fields: list[str], action: str | None,
                nba: dict | None, at: int, cause: dict, ctx: Context | None,
                nxt: str | None, ev: InEvent | None) -> None:
        raise NotImplementedError

    def _resolve(self, fx: Effects, p: Profile, at: int) -> None:
        raise NotImplementedError

    def _settle(self, fx: Effects, p: Profile) -> None:
        raise NotImplementedError

    def _flush_nba(self, fx: Effects, ref: str | None = None) -> None:
        raise NotImplementedError
