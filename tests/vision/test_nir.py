"""NIR evidence with synthetic paired frames: a live face is in both frames, a screen face only in
the RGB frame, a dye-ink print only as a faint ghost; calibration and timestamp pairing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.spoof_sim import NIR_MAPPING, live_track, scene_of, spoof_track
from vision.detect import Detector, Face
from vision.models import load_detector
from vision.nir import NirCalibration, NirCheck, NirError, NirFrames, landmark_pairs

YUNET = "face_detection_yunet_2026may.onnx"
PHOTOS = ("enrol/obama/obama.jpg", "enrol/biden/biden.jpg", "probe/alex_lacamoire1.jpg",
          "enrol/kit_harington/john1.jpeg", "enrol/rose_leslie/img1.jpg")


def largest(faces: list[Face]) -> Face:
    assert faces
    return max(faces, key=lambda f: f.width)


@pytest.fixture
def detector(models_dir: Path) -> Detector:
    return load_detector("yunet", models_dir / YUNET, input_size=(640, 480), score_threshold=0.8)


@pytest.fixture
def check(models_dir: Path) -> NirCheck:
    small = load_detector("yunet", models_dir / YUNET, input_size=(160, 160),
                          score_threshold=0.8)
    return NirCheck(small, NirCalibration(NIR_MAPPING, 0.0, 0), NirFrames())


def live_frames(detector: Detector, photo: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    found = largest(detector.detect(photo))
    scene = scene_of(photo, ((found.box[0] + found.box[2]) / 2, (found.box[1] + found.box[3]) / 2))
    face = largest(detector.detect(scene))
    return [(f.rgb, f.nir) for f in live_track(scene, face.box, face.kps, seed=3)]


@pytest.mark.parametrize("photo", PHOTOS)
def test_a_live_face_is_in_both_frames(
    detector: Detector, check: NirCheck, faces_dir: Path, photo: str
) -> None:
    for rgb, nir in live_frames(detector, cv2.imread(str(faces_dir / photo))):
        evidence = check.evaluate_frame(nir, largest(detector.detect(rgb)))
        assert evidence.live and evidence.found, evidence
        assert evidence.offset < check.max_offset
        assert evidence.reflectance >= check.min_reflectance


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("kind", ["screen", "print"])
def test_a_screen_or_print_face_is_not_live_in_nir(
    detector: Detector, check: NirCheck, faces_dir: Path, photo: str, kind: str
) -> None:
    for frame in spoof_track(cv2.imread(str(faces_dir / photo)), kind, seed=4):
        evidence = check.evaluate_frame(frame.nir, largest(detector.detect(frame.rgb)))
        assert not evidence.live, evidence


def test_a_live_face_elsewhere_in_the_nir_frame_does_not_count(
    detector: Detector, check: NirCheck, faces_dir: Path
) -> None:
    """A screen held beside a real person: the NIR face is not where the RGB face maps to."""
    rgb, nir = live_frames(detector, cv2.imread(str(faces_dir / PHOTOS[0])))[0]
    face = largest(detector.detect(rgb))
    moved = Face(face.box - np.float32([200, 0, 200, 0]), face.kps - np.float32([200, 0]),
                 face.score)
    shifted = np.roll(nir, -round(200 * NIR_MAPPING[0, 0]), axis=1)
    assert check.evaluate_frame(shifted, moved).live  # sanity: a face at the moved spot counts
    assert not check.evaluate_frame(nir, moved).live


def test_frames_pair_by_timestamp() -> None:
    frames = NirFrames(maxlen=3)
    assert frames.nearest(1.0, 0.05) is None
    for i, ts in enumerate((1.00, 1.066, 1.133, 1.2)):
        frames.push(np.full((4, 4), i, np.uint8), ts)
    pick = frames.nearest(1.12, 0.05)
    assert pick is not None and int(pick[0, 0]) == 2
    assert frames.nearest(1.0, 0.05) is None  # the 1.00 frame left the buffer
    assert frames.nearest(1.5, 0.05) is None  # nothing within the skew: no pairing
    frames.push(np.zeros((4, 4, 3), np.uint8), 2.0)  # colour frames are stored grey
    colour = frames.nearest(2.0, 0.01)
    assert colour is not None and colour.shape == (4, 4)


def test_calibration_is_fitted_from_faces_seen_by_both_cameras(
    detector: Detector, faces_dir: Path, tmp_path: Path
) -> None:
    pairs = []
    for photo in PHOTOS:
        for rgb, nir in live_frames(detector, cv2.imread(str(faces_dir / photo)))[:2]:
            nir_faces = detector.detect(cv2.cvtColor(nir, cv2.COLOR_GRAY2BGR))
            pairs.append((largest(detector.detect(rgb)), largest(nir_faces)))
    calibration = NirCalibration.fit(*landmark_pairs(pairs))
    probe = np.array([[[100.0, 100.0]], [[500.0, 400.0]]])
    expected = cv2.perspectiveTransform(probe, NIR_MAPPING)
    # Frame corners, far from every landmark used: within 15 px, well inside the check's
    # tolerance (0.35 face widths: 28 px for the smallest face recognised, 80 px).
    assert np.abs(cv2.perspectiveTransform(probe, calibration.matrix) - expected).max() < 15
    assert calibration.error_px < 8  # landmark noise of two detections
    path = tmp_path / "nir_calibration.json"
    calibration.save(path)
    loaded = NirCalibration.load(path)
    np.testing.assert_allclose(loaded.matrix, calibration.matrix, atol=1e-6)


def test_calibration_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(NirError) as exc:
        NirCalibration.load(missing)
    assert str(exc.value) == (
        f"no NIR calibration at {missing}: run `menjin camera calibrate` with a person in "
        "front of the camera"
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "rgb_to_nir": [[1, 0], [0, 1]]}))
    with pytest.raises(NirError, match="is not a version 1 calibration"):
        NirCalibration.load(bad)
    bad.write_text("{not json")
    with pytest.raises(NirError, match="unreadable"):
        NirCalibration.load(bad)
    with pytest.raises(NirError, match="at least 8 landmark pairs, got 5"):
        NirCalibration.fit(np.zeros((5, 2)), np.zeros((5, 2)))
