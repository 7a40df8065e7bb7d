"""The door latency benchmark runs end to end with tiny sizes and prints its JSON result last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEYS = {"p50_overhead_ms", "p99_overhead_ms", "iterations", "grant_p99_ms", "edge_p99_ms",
        "baseline_toggle_p99_ms", "baseline_edge_p99_ms"}


@pytest.mark.timeout(120)
def test_door_latency_bench_quick() -> None:
    run = subprocess.run(
        [sys.executable, "bench/door_latency.py", "--quick", "--iterations", "200"],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=True,
    )
    lines = run.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result.keys() >= KEYS
    assert result["iterations"] == 200
    assert all(isinstance(result[key], float | int) for key in KEYS)
    assert any(line.startswith("contact edge -> event") for line in lines[:-1])
