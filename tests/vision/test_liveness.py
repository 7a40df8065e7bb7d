"""Liveness with the real MiniFASNet pair: ordinary photos pass, a low score is refused."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.vision.material import DETECTORS, LIVENESS_FILES, detector, image
from vision.detect import Face
from vision.liveness import (
    DEFAULT_LIVENESS_THRESHOLD,
    InsightfaceLiveness,
    Liveness,
    LivenessGate,
    MiniFasLiveness,
    scaled_box,
)
from vision.models import ModelError, load_liveness


@functools.cache
def minifas(models: Path) -> Liveness:
    return load_liveness("minifasnet", [models / f for f in LIVENESS_FILES])


def ordinary_photos(faces: Path) -> list[Path]:
    """The 24 faces of enrol/, probe/ and misc/ (spoof/ holds attacks; east-asian-dev/ soft LFW
    crops the models refuse, see docs/vision.md)."""
    return sorted(p for sub in ("enrol", "probe", "misc") for p in (faces / sub).rglob("*")
                  if p.suffix.lower() in {".jpg", ".jpeg"})


@pytest.mark.parametrize("kind", list(DETECTORS))
def test_every_face_of_the_ordinary_photos_passes(
    models_dir: Path, faces_dir: Path, kind: str
) -> None:
    gate = LivenessGate(minifas(models_dir), DEFAULT_LIVENESS_THRESHOLD)
    checked = 0
    for photo in ordinary_photos(faces_dir):
        bgr = image(photo)
        for face in detector(models_dir, kind).detect(bgr):
            verdict = gate.check(bgr, face)
            assert verdict.live, f"{photo.name}: P(live) {verdict.score:.3f}"
            assert 0 <= verdict.score <= 1
            checked += 1
    assert checked == 24


def test_a_face_scored_below_the_threshold_is_refused(models_dir: Path, faces_dir: Path) -> None:
    bgr = image(faces_dir / "probe/obama1.jpg")
    (face,) = detector(models_dir, "yunet").detect(bgr)
    score = minifas(models_dir).score(bgr, face)
    refused = LivenessGate(minifas(models_dir), threshold=min(score + 0.01, 0.999)).check(bgr, face)
    assert not refused.live and refused.score == pytest.approx(score)
    assert LivenessGate(minifas(models_dir), threshold=score - 0.01).check(bgr, face).live


def test_a_flat_grey_card_is_not_live(models_dir: Path) -> None:
    """No texture, no face: the models must not call a blank surface a person."""
    bgr = np.full((480, 640, 3), 128, np.uint8)
    face = Face(np.array([270, 190, 370, 310], np.float32), np.zeros((5, 2), np.float32), 0.9)
    assert not LivenessGate(minifas(models_dir)).check(bgr, face).live


def test_the_average_is_of_both_models(models_dir: Path, faces_dir: Path) -> None:
    live = minifas(models_dir)
    assert isinstance(live, MiniFasLiveness)
    bgr = image(faces_dir / "probe/johnsnow_test1.jpg")
    (face,) = detector(models_dir, "scrfd").detect(bgr)
    per_model = live.probabilities(bgr, face)
    assert len(per_model) == 2 and live.score(bgr, face) == pytest.approx(np.mean(per_model))


@pytest.mark.parametrize(
    ("frame", "box", "scale", "expected"),
    [
        ((1000, 1000), (450, 450, 550, 550), 2.7, (365, 365, 635, 635)),
        ((1000, 1000), (0, 0, 100, 100), 4.0, (0, 0, 400, 400)),  # shifted inside
        ((1000, 1000), (900, 900, 1000, 1000), 4.0, (599, 599, 999, 999)),
        ((300, 200), (100, 50, 200, 150), 4.0, (50, 0, 249, 199)),  # scale reduced to fit
    ],
)
def test_scaled_box_follows_upstream(
    frame: tuple[int, int], box: tuple[int, ...], scale: float, expected: tuple[int, ...]
) -> None:
    assert scaled_box(frame, np.array(box, np.float32), scale) == expected


@settings(deadline=None)
@given(
    st.integers(80, 2000), st.integers(80, 2000),
    st.floats(0, 1), st.floats(0, 1), st.floats(0.02, 1), st.floats(0.02, 1),
    st.sampled_from([2.7, 4.0]),
)
def test_scaled_box_stays_inside_the_frame(
    w: int, h: int, fx: float, fy: float, fw: float, fh: float, scale: float
) -> None:
    box = np.array([fx * w, fy * h, fx * w + fw * w, fy * h + fh * h], np.float32)
    x1, y1, x2, y2 = scaled_box((w, h), box, scale)
    assert 0 <= x1 < x2 <= w - 1 and 0 <= y1 < y2 <= h - 1


@pytest.mark.parametrize(
    ("kind", "files", "message"),
    [
        ("silent", LIVENESS_FILES, "unknown liveness kind 'silent'"),
        ("minifasnet", (), "needs its model files"),
        ("minifasnet", ("det_500m.onnx",), "cannot tell the crop scale"),
    ],
)
def test_liveness_configuration_errors(
    models_dir: Path, kind: str, files: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        load_liveness(kind, [models_dir / f for f in files])


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5])
def test_threshold_must_be_a_probability(models_dir: Path, threshold: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        LivenessGate(minifas(models_dir), threshold)


def addon_stand_in(path: Path, output_rank: int = 1) -> Path:
    """A graph with the addon's signature whose 'P(live)' is the mean of its RGB/255 input.

    insightface's liveness.onnx is distributed separately and is not part of the test material;
    this stand-in checks the adapter's contract (alignment, colour order, scaling, border rule).
    """
    import onnx
    from onnx import TensorProto, helper

    shape_out = ["N"] if output_rank == 1 else ["N", 1]
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["score"], axes=[1, 2, 3],
                          keepdims=0 if output_rank == 1 else 1)],
        "liveness_stand_in",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 80, 80])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, shape_out)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def face_at(cx: float, cy: float, eye_px: float = 40) -> Face:
    kps = np.array([[-0.5, -0.3], [0.5, -0.3], [0, 0.1], [-0.4, 0.6], [0.4, 0.6]]) * eye_px
    kps = np.add(kps, (cx, cy)).astype(np.float32)
    box = np.array([cx - eye_px, cy - eye_px, cx + eye_px, cy + eye_px], np.float32)
    return Face(box, kps, 0.9)


def test_insightface_addon_adapter(tmp_path: Path) -> None:
    live = load_liveness("insightface", [addon_stand_in(tmp_path / "liveness.onnx")])
    assert isinstance(live, InsightfaceLiveness)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :, 2] = 255  # red in BGR: the addon reads RGB, so the red channel is its first
    assert live.score(frame, face_at(320, 240)) == pytest.approx(1 / 3, abs=1e-3)
    frame[:] = 51
    assert live.score(frame, face_at(320, 240)) == pytest.approx(0.2, abs=1e-3)
    assert live.score(frame, face_at(5, 5)) == 0.0  # mostly outside the frame: refused


def test_insightface_addon_configuration_errors(models_dir: Path, tmp_path: Path) -> None:
    addon = addon_stand_in(tmp_path / "liveness.onnx")
    with pytest.raises(ModelError, match="exactly one file"):
        load_liveness("insightface", [addon, addon])
    with pytest.raises(ModelError, match="not insightface's liveness addon"):
        load_liveness("insightface", [models_dir / LIVENESS_FILES[0]])
    with pytest.raises(ModelError, match="not insightface's liveness addon"):
        load_liveness("insightface", [addon_stand_in(tmp_path / "rank2.onnx", output_rank=2)])
