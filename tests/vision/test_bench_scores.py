"""Smoke test: the calibration benchmark runs (--quick) and ends with a JSON line (the liveness
benchmark's is tests/bench/test_liveness_smoke.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.shape import assert_common_tail

REPO = Path(__file__).resolve().parents[2]


def run_bench(name: str, models: Path, faces: Path) -> dict[str, object]:
    env = {**os.environ, "MENJIN_MODELS": str(models), "MENJIN_FACES": str(faces)}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / name), "--quick"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    doc = json.loads(last)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.timeout(150)
def test_face_scores_quick(models_dir: Path, faces_dir: Path) -> None:
    doc = run_bench("face_scores.py", models_dir, faces_dir)
    assert_common_tail(doc, "onnxruntime")
    summary = doc["embedders"]["mobilefacenet_paddlex"]  # type: ignore[index]
    assert set(summary) >= {"threshold", "max_impostor", "min_genuine", "false_accepts",
                            "frame_accept_rate", "passages_granted", "safety_margin"}
    assert summary["false_accepts"] == 0
    assert summary["max_impostor"] < summary["threshold"] <= summary["min_genuine"]
