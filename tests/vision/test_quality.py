"""The quality gate on real photos: size, sharpness, pose, brightness; recognition vs capture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.vision.material import DETECTORS, detector, faces_left_to_right, image
from vision.align import ARCFACE_TEMPLATE
from vision.detect import Face
from vision.quality import NOSE_PITCH_OFFSET, Quality, QualityThresholds, assess, face_px, pose

GATE = QualityThresholds()
PROBE_SINGLES = ["probe/alex_lacamoire1.jpg", "probe/obama1.jpg", "probe/johnsnow_test1.jpg"]
MISC_LOW_RES = ["misc/obama-240p.jpg", "misc/obama-480p.jpg", "misc/obama_small.jpg"]


def only_face(models: Path, kind: str, bgr: np.ndarray) -> Face:
    faces = detector(models, kind).detect(bgr)
    assert len(faces) == 1
    return faces[0]


@pytest.mark.parametrize("kind", list(DETECTORS))
@pytest.mark.parametrize("photo", MISC_LOW_RES)
def test_low_resolution_photos_behave_as_their_face_size_says(
    models_dir: Path, faces_dir: Path, kind: str, photo: str
) -> None:
    bgr = image(faces_dir / photo)
    quality = assess(bgr, only_face(models_dir, kind, bgr))
    assert GATE.recognisable(quality) == (quality.face_px >= GATE.min_face_px_recognise)
    assert GATE.capturable(quality)
    if not GATE.recognisable(quality):
        assert GATE.recognition_problems(quality) == [
            f"face too small ({quality.face_px:.0f} px < {GATE.min_face_px_recognise:.0f})"
        ]


def test_240p_and_480p_frames_are_both_recognisable(models_dir: Path, faces_dir: Path) -> None:
    """The 240p frame's face (about 77 px) is above the 64 px minimum calibrated on the East-Asian
    set (60 px faces lose 0.017 of genuine score); half of it is not."""
    small, large = (image(faces_dir / p) for p in ("misc/obama-240p.jpg", "misc/obama-480p.jpg"))
    quality = assess(small, only_face(models_dir, "yunet", small))
    assert 70 < quality.face_px < 80
    assert GATE.recognisable(quality)
    assert GATE.recognisable(assess(large, only_face(models_dir, "yunet", large)))
    half = cv2.resize(small, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    faces = detector(models_dir, "yunet").detect(half)
    assert not faces or not GATE.recognisable(assess(half, faces[0]))


@pytest.mark.parametrize("kind", list(DETECTORS))
@pytest.mark.parametrize("photo", PROBE_SINGLES)
def test_downscaled_copies_are_rejected_by_size(
    models_dir: Path, faces_dir: Path, kind: str, photo: str
) -> None:
    bgr = image(faces_dir / photo)
    original = assess(bgr, only_face(models_dir, kind, bgr))
    assert GATE.recognisable(original)
    for target_px, capturable in [(60, True), (30, False)]:
        factor = target_px / original.face_px
        small = cv2.resize(bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        faces = detector(models_dir, kind).detect(small)
        if not faces:  # too small for the detector at all: rejected even earlier
            continue
        quality = assess(small, faces[0])
        assert not GATE.recognisable(quality)
        assert "face too small" in GATE.recognition_problems(quality)[0]
        assert GATE.capturable(quality) == capturable


@pytest.mark.parametrize("kind", list(DETECTORS))
@pytest.mark.parametrize("photo", PROBE_SINGLES)
def test_blurred_copies_are_rejected_by_sharpness(
    models_dir: Path, faces_dir: Path, kind: str, photo: str
) -> None:
    bgr = image(faces_dir / photo)
    face = only_face(models_dir, kind, bgr)
    size = assess(bgr, face).face_px
    for sigma_112 in (2.5, 8.0):
        blurred = cv2.GaussianBlur(bgr, (0, 0), sigma_112 * size / 112)
        quality = assess(blurred, face)
        assert quality.face_px == pytest.approx(size)
        assert not GATE.recognisable(quality)
        assert any("blurred" in p for p in GATE.recognition_problems(quality))


@pytest.mark.parametrize("kind", list(DETECTORS))
@pytest.mark.parametrize("photo", PROBE_SINGLES)
def test_a_dark_face_keeps_its_sharpness_and_stays_recognisable(
    models_dir: Path, faces_dir: Path, kind: str, photo: str
) -> None:
    """Issue 23: the gate refused night photos every model matches.  Sharpness is measured at a
    fixed contrast, so a face at 30 % exposure (brightness above 25) reads as sharp as by day."""
    bgr = image(faces_dir / photo)
    face = only_face(models_dir, kind, bgr)
    day = assess(bgr, face)
    night = assess(cv2.convertScaleAbs(bgr, alpha=0.3, beta=0), face)
    assert night.brightness < day.brightness * 0.35
    assert night.sharpness == pytest.approx(day.sharpness, rel=0.25)
    assert night.brightness < GATE.min_brightness or GATE.recognisable(night)


def test_pitch_is_corrected_for_where_each_detector_puts_the_nose() -> None:
    """Issue 23: the pitch limit ignored which detector produced the landmarks."""
    kps = np.array([[40, 50], [72, 50], [56, 71], [42, 92], [70, 92]], np.float32)
    face = Face(np.array([20, 20, 92, 112], np.float32), kps, 0.9)
    bgr = np.full((140, 120, 3), 128, np.uint8)
    raw = assess(bgr, face).pitch
    for kind, offset in NOSE_PITCH_OFFSET.items():
        assert assess(bgr, face, detector=kind).pitch == pytest.approx(raw - offset, abs=1e-6)


def test_every_enrolment_photo_passes_the_recognition_gate(
    models_dir: Path, faces_dir: Path
) -> None:
    for photo in sorted((faces_dir / "enrol").glob("*/*")):
        bgr = image(photo)
        for kind in DETECTORS:
            quality = assess(bgr, only_face(models_dir, kind, bgr))
            assert GATE.recognition_problems(quality) == [], photo


def test_the_turned_child_is_not_recognisable(models_dir: Path, faces_dir: Path) -> None:
    """The partly visible child at the right of obama_and_biden.jpg looks sideways."""
    bgr = image(faces_dir / "probe/obama_and_biden.jpg")
    child = faces_left_to_right(detector(models_dir, "yunet"), bgr)[-1]
    problems = GATE.recognition_problems(assess(bgr, child))
    assert any("turned sideways" in p for p in problems)


def synthetic_face(kps: np.ndarray, value: int = 128) -> tuple[np.ndarray, Face]:
    bgr = np.full((300, 300, 3), value, np.uint8)
    cv2.putText(bgr, "TEXTURE", (40, 160), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (value // 2,) * 3, 3)
    box = np.array([20, 20, 280, 280], np.float32)
    return bgr, Face(box, kps.astype(np.float32), 0.9)


FRONTAL = ARCFACE_TEMPLATE * 2 + 38


def nose_moved(dx: float, dy: float) -> np.ndarray:
    kps = FRONTAL.copy()
    kps[2] += (dx, dy)
    return kps


@pytest.mark.parametrize(
    ("kps", "yaw_sign", "pitch_sign"),
    [
        (FRONTAL, 0, 0),
        (nose_moved(25, 0), 1, 0),
        (nose_moved(-25, 0), -1, 0),
        (nose_moved(0, 25), 0, 1),
        (nose_moved(0, -25), 0, -1),
    ],
)
def test_pose_proxies(kps: np.ndarray, yaw_sign: int, pitch_sign: int) -> None:
    yaw, pitch = pose(kps)
    for value, sign in [(yaw, yaw_sign), (pitch, pitch_sign)]:
        assert abs(value) < 0.05 if sign == 0 else np.sign(value) == sign and abs(value) > 0.2
    assert face_px(kps) == pytest.approx(224, rel=1e-3)


@pytest.mark.parametrize(
    ("value", "problem"), [(15, "too dark"), (128, None), (245, "too bright")]
)
def test_brightness(value: int, problem: str | None) -> None:
    bgr, face = synthetic_face(FRONTAL, value)
    problems = GATE.recognition_problems(assess(bgr, face))
    assert any(problem in p for p in problems) if problem else problems == []


@pytest.mark.parametrize(
    ("quality", "recognisable", "capturable"),
    [
        (Quality(120, 100, 0, 0, 128), True, True),
        (Quality(63, 100, 0, 0, 128), False, True),
        (Quality(39, 100, 0, 0, 128), False, False),
        (Quality(120, 19, 0, 0, 128), False, True),
        (Quality(120, 9, 0, 0, 128), False, False),
        (Quality(120, 100, 0.9, 0, 128), False, True),
        (Quality(120, 100, 0, -0.7, 128), False, True),
        (Quality(120, 100, 0, 0, 10), False, True),
    ],
)
def test_recognition_is_stricter_than_capture(
    quality: Quality, recognisable: bool, capturable: bool
) -> None:
    assert GATE.recognisable(quality) == recognisable
    assert GATE.capturable(quality) == capturable


def test_rank_prefers_bigger_sharper_frontal_faces() -> None:
    base = Quality(120, 100, 0, 0, 128)
    assert base.rank > Quality(60, 100, 0, 0, 128).rank
    assert base.rank > Quality(120, 20, 0, 0, 128).rank
    assert base.rank > Quality(120, 100, 0.5, 0, 128).rank
