"""Loading the installer's YAML: line numbers, every problem at once, and checks of meaning.

An installer's whole experience of menjin is this module's error messages, so each problem is one
line ``FILE:LINE:COL: key.path: message (hint)`` pointing at the offending value, all problems are
reported together, and a typo gets a "did you mean" suggestion.  Reading and parsing (positions,
duplicated keys, alias bombs, plain-word syntax errors) is :mod:`yamlconfig`'s job, the wording
and place of each schema problem :mod:`daemon.configerrors`'; this module validates against
:class:`~daemon.config.GateConfig` and runs the cross-checks of :mod:`daemon.configcheck`, also
when parts of the file are invalid: the values at fault are left out (a default takes their
place) so that a typo does not hide a pin used twice.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from daemon.config import GateConfig
from daemon.configcheck import client_id, missing_model_files, semantic_problems
from daemon.configerrors import (
    Loc,
    clean_loc,
    model_at,
    node,
    position,
    validation_problems,
)
from yamlconfig import EnvUse, Problem, ProblemError, expand_env, read_yaml
from yamlconfig import parse_yaml as _parse_yaml
from yamlconfig.parse import dotted

__all__ = [
    "EX_CONFIG",
    "ConfigError",
    "LoadedConfig",
    "Problem",
    "cross_gate_problems",
    "load_config",
    "load_config_file",
    "parse_yaml",
]

log = logging.getLogger(__name__)

EX_CONFIG = 78  # sysexits.h: systemd's RestartPreventExitStatus stops a restart loop on it
#: Keys only a station config has (``station/config.py``): a file with these and no gate or
#: doors was given to the wrong command.
STATION_KEYS = frozenset({"mqtt", "database", "web", "signing_key", "portraits_dir"})
#: Stand-ins for required values that failed validation, so the cross-checks can still run.
PLACEHOLDERS: dict[tuple[str | int, ...], Any] = {
    ("version",): 1,
    ("gate",): {"id": "invalid", "site": "invalid"},
    ("gate", "id"): "invalid",
    ("gate", "site"): "invalid",
}
MAX_REPAIR_ROUNDS = 50


class ConfigError(ProblemError):
    """A configuration that cannot be used; ``problems`` lists every reason."""


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config with what the installer should still hear about.

    ``warnings`` are problems that do not stop the gate (vision without its model files);
    ``root`` keeps the YAML positions for problems found later (other boards' gate ids).
    """

    config: GateConfig
    file: str
    root: Any = field(repr=False)
    warnings: tuple[Problem, ...] = ()

    def problem(self, loc: Loc, message: str) -> Problem:
        """A problem at the value of ``loc`` (or the nearest key above it present in the file)."""
        line, col = position(self.root, loc)
        return Problem(self.file, line + 1, col + 1, dotted(loc), message)


def load_config(path: Path | str, *, check_files: bool = True) -> GateConfig:
    """Read, validate and check one gate config; raises ConfigError listing every problem.

    Warnings (see :func:`load_config_file`) are logged once.
    """
    try:
        loaded = load_config_file(path, check_files=check_files)
    except ConfigError:
        raise
    except Exception as exc:  # a loader bug must not stop a running gate on SIGHUP either
        log.exception("loading %s failed", path)
        raise ConfigError([Problem(str(path), 1, 1, "", f"cannot load: {exc!r} (a bug in "
                                                          "menjin: please report it)")]) from exc
    for warning in loaded.warnings:
        log.warning("%s", warning)
    return loaded.config


def load_config_file(path: Path | str, *, check_files: bool = True) -> LoadedConfig:
    """Read, validate and check one gate config, the way the daemon will use it.

    ``check_files`` also opens every model, key and certificate file the config names (as the
    daemon does); without them vision is turned off with a warning, anything else missing is an
    error.  ``check_files=False`` touches no file but the config.  Raises :class:`ConfigError`
    (never anything else for a bad file) listing every problem.
    """
    path = Path(path)
    read_problems: list[Problem] = []
    try:
        file, root = read_yaml(path, hint=_read_hint(path))
    except ProblemError as exc:
        if exc.parsed is None:
            raise ConfigError(exc.problems) from None
        # Duplicated keys: go on with each key's first value, so one run lists every problem.
        file, root, read_problems = str(path), exc.parsed, exc.problems
    _check_top_level(root, file)
    env = expand_env(root)
    _anchor_env_paths(root, env)
    config_dir = path.resolve().parent
    state_dir = Path(str(root.get("state_dir", "/var/lib/menjin")))
    if not state_dir.is_absolute():
        state_dir = config_dir / state_dir
    context = {"config_dir": config_dir, "state_dir": state_dir}
    problems, config, pruned = _validate(root, file, context, env)
    problems += read_problems
    invalid_ids = {str(loc[1]) for loc in pruned
                   if len(loc) == 2 and loc[0] in ("doors", "readers")}
    warnings: list[Problem] = []
    if config is not None:
        if check_files:
            config, warnings = _without_missing_models(config, root, file)
        if warnings:  # no face opens a door until the models are there: its liveness is moot
            pruned |= {("doors", door_id, "liveness") for door_id in config.doors}
        taken = {(p.line, p.column) for p in problems}
        issues = semantic_problems(config, check_files=check_files, invalid_ids=invalid_ids)
        reported = pruned | {issue.loc for issue in issues}
        for loc, message, about in issues:
            line, col = position(root, loc)
            if (line + 1, col + 1) not in taken and not _near(loc, pruned) \
                    and not any(_near(other, reported) for other in about):
                problems.append(Problem(file, line + 1, col + 1, dotted(loc), message))
    for loc, names in env.missing.items():
        line, col = position(root, loc)
        for name in names:
            problems.append(Problem(
                file, line + 1, col + 1, dotted(loc),
                f"environment variable {name} is not set (set it, or give a default: "
                f"${{{name}:-value}})",
            ))
    if problems or config is None:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.column)))
    return LoadedConfig(config, file, root, tuple(warnings))


def _read_hint(path: Path) -> str:
    if path.exists():
        return " (check the file's permissions: the service user must be able to read it)"
    return (" (check the path; to start a new one, copy config/example.yaml and run "
            "menjin check-config on it)")


def _check_top_level(root: Any, file: str) -> None:
    def fail(message: str) -> ConfigError:
        return ConfigError([Problem(file, 1, 1, "", message)])

    if root is None:
        raise fail("the file is empty: a gate config needs at least version: 1, gate: and "
                   "doors: (start from config/example.yaml)")
    if not isinstance(root, CommentedMap):
        kind = "a list" if isinstance(root, CommentedSeq) else f"the single value {root!r}"
        raise fail(f"the top level must be 'key: value' settings (version: 1, gate: ..., "
                   f"doors: ...), not {kind}")
    if "gate" not in root and "doors" not in root and STATION_KEYS & set(root):
        found = ", ".join(sorted(STATION_KEYS & set(root)))
        raise fail(f"this is a station config (it has {found}, no gate or doors): check it with "
                   f"menjin station check-config {file}")


# ------------------------------------------------------------------ environment values
def _anchor_env_paths(root: Any, env: EnvUse) -> None:
    """A relative path that starts with an environment value is relative to the working directory.

    ``MENJIN_MODELS=../shared/models`` means what it means in the shell that set it, not a folder
    next to the config file.
    """
    for loc in env.leading:
        if not _is_path_field(loc):
            continue
        parent = node(root, loc[:-1])
        value = parent[loc[-1]] if parent is not None else None
        if isinstance(value, str) and value and not Path(value).is_absolute():
            parent[loc[-1]] = str(Path.cwd() / value)


def _is_path_field(loc: Loc) -> bool:
    model = model_at(loc[:-1]) if not isinstance(loc[-1], int) else model_at(loc[:-2])
    name = loc[-1] if not isinstance(loc[-1], int) else loc[-2]
    info = model.model_fields.get(str(name)) if model is not None else None
    return info is not None and "Path" in str(info.annotation)


# ------------------------------------------------------------------ validation
def _near(loc: Loc, pruned: Iterable[Loc]) -> bool:
    """``loc`` is inside, or contains, a value left out as invalid (its problem is known)."""
    return any(loc[: len(p)] == p or p[: len(loc)] == loc for p in pruned)


def _validate(
    root: Any, file: str, context: Mapping[str, Any], env: EnvUse,
) -> tuple[list[Problem], GateConfig | None, set[Loc]]:
    """Schema problems, and a config from what is valid (``None`` when too little is).

    The first validation reports every schema problem; the values at fault are then left out
    one round at a time (an entry missing a required key goes as a whole) until the rest
    validates, so the cross-checks see everything else.  Also returns the locations left out
    (or replaced): cross-checks near them would only repeat the problem.
    """
    data = _plain(root)
    problems: list[Problem] = []
    pruned: set[Loc] = set()
    for loc in env.missing:  # an unset variable is reported as such, not by what "" breaks
        parent = node(data, loc[:-1])
        if isinstance(parent, dict):
            del parent[loc[-1]]
            pruned.add(loc)
    for round_ in range(MAX_REPAIR_ROUNDS):
        try:
            return problems, GateConfig.model_validate(data, context=context), pruned
        except ValidationError as exc:
            errors = exc.errors()
            if round_ == 0:
                problems = validation_problems(errors, root, file, env)
            if not all(_repair(data, err, pruned) for err in errors):
                break
    return problems, None, pruned


def _plain(node: Any) -> Any:
    """A deep copy as plain dicts and lists (the copy the repairs may cut)."""
    if isinstance(node, Mapping):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    return node


def _repair(data: dict[str, Any], err: Mapping[str, Any], pruned: set[Loc]) -> bool:
    """Leave out the value of one error (or use a stand-in); False when nothing can be done."""
    loc = clean_loc(err)
    if err["type"] == "missing" and loc not in PLACEHOLDERS:
        loc = loc[:-1]  # the entry without its required key goes
    while loc and isinstance(loc[-1], int):  # a bad list item: the whole list goes
        loc = loc[:-1]
    if not loc:
        return False
    pruned.add(loc)
    if loc in PLACEHOLDERS:
        return _set(data, loc, copy.deepcopy(PLACEHOLDERS[loc]))
    parent = node(data, loc[:-1])
    if isinstance(parent, dict) and loc[-1] in parent:
        del parent[loc[-1]]
        return True
    return False


def _set(data: dict[str, Any], loc: Loc, value: Any) -> bool:
    parent = node(data, loc[:-1])
    if isinstance(parent, dict):
        parent[str(loc[-1])] = value
        return True
    return False


# ------------------------------------------------------------------ files
def _without_missing_models(
    config: GateConfig, root: Any, file: str,
) -> tuple[GateConfig, list[Problem]]:
    """Vision off, with one warning, when its model files are not there: cards keep working."""
    missing = missing_model_files(config)
    if not missing or config.vision is None:
        return config, []
    loc, first = missing[0]
    names = ", ".join(path.name for _, path in missing)
    line, col = position(root, loc)
    warning = Problem(
        file, line + 1, col + 1, dotted(loc),
        f"face recognition disabled: model file(s) not found in {first.parent}: {names}; "
        "to enable it, put the models there or set MENJIN_MODELS to the folder holding them "
        "(vision.enabled: false silences this)",
    )
    vision = config.vision.model_copy(update={"enabled": False})
    return config.model_copy(update={"vision": vision}), [warning]


# ------------------------------------------------------------------ several boards
def cross_gate_problems(loaded: Iterable[LoadedConfig]) -> list[Problem]:
    """Two boards with the same gate id or MQTT client id would knock each other off the broker.

    Each problem points at the value in the later file and names the earlier file's place.
    """
    problems: list[Problem] = []
    seen_ids: dict[str, Problem] = {}
    seen_clients: dict[str, Problem] = {}
    for item in loaded:
        cfg = item.config
        here = item.problem(("gate", "id"), "")
        first = seen_ids.setdefault(cfg.gate.id, here)
        if first is not here:
            problems.append(item.problem(
                ("gate", "id"),
                f"gate id {cfg.gate.id!r} is also used by {first.file}:{first.line}:{first.column}",
            ))
        cid = client_id(cfg)
        cid_loc: Loc = ("uplink", "client_id") if cfg.uplink and cfg.uplink.client_id \
            else ("gate", "id")
        here = item.problem(cid_loc, "")
        first = seen_clients.setdefault(cid, here)
        if first is not here:
            problems.append(item.problem(
                cid_loc,
                f"MQTT client id {cid!r} is also used by {first.file}:{first.line}:"
                f"{first.column} (the broker would disconnect one of them)",
            ))
    return problems


def parse_yaml(text: str, file: str) -> Any:
    """YAML text with positions (for other installer files, e.g. resident imports).

    Raises :class:`ConfigError` with the problems of :func:`yamlconfig.parse_yaml`.
    """
    try:
        return _parse_yaml(text, file)
    except ProblemError as exc:
        raise ConfigError(exc.problems) from None
