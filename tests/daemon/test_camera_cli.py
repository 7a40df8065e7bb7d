"""`menjin camera calibrate` on image folders standing in for the two lenses of a module."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from bench.spoof_sim import NIR_MAPPING, live_track, scene_of
from menjin.cli import app
from vision.models import load_detector

YUNET = "face_detection_yunet_2026may.onnx"
EMBEDDER = "mobilefacenet_paddlex_128d.onnx"
PHOTOS = ("enrol/obama/obama.jpg", "enrol/biden/biden.jpg", "probe/alex_lacamoire1.jpg")


def gate_config(tmp_path: Path, models: Path, nir_source: str) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        state_dir: state
        gate: {{id: g1, site: Test compound}}
        doors:
          front: {{lock: {{pin: 17}}, access: card_or_face, liveness: nir}}
        camera:
          source: {tmp_path / "rgb"}
          door: front
          width: 640
          height: 480
          nir: {{source: {nir_source}, width: 640, height: 480}}
        vision:
          detector: {{kind: yunet, path: {models / YUNET}, input_size: [640, 480],
                      score_threshold: 0.8}}
          embedder: {{kind: mobilefacenet_paddlex, path: {models / EMBEDDER}}}
        """), encoding="utf-8")
    return path


@pytest.mark.timeout(120)
def test_calibrate_writes_the_mapping(models_dir: Path, faces_dir: Path, tmp_path: Path) -> None:
    detector = load_detector("yunet", models_dir / YUNET, input_size=(640, 480),
                             score_threshold=0.8)
    (tmp_path / "rgb").mkdir()
    (tmp_path / "nir").mkdir()
    n = 0
    for seed, name in enumerate(PHOTOS):
        photo = cv2.imread(str(faces_dir / name))
        found = max(detector.detect(photo), key=lambda f: f.width)
        scene = scene_of(photo, ((found.box[0] + found.box[2]) / 2,
                                 (found.box[1] + found.box[3]) / 2))
        face = max(detector.detect(scene), key=lambda f: f.width)
        for frame in live_track(scene, face.box, face.kps, seed):
            cv2.imwrite(str(tmp_path / "rgb" / f"{n:03d}.png"), frame.rgb)
            cv2.imwrite(str(tmp_path / "nir" / f"{n:03d}.png"), frame.nir)
            n += 1
    config = gate_config(tmp_path, models_dir, str(tmp_path / "nir"))
    result = CliRunner().invoke(app, ["camera", "calibrate", "-c", str(config), "--pairs", "12"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "state" / "nir_calibration.json"
    assert result.output.startswith(f"wrote {written}: 12 frame pairs, ")
    matrix = np.array(json.loads(written.read_text())["rgb_to_nir"])
    probe = np.array([[[320.0, 240.0]]])
    mapped = cv2.perspectiveTransform(probe, matrix)
    assert np.abs(mapped - cv2.perspectiveTransform(probe, NIR_MAPPING)).max() < 6


@pytest.mark.timeout(120)
def test_calibrate_without_a_face_in_nir_fails_clearly(
    models_dir: Path, faces_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "rgb").mkdir()
    (tmp_path / "nir").mkdir()
    photo = cv2.imread(str(faces_dir / PHOTOS[0]))
    cv2.imwrite(str(tmp_path / "rgb" / "000.png"), scene_of(photo))
    cv2.imwrite(str(tmp_path / "nir" / "000.png"), np.full((480, 640), 12, np.uint8))
    config = gate_config(tmp_path, models_dir, str(tmp_path / "nir"))
    result = CliRunner().invoke(app, ["camera", "calibrate", "-c", str(config), "--seconds", "1"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "calibration failed after 0 pair(s) with a face: calibration needs at least 8 landmark "
        "pairs, got 0: was a face visible to both cameras?"
    )
    assert not (tmp_path / "state" / "nir_calibration.json").exists()


def test_calibrate_in_simulate_mode_says_it_needs_the_real_cameras(
        models_dir: Path, tmp_path: Path) -> None:
    """It used to open the real /dev/video0 of the example config in simulate mode."""
    config = tmp_path / "gate.yaml"
    config.write_text(gate_config(tmp_path, models_dir, "/dev/video2").read_text().replace(
        f"source: {tmp_path / 'rgb'}", "source: /dev/video0") + "hardware: {gpio_backend: mock}\n",
        encoding="utf-8")
    result = CliRunner().invoke(app, ["camera", "calibrate", "-c", str(config)])
    assert result.exit_code == 78
    assert " ".join(result.output.split()) == (
        f"{config}: `menjin camera calibrate` needs the real RGB and NIR cameras (/dev/video0, "
        "/dev/video2), and this config runs in simulate mode (hardware.gpio_backend: mock), "
        "whose simulated cameras have no infrared picture; until a real calibration exists, "
        "door front refuses faces (cards work). To try calibration without the hardware, point "
        "camera.source and camera.nir.source at folders of paired RGB and NIR images.")
    assert not (tmp_path / "state" / "nir_calibration.json").exists()
