"""What the parts of a ``Partition`` read of one another, declared once.

``Partition`` (``operators.partition``) is built from parts, one concern each: identity
stitching, erasure, due timers and output parking. Each part reads the partition's state
(the batch transaction, the store, the settings) and calls a few methods another part or the
partition defines. They are declared here, as annotations only, so the type checker (and the
compiler, which enforces types at run time) knows them. None of them is a class attribute,
so the method resolution order is that of the parts themselves."""

from __future__ import annotations

from collections.abc import Callable

from mypy_extensions import mypyc_attr

# Real imports, not TYPE_CHECKING ones: a compiled module builds these annotations at import.
from models.events import InEvent
from models.profile import Profile
from models.settings import Settings, Topics
from operators.customer.lifecycle import StageRules
from operators.effects import Effects
from operators.journeys import JourneyEngine
from state.outbox import Unacked
from state.store import PartitionStore
from state.transaction import BatchTransaction, Progress
from state.waiting_timers import WaitingTimers


@mypyc_attr(native_class=False)
class PartitionParts:
    """The state and methods the parts of a partition share (annotations only)."""

    store: PartitionStore
    settings: Settings
    topics: Topics
    partition: int
    partitions: int
    progress: Progress
    txn: BatchTransaction  # the batch being applied
    stages: StageRules
    engine: JourneyEngine | None
    app_id: str
    id_traits: tuple[str, ...]
    blocked_emails: frozenset[str]
    max_output_bytes: int
    held_decoded: dict[bytes, InEvent]
    _poisoned: dict[tuple, str]
    _refused: list[tuple[int, str]]
    unacked: Unacked
    _resolving: dict[int, int]
    _dropped: list[int]
    _claims_now: bool
    waiting_timers: WaitingTimers

    # Defined by the partition or by one of its parts.
    _apply: Callable[[InEvent], None]
    _effects: Callable[[Effects], None]
    _on_partial: Callable[[dict], None]
    _profile: Callable[[str, int], tuple[Profile, bool]]
    _peek: Callable[[str], Profile | None]
    _take: Callable[[str, Profile], Profile]
    _existing_profile: Callable[[str], Profile | None]
    _arm: Callable[[Profile, str, int], None]
    _erased_since: Callable[[str, int], bool]
    _erase: Callable[[str, InEvent], None]
    _unindex: Callable[[Profile, str], tuple[int, int]]
    _route: Callable[[str, dict], None]
    _emit_identity: Callable[..., None]
