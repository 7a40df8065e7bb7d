"""The card latency benchmark drives the real daemon with a few swipes and prints JSON last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.shape import assert_common_tail

REPO = Path(__file__).resolve().parents[2]
KEYS = {"p50_idle_ms", "p99_idle_ms", "p50_busy_ms", "p99_busy_ms", "busy_to_idle_p50",
        "overhead_idle_ms", "overhead_busy_ms", "ratio", "baseline", "wire_time_ms", "swipes",
        "vision"}


@pytest.mark.timeout(120)
def test_card_latency_bench_quick_without_models(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "bench/card_latency.py", "--quick", "--swipes", "50"],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=True,
        env={**os.environ, "MENJIN_MODELS": str(tmp_path / "no-models")},
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert_common_tail(result)  # machine and versions (bench/machine.py)
    assert result.keys() >= KEYS
    assert result["swipes"] == 50
    assert result["wire_time_ms"] == pytest.approx(14 * 10 / 9600 * 1000, abs=1e-3)
    assert 0 < result["p50_idle_ms"] <= result["p99_idle_ms"]
    baseline = result["baseline"]
    assert 0 < baseline["p50_idle_ms"] <= baseline["p99_idle_ms"]  # the baseline opened too
    assert result["ratio"] == pytest.approx(
        result["p50_idle_ms"] / baseline["p50_idle_ms"], rel=0.01)
    overhead = result["overhead_idle_ms"]
    assert overhead["p50"] <= overhead["p90"] <= overhead["p99"]
    assert "all granted" in run.stdout
    assert result["p99_busy_ms"] is None and result["vision"] == {"state": "absent"}
    assert result["overhead_busy_ms"] is None and baseline["p99_busy_ms"] is None


@pytest.mark.timeout(120)
def test_card_latency_bench_with_vision_busy_in_its_own_process(models_dir: Path,
                                                                 faces_dir: Path) -> None:
    run = subprocess.run(
        [sys.executable, "bench/card_latency.py", "--quick", "--swipes", "50"],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert 0 < result["p50_busy_ms"] <= result["p99_busy_ms"]
    assert 0 < result["baseline"]["p50_busy_ms"] <= result["baseline"]["p99_busy_ms"]
    assert result["overhead_busy_ms"]["p50"] <= result["overhead_busy_ms"]["p99"]
    assert result["vision"]["state"] == "ok"
    assert result["vision"]["processed"] > 0  # the pipeline really worked during the phase
