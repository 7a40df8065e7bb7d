"""How a problem of the gate config is told: where it is in the file, and in the installer's words.

pydantic's errors name a location and a type of fault; this module finds the line and column of
that location in the YAML tree (ruamel keeps them) and says the fault with the value that was
written, the form expected and an example (``'5s' is not a number; write the number of seconds
alone, e.g. unlock_seconds: 5``), or a "did you mean" for a misspelt key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from daemon.config import GateConfig
from yamlconfig import EnvUse, Problem
from yamlconfig.choices import allowed_values, unknown_value
from yamlconfig.parse import dotted

NUMBER_ERRORS = frozenset({"float_parsing", "float_type", "int_parsing", "int_type",
                           "int_from_float", "finite_number"})
UNITS = {"_seconds": "seconds", "_ms": "milliseconds", "_mb": "megabytes", "_days": "days",
         "_px": "pixels"}
TYPE_NAMES = {"int_type": "a whole number", "int_parsing": "a whole number",
              "float_type": "a number", "float_parsing": "a number", "string_type": "text",
              "bool_type": "true or false", "bool_parsing": "true or false"}
PIN_KEYS = frozenset({"pin", "d0_pin", "d1_pin", "green", "red", "buzzer"})

PYDANTIC_MARKERS = frozenset({"int", "str", "bool", "float", "[key]"})
PYDANTIC_WRAPPER = re.compile(r"(function-(after|before|wrap|plain)|lax-or-strict|json-or-python|"
                              r"nullable|union|tagged-union|chain|default|constrained-\w+)\[")

Loc = tuple[str | int, ...]


def node(root: Any, loc: Loc) -> Any:
    node = root
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def validation_problems(
    errors: Iterable[Mapping[str, Any]], root: Any, file: str, env: EnvUse,
) -> list[Problem]:
    problems: dict[tuple[int, int, str], Problem] = {}
    errors = list(errors)
    branches: dict[Loc, list[str]] = {}  # a value fitting no branch of `int | str`: one line
    for err in errors:
        if err["type"] in TYPE_NAMES:
            branches.setdefault(clean_loc(err), []).append(TYPE_NAMES[err["type"]])
    for err in errors:
        loc = clean_loc(err)
        if loc in env.missing:
            continue
        kinds = branches.get(loc, [])
        if len(kinds) > 1:
            err = {**err, "type": "union_type", "msg": (
                f"{err.get('input')!r} is not {' or '.join(dict.fromkeys(kinds))}")}
        if err["type"] == "extra_forbidden":
            line, col = _keyposition(root, loc)
        elif err["type"] == "missing":
            line, col = position(root, loc[:-1])
        else:
            line, col = position(root, loc)
        message = _message(err, loc)
        source = env.describe(loc)
        if source:
            message += f" (the value comes from the environment: {source})"
        problem = Problem(file, line + 1, col + 1, dotted(loc), message)
        problems.setdefault((problem.line, problem.column, problem.path), problem)
    return sorted(problems.values(), key=lambda p: (p.line, p.column))


def position(root: Any, loc: Loc) -> tuple[int, int]:
    """0-based (line, col) of the deepest node of ``loc`` present in the YAML tree."""
    node, line, col = root, 0, 0
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line, col = (
                node.lc.value(part)
                if not isinstance(node[part], (dict, list))
                else node.lc.key(part)
            )
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line, col = node.lc.item(part)
            node = node[part]
        else:
            if node is root and isinstance(root, CommentedMap):  # a missing top-level key:
                line, col = root.lc.line or 0, root.lc.col or 0  # point at the first key
            break
    return int(line), int(col)


def _keyposition(root: Any, loc: Loc) -> tuple[int, int]:
    """Position of the key named by the last element of ``loc`` (for unknown keys)."""
    parent = node(root, loc[:-1])
    if isinstance(parent, CommentedMap) and loc and loc[-1] in parent:
        line, col = parent.lc.key(loc[-1])
        return int(line), int(col)
    return position(root, loc[:-1])


def model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class whose fields live at ``loc`` (for 'did you mean')."""
    model: type[BaseModel] = GateConfig
    keyed = False  # the previous field was a dict: this part is a door or reader id
    for part in loc:
        if keyed or isinstance(part, int):
            keyed = False
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        inner = _inner_model(info.annotation)
        if inner is None:
            return None
        keyed = getattr(info.annotation, "__origin__", None) is dict
        model = inner
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside ``X | None`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def clean_loc(err: Mapping[str, Any]) -> Loc:
    """An error's location without pydantic's markers (``int``, ``function-after[...]``, ...).

    The last element of an unknown key's location is the installer's key, whatever it reads.
    """
    loc = tuple(err["loc"])
    last = len(loc) - 1 if err["type"] == "extra_forbidden" else -1
    return tuple(
        p for i, p in enumerate(loc)
        if i == last or not (isinstance(p, str) and (
            p in PYDANTIC_MARKERS or PYDANTIC_WRAPPER.match(p)))
    )


def _message(err: Mapping[str, Any], loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden" and loc:
        model = model_at(loc[:-1])
        key = str(loc[-1])
        msg = f"unknown key {key!r}"
        if model is not None:
            close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
            if close:
                return f"{msg}; did you mean {close[0]!r}?"
            return f"{msg} (allowed: {', '.join(model.model_fields)})"
        return msg
    if kind == "missing":
        return "required key is missing"
    text = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    if kind == "string_pattern_mismatch" and loc and (loc[-1] == "id" or "[key]" in err["loc"]):
        return "ids use lower-case letters, digits, '-' and '_' (at most 32 characters)"
    typed = _type_message(kind, err.get("input"), loc)
    if typed is not None:
        return typed
    if kind in ("literal_error", "enum"):
        choices = _choices(loc)
        if choices:
            return unknown_value(err.get("input"), choices)
    if kind in ("literal_error", "enum") or kind.startswith(("greater_than", "less_than")):
        return f"{text} (got {err.get('input')!r})"
    return text


def _choices(loc: Loc) -> list[Any]:
    """The values a Literal or Enum field at ``loc`` allows (a list item: its list's field)."""
    while loc and isinstance(loc[-1], int):
        loc = loc[:-1]
    model = model_at(loc[:-1]) if loc else None
    info = model.model_fields.get(str(loc[-1])) if model is not None else None
    return allowed_values(info.annotation) if info is not None else []


def _type_message(kind: str, value: Any, loc: Loc) -> str | None:
    """A value of the wrong type: echo it, say the expected form, give an example."""
    key = next((str(p) for p in reversed(loc) if isinstance(p, str)), "value")
    if kind in NUMBER_ERRORS:
        number = re.search(r"\d+(?:\.\d+)?", str(value)) if value is not None else None
        example = number.group() if number else _example(loc)
        if key in PIN_KEYS:
            return (f"{value!r} is not a GPIO number; write the BCM number alone, "
                    f"e.g. {key}: {number.group() if number else 17}")
        whole = kind.startswith("int")
        if kind == "int_from_float":
            return f"{value!r} is not a whole number; e.g. {key}: {round(float(value))}"
        unit = next((u for suffix, u in UNITS.items() if key.endswith(suffix)), None)
        if unit is not None:
            return (f"{value!r} is not a number; write the number of {unit} alone, "
                    f"e.g. {key}: {example}")
        what = "a whole number" if whole else "a number"
        return f"{value!r} is not {what}; e.g. {key}: {example}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{value!r} is not true or false; e.g. {key}: true"
    if kind == "string_type":
        return f"{value!r} is not text; put it in quotes, e.g. {key}: \"{value}\""
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return (f"expected 'key: value' settings under {key}, not {value!r} "
                f"(indent them on the lines below {key}:)")
    if kind in ("list_type", "tuple_type"):
        return f"expected a list ([a, b] or '- ' lines), not {value!r}"
    return None


def _example(loc: Loc) -> str:
    model = model_at(loc[:-1])
    info = model.model_fields.get(str(loc[-1])) if model is not None and loc else None
    default = info.default if info is not None else None
    return f"{default:g}" if isinstance(default, (int, float)) and not isinstance(
        default, bool) else "1"
