"""No code of the project touches a private (``_``-prefixed) part of aiomqtt or paho-mqtt.

Private callbacks and attributes change inside the allowed version range without notice; an
override of one (the old uplink's ``_on_publish``) then silently stops being called.  Every file
that imports one of the two libraries is parsed, and any ``_name`` attribute reached through
something other than ``self``/``cls``, any ``getattr(x, "_name")``, any private name imported from
them and any subclass of one of their classes fails this test.  Only :mod:`protocol.mqtt` may
import paho-mqtt or aiomqtt at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("menjin", "daemon", "station", "protocol", "drivers", "vision", "yamlconfig", "bench",
           "tests")
RUNTIME = ("menjin", "daemon", "station", "protocol", "drivers", "vision", "yamlconfig")
LIBRARIES = ("aiomqtt", "paho")
ADAPTER = REPO / "protocol" / "mqtt.py"


def _imports(tree: ast.AST) -> dict[str, str]:
    """Local name → module, for names bound by importing one of LIBRARIES."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARIES:
                    names[(alias.asname or alias.name).split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] in LIBRARIES:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(source: str, where: str) -> list[str]:
    """What ``source`` (the file ``where``) touches of the libraries' private parts."""
    tree = ast.parse(source, where)
    names = _imports(tree)
    if not names:
        return []
    found = [f"{where}: imports private {module}" for module in names.values()
             if any(_private(part) for part in module.split("."))]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{where}:{node.lineno}: private attribute {node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and \
                    _private(arg.value):
                found.append(f"{where}:{node.lineno}: {node.func.id}(..., {arg.value!r})")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in names:
                    found.append(f"{where}:{node.lineno}: class {node.name} subclasses "
                                 f"{ast.unparse(base)}")
    return found


def sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (REPO / package).rglob("*.py"))


def test_no_private_part_of_aiomqtt_or_paho_is_touched() -> None:
    found = [v for path in sources(*SCANNED)
             for v in violations(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))]
    assert found == []


def test_only_the_adapter_imports_an_mqtt_library_at_run_time() -> None:
    importers = [str(p.relative_to(REPO)) for p in sources(*RUNTIME)
                 if p != ADAPTER and _imports(ast.parse(p.read_text(encoding="utf-8")))]
    assert importers == []


def test_nothing_reaches_paho_through_the_adapter() -> None:
    """The adapter's paho client (``MqttClient._paho``) is the adapter's own: a file reaching
    paho objects through it imports no MQTT library, so the checks above would not see it."""
    reaching = [f"{path.relative_to(REPO)}:{node.lineno}"
                for path in sources(*SCANNED) if path != ADAPTER
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.Attribute) and node.attr == "_paho"]
    assert reaching == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import aiomqtt\nclass C(aiomqtt.Client):\n    pass\n",
         "class C subclasses aiomqtt.Client"),
        ("import paho.mqtt.client as paho\nc = paho.Client()\nc._packet_read()\n",
         "private attribute _packet_read"),
        ("import aiomqtt\ndef f(c):\n    return c._client.ack(1, 1)\n",
         "private attribute _client"),
        ("import aiomqtt\ndef f(c):\n    return getattr(c, '_queue')\n",
         "getattr(..., '_queue')"),
        ("from paho.mqtt.client import _socketpair_compat\n", "imports private"),
    ],
)
def test_the_check_catches_each_kind(source: str, expected: str) -> None:
    assert any(expected in v for v in violations(source, "probe.py"))
