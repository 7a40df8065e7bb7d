"""Embedders with the real models: sizes, normalisation, preprocessing, one face per call."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.vision.material import EMBEDDERS, detector, embed_face, embedder, image, t1_path
from vision.align import align
from vision.embed import DEFAULT_MATCH_THRESHOLDS, default_match_threshold
from vision.models import EMBEDDER_PREPROCESS, ModelError, load_embedder

DIMS = {"arcface": 512, "mobilefacenet_foamliu": 128, "mobilefacenet_paddlex": 128}
#: Cosine between a face and its mirror image must stay high (README: min 0.85-0.96 per model).
MIN_MIRROR_COSINE = 0.8


@pytest.mark.parametrize("kind", list(EMBEDDERS))
def test_unit_float32_vectors_of_the_model_size(models_dir: Path, kind: str) -> None:
    emb = embedder(models_dir, kind)
    assert emb.dim == DIMS[kind]
    bgr = image(t1_path())
    for face in detector(models_dir, "scrfd").detect(bgr):
        vector = embed_face(emb, bgr, face)
        assert vector.shape == (DIMS[kind],) and vector.dtype == np.float32
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", list(EMBEDDERS))
def test_mirror_image_stays_close_and_other_people_far(models_dir: Path, kind: str) -> None:
    emb = embedder(models_dir, kind)
    bgr = image(t1_path())
    faces = detector(models_dir, "scrfd").detect(bgr)
    vectors = np.array([embed_face(emb, bgr, f) for f in faces])
    mirrored = cv2.flip(bgr, 1)
    mirror_vectors = np.array(
        [embed_face(emb, mirrored, f) for f in detector(models_dir, "scrfd").detect(mirrored)]
    )
    similarity = vectors @ mirror_vectors.T  # detection order differs after mirroring
    assert np.all(similarity.max(axis=1) >= MIN_MIRROR_COSINE)
    cross = vectors @ vectors.T
    np.fill_diagonal(cross, -1)
    assert cross.max() < default_match_threshold(kind)


def test_arcface_int8_runs_one_face_per_call(models_dir: Path) -> None:
    """The dynamically quantised model must give a face the same vector whatever comes before it."""
    emb = embedder(models_dir, "arcface")
    bgr = image(t1_path())
    faces = detector(models_dir, "scrfd").detect(bgr)
    first = embed_face(emb, bgr, faces[0])
    for other in faces[1:]:
        embed_face(emb, bgr, other)
    np.testing.assert_array_equal(embed_face(emb, bgr, faces[0]), first)


@pytest.mark.parametrize("kind", list(EMBEDDERS))
def test_colour_order_is_part_of_each_kind(models_dir: Path, kind: str) -> None:
    """Feeding the wrong colour order changes the vector: the kind must state the right one."""
    emb = embedder(models_dir, kind)
    bgr = image(t1_path())
    face = detector(models_dir, "scrfd").detect(bgr)[0]
    crop = align(bgr, face.kps)
    same = float(emb.embed(crop) @ emb.embed(crop[:, :, ::-1].copy()))
    assert same < 0.999


def test_every_embedder_kind_has_a_calibrated_threshold() -> None:
    assert set(EMBEDDER_PREPROCESS) == set(DEFAULT_MATCH_THRESHOLDS)
    with pytest.raises(KeyError, match="no calibrated threshold for embedder kind 'sface'"):
        default_match_threshold("sface")


def test_wrong_input_size_and_unknown_kind_are_refused(models_dir: Path) -> None:
    emb = embedder(models_dir, "mobilefacenet_paddlex")
    with pytest.raises(ValueError, match=r"expected an aligned 112x112 face"):
        emb.embed(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ModelError, match="unknown embedder kind 'sface'"):
        load_embedder("sface", models_dir / "mobilefacenet_paddlex_128d.onnx")
