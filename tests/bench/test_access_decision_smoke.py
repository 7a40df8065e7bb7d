"""The access decision benchmark runs at tiny sizes and prints its JSON result last."""

from __future__ import annotations

import pytest

from tests.bench.shape import assert_common_tail, run_quick

LABELS = ("1k", "10k", "100k")
RATES = {f"{prefix}_{label}" for label in LABELS
         for prefix in ("decisions_per_s", "decisions_per_cpu_s", "sqlite_decisions_per_s",
                        "sqlite_decisions_per_cpu_s", "ratio_vs_sqlite")}


@pytest.mark.timeout(120)
def test_access_decision_bench_quick() -> None:
    lines, result = run_quick("access_decision.py")
    assert result.keys() >= RATES | {"ratio", "flatness_100k_vs_1k", "rss_mb_100k"}
    assert_common_tail(result, "pydantic")
    assert result["quick"] is True
    assert result["sizes"] == [100, 300, 1000]
    assert all(result[key] > 0 for key in RATES)
    assert result["ratio"] == result["ratio_vs_sqlite_100k"] > 0
    assert result["same_decisions"] is True  # the baseline decides exactly as menjin does
    assert result["baseline"]["decisions_per_cpu_s_100k"] == \
        result["sqlite_decisions_per_cpu_s_100k"]
    assert len(lines) == 5  # one line per size, the verdict, the JSON
