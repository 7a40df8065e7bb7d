"""The station sync benchmark runs end to end with a small list and prints its JSON result last."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.shape import assert_common_tail
from tests.broker import mosquitto_binary

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
@pytest.mark.timeout(180)
def test_station_sync_bench_small() -> None:
    run = subprocess.run(
        [sys.executable, "bench/station_sync.py", "--residents", "12000"],
        cwd=REPO, capture_output=True, text=True, timeout=170, check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert_common_tail(result, "paho-mqtt")
    assert result["residents"] == result["gate_persons"] == 12000
    assert result["pieces"] >= 2  # more than one command's worth: sent in pieces
    assert result["delta_upserted"] == 120
    assert result["snapshot_s"] > 0 and result["direct_apply_s"] > 0
    assert result["baseline"]["seconds"] == result["direct_apply_s"]
    assert result["gate_peak_rss_mb_after"] >= result["gate_peak_rss_mb_before"] > 0
