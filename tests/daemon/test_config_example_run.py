"""The shipped example runs as it is on a fresh clone without models (issue 20 #1).

Simulate mode, no broker listening, no face models: the gate comes up (READY=1), says once why
vision is off and how to turn it on, and stops cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "example.yaml"
START_TIMEOUT_SECONDS = 60.0


def detector_line() -> int:
    """Line of the detector's model path in the example (where the vision warning points)."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if "face_detection_yunet" in line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
def test_example_runs_in_simulate_mode_without_models(tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(1.0)
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
               STATE_DIRECTORY=str(tmp_path / "state"), MENJIN_MODELS="no-models-here",
               MENJIN_BROKER_HOST="127.0.0.1", MENJIN_BROKER_PORT=str(free_port()))
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from menjin.cli import main; main()", "run", "-c",
             str(EXAMPLE)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        ready = False
        while not ready:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                ready = notify.recv(4096).decode().startswith("READY=1")
            except TimeoutError:
                continue
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    lines = [line for line in log.read_text().splitlines() if "face recognition" in line]
    assert lines == [
        f"{EXAMPLE}:{detector_line()}:11: vision.detector.path: face recognition disabled: "
        f"model file(s) not found in {tmp_path / 'no-models-here'}: "
        "face_detection_yunet_2026may.onnx, "
        "mobilefacenet_paddlex_128d.onnx, 2.7_80x80_MiniFASNetV2.onnx, "
        "4_0_0_80x80_MiniFASNetV1SE.onnx; to enable it, put the models there or set "
        "MENJIN_MODELS to the folder holding them (vision.enabled: false silences this)"
    ]
