"""Loading the installer's YAML: line numbers, every problem at once, and checks of meaning.

An installer's whole experience of menjin is this module's error messages, so each problem is one
line ``FILE:LINE:COL: key.path: message (hint)`` pointing at the offending value, all problems are
reported together, and a typo gets a "did you mean" suggestion.  The YAML parser (ruamel) keeps the
position of every key and rejects duplicated keys.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from daemon.config import GateConfig
from daemon.configcheck import semantic_problems

EX_CONFIG = 78  # sysexits.h: systemd's RestartPreventExitStatus stops a restart loop on it
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file, with its position (1-based) when known."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _expand_env(node: Any, missing: list[str]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in strings, recording unset variables."""
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if value is None:
                if match.group(2) is None:
                    missing.append(match.group(1))
                    return ""
                return match.group(2)
            return value

        return ENV_PATTERN.sub(sub, node)
    if isinstance(node, dict):
        for key in list(node):
            node[key] = _expand_env(node[key], missing)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            node[i] = _expand_env(item, missing)
    return node


def _position(root: Any, loc: Loc) -> tuple[int, int]:
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
    return line, col


def _key_position(root: Any, loc: Loc) -> tuple[int, int]:
    """Position of the key named by the last element of ``loc`` (for unknown keys)."""
    parent = root
    for part in loc[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return _position(root, loc[:-1])
    if isinstance(parent, CommentedMap) and loc and loc[-1] in parent:
        line, col = parent.lc.key(loc[-1])
        return int(line), int(col)
    return _position(root, loc[:-1])


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class whose fields live at ``loc`` (for 'did you mean')."""
    model: type[BaseModel] = GateConfig
    keyed = False  # the previous field was a dict: this part is a door or reader id
    for part in loc:
        if keyed or isinstance(part, int):
            keyed = False
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = _inner_model(field.annotation)
        if inner is None:
            return None
        keyed = getattr(field.annotation, "__origin__", None) is dict
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


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: tuple[Any, ...]) -> Loc:
    """Drop pydantic's union-branch markers (``int``, ``str``, ``function-after[...]``)."""
    return tuple(
        p
        for p in loc
        if not (isinstance(p, str) and (p in {"int", "str", "bool", "float"} or "[" in p))
    )


def _message(err: Mapping[str, Any], loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
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
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "id":
        return "ids use lower-case letters, digits, '-' and '_' (at most 32 characters)"
    if kind == "literal_error":
        return f"{text} (got {err.get('input')!r})"
    return text


def _validation_problems(exc: ValidationError, root: Any, file: str) -> list[Problem]:
    problems: dict[tuple[int, int, str], Problem] = {}
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            line, col = _key_position(root, loc)
        elif err["type"] == "missing":
            line, col = _position(root, loc[:-1])
        else:
            line, col = _position(root, loc)
        problem = Problem(file, line + 1, col + 1, _dotted(loc), _message(err, loc))
        problems.setdefault((problem.line, problem.column, problem.path), problem)
    return sorted(problems.values(), key=lambda p: (p.line, p.column))


def parse_yaml(text: str, file: str) -> Any:
    """Parse YAML keeping positions; syntax errors and duplicate keys become a ConfigError."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = (exc.problem or "invalid YAML").strip()
        if "duplicate key" in problem:
            problem = problem.split(" with value")[0] + " (each key may appear once)"
        elif exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            start = exc.context_mark
            problem += (
                f" ({exc.context.strip()} that starts at {start.line + 1}:{start.column + 1})"
            )
        raise ConfigError([Problem(file, line, col, "", f"YAML syntax error: {problem}")]) from exc


def load_config(path: Path | str, *, check_files: bool = True) -> GateConfig:
    """Read, validate and check one gate config; raises ConfigError listing every problem."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(file, 1, 1, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(file, 1, 1, "", "not UTF-8 text")]) from exc
    root = parse_yaml(text, file)
    if not isinstance(root, CommentedMap):
        raise ConfigError([Problem(file, 1, 1, "", "the file must be a YAML mapping (key: value)")])
    missing_env: list[str] = []
    _expand_env(root, missing_env)
    config_dir = path.resolve().parent
    state_dir = Path(str(root.get("state_dir", "/var/lib/menjin")))
    if not state_dir.is_absolute():
        state_dir = config_dir / state_dir
    try:
        config = GateConfig.model_validate(
            root, context={"config_dir": config_dir, "state_dir": state_dir}
        )
    except ValidationError as exc:
        raise ConfigError(_validation_problems(exc, root, file)) from exc
    problems = [
        Problem(file, *(_pos1(_position(root, loc))), _dotted(loc), msg)
        for loc, msg in semantic_problems(config, check_files=check_files)
    ]
    problems += [
        Problem(file, 1, 1, "", f"environment variable {name} is not set") for name in missing_env
    ]
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.column)))
    return config


def _pos1(pos: tuple[int, int]) -> tuple[int, int]:
    return pos[0] + 1, pos[1] + 1
