"""Detection with the real SCRFD and YuNet files: face counts, coordinates, ROI, kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.vision.material import (
    DETECTORS,
    PROBES,
    T1_FACES,
    detector,
    faces_left_to_right,
    image,
    t1_path,
)
from vision.detect import Face, letterbox, nms, round_up
from vision.models import ModelError, load_detector

DETECTOR_FILES = [
    ("scrfd", "det_500m.onnx", 0.5),
    ("yunet", "face_detection_yunet_2026may.onnx", 0.8),
    ("yunet", "face_detection_yunet_2023mar.onnx", 0.8),
]


@pytest.mark.parametrize(("kind", "file", "threshold"), DETECTOR_FILES)
def test_all_six_faces_of_t1_are_found(
    models_dir: Path, kind: str, file: str, threshold: float
) -> None:
    det = load_detector(kind, models_dir / file, input_size=(640, 640), score_threshold=threshold)
    faces = det.detect(image(t1_path()))
    assert len(faces) == T1_FACES
    for face in faces:
        assert face.box.shape == (4,) and face.box.dtype == np.float32
        assert face.kps.shape == (5, 2) and face.kps.dtype == np.float32
        assert threshold <= face.score <= 1
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("kind", list(DETECTORS))
def test_landmarks_are_in_template_order_inside_the_box(models_dir: Path, kind: str) -> None:
    for face in detector(models_dir, kind).detect(image(t1_path())):
        eye_l, eye_r, nose, mouth_l, mouth_r = face.kps
        assert eye_l[0] < eye_r[0] and mouth_l[0] < mouth_r[0]
        assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
        x1, y1, x2, y2 = face.box
        assert np.all((face.kps[:, 0] > x1) & (face.kps[:, 0] < x2))
        assert np.all((face.kps[:, 1] > y1) & (face.kps[:, 1] < y2))


@pytest.mark.parametrize("kind", list(DETECTORS))
@pytest.mark.parametrize("photo", list(PROBES))
def test_every_probe_photo_has_its_face_count(
    models_dir: Path, faces_dir: Path, kind: str, photo: str
) -> None:
    assert len(detector(models_dir, kind).detect(image(faces_dir / photo))) == len(PROBES[photo])


def test_scrfd_agrees_with_insightface(models_dir: Path) -> None:
    """An independent decoder is only trustworthy if it agrees with the reference one."""
    from insightface.model_zoo import get_model

    reference = get_model(str(models_dir / "det_500m.onnx"), providers=["CPUExecutionProvider"])
    reference.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
    bgr = image(t1_path())
    boxes, kps = reference.detect(bgr)
    ours = faces_left_to_right(detector(models_dir, "scrfd"), bgr)
    order = np.argsort(boxes[:, 0])
    np.testing.assert_allclose(np.array([f.box for f in ours]), boxes[order, :4], atol=0.5)
    np.testing.assert_allclose(np.array([f.kps for f in ours]), kps[order], atol=0.5)


@pytest.mark.parametrize("kind", list(DETECTORS))
def test_region_of_interest_limits_the_search_and_keeps_frame_coordinates(
    models_dir: Path, kind: str
) -> None:
    file, threshold = DETECTORS[kind]
    bgr = image(t1_path())
    full = detector(models_dir, kind).detect(bgr)
    roi = (0, 0, bgr.shape[1] // 2, bgr.shape[0])
    det = load_detector(kind, models_dir / file, input_size=(640, 640), score_threshold=threshold,
                        roi=roi)
    inside = [f for f in full if f.box[2] < roi[2]]
    found = det.detect(bgr)
    assert 0 < len(found) == len(inside) < len(full)
    for face in found:
        ious = [_iou(face.box, f.box) for f in inside]
        assert max(ious) > 0.8


@pytest.mark.parametrize("kind", list(DETECTORS))
def test_blank_frame_and_empty_roi_give_no_faces(models_dir: Path, kind: str) -> None:
    file, threshold = DETECTORS[kind]
    assert detector(models_dir, kind).detect(np.zeros((480, 640, 3), np.uint8)) == []
    det = load_detector(kind, models_dir / file, score_threshold=threshold, roi=(700, 0, 10, 10))
    assert det.detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_input_size_is_rounded_up_to_the_stride(models_dir: Path) -> None:
    det = load_detector("yunet", models_dir / "face_detection_yunet_2026may.onnx",
                        input_size=(630, 470))
    assert det.input_size == (640, 480)  # type: ignore[attr-defined]
    fixed = load_detector("yunet", models_dir / "face_detection_yunet_2023mar.onnx",
                          input_size=(320, 240))
    assert fixed.input_size == (640, 640)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "file", "message"),
    [
        ("retinaface", "det_500m.onnx", "unknown detector kind 'retinaface' (known: scrfd, yunet)"),
        ("yunet", "det_500m.onnx", "does not have YuNet's outputs"),
        ("scrfd", "face_detection_yunet_2026may.onnx", "has 12 outputs, SCRFD with landmarks"),
        ("scrfd", "missing.onnx", "model file not found"),
    ],
)
def test_wrong_kind_or_file_is_a_clear_error(
    models_dir: Path, kind: str, file: str, message: str
) -> None:
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_detector(kind, models_dir / file)


@pytest.mark.parametrize(
    ("boxes", "scores", "kept"),
    [
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.9, 0.8], [0]),
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.7, 0.8], [1]),
        ([[0, 0, 10, 10], [20, 20, 30, 30]], [0.7, 0.8], [1, 0]),
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], [0, 1]),  # IoU 1/3 < 0.4
    ],
)
def test_nms(boxes: list[list[float]], scores: list[float], kept: list[int]) -> None:
    assert nms(np.array(boxes, np.float32), np.array(scores, np.float32), 0.4) == kept


@settings(deadline=None)
@given(st.integers(1, 2000), st.integers(1, 2000), st.integers(32, 1024), st.integers(32, 1024))
def test_letterbox_fits_and_keeps_aspect(w: int, h: int, in_w: int, in_h: int) -> None:
    canvas, scale = letterbox(np.zeros((h, w, 3), np.uint8) + 1, (in_w, in_h))
    assert canvas.shape == (in_h, in_w, 3)
    assert round(w * scale) <= in_w and round(h * scale) <= in_h
    assert round(w * scale) == in_w or round(h * scale) == in_h or min(w * scale, h * scale) < 1


@settings(deadline=None)
@given(st.integers(1, 5000))
def test_round_up(value: int) -> None:
    rounded = round_up(value)
    assert rounded % 32 == 0 and value <= rounded < value + 32


def test_face_is_frozen() -> None:
    face = Face(np.zeros(4, np.float32), np.zeros((5, 2), np.float32), 0.9)
    with pytest.raises(AttributeError):
        face.score = 1.0  # type: ignore[misc]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (area - inter))


def test_one_session_per_model_file_reused_until_the_file_changes(
    models_dir: Path, tmp_path: Path
) -> None:
    import os
    import shutil

    from vision.models import create_session, session_options

    copy = tmp_path / "det.onnx"
    shutil.copy(models_dir / "det_500m.onnx", copy)
    first = create_session(copy, threads=1)
    assert create_session(copy, threads=1) is first
    assert create_session(copy, threads=2) is not first
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert create_session(copy, threads=1) is not first
    options = session_options(3)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert options.execution_mode.name == "ORT_SEQUENTIAL"
    assert options.graph_optimization_level.name == "ORT_ENABLE_ALL"
