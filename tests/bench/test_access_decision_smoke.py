"""The access decision benchmark runs at tiny sizes and prints its JSON result last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEYS = {"decisions_per_s_1k", "decisions_per_s_10k", "decisions_per_s_100k",
        "speedup_vs_naive_100k", "rss_mb_100k"}


@pytest.mark.timeout(120)
def test_access_decision_bench_quick() -> None:
    run = subprocess.run(
        [sys.executable, "bench/access_decision.py", "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=True,
    )
    lines = run.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result.keys() >= KEYS
    assert result["quick"] is True
    assert result["sizes"] == [100, 300, 1000]
    assert all(result[key] > 0 for key in KEYS)
    assert len(lines) == 5  # one line per size, the verdict, the JSON
