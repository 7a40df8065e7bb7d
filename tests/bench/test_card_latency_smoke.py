"""The card latency benchmark runs end to end with a few swipes and prints its JSON result last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEYS = {"p50_overhead_ms", "p99_overhead_ms", "wire_time_ms", "swipes", "no_journal_p50_ms",
        "reader_p50_ms"}


@pytest.mark.timeout(120)
def test_card_latency_bench_quick() -> None:
    run = subprocess.run(
        [sys.executable, "bench/card_latency.py", "--quick", "--swipes", "50"],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result.keys() >= KEYS
    assert result["swipes"] == 50
    assert result["wire_time_ms"] == pytest.approx(14 * 10 / 9600 * 1000, abs=1e-3)
    assert 0 < result["p50_overhead_ms"] <= result["p99_overhead_ms"]
    assert 0 < result["reader_p50_ms"] <= result["reader_p99_ms"]
    assert "all granted" in run.stdout
