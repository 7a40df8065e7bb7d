"""The uplink benchmark runs end to end with tiny sizes and prints its JSON result last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.app import GIL_SWITCH_SECONDS
from tests.bench.shape import assert_common_tail
from tests.broker import mosquitto_binary

REPO = Path(__file__).resolve().parents[2]
KEYS = {"access_events_per_s", "events_per_s", "raw_events_per_s", "ratio_vs_raw",
        "ratio_routine_vs_raw", "backlog_drain_s", "lost", "rounds_events_per_s"}


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
@pytest.mark.timeout(120)
def test_uplink_bench_quick() -> None:
    run = subprocess.run(
        [sys.executable, "bench/uplink.py", "--quick", "--events", "300", "--backlog", "300",
         "--rounds", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result.keys() >= KEYS
    assert_common_tail(result, "paho-mqtt")
    assert result["lost"] == 0
    assert result["events_per_s"] > 0 and result["access_events_per_s"] > 0
    assert result["baseline"]["events_per_s"] == result["raw_events_per_s"] > 0
    assert result["ratio_vs_raw"] > 0 and result["ratio_routine_vs_raw"] > 0
    assert result["backlog_events"] == 300
    assert result["switch_interval_s"] == GIL_SWITCH_SECONDS  # as the door daemon runs
    assert all(len(v) == 1 for v in result["rounds_events_per_s"].values())
