"""Smoke test: bench/face_passages.py --quick runs the permissive route and the FaceAnalysis
baseline on the East-Asian dev set and ends with its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.shape import assert_common_tail

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_face_passages_bench_quick(models_dir: Path, faces_dir: Path) -> None:
    if not (faces_dir / "east-asian-dev").is_dir():
        pytest.skip(f"{faces_dir / 'east-asian-dev'} not found (the East-Asian dev set)")
    env = {**os.environ, "MENJIN_MODELS": str(models_dir), "MENJIN_FACES": str(faces_dir)}
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "face_passages.py"), "--quick"],
        capture_output=True, text=True, timeout=380, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert_common_tail(doc)  # machine and versions (bench/machine.py)
    assert set(doc["routes"]) == {"paddlex", "faceanalysis"}
    for route in doc["routes"].values():
        for level in ("photo", "looks", "passage"):
            figures = route[level]
            assert figures["wrong_person_accepts"] == figures["stranger_accepts"] == 0
            assert 0 < figures["true_accepts"] <= figures["genuine"]
        assert route["passage"]["cpu_ms_per_passage"] > 0
    assert doc["cpu_ratio_vs_faceanalysis"]["paddlex"] > 0
