"""Enrolment at the door from a burst of camera frames (vision/burst.py), with the real models.

Frames are built like a camera sees a resident standing at the gate: one of their East-Asian dev
set photos, upscaled into a 640x480 frame, moving a few pixels and changing light a little.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.burst import BurstRefusedError, enrol_burst
from vision.detect import Detector
from vision.embed import Embedder, default_match_threshold
from vision.landmarks import Refiner
from vision.models import load_detector, load_embedder, load_refiner
from vision.quality import QualityThresholds

DEV_SET = "east-asian-dev"
YUNET = "face_detection_yunet_2026may.onnx"
PADDLEX = "mobilefacenet_paddlex_128d.onnx"
THRESHOLD = default_match_threshold("mobilefacenet_paddlex")


@functools.cache
def route(models: Path) -> tuple[Detector, Embedder, Refiner]:
    detector = load_detector("yunet", models / YUNET, input_size=(640, 480), score_threshold=0.6)
    return (detector, load_embedder("mobilefacenet_paddlex", models / PADDLEX, mirror=True),
            load_refiner("yunet", models / YUNET))


@pytest.fixture
def dev(faces_dir: Path) -> Path:
    if not (faces_dir / DEV_SET).is_dir():
        pytest.skip(f"{faces_dir / DEV_SET} not found (the East-Asian dev set)")
    return faces_dir / DEV_SET


#: A resident at the camera tilts their head a little during the burst (degrees, by frame).
ROLLS = (-10.0, 0.0, 10.0)


def frame(photo: Path, i: int, gain: float = 1.0) -> np.ndarray:
    """The photo (250x250 LFW crop) upscaled 1.6x into a grey 640x480 frame, shifted and rolled
    by frame."""
    image = cv2.imread(str(photo))
    image = cv2.resize(image, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_LINEAR)
    centre = (image.shape[1] / 2, image.shape[0] / 2)
    matrix = cv2.getRotationMatrix2D(centre, ROLLS[i % 3], 1.0)
    matrix[:, 2] += (320 - centre[0] + 3 * i, 240 - centre[1] + (i % 2))
    canvas = cv2.warpAffine(image, matrix, (640, 480), borderValue=(110, 110, 110))
    return cv2.convertScaleAbs(canvas, alpha=gain * (1 + 0.03 * (i % 4)), beta=0)


def burst(photo: Path, frames: int = 9, gain: float = 1.0) -> list[tuple[str, np.ndarray]]:
    return [(f"frame {i + 1}", frame(photo, i, gain)) for i in range(frames)]


def test_a_good_burst_keeps_three_diverse_templates_of_the_person(models_dir: Path,
                                                                  dev: Path) -> None:
    detector, embedder, refiner = route(models_dir)
    photo = sorted((dev / "Hu_Jintao").glob("*.jpg"))[0]
    result = enrol_burst(burst(photo), detector, embedder, QualityThresholds(),
                         same_person=THRESHOLD, refiner=refiner, detector_kind="yunet")
    assert len(result.templates) == 3
    assert len(set(result.accepted)) == 3
    # Diverse: one frame of each head tilt is kept, not three near-copies of one.
    kept = {(int(label.split()[1]) - 1) % 3 for label in result.accepted}
    assert kept == {0, 1, 2}
    matrix = result.matrix()
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)


def test_a_dark_burst_is_refused_with_the_reason(models_dir: Path, dev: Path) -> None:
    detector, embedder, refiner = route(models_dir)
    photo = sorted((dev / "Hu_Jintao").glob("*.jpg"))[0]
    with pytest.raises(BurstRefusedError) as refused:
        enrol_burst(burst(photo, gain=0.08), detector, embedder, QualityThresholds(),
                    same_person=THRESHOLD, refiner=refiner, detector_kind="yunet")
    message = str(refused.value)
    assert message.startswith("0 of 9 frames showed one clear face, 3 needed (")
    assert "face lit" in message


def test_an_empty_scene_is_refused(models_dir: Path) -> None:
    detector, embedder, refiner = route(models_dir)
    frames = [(f"frame {i}", np.full((480, 640, 3), 110, np.uint8)) for i in range(5)]
    with pytest.raises(BurstRefusedError, match=r"^0 of 5 frames showed one clear face, 3 "
                                                r"needed \(no face in 5\)"):
        enrol_burst(frames, detector, embedder, QualityThresholds(), same_person=THRESHOLD,
                    refiner=refiner, detector_kind="yunet")


def test_a_burst_with_two_people_is_refused(models_dir: Path, dev: Path) -> None:
    """Someone walking through the burst must not enrol their face under the resident's id."""
    detector, embedder, refiner = route(models_dir)
    hu = sorted((dev / "Hu_Jintao").glob("*.jpg"))[0]
    other = sorted((dev / "Ai_Sugiyama").glob("*.jpg"))[0]
    with pytest.raises(BurstRefusedError, match="the frames do not all show the same person"):
        enrol_burst(burst(hu, 4) + burst(other, 4), detector, embedder, QualityThresholds(),
                    same_person=THRESHOLD, refiner=refiner, detector_kind="yunet")


def test_keep_and_minimum_must_be_positive(models_dir: Path) -> None:
    detector, embedder, _refiner = route(models_dir)
    with pytest.raises(ValueError, match="keep and min_good must be at least 1"):
        enrol_burst([], detector, embedder, QualityThresholds(), same_person=THRESHOLD, keep=0)
