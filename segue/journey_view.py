"""Journeys for people: the graph as text, and as a Mermaid diagram."""

from __future__ import annotations

from models.journey import (
    Branch,
    End,
    Goto,
    Holdout,
    Journey,
    NextBestAction,
    Send,
    Split,
    Wait,
    WaitEvent,
)


def _dur(ms: int | None) -> str:
    if ms is None:
        return "?"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0 and ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def edges(step: object) -> list[tuple[str | None, str]]:
    """(target, label) pairs leaving a step."""
    if isinstance(step, Branch):
        return [(c.next, c.when) for c in step.cases] + [(step.default, "else")]
    if isinstance(step, Split):
        return [(v.next, f"{v.name} ({v.weight:g})") for v in step.variants]
    if isinstance(step, WaitEvent):
        return [(step.on_event, step.event), (step.on_timeout, f"after {_dur(step.timeout)}")]
    if isinstance(step, Send | Wait | Holdout | NextBestAction):
        return [(step.next, "")]
    return []


def describe(step: object) -> str:
    if isinstance(step, Send):
        return f"send {step.channel} '{step.template}'"
    if isinstance(step, Wait):
        return f"wait {_dur(step.duration)}" if step.duration else f"wait until {step.until} local"
    if isinstance(step, WaitEvent):
        return f"wait for {step.event} (timeout {_dur(step.timeout)})"
    if isinstance(step, Branch):
        return "branch"
    if isinstance(step, Split):
        return "random split"
    if isinstance(step, Holdout):
        return f"holdout {step.percent:g}%"
    if isinstance(step, NextBestAction):
        return "next best action: " + (", ".join(a.action for a in step.actions)
                                       or "the whole inventory")
    if isinstance(step, Goto):
        return f"goto journey {step.journey}"
    if isinstance(step, End):
        return "end"
    return type(step).__name__


def order(j: Journey) -> list[str]:
    """Steps depth-first from the start: each path reads top to bottom."""
    seen: list[str] = []
    stack = [j.start]
    while stack:
        sid = stack.pop()
        if sid in seen:
            continue
        seen.append(sid)
        stack.extend(reversed([t for t, _ in edges(j.steps[sid]) if t is not None]))
    return seen + [s for s in j.steps if s not in seen]


def as_text(j: Journey) -> str:
    e = j.entry
    reentry = e.reentry if isinstance(e.reentry, str) else f"after {_dur(e.reentry.after)}"
    lines = [
        f"{j.id} v{j.version} ({j.status}){' — ' + j.name if j.name else ''}",
        f"  priority: {j.priority.stage}, value {j.priority.value}",
        f"  entry: on {', '.join(e.events()) or '(any event)'}"
        + (f" when {e.when}" if e.when else "") + (f" unless {e.exclude}" if e.exclude else "")
        + f"; re-entry: {reentry}",
    ]
    for x in j.exits:
        trig = (f"on {x.event}" if x.event else f"after {_dur(x.after)}" if x.after
                else f"inactive {_dur(x.inactive)}" if x.inactive else f"when {x.when}")
        if x.event and x.when:
            trig += f" when {x.when}"
        dest = f" → journey {x.goto}" if x.goto else ""
        emit = f" (emits {x.emit})" if x.emit else ""
        lines.append(f"  exit {x.name}: {trig}{dest}{emit}")
    for g in j.goals:
        lines.append(f"  goal {g.name}: on {g.event}" + (f" when {g.when}" if g.when else "")
                     + (" (ends the journey)" if g.exit else ""))
    if j.caps:
        caps = "; ".join(f"{ch} " + ", ".join(f"{v}/{k}" for k, v in c.model_dump().items()
                                               if v is not None) for ch, c in j.caps.items())
        lines.append(f"  caps: {caps}")
    lines.append("  steps:")
    width = max(len(s) for s in j.steps)
    for sid in order(j):
        step = j.steps[sid]
        outs = edges(step)
        arrow = " | ".join(f"{lab + ' ' if lab else ''}→ {t or '(end)'}" for t, lab in outs)
        mark = "▶" if sid == j.start else " "
        tail = f"   {arrow}" if arrow else ""
        lines.append(f"  {mark} {sid:<{width}}  {describe(step)}{tail}")
    return "\n".join(lines)


def _esc(text: str) -> str:
    return text.replace('"', "#quot;")


def as_mermaid(j: Journey) -> str:
    lines = ["flowchart TD", f'  entry(["{_esc(j.id)} v{j.version}: on '
             f'{_esc(", ".join(j.entry.events()) or "condition")}"]) --> {j.start}']
    for sid in order(j):
        step = j.steps[sid]
        label = _esc(f"{sid}: {describe(step)}")
        shape = f'{{"{label}"}}' if isinstance(step, Branch | Split) else f'["{label}"]'
        lines.append(f"  {sid}{shape}")
        for target, lab in edges(step):
            t = target or "journey_end"
            lines.append(f'  {sid} -->|"{_esc(lab)}"| {t}' if lab else f"  {sid} --> {t}")
    lines.append('  journey_end(["end"])')
    for x in j.exits:
        dest = f"journey {x.goto}" if x.goto else "exit"
        lines.append(f'  exit_{x.name}(["exit {_esc(x.name)} → {_esc(dest)}"])')
    return "\n".join(lines) + "\n"
