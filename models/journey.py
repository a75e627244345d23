"""Journey specs: YAML files in a ``journeys/`` folder, validated with errors naming the file,
line and field.

A journey is a graph of named steps, entered on a trigger event and/or condition, left on exit
criteria or goals. See ``journeys/*.yaml`` for shipped examples and README "Journeys".

Example:
    >>> j = Journey.model_validate({"id": "welcome", "version": 1, "entry": {"event": "Signed Up"},
    ...     "start": "hello", "steps": {"hello": {"type": "send", "channel": "email",
    ...     "template": "welcome", "next": "done"}, "done": {"type": "end"}}})
    >>> j.steps["hello"].channel
    'email'
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from models.conditions import Condition
from models.settings import Stage
from models.validation import explain

CHANNELS = ("email", "sms", "push", "in_app", "webhook", "ads", "inbox", "content")
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|d|h|m|s|ms)\s*$")
_UNIT_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


def parse_duration_ms(value: Any) -> int:
    """``"2d"``, ``"36h"``, ``"30m"``, ``"45s"``, ``"1w"`` or seconds → milliseconds.

    >>> parse_duration_ms("1.5h"), parse_duration_ms(90)
    (5400000, 90000)
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like '2d', '36h', '30m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return int(value * 1000)
    m = _DUR.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration (use e.g. '2d', '36h', '30m', '45s')")
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])


# In JSON (archive, schema dumps) a duration is written "<n>ms" so that it reads back the same.
DurationMs = Annotated[int, BeforeValidator(parse_duration_ms),
                       PlainSerializer(lambda v: f"{v}ms", return_type=str, when_used="json")]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Send(_Spec):
    """Send a message: a dispatch command on ``segue.dispatch.<channel>``."""

    type: Literal["send"]
    channel: Literal["email", "sms", "push", "in_app", "webhook", "ads", "inbox", "content"]
    template: str = Field(min_length=1)
    personalization: list[str] = Field(
        default_factory=list, description="paths copied into the command, e.g. traits.company"
    )
    purpose: Literal["marketing", "transactional"] = "marketing"
    next: str | None = None


class Wait(_Spec):
    """Wait a duration, or until the next local time of day (customer's time zone)."""

    type: Literal["wait"]
    duration: DurationMs | None = None
    until: str | None = Field(default=None, description="local time of day, HH:MM")
    next: str

    @field_validator("until")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                time.fromisoformat(v)
            except ValueError as e:
                raise ValueError(f"{v!r} is not a time of day (HH:MM)") from e
        return v

    @model_validator(mode="after")
    def _one(self) -> Wait:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a wait needs exactly one of 'duration' or 'until'")
        return self


class WaitEvent(_Spec):
    """Wait until an event (optionally matching ``where``) or the timeout, whichever first."""

    type: Literal["wait_event"]
    event: str
    where: Condition | None = None
    timeout: DurationMs
    on_event: str
    on_timeout: str


class BranchCase(_Spec):
    when: Condition
    next: str


class Branch(_Spec):
    """The first case whose condition holds wins; else ``default``."""

    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    default: str


class Variant(_Spec):
    name: str
    weight: float = Field(gt=0)
    next: str


class Split(_Spec):
    """Random split; a customer's variant is a hash of customer, journey and step: stable."""

    type: Literal["split"]
    variants: list[Variant] = Field(min_length=2)


class Holdout(_Spec):
    """A control group: its members go on through the journey but nothing is sent to them;
    each send they would have received is recorded as a ``holdout`` decision."""

    type: Literal["holdout"]
    percent: float = Field(gt=0, lt=100)
    next: str


class Action(_Spec):
    action: str
    channel: Literal["email", "sms", "push", "in_app", "webhook", "ads", "inbox", "content"]
    template: str
    when: Condition | None = None


class NextBestAction(_Spec):
    """Score the eligible actions with the promoted NBA model and execute the best (the next
    two are backups); without ``actions``, the whole inventory of ``nba.actions`` in the
    settings. Inventory rules (eligibility, cost) apply to actions of the same name."""

    type: Literal["nba"]
    actions: list[Action] = Field(default_factory=list)
    next: str | None = None


class Goto(_Spec):
    """Leave this journey and enter another (lifecycle transitions)."""

    type: Literal["goto"]
    journey: str


class End(_Spec):
    type: Literal["end"]


Step = Annotated[
    Send | Wait | WaitEvent | Branch | Split | Holdout | NextBestAction | Goto | End,
    Field(discriminator="type"),
]


class Priority(_Spec):
    stage: Stage = Field(description="lifecycle stage: ranks journeys in a send conflict")
    value: int = Field(default=0, description="business value: breaks ties within a stage")


class ReentryAfter(_Spec):
    after: DurationMs


class Entry(_Spec):
    event: str | list[str] | None = Field(default=None, description="trigger event key(s)")
    when: Condition | None = Field(default=None, description="condition to enter")
    exclude: Condition | None = Field(default=None, description="never enter when true")
    reentry: Literal["never", "after_exit"] | ReentryAfter = "never"

    @model_validator(mode="after")
    def _some(self) -> Entry:
        if self.event is None and self.when is None:
            raise ValueError("an entry needs an 'event' and/or a 'when' condition")
        return self

    def events(self) -> tuple[str, ...]:
        if self.event is None:
            return ()
        return (self.event,) if isinstance(self.event, str) else tuple(self.event)


class Exit(_Spec):
    """Leave the journey on an event, a condition, a time since entry or inactivity."""

    name: str
    event: str | None = None
    when: Condition | None = None
    after: DurationMs | None = Field(default=None, description="time since entry")
    inactive: DurationMs | None = Field(default=None, description="no activity for this long")
    goto: str | None = Field(default=None, description="journey to enter next")
    emit: str | None = Field(default=None, description="extra journey event, e.g. churn_analysis")

    @model_validator(mode="after")
    def _kind(self) -> Exit:
        if sum(x is not None for x in (self.event, self.after, self.inactive)) > 1:
            raise ValueError("an exit has at most one of 'event', 'after', 'inactive'")
        if self.event is None and self.after is None and self.inactive is None \
                and self.when is None:
            raise ValueError("an exit needs 'event', 'when', 'after' or 'inactive'")
        return self


class Goal(_Spec):
    """A conversion: counted (and by default the journey ends) when it happens."""

    name: str
    event: str
    when: Condition | None = None
    exit: bool = True


class Target(_Spec):
    """The conversion a journey is expected to reach (an alert fires below it)."""

    conversion: float = Field(gt=0, le=1, description="converted / runs that have ended")
    min_finished: int = Field(default=200, ge=1, description="no verdict on fewer ended runs")


class ChannelCap(_Spec):
    day: int | None = Field(default=None, ge=0)
    week: int | None = Field(default=None, ge=0)


class Journey(_Spec):
    """One version of a journey."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = ""
    version: int = Field(ge=1)
    status: Literal["draft", "active", "paused"] = "active"
    priority: Priority = Priority(stage="activation")
    entry: Entry
    exits: list[Exit] = Field(default_factory=list)
    goals: list[Goal] = Field(default_factory=list)
    caps: dict[str, ChannelCap] = Field(default_factory=dict, description="per channel, and "
                                        "'total' across channels")
    target: Target | None = Field(default=None, description="expected conversion rate")
    min_duration: DurationMs | None = Field(
        default=None, description="exits that go to another journey wait until this long")
    start: str
    steps: dict[str, Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _graph(self) -> Journey:
        if self.start not in self.steps:
            raise ValueError(f"start step {self.start!r} is not among the steps")
        for sid, step in self.steps.items():
            for target in _targets(step):
                if target is not None and target not in self.steps:
                    raise ValueError(f"step {sid!r} points to unknown step {target!r}")
        _check_no_instant_loop(self)
        for ch in self.caps:
            if ch not in (*CHANNELS, "total"):
                raise ValueError(f"caps: unknown channel {ch!r}")
        return self

    @functools.cached_property
    def cap_limits(self) -> dict[str, dict[str, int]]:
        """``caps`` as plain dicts, made once (delivery policy reads them on every send)."""
        return {ch: c.model_dump(exclude_none=True) for ch, c in self.caps.items()}

    @functools.cached_property
    def conditions_on_events(self) -> bool:
        """Whether an event or timer of a customer in this journey can have a condition
        evaluated (a goal's or exit's ``when``, a wait for an event with ``where``): only
        then does the engine build a condition context for each of them."""
        return any(g.when is not None for g in self.goals) or \
            any(x.when is not None for x in self.exits) or \
            any(isinstance(s, WaitEvent) and s.where is not None for s in self.steps.values())

    @functools.cached_property
    def condition_exits(self) -> list[Exit]:
        """Exits on a condition alone (no event, delay or inactivity): taken when it turns
        true during the journey."""
        return [x for x in self.exits if x.when is not None and x.event is None
                and x.after is None and x.inactive is None]

    def fingerprint(self) -> str:
        """Content hash: a version's content may never change once customers are on it.
        ``status`` is left out: pausing and resuming a version is not a change of content."""
        body = json.dumps(self.model_dump(mode="json", exclude={"status"}), sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _targets(step: Any) -> list[str | None]:
    if isinstance(step, Send | Wait | Holdout | NextBestAction):
        return [step.next]
    if isinstance(step, WaitEvent):
        return [step.on_event, step.on_timeout]
    if isinstance(step, Branch):
        return [c.next for c in step.cases] + [step.default]
    if isinstance(step, Split):
        return [v.next for v in step.variants]
    return []


def _check_no_instant_loop(j: Journey) -> None:
    """A cycle must pass through a wait, or one event could loop forever."""
    blocking = (Wait, WaitEvent)

    def visit(sid: str, path: list[str]) -> None:
        if sid in path:
            cycle = " -> ".join([*path[path.index(sid):], sid])
            raise ValueError(f"steps loop without a wait: {cycle}")
        step = j.steps[sid]
        if isinstance(step, blocking):
            return
        for t in _targets(step):
            if t is not None:
                visit(t, [*path, sid])

    for sid in j.steps:
        visit(sid, [])


class JourneyFileError(Exception):
    """One invalid journey file: ``str()`` is the message a person reads."""


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            continue  # a discriminator tag like 'send' in the location
    return line


def load_journey(path: str | Path) -> Journey:
    """Read and validate one file; raises ``JourneyFileError`` naming file, line and field."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise JourneyFileError(f"{p}: cannot read: {e.strerror}") from e
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise JourneyFileError(f"{p}{where}: not valid YAML: "
                               f"{getattr(e, 'problem', None) or e}") from e
    if not isinstance(data, dict):
        raise JourneyFileError(f"{p}:1: a journey file holds one mapping (id, version, steps…)")
    try:
        return Journey.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors(include_url=False):
            loc = tuple(err["loc"])
            field_path = ".".join(str(x) for x in loc if x not in _STEP_TAGS) or "(journey)"
            line = _line_of(node, loc)
            lines.append(f"{p}:{line or 1}: {field_path}: {explain(err)}")
        raise JourneyFileError("\n".join(lines)) from e


_STEP_TAGS = {"send", "wait", "wait_event", "branch", "split", "holdout", "nba", "goto", "end"}


def load_dir(folder: str | Path) -> tuple[list[tuple[Path, Journey]], list[str]]:
    """Every ``*.yaml``/``*.yml`` in ``folder``: (valid journeys, error messages)."""
    root = Path(folder)
    if not root.is_dir():
        return [], [f"{root}: no such folder"]
    ok: list[tuple[Path, Journey]] = []
    errors: list[str] = []
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        try:
            ok.append((path, load_journey(path)))
        except JourneyFileError as e:
            errors.append(str(e))
    seen: dict[tuple[str, int], Path] = {}
    for path, j in ok:
        if (j.id, j.version) in seen:
            errors.append(f"{path}:1: id: {j.id} version {j.version} is also defined in "
                          f"{seen[(j.id, j.version)]}")
        seen[(j.id, j.version)] = path
    ids = {j.id for _, j in ok}
    for path, j in ok:
        for sid, step in j.steps.items():
            if isinstance(step, Goto) and step.journey not in ids:
                errors.append(f"{path}: steps.{sid}.journey: unknown journey {step.journey!r}")
        for x in j.exits:
            if x.goto is not None and x.goto not in ids:
                errors.append(f"{path}: exits.{x.name}.goto: unknown journey {x.goto!r}")
    return ok, errors


SCHEMA_ID = "urn:segue:schema:journey"
# The first line of a journey file: YAML editors (the yaml-language-server in VS Code, JetBrains,
# Neovim) then complete and check it against schemas/journey.schema.json with no setup.
SCHEMA_COMMENT = "# yaml-language-server: $schema=../schemas/journey.schema.json"


def json_schema() -> dict:
    """The JSON Schema journey files follow (``schemas/journey.schema.json``)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **Journey.model_json_schema()}
