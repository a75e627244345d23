"""A journey as a graph for the canvas: nodes, labelled edges and a layered layout.

Built from the journey's mapping, not from the validated model, so a draft that does not
validate yet (an unknown step, a half-typed condition) still draws; edges to steps that do
not exist are kept and marked, which is where the person's eye should go.
"""

from __future__ import annotations

from typing import Any

NODE_W, NODE_H, GAP_X, GAP_Y = 210, 66, 40, 54


def _dur(v: Any) -> str:
    return str(v) if v is not None else "?"


def step_edges(step: dict) -> list[tuple[str | None, str]]:
    """(target, label) pairs leaving a step mapping; None is the journey's end."""
    t = step.get("type")
    if t == "branch":
        return ([(c.get("next"), str(c.get("when", ""))) for c in step.get("cases") or []
                 if isinstance(c, dict)] + [(step.get("default"), "else")])
    if t == "split":
        return [(v.get("next"), f"{v.get('name')} ({v.get('weight')})")
                for v in step.get("variants") or [] if isinstance(v, dict)]
    if t == "wait_event":
        return [(step.get("on_event"), str(step.get("event", ""))),
                (step.get("on_timeout"), f"after {_dur(step.get('timeout'))}")]
    if t == "holdout":
        return [(step.get("next"), f"{100 - float(step.get('percent') or 0):g}% treated")]
    if t in ("send", "wait", "nba"):
        return [(step.get("next"), "")]
    return []


def summary(step: dict) -> str:
    """One line saying what a step does."""
    t = step.get("type")
    if t == "send":
        return f"{step.get('channel', '?')} · {step.get('template', '?')}"
    if t == "wait":
        return f"{_dur(step.get('duration'))}" if step.get("duration") is not None \
            else f"until {step.get('until', '?')} local"
    if t == "wait_event":
        return f"{step.get('event', '?')} or {_dur(step.get('timeout'))}"
    if t == "branch":
        return f"{len(step.get('cases') or [])} case(s) + else"
    if t == "split":
        return " / ".join(str(v.get("name")) for v in step.get("variants") or []
                          if isinstance(v, dict))
    if t == "holdout":
        return f"{step.get('percent', '?')}% held out"
    if t == "nba":
        acts = [a.get("action") for a in step.get("actions") or [] if isinstance(a, dict)]
        return ", ".join(map(str, acts)) if acts else "whole inventory"
    if t == "goto":
        return f"→ journey {step.get('journey', '?')}"
    if t == "end":
        return ""
    return str(t)


def build(doc: dict) -> dict:
    """Nodes (entry, steps, end) with x/y, and edges; exits and goals listed apart (they
    apply at any step)."""
    steps = doc.get("steps") if isinstance(doc.get("steps"), dict) else {}
    steps = {k: v for k, v in steps.items() if isinstance(v, dict)}
    start = doc.get("start")
    entry = doc.get("entry") if isinstance(doc.get("entry"), dict) else {}
    ev = entry.get("event")
    trigger = ", ".join(ev) if isinstance(ev, list) else (ev or "condition")
    edges: list[dict] = [{"from": "@entry", "to": start, "label": "", "broken":
                          start not in steps}]
    uses_end = False
    for sid, step in steps.items():
        for target, label in step_edges(step):
            if target is None:
                uses_end = True
            edges.append({"from": sid, "to": target or "@end", "label": label,
                          "broken": target is not None and target not in steps})
    # Layers: breadth-first depth from the entry (back edges of loops ignored), then
    # unreachable steps below; within a layer, in discovery order.
    depth: dict[str, int] = {"@entry": 0}
    order = ["@entry"]
    frontier = ["@entry"]
    while frontier:
        nxt = []
        for n in frontier:
            for e in edges:
                if e["from"] == n and e["to"] in steps and e["to"] not in depth:
                    depth[e["to"]] = depth[n] + 1
                    order.append(e["to"])
                    nxt.append(e["to"])
        frontier = nxt
    deepest = max(depth.values())
    for sid in steps:
        if sid not in depth:
            deepest += 1
            depth[sid] = deepest
            order.append(sid)
    if uses_end:
        ends = [depth[e["from"]] for e in edges if e["to"] == "@end" and e["from"] in depth]
        depth["@end"] = max(ends, default=deepest) + 1
        order.append("@end")
    layers: dict[int, list[str]] = {}
    for n in order:
        layers.setdefault(depth[n], []).append(n)
    width = max(len(v) for v in layers.values())
    nodes = []
    for d, names in layers.items():
        offset = (width - len(names)) * (NODE_W + GAP_X) / 2
        for i, n in enumerate(names):
            if n == "@entry":
                kind, title, text = "entry", "entry", f"on {trigger}"
                if entry.get("when"):
                    text += f" when {entry['when']}"
                re = entry.get("reentry", "never")
                text += "; re-entry " + (f"after {re.get('after')}" if isinstance(re, dict)
                                         else str(re))
            elif n == "@end":
                kind, title, text = "end", "end of journey", ""
            else:
                kind, title, text = steps[n].get("type", "?"), n, summary(steps[n])
            nodes.append({"id": n, "kind": kind, "title": title, "text": text,
                          "x": round(20 + offset + i * (NODE_W + GAP_X)),
                          "y": 20 + d * (NODE_H + GAP_Y), "w": NODE_W, "h": NODE_H})
    exits = [x for x in doc.get("exits") or [] if isinstance(x, dict)]
    goals = [g for g in doc.get("goals") or [] if isinstance(g, dict)]
    return {"nodes": nodes, "edges": edges, "exits": exits, "goals": goals,
            "width": 40 + width * (NODE_W + GAP_X),
            "height": 40 + (max(layers) + 1) * (NODE_H + GAP_Y)}
