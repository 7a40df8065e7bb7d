"""Alignment: our estimate equals insightface's norm_crop and recovers exact transforms."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.vision.material import DETECTORS, detector, image, t1_path
from vision.align import ARCFACE_TEMPLATE, align, similarity_transform, template


@pytest.mark.parametrize("kind", list(DETECTORS))
def test_crops_equal_insightface_norm_crop(models_dir: Path, kind: str) -> None:
    from insightface.utils.face_align import norm_crop

    bgr = image(t1_path())
    for face in detector(models_dir, kind).detect(bgr):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # skimage's estimate() deprecation
            reference = norm_crop(bgr, face.kps, image_size=112)
        ours = align(bgr, face.kps)
        assert ours.shape == (112, 112, 3) and ours.dtype == np.uint8
        assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1


@settings(deadline=None)
@given(
    scale=st.floats(0.2, 5.0),
    angle=st.floats(-np.pi, np.pi),
    tx=st.floats(-500, 500),
    ty=st.floats(-500, 500),
)
def test_exact_similarity_is_recovered(scale: float, angle: float, tx: float, ty: float) -> None:
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE.astype(np.float64) @ rot.T + [tx, ty]
    matrix = similarity_transform(src, ARCFACE_TEMPLATE)
    mapped = src @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE, atol=1e-3)


def test_landmarks_land_on_the_template() -> None:
    """A synthetic face of five dots: after alignment each dot sits on its template point."""
    canvas = np.zeros((400, 400, 3), np.uint8)
    kps = ARCFACE_TEMPLATE * 2.5 + [60, 40]
    for x, y in kps:
        cv2.circle(canvas, (round(x), round(y)), 3, (255, 255, 255), -1)
    crop = cv2.cvtColor(align(canvas, kps), cv2.COLOR_BGR2GRAY)
    for x, y in ARCFACE_TEMPLATE:
        assert crop[round(y), round(x)] > 128


@pytest.mark.parametrize(("size", "first_x"), [(112, 38.2946), (224, 76.5892), (128, 46.2946)])
def test_template_scaling(size: int, first_x: float) -> None:
    assert template(size)[0, 0] == pytest.approx(first_x, abs=1e-3)
