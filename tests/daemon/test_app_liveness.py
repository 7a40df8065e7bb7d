"""A running daemon (simulate mode) with an NIR camera configured: the simulated scene has no
infrared twin, so a resident's photo shown to the RGB camera finds no live face in NIR and is
refused with reason liveness_failed, journalled with its capture; the card still works."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from tests.daemon.test_app_privacy import RESIDENT, RESIDENT_CARD, TIMEOUT_SECONDS, Daemon, count

NIR_VISION = """\
camera:
  source: /dev/video0
  door: front
  nir: {{source: /dev/video2}}
vision:
  detector: {{kind: yunet, path: {models}/face_detection_yunet_2026may.onnx,
             input_size: [640, 384], score_threshold: 0.8}}
  embedder: {{kind: mobilefacenet_paddlex, path: {models}/mobilefacenet_paddlex_128d.onnx}}
  liveness:
    paths: [{models}/2.7_80x80_MiniFASNetV2.onnx, {models}/4_0_0_80x80_MiniFASNetV1SE.onnx]
  agree_frames: 2
  threads: 1
"""
IDENTITY = {"version": 1, "rgb_to_nir": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "error_px": 0.0,
            "points": 0}


@pytest.mark.timeout(240)
def test_a_photo_without_nir_evidence_is_refused_and_journalled(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    config = tmp_path / "gate.yaml"
    # The calibration lives in state_dir, which Daemon creates: write it once the folder exists.
    state = tmp_path / "state"
    daemon = None
    try:
        daemon = Daemon(tmp_path, NIR_VISION.format(models=models_dir))
        (state / "nir_calibration.json").write_text(json.dumps(IDENTITY))
        photos = sorted(str(p) for p in (faces_dir / "enrol" / "obama").glob("*.jpg"))
        enrol = daemon.cli("enrol", "--person", RESIDENT, *photos, "-c", str(config))
        assert enrol.returncode == 0, enrol.stdout + enrol.stderr
        daemon.proc.send_signal(1)  # SIGHUP: reload templates (and the calibration)
        daemon.wait_for(lambda ev: count(ev, "config.reloaded") == 1)
        photo = faces_dir / "probe" / "obama1.jpg"
        deadline = time.monotonic() + TIMEOUT_SECONDS * 3
        while not count(daemon.events(), "access.denied", "liveness_failed"):
            assert time.monotonic() < deadline, daemon.log.read_text()[-3000:]
            daemon.call("sim.face", door="front", name=photo.name, seconds=3.0,
                        photo=base64.b64encode(photo.read_bytes()).decode())
            time.sleep(3.5)
        events = daemon.events()
        assert count(events, "access.granted") == 0
        denied = next(e for e in events if e["type"] == "access.denied")
        assert denied["credential_kind"] == "face" and denied["person"] == RESIDENT
        daemon.wait_for(lambda ev: count(ev, "capture") >= 1)
        log = daemon.log.read_text()
        assert "liveness failed (nir: live face in 0/" in log
        daemon.swipe(RESIDENT_CARD)  # cards keep working
        daemon.wait_for(lambda ev: count(ev, "access.granted") == 1)
    finally:
        if daemon is not None:
            daemon.stop()


@pytest.mark.timeout(240)
def test_a_missing_nir_calibration_refuses_faces_without_stopping_vision(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    """config/example.yaml has an NIR camera and no calibration yet: vision crash-looped on
    NirError.  Now vision runs, the door refuses every face (fail closed), said once."""
    config = tmp_path / "gate.yaml"
    daemon = None
    try:
        daemon = Daemon(tmp_path, NIR_VISION.format(models=models_dir))
        photos = sorted(str(p) for p in (faces_dir / "enrol" / "obama").glob("*.jpg"))
        enrol = daemon.cli("enrol", "--person", RESIDENT, *photos, "-c", str(config))
        assert enrol.returncode == 0, enrol.stdout + enrol.stderr
        daemon.proc.send_signal(1)  # SIGHUP: reload templates
        daemon.wait_for(lambda ev: count(ev, "config.reloaded") == 1)
        calibration = tmp_path / "state" / "nir_calibration.json"
        deadline = time.monotonic() + TIMEOUT_SECONDS * 3
        while not ((vision := daemon.call("status")["vision"]).get("faces_refused")
                   and vision["state"] == "ok"):
            assert time.monotonic() < deadline, daemon.log.read_text()[-3000:]
            time.sleep(0.2)
        assert vision["state"] == "ok" and vision["camera"] == "ok"
        assert vision["faces_refused"].startswith(f"no NIR calibration at {calibration}: run "
                                                  "`menjin camera calibrate`")
        photo = faces_dir / "probe" / "obama1.jpg"
        while not count(daemon.events(), "access.denied", "liveness_failed"):
            assert time.monotonic() < deadline, daemon.log.read_text()[-3000:]
            daemon.call("sim.face", door="front", name=photo.name, seconds=3.0,
                        photo=base64.b64encode(photo.read_bytes()).decode())
            time.sleep(3.5)
        events = daemon.events()
        assert count(events, "access.granted") == 0
        assert count(events, "vision.fault") == 0 and count(events, "part.fault") == 0
        assert daemon.call("status")["vision"]["faults"] == 0  # no crash loop
        log = daemon.log.read_text()
        assert "NirError" not in log
        # said once per vision start (the reload restarted vision for the new templates)
        refusals = log.count("refuses every face until the NIR camera is calibrated")
        assert 1 <= refusals <= 2
        daemon.swipe(RESIDENT_CARD)  # cards keep working
        daemon.wait_for(lambda ev: count(ev, "access.granted") == 1)
    finally:
        if daemon is not None:
            daemon.stop()
