"""Motion consistency on real photos: moved as a plane (tilted by hand) vs. a head turning."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.spoof_sim import live_track, scene_of, spoof_track
from vision.detect import Detector, Face
from vision.models import load_detector
from vision.planarity import MotionConsistency, homography_tilt

PHOTOS = ("enrol/obama/obama.jpg", "enrol/biden/biden.jpg", "probe/alex_lacamoire1.jpg",
          "enrol/rose_leslie/img1.jpg")


def largest(faces: list[Face]) -> Face:
    assert faces
    return max(faces, key=lambda f: f.width)


@pytest.fixture
def detector(models_dir: Path) -> Detector:
    return load_detector("yunet", models_dir / "face_detection_yunet_2026may.onnx",
                         input_size=(640, 480), score_threshold=0.8)


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("kind", ["screen", "print"])
def test_a_photo_tilted_by_hand_is_planar(
    detector: Detector, faces_dir: Path, photo: str, kind: str
) -> None:
    track = MotionConsistency().track()
    for frame in spoof_track(cv2.imread(str(faces_dir / photo)), kind, seed=1):
        track.add(frame.rgb, largest(detector.detect(frame.rgb)).box)
    evidence = track.evidence()
    assert evidence.verdict == "planar", evidence
    assert evidence.refuses
    assert evidence.parallax < 0.5 * MotionConsistency().live_parallax


@pytest.mark.parametrize("photo", PHOTOS)
def test_a_turning_head_shows_parallax(detector: Detector, faces_dir: Path, photo: str) -> None:
    image = cv2.imread(str(faces_dir / photo))
    found = largest(detector.detect(image))
    scene = scene_of(image, ((found.box[0] + found.box[2]) / 2, (found.box[1] + found.box[3]) / 2))
    face = largest(detector.detect(scene))
    track = MotionConsistency().track()
    for frame in live_track(scene, face.box, face.kps, seed=2):
        track.add(frame.rgb, largest(detector.detect(frame.rgb)).box)
    evidence = track.evidence()
    assert evidence.verdict == "3d", evidence
    assert not evidence.refuses


def test_a_face_held_still_is_undecided(detector: Detector, faces_dir: Path) -> None:
    scene = scene_of(cv2.imread(str(faces_dir / PHOTOS[0])))
    track = MotionConsistency().track()
    for shift in range(5):
        frame = np.roll(scene, shift, axis=1)
        track.add(frame, largest(detector.detect(frame)).box)
    evidence = track.evidence()
    assert (evidence.verdict, evidence.frames) == ("still", 5)
    assert not evidence.refuses


def test_a_similarity_has_no_tilt() -> None:
    angle = np.radians(20)
    similarity = np.array([[1.3 * np.cos(angle), -1.3 * np.sin(angle), 15],
                           [1.3 * np.sin(angle), 1.3 * np.cos(angle), -7], [0, 0, 1]])
    assert homography_tilt(similarity, np.array([100, 100, 200, 220])) == pytest.approx(0, abs=1e-9)
    keystone = np.array([[1, 0, 0], [0, 1, 0], [0.001, 0, 1]])
    assert homography_tilt(keystone, np.array([100, 100, 200, 220])) > 0.02


@pytest.mark.parametrize("kwargs", [{"live_parallax": 0}, {"planar_tilt": 1.5}])
def test_limits_must_be_shares(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="shares of the face width"):
        MotionConsistency(**kwargs)
