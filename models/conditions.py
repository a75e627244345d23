"""A small, safe condition language for journeys (no ``eval``).

Grammar::

    expr  := or
    or    := and ("or" and)*
    and   := not ("and" not)*
    not   := "not" not | cmp
    cmp   := value (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") value)?
    value := NUMBER | STRING | true | false | null | "[" values "]" | "(" expr ")"
           | NAME "(" values ")"                       # a function
           | NAME ("." NAME | "[" STRING "]")*         # a path

Paths start with a namespace: ``traits`` (profile traits), ``event`` (``event.name``,
``event.type``, ``event.properties.x``), ``profile`` (``stage``, ``events``, ``sessions``,
``days_since_first_seen``, ``days_since_last_seen``, ``timezone``), ``scores`` (predictive
scores), ``journey`` (``days``, ``hours`` since entry, ``variant``), ``group`` (the traits
of the account the customer's latest ``group`` call named, and ``group.id``). Functions:
``count(key, window)`` (window ``1h``, ``24h``, ``7d``, ``30d`` or ``total``), ``exists(path)``,
``lower(x)``, ``len(x)``. A missing value is ``null``; comparing ``null`` or mismatched types
with ``<``/``>`` is simply false, never an error.

Examples:
    >>> cond = compile_condition("traits.adoption > 70 and not traits.plan in ['enterprise']")
    >>> cond(Context(traits={"adoption": 85, "plan": "pro"}))
    True
    >>> ctx = Context(counts={("page:Pricing", "7d"): 3})
    >>> compile_condition("count('page:Pricing', '7d') >= 3")(ctx)
    True
    >>> compile_condition("event.properties.score >= 8")(Context(event_props={"score": None}))
    False
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>-?\d+(?:\.\d+)?)
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
NAMESPACES = ("traits", "event", "profile", "scores", "journey", "group")
WINDOWS = ("1h", "24h", "7d", "30d", "total")


class ConditionError(ValueError):
    """A condition that does not parse; the message says where."""


@dataclass(init=False)  # its own __init__: the generated one stays interpreted under mypyc
class Context:
    """What a condition can see. The engine fills it lazily from the profile and event."""

    traits: dict
    event_name: str | None
    event_type: str | None
    event_props: dict
    profile: dict
    scores: dict
    journey: dict
    group: dict
    counts: dict
    counter: Callable[[str, str], int] | None
    # Computes ``scores`` at the first condition that reads them (they cost a model call).
    score: Callable[[], dict] | None

    def __init__(self, traits: dict | None = None, event_name: str | None = None,
                 event_type: str | None = None, event_props: dict | None = None,
                 profile: dict | None = None, scores: dict | None = None,
                 journey: dict | None = None, group: dict | None = None,
                 counts: dict | None = None, counter: Callable[[str, str], int] | None = None,
                 score: Callable[[], dict] | None = None) -> None:
        self.traits = traits if traits is not None else {}
        self.event_name, self.event_type = event_name, event_type
        self.event_props = event_props if event_props is not None else {}
        self.profile = profile if profile is not None else {}
        self.scores = scores if scores is not None else {}
        self.journey = journey if journey is not None else {}
        self.group = group if group is not None else {}
        self.counts = counts if counts is not None else {}
        self.counter, self.score = counter, score

    def count(self, key: str, window: str) -> int:
        if self.counter is not None:
            return self.counter(key, window)
        return self.counts.get((key, window), 0)

    def resolve(self, path: tuple[str, ...]) -> Any:
        head, rest = path[0], path[1:]
        if head == "event":
            if not rest:
                return None
            if rest[0] == "name":
                return self.event_name if len(rest) == 1 else None
            if rest[0] == "type":
                return self.event_type if len(rest) == 1 else None
            if rest[0] == "properties":
                return _dig(self.event_props, rest[1:])
            return None
        if head == "scores" and self.score is not None:
            self.scores, self.score = self.score(), None
        root = {"traits": self.traits, "profile": self.profile, "scores": self.scores,
                "journey": self.journey, "group": self.group}[head]
        return _dig(root, rest)


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConditionError(f"unexpected character at {pos + 1}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup
        out.append((kind or "", m.group(kind or 0), m.start(kind or 0)))
        pos = m.end()
    out.append(("end", "", len(text)))
    return out


Fn = Callable[[Context], Any]


def _cmp(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op in ("in", "not in"):
        try:
            result = a in b if b is not None else False
        except TypeError:
            result = False
        return result if op == "in" else not result
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return False
    try:
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        return a >= b
    except TypeError:
        return False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            self.fail(f"expected {value!r}")
        self.i += 1
        return tok

    def fail(self, why: str) -> None:
        kind, value, pos = self.peek()
        got = "end of condition" if kind == "end" else repr(value)
        raise ConditionError(f"{why} at position {pos + 1}, got {got}")

    def parse(self) -> Fn:
        fn = self.or_()
        if self.peek()[0] != "end":
            self.fail("unexpected token")
        return fn

    def or_(self) -> Fn:
        parts = [self.and_()]
        while self.peek()[1] == "or":
            self.take()
            parts.append(self.and_())
        if len(parts) == 1:
            return parts[0]
        return lambda c: any(p(c) for p in parts)

    def and_(self) -> Fn:
        parts = [self.not_()]
        while self.peek()[1] == "and":
            self.take()
            parts.append(self.not_())
        if len(parts) == 1:
            return parts[0]
        return lambda c: all(p(c) for p in parts)

    def not_(self) -> Fn:
        if self.peek()[1] == "not":
            self.take()
            inner = self.not_()
            return lambda c: not inner(c)
        return self.cmp()

    def cmp(self) -> Fn:
        left = self.value()
        kind, tok, _ = self.peek()
        op = None
        if tok in ("==", "!=", "<", "<=", ">", ">=", "in") and kind != "str":
            op = self.take()[1]
        elif tok == "not" and self.toks[self.i + 1][1] == "in":
            self.take()
            self.take()
            op = "not in"
        if op is None:
            return lambda c: bool(left(c))
        right = self.value()
        return lambda c: _cmp(op, left(c), right(c))

    def value(self) -> Fn:
        kind, tok, _ = self.peek()
        if kind == "num":
            self.take()
            v = float(tok) if "." in tok else int(tok)
            return lambda c: v
        if kind == "str":
            self.take()
            s = bytes(tok[1:-1], "utf-8").decode("unicode_escape")
            return lambda c: s
        if tok == "(":
            self.take()
            inner = self.or_()
            self.take(")")
            return inner
        if tok == "[":
            self.take()
            items = self.values("]")
            return lambda c: [f(c) for f in items]
        if kind == "name":
            if tok in ("true", "false", "null"):
                self.take()
                lit = {"true": True, "false": False, "null": None}[tok]
                return lambda c: lit
            if self.toks[self.i + 1][1] == "(":
                return self.call()
            return self.path()
        self.fail("expected a value")
        raise AssertionError  # unreachable

    def values(self, close: str) -> list[Fn]:
        items: list[Fn] = []
        while self.peek()[1] != close:
            items.append(self.value())
            if self.peek()[1] == ",":
                self.take()
            elif self.peek()[1] != close:
                self.fail(f"expected ',' or {close!r}")
        self.take(close)
        return items

    def path(self) -> Fn:
        kind, head, _ = self.take()
        if head not in NAMESPACES:
            self.i -= 1
            self.fail(f"unknown name (paths start with one of {', '.join(NAMESPACES)})")
        parts = [head]
        while self.peek()[1] in (".", "["):
            if self.take()[1] == ".":
                k, name, _ = self.peek()
                if k != "name":
                    self.fail("expected a field name")
                parts.append(self.take()[1])
            else:
                k, s, _ = self.peek()
                if k != "str":
                    self.fail("expected a quoted field name")
                parts.append(self.take()[1][1:-1])
                self.take("]")
        path = tuple(parts)
        return lambda c: c.resolve(path)

    def call(self) -> Fn:
        _, name, _ = self.take()
        self.take("(")
        args = self.values(")")
        if name == "count":
            if len(args) not in (1, 2):
                raise ConditionError("count(key, window) takes one or two arguments")
            key = args[0]
            win = args[1] if len(args) == 2 else (lambda c: "total")
            probe = win(Context())
            if isinstance(probe, str) and probe not in WINDOWS:
                raise ConditionError(f"count(): unknown window {probe!r} "
                                     f"(one of {', '.join(WINDOWS)})")
            return lambda c: c.count(key(c), win(c)) if win(c) in WINDOWS else 0
        if name == "exists":
            if len(args) != 1:
                raise ConditionError("exists(path) takes one argument")
            a = args[0]
            return lambda c: a(c) is not None
        if name == "lower":
            a = args[0]
            return lambda c: a(c).lower() if isinstance(a(c), str) else a(c)
        if name == "len":
            a = args[0]
            return lambda c: len(a(c)) if isinstance(a(c), list | str | dict) else 0
        raise ConditionError(f"unknown function {name}() (known: count, exists, lower, len)")


def compile_condition(text: str) -> Callable[[Context], bool]:
    """Compile ``text`` once; the result is called with a ``Context`` per evaluation."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("a condition must be a non-empty string")
    fn = _Parser(text).parse()
    return lambda c: bool(fn(c))


def check_condition(v: str | None) -> str | None:
    """A pydantic validator: the text compiles, or a ``ValueError`` saying why."""
    if v is not None:
        try:
            compile_condition(v)
        except ConditionError as e:
            raise ValueError(f"invalid condition {v!r}: {e}") from e
    return v


# A condition field of a pydantic model (journey specs, settings): checked when loaded.
Condition = Annotated[str, BeforeValidator(check_condition)]
