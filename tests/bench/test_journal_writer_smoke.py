"""The journal writer benchmark runs at tiny sizes and prints its JSON result last."""

from __future__ import annotations

import pytest

from tests.bench.shape import assert_common_tail, run_quick

CONTENDERS = ("menjin", "sealed", "executemany")
CONDITIONS = ("busy_daemon", "idle_daemon", "busy_default", "idle_default")
FIGURES = ("events_per_s", "batch_ms_p50", "batch_ms_max", "cpu_us_per_event")
RATIOS = ("ratio", "ratio_default_switch", "ratio_idle", "cpu_ratio_idle", "cpu_ratio_busy")


@pytest.mark.timeout(120)
def test_journal_writer_bench_quick() -> None:
    lines, result = run_quick("journal_writer.py")
    assert result.keys() >= {"events_per_s", "baseline", "sealed_events_per_s",
                             "target_events_per_s", "switch_intervals_s", "results",
                             "rounds_events_per_s", "rounds_loop_cpu_share", "pinned_cpus",
                             *RATIOS}
    assert_common_tail(result, "cryptography")
    assert result["quick"] is True
    assert result["events"] == 1024 and result["batch_max"] == 512 and result["rounds"] == 2
    assert result["switch_intervals_s"] == {"daemon": 0.0005, "default": 0.005}
    for name in CONTENDERS:
        for condition in CONDITIONS:
            figures = result["results"][name][condition]
            assert all(figures[key] > 0 for key in FIGURES), (name, condition, figures)
            assert len(result["rounds_events_per_s"][name][condition]) == 2
            if condition.startswith("busy"):  # the busy loop ran
                assert figures["loop_cpu_share"] > 0, (name, condition, figures)
                assert len(result["rounds_loop_cpu_share"][name][condition]) == 2
    assert all(result[key] > 0 for key in RATIOS)
    assert result["events_per_s"] == result["results"]["menjin"]["busy_daemon"]["events_per_s"]
    assert result["baseline"]["events_per_s"] == \
        result["results"]["executemany"]["busy_daemon"]["events_per_s"]
    assert result["sealed_events_per_s"] == \
        result["results"]["sealed"]["busy_daemon"]["events_per_s"]
    assert len(lines) == 2 + 4 * 5 + 1 + 1  # two rounds, four conditions, the verdict, the JSON
