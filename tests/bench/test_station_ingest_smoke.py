"""The station ingest benchmark runs end to end with tiny sizes and prints its JSON result last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.shape import assert_common_tail
from tests.broker import mosquitto_binary

REPO = Path(__file__).resolve().parents[2]
KEYS = {"events_per_s", "baseline_events_per_s", "ratio_vs_baseline", "duplicates_stored",
        "duplicates_sent", "messages", "events", "cpu_us_per_event", "postgres_events_per_s",
        "postgres_baseline_events_per_s"}


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
@pytest.mark.timeout(120)
def test_station_ingest_bench_quick() -> None:
    run = subprocess.run(
        [sys.executable, "bench/station_ingest.py", "--quick", "--events", "500"],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert_common_tail(result)  # machine and versions (bench/machine.py)
    assert result.keys() >= KEYS
    assert result["duplicates_stored"] == 0 and result["missing"] == 0
    assert result["duplicates_sent"] == 50 and result["messages"] == 550
    assert result["events_per_s"] > 0 and result["baseline_events_per_s"] > 0
