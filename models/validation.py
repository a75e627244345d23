"""How a pydantic validation error reads to a person: the field's problem with what was typed.

>>> from typing import Literal
>>> from pydantic import BaseModel, ValidationError
>>> class M(BaseModel):
...     channel: Literal["email", "sms"]
...     n: int = 0
>>> try:
...     M.model_validate({"channel": "emial", "n": "x"})
... except ValidationError as e:
...     for err in e.errors():
...         print(explain(err))
'emial' is not one of: email, sms
Input should be a valid integer, unable to parse string as an integer (got 'x')
"""

from __future__ import annotations

import re

_SCALARS = (str, int, float, bool)


def explain(err: dict) -> str:
    """One line for one entry of ``ValidationError.errors()``."""
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if err.get("type") in ("literal_error", "enum") and isinstance(value, _SCALARS):
        allowed = ", ".join(re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", "")))
        return f"{value!r} is not one of: {allowed}" if allowed else f"{value!r}: {msg}"
    if err.get("type") == "extra_forbidden":
        return "unknown field (a typo, or a setting this version does not have)"
    if err.get("type") in ("missing", "value_error", "assertion_error") \
            or not isinstance(value, _SCALARS):
        return msg  # nothing typed, or the message already names it
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "…"
    return f"{msg} (got {shown})"
