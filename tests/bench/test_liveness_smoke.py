"""Smoke test: bench/liveness.py --quick reports APCER/BPCER per check and ends with its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.shape import assert_common_tail

REPO = Path(__file__).resolve().parents[2]
CHECKS = {"passive", "motion", "nir", "rgb", "all", "single_frame_baseline"}


@pytest.mark.timeout(150)
def test_liveness_bench_quick(models_dir: Path, faces_dir: Path) -> None:
    env = {**os.environ, "MENJIN_MODELS": str(models_dir), "MENJIN_FACES": str(faces_dir)}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "liveness.py"), "--quick"],
        capture_output=True, text=True, timeout=140, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert_common_tail(doc)  # machine and versions (bench/machine.py)
    assert set(doc) - {"machine", "versions"} == {
        "material", "cpu_ms_per_track", "cpu_ratio_vs_single_frame", "tracks"}
    sim = doc["material"]["sim"]
    assert set(sim) == CHECKS
    for row in sim.values():
        assert 0 <= row["apcer"] <= 1 and 0 <= row["bpcer"] <= 1
        assert row["attacks"] == 8 and row["live"] == 4
    assert doc["material"].get("real", {}).get("motion", {}).get("apcer") is None
    # The simulated screens and prints: none passes the NIR check or all checks together.
    assert sim["nir"]["apcer"] == 0 and sim["all"]["apcer"] == 0
    if (faces_dir / "spoof").is_dir():
        real = doc["material"]["real"]
        assert real["all"]["apcer"] == 0 and real["all"]["attacks"] == 9
    assert doc["cpu_ms_per_track"]["passive"] > 0
