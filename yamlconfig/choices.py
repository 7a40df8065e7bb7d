"""A value outside a field's choices, said like an unknown key: what is allowed, what was meant.

Shared by the gate's and the station's config messages: ``unknown value 'Mock' (allowed: lgpio,
mock; did you mean 'mock'?)``.  Pure typing introspection; no model library is imported here.
"""

from __future__ import annotations

import difflib
from enum import Enum
from typing import Annotated, Any, Literal, get_args, get_origin


def allowed_values(annotation: Any) -> list[Any]:
    """The values a ``Literal[...]`` or Enum annotation allows, also inside ``X | None``,
    ``tuple[X, ...]`` or ``Annotated[X, ...]`` ([] when it names no choices)."""
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [member.value for member in annotation]
    origin = get_origin(annotation)
    if origin is Literal:
        return list(get_args(annotation))
    args = get_args(annotation)
    if origin is Annotated:
        return allowed_values(args[0])
    return [value for arg in args for value in allowed_values(arg)]


def unknown_value(value: Any, choices: list[Any]) -> str:
    """``unknown value 'Mock' (allowed: lgpio, mock; did you mean 'mock'?)``."""
    names = [str(c) for c in choices]
    written = str(value)
    same_but_case = [n for n in names if n.lower() == written.lower()]
    close = same_but_case or difflib.get_close_matches(written, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown value {value!r} (allowed: {', '.join(names)}{hint})"
