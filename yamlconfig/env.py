"""``${VAR}`` and ``${VAR:-default}`` in config values, remembering where each value came from.

A value taken from the environment is not in the file, so a problem with it must name the
variable (``MENJIN_BROKER_PORT=abc``), and a relative path in it means what it means in the shell
that set it: relative to the working directory, not to the config file's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping, MutableSequence
from dataclasses import dataclass, field
from typing import Any

ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Loc = tuple[str | int, ...]


@dataclass
class EnvUse:
    """What :func:`expand_env` did: variables used per value, and the unset ones.

    ``used`` maps a value's location to ``(name, value)`` of each variable taken from the
    environment; ``leading`` holds the locations whose value *starts* with such a variable (a
    relative path there is relative to the working directory); ``missing`` maps the locations of
    ``${VAR}`` without a default to the unset names.
    """

    used: dict[Loc, list[tuple[str, str]]] = field(default_factory=dict)
    leading: set[Loc] = field(default_factory=set)
    missing: dict[Loc, list[str]] = field(default_factory=dict)

    def describe(self, loc: Loc) -> str:
        """``MENJIN_X=value`` for each variable in the value at ``loc`` ('' when none)."""
        return ", ".join(f"{name}={value}" for name, value in self.used.get(loc, []))


def expand_env(root: Any, environ: Mapping[str, str] | None = None) -> EnvUse:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``root``, in place.

    Each node is visited once even when YAML aliases share it.
    """
    env = os.environ if environ is None else environ
    use = EnvUse()
    seen: set[int] = set()

    def expand(text: str, loc: Loc) -> str:
        def sub(match: re.Match[str]) -> str:
            value = env.get(match.group(1))
            if value is None:
                if match.group(2) is None:
                    use.missing.setdefault(loc, []).append(match.group(1))
                    return ""
                return match.group(2)
            use.used.setdefault(loc, []).append((match.group(1), value))
            if match.start() == 0:
                use.leading.add(loc)
            return value

        return ENV_PATTERN.sub(sub, text)

    def walk(node: Any, loc: Loc) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, MutableMapping):
            for key in list(node):
                if isinstance(node[key], str):
                    node[key] = expand(node[key], (*loc, key))
                else:
                    walk(node[key], (*loc, key))
        elif isinstance(node, MutableSequence):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = expand(item, (*loc, i))
                else:
                    walk(item, (*loc, i))

    walk(root, ())
    return use
