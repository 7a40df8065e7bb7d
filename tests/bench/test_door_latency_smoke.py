"""The door latency benchmark runs a few paired iterations and prints its JSON result last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.shape import assert_common_tail

REPO = Path(__file__).resolve().parents[2]
KEYS = {"p50_overhead_ms", "p99_overhead_ms", "iterations", "grant_p99_ms", "edge_p99_ms",
        "grant_overhead_ms", "edge_overhead_ms", "debounce_ms", "ratio"}


@pytest.mark.timeout(120)
def test_door_latency_bench_quick() -> None:
    run = subprocess.run(
        [sys.executable, "bench/door_latency.py", "--quick", "--iterations", "40"],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=True,
    )
    lines = run.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result.keys() >= KEYS
    assert_common_tail(result, "gpiozero")
    assert result["iterations"] == 40
    assert result["debounce_ms"] == 30  # the config's default, not 0
    # Every edge waited for the debounce on both sides.
    assert result["edge_p50_ms"] >= 30 and result["baseline"]["edge_p50_ms"] >= 30
    assert result["ratio"] > 0
    for path in ("grant_overhead_ms", "edge_overhead_ms"):
        assert set(result[path]) == {"p50", "p90", "p99"}
        assert result[path]["p50"] <= result[path]["p90"] <= result[path]["p99"]
    assert any(line.startswith("paired difference edge") for line in lines[:-1])
    assert "Traceback" not in run.stderr
