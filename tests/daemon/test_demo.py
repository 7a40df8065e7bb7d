"""`menjin demo` as a newcomer runs it: a child process that must end with 0 and a summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.broker import mosquitto_binary
from tests.conftest import FACES_DIR, MODELS_DIR

REPO = Path(__file__).resolve().parents[2]
STEPS = [
    "1. A resident's valid card",
    "2. An unknown card",
    "3. An expired visitor's card",
    "5. Exit button (egress)",
    "6. Door held open too long",
    "7. Forced door",
    "8. Tamper switch",
]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_plays_the_scenario_and_exits_0() -> None:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    result = subprocess.run(
        [sys.executable, "-c", "from menjin.cli import main; main()", "demo"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=280,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "menjin demo: summary" in out
    summary = out[out.index("menjin demo: summary"):]
    for step in STEPS:
        line = next(line for line in summary.splitlines() if step in line)
        assert " ok " in line, line
    assert "FAILED" not in summary
    assert "reason: unknown_credential" in summary
    assert "reason: expired" in summary
    if any(MODELS_DIR.glob("*.onnx")) and (FACES_DIR / "enrol").is_dir():
        face = next(line for line in summary.splitlines() if "4. Face-scan entry" in line)
        assert " ok " in face, face
        if mosquitto_binary() is not None:  # the portrait reached the station (upload policy)
            assert "captures 1" in summary
    else:
        assert "face-scan entry is skipped" in out


def test_the_demo_says_plainly_why_it_skips_its_face_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daemon.cli.demo import face_skip_reason

    monkeypatch.setenv("MENJIN_MODELS", str(tmp_path / "nothing"))
    monkeypatch.delenv("MENJIN_FACES", raising=False)
    assert face_skip_reason(None, tmp_path) == (
        f"step 4, face-scan entry, is skipped: no face models (.onnx) in $MENJIN_MODELS "
        f"({tmp_path}/nothing); set MENJIN_MODELS and MENJIN_FACES to run it")
    assert face_skip_reason(tmp_path, None) == (
        "step 4, face-scan entry, is skipped: no test photos (an enrol/ folder) in "
        "$MENJIN_FACES (not set); set MENJIN_MODELS and MENJIN_FACES to run it")
