"""The common tail of every bench's JSON line: which machine and which library versions.

A figure without its machine is not comparable: the benches run on laptops, shared CI runners
and Raspberry Pi boards.  Every bench ends with ``print(json.dumps(with_machine(result, ...)))``
so the last line carries, beside its own figures, the baseline and the ratio:

- ``machine``: ``cores`` (``os.cpu_count()``), ``cpu_model`` (``/proc/cpuinfo``: ``model name``
  on x86, ``Model``/``Hardware`` on a Pi), ``arch``, ``python``, ``load_avg_1m`` (the 1-minute
  load average when the bench ended: a loaded shared machine shows here);
- ``versions``: the installed version of each named distribution (``None`` when absent).

Usage from a bench (run as ``python bench/NAME.py``, the repository root on ``sys.path``)::

    from bench.machine import with_machine
    print(json.dumps(with_machine(result, libraries=("paho-mqtt",))))
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
#: Keys of /proc/cpuinfo naming the CPU, in order of preference (x86, then ARM boards).
CPU_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model")
#: What every bench names anyway: the interpreter's numerics and the project itself.
BASE_LIBRARIES = ("menjin", "numpy")


def cpu_model() -> str:
    """The CPU's name from ``/proc/cpuinfo``; ``platform.processor()`` elsewhere."""
    try:
        lines = CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return platform.processor() or "unknown"
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return next((fields[k] for k in CPU_MODEL_KEYS if fields.get(k)),
                platform.processor() or "unknown")


def machine() -> dict[str, Any]:
    """Cores, CPU model, architecture, Python version and the 1-minute load average."""
    try:
        load: float | None = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"cores": os.cpu_count(), "cpu_model": cpu_model(), "arch": platform.machine(),
            "python": platform.python_version(), "load_avg_1m": load}


def versions(libraries: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution name (``None`` when it is not installed)."""
    out: dict[str, str | None] = {}
    for name in (*BASE_LIBRARIES, *libraries):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def with_machine(result: Mapping[str, Any], *, libraries: Iterable[str] = ()) -> dict[str, Any]:
    """``result`` plus ``machine`` and ``versions``: the common tail of every bench's JSON."""
    return {**result, "machine": machine(), "versions": versions(libraries)}
