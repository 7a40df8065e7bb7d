"""The common tail every bench's JSON line ends with (``bench/machine.py``), and a quick run of a
bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_quick(script: str, timeout_s: float = 110) -> tuple[list[str], dict[str, Any]]:
    """Run ``bench/<script> --quick`` from the repository; (its output lines, the JSON of the
    last one).  A failing run fails the test with its output."""
    run = subprocess.run([sys.executable, f"bench/{script}", "--quick"], cwd=REPO,
                         capture_output=True, text=True, timeout=timeout_s, check=True)
    lines = run.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


def assert_common_tail(result: dict[str, Any], *libraries: str) -> None:
    """``machine`` names the cores and CPU; ``versions`` names each library with a version."""
    machine = result["machine"]
    assert isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert isinstance(machine["cpu_model"], str) and machine["cpu_model"]
    assert machine["arch"] and machine["python"]
    for library in ("menjin", *libraries):
        assert isinstance(result["versions"][library], str), library
