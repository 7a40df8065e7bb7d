"""Landmark refinement: second detector pass on the crop, averaged with its mirror image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.vision.material import DETECTORS, detector, image
from vision.detect import Face
from vision.landmarks import MIRROR_ORDER, Refiner
from vision.models import load_refiner


class NoFaces:
    def detect(self, bgr: np.ndarray) -> list[Face]:
        return []


def mirror_face(face: Face, width: int) -> Face:
    box = np.array([width - face.box[2], face.box[1], width - face.box[0], face.box[3]],
                   np.float32)
    kps = face.kps[list(MIRROR_ORDER)].copy()
    kps[:, 0] = width - kps[:, 0]
    return Face(box, kps, face.score)


@pytest.mark.parametrize("kind", list(DETECTORS))
def test_refined_landmarks_are_mirror_consistent(
    models_dir: Path, faces_dir: Path, kind: str
) -> None:
    """Averaging the crop with its mirror removes the detector's left/right bias: refining the
    mirrored photo gives the mirror of the refined landmarks (within a pixel at ~100 px faces)."""
    file, _threshold = DETECTORS[kind]
    refiner = load_refiner(kind, models_dir / file)
    bgr = image(faces_dir / "probe/obama1.jpg")
    face = detector(models_dir, kind).detect(bgr)[0]
    refined = refiner.refine(bgr, face)
    flipped = cv2.flip(bgr, 1)
    refined_flipped = refiner.refine(flipped, mirror_face(face, bgr.shape[1]))
    expected = mirror_face(refined, bgr.shape[1]).kps
    assert np.abs(refined_flipped.kps - expected).max() < 1.0
    # the same face: the refinement moves landmarks by less than a fifth of the eye distance
    eye = float(np.linalg.norm(face.kps[1] - face.kps[0]))
    assert np.abs(refined.kps - face.kps).max() < 0.2 * eye
    np.testing.assert_array_equal(refined.box, face.box)


def test_no_second_face_keeps_the_first_pass() -> None:
    face = Face(np.array([10, 10, 60, 70], np.float32), np.ones((5, 2), np.float32), 0.9)
    assert Refiner(NoFaces()).refine(np.zeros((100, 100, 3), np.uint8), face) is face


def test_a_face_at_the_border_is_refined_inside_a_black_margin(
    models_dir: Path, faces_dir: Path
) -> None:
    file, _threshold = DETECTORS["yunet"]
    bgr = image(faces_dir / "probe/obama1.jpg")
    face = detector(models_dir, "yunet").detect(bgr)[0]
    x0 = int(face.box[0]) + 5  # cut the frame through the face's left edge
    cut = np.ascontiguousarray(bgr[:, x0:])
    shifted = Face(face.box - np.array([x0, 0, x0, 0], np.float32),
                   face.kps - np.array([x0, 0], np.float32), face.score)
    refiner = load_refiner("yunet", models_dir / file)
    refined = refiner.refine(cut, shifted)
    whole = refiner.refine(bgr, face).kps - np.array([x0, 0], np.float32)
    eye = float(np.linalg.norm(face.kps[1] - face.kps[0]))
    assert np.abs(refined.kps - whole).max() < 0.1 * eye
