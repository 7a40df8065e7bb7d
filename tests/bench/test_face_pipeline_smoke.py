"""Smoke test: bench/face_pipeline.py --quick runs all three contenders and ends with its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "cpu_ratio_vs_insightface", "identities_menjin", "identities_insightface",
    "identities_permissive", "peak_rss_mb", "search_ms_100k", "cpu_s_per_video_s",
    "frames_per_s", "search_ms",
}


@pytest.mark.timeout(240)
def test_face_pipeline_bench_quick(models_dir: Path, faces_dir: Path) -> None:
    env = {**os.environ, "MENJIN_MODELS": str(models_dir), "MENJIN_FACES": str(faces_dir)}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "face_pipeline.py"), "--quick"],
        capture_output=True, text=True, timeout=220, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(doc) >= KEYS
    assert doc["identities_menjin"] == ["obama"]
    assert doc["identities_insightface"] == ["obama"]
    assert doc["cpu_ratio_vs_insightface"] > 0
    assert doc["peak_rss_mb"] > 0
    assert set(doc["cpu_s_per_video_s"]) == {"menjin", "insightface", "permissive"}
