"""The JSON Schema editors use to complete and check the gate's YAML (``config/schema.json``).

Generated from :class:`~daemon.config.GateConfig`.  Any value may be written as an environment
reference (``port: ${MENJIN_BROKER_PORT:-1883}``, expanded by the loader before validation), so
every number, yes/no, choice or pattern-checked text also accepts such a reference: an editor
shows the shipped example clean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon.config import GateConfig

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "config" / "schema.json"
#: A value that is one or more ``${VAR}`` / ``${VAR:-default}`` references, maybe with text.
ENV_REFERENCE = {
    "type": "string",
    "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}",
    "description": "An environment variable: ${VAR} or ${VAR:-default}.",
}
_CHECKED = ("enum", "const", "pattern", "minimum", "maximum", "exclusiveMinimum",
            "exclusiveMaximum", "minLength", "maxLength")


def _needs_reference(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    if kind in ("integer", "number", "boolean"):
        return True
    return (kind == "string" and any(key in node for key in _CHECKED)) or (
        kind is None and "enum" in node
    )


def _allow_references(node: Any) -> Any:
    if isinstance(node, list):
        return [_allow_references(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _allow_references(value) for key, value in node.items()}
    if _needs_reference(node):
        keep = {key: node.pop(key) for key in ("default", "description", "title") if key in node}
        return {"anyOf": [node, ENV_REFERENCE], **keep}
    if "anyOf" in node:  # flatten a nested anyOf made above
        flat: list[Any] = []
        for option in node["anyOf"]:
            inner = option.get("anyOf") if isinstance(option, dict) and len(option) == 1 else None
            for item in inner or [option]:
                if item not in flat:
                    flat.append(item)
        node["anyOf"] = flat
    return node


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the gate config, environment references allowed."""
    result: dict[str, Any] = _allow_references(GateConfig.model_json_schema())
    result["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    result["title"] = "menjin gate configuration"
    return result


def schema_text() -> str:
    """:func:`schema` as committed in ``config/schema.json``."""
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"
