"""Smoke test: bench/face_pipeline.py --quick runs menjin and both FaceAnalysis baselines and
ends with its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.shape import assert_common_tail

REPO = Path(__file__).resolve().parents[2]
KEYS = {
    "cpu_ratio_vs_gated", "cpu_ratio_vs_insightface", "ratio", "cpu_s", "rounds_cpu_s",
    "identities_menjin", "identities_insightface", "identities_insightface_gated",
    "same_identities", "peak_rss_mb", "search_ms_100k", "cpu_s_per_video_s", "frames_per_s",
    "search_ms", "detections", "embeddings", "menjin_followed_frames",
}
CONTENDERS = {"menjin", "insightface", "insightface_gated"}


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
    assert_common_tail(doc, "insightface", "onnxruntime")
    assert doc["identities_menjin"] == ["obama"]
    assert doc["identities_insightface"] == doc["identities_insightface_gated"] == ["obama"]
    assert doc["same_identities"] is True
    assert doc["cpu_ratio_vs_gated"] > 0 and doc["cpu_ratio_vs_insightface"] > 0
    assert doc["baseline"]["det_size"] == [640, 480]  # menjin's detector input, not 640x640
    assert set(doc["cpu_s_per_video_s"]) == CONTENDERS
    # The gate skips frames: the gated baseline detects on fewer frames than every frame.
    assert doc["detections"]["insightface_gated"] < doc["detections"]["insightface"]
    # Once the face is decided menjin only follows it: fewer detections than the gated baseline.
    assert doc["menjin_followed_frames"] > 0
    assert doc["detections"]["menjin"] < doc["detections"]["insightface_gated"]
    assert doc["peak_rss_mb"] > 0
