"""The labelled test photos and the real models, loaded once per test session.

Identities follow the faces README: multi-face photos are listed left to right.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from vision.align import align
from vision.detect import Detector, Face
from vision.embed import Embedder
from vision.gallery import Gallery
from vision.models import load_detector, load_embedder

STRANGER = "stranger"
PERSONS = ("alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie")
PROBES: dict[str, tuple[str, ...]] = {
    "probe/alex_lacamoire1.jpg": ("alex_lacamoire",),
    "probe/johnsnow_test1.jpg": ("kit_harington",),
    "probe/kit_with_rose.jpg": ("rose_leslie", "kit_harington"),
    "probe/obama1.jpg": ("obama",),
    "probe/obama_and_biden.jpg": ("biden", "obama", STRANGER),
    "misc/obama-240p.jpg": ("obama",),
    "misc/obama-480p.jpg": ("obama",),
    "misc/obama3.jpg": ("obama",),
    "misc/obama_small.jpg": ("obama",),
    "misc/obama_partial_face.jpg": ("obama",),
    "misc/two_people.jpg": ("obama", "biden"),
}
T1_FACES = 6

DETECTORS = {
    "scrfd": ("det_500m.onnx", 0.5),
    "yunet": ("face_detection_yunet_2026may.onnx", 0.8),
}
EMBEDDERS = {
    "arcface": "w600k_mbf_int8.onnx",
    "mobilefacenet_foamliu": "mobilefacenet_foamliu_128d.onnx",
    "mobilefacenet_paddlex": "mobilefacenet_paddlex_128d.onnx",
}
#: The two routes of issue 7 plus the other permissive embedder.
ROUTES = [
    ("scrfd", "arcface"),
    ("yunet", "mobilefacenet_paddlex"),
    ("yunet", "mobilefacenet_foamliu"),
]
LIVENESS_FILES = ("2.7_80x80_MiniFASNetV2.onnx", "4_0_0_80x80_MiniFASNetV1SE.onnx")
DETECTOR_INPUT = (640, 640)


def t1_path() -> Path:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.origin is not None, "insightface must be installed"
    return Path(spec.origin).parent / "data" / "images" / "t1.jpg"


@functools.cache
def image(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, f"cannot read {path}"
    return bgr


@functools.cache
def detector(models: Path, kind: str) -> Detector:
    file, threshold = DETECTORS[kind]
    return load_detector(kind, models / file, input_size=DETECTOR_INPUT, score_threshold=threshold)


@functools.cache
def embedder(models: Path, kind: str) -> Embedder:
    return load_embedder(kind, models / EMBEDDERS[kind])


def faces_left_to_right(det: Detector, bgr: np.ndarray) -> list[Face]:
    return sorted(det.detect(bgr), key=lambda f: float(f.box[0]))


def embed_face(emb: Embedder, bgr: np.ndarray, face: Face) -> np.ndarray:
    return emb.embed(align(bgr, face.kps))


@functools.cache
def enrolment_templates(
    models: Path, faces: Path, det_kind: str, emb_kind: str
) -> dict[str, np.ndarray]:
    """Every enrolment photo's template, by person."""
    det, emb = detector(models, det_kind), embedder(models, emb_kind)
    result: dict[str, list[np.ndarray]] = {}
    for photo in sorted((faces / "enrol").glob("*/*")):
        bgr = image(photo)
        (face,) = det.detect(bgr)
        result.setdefault(photo.parent.name, []).append(embed_face(emb, bgr, face))
    return {person: np.vstack(rows) for person, rows in result.items()}


def gallery(
    models: Path, faces: Path, det_kind: str, emb_kind: str, *, threshold: float, margin: float
) -> Gallery:
    templates = enrolment_templates(models, faces, det_kind, emb_kind)
    g = Gallery(next(iter(templates.values())).shape[1], threshold=threshold, margin=margin)
    for person, rows in templates.items():
        g.add(person, rows)
    return g
