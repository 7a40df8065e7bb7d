"""The evaluation harness (gallery protocol) and the calibration pinned on the shared sets."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.vision.material import DETECTORS
from vision.calibration import recommend_threshold
from vision.embed import DEFAULT_MATCH_MARGIN, default_match_threshold, route_choices
from vision.evaluate import (
    EvaluationError,
    Route,
    Sample,
    enrolment_split,
    folder_set,
    gallery_protocol,
    look_groups,
    passage_protocol,
    report,
    sample_set,
    strangers_of_fold,
)
from vision.models import load_detector, load_embedder, load_refiner
from vision.quality import QualityThresholds

DEV_SET = "east-asian-dev"
EMBEDDER_FILES = {
    "arcface": "w600k_mbf_int8.onnx",
    "mobilefacenet_foamliu": "mobilefacenet_foamliu_128d.onnx",
    "mobilefacenet_paddlex": "mobilefacenet_paddlex_128d.onnx",
    "face_reid_0095": "face-reidentification-retail-0095_FP16.onnx",
}
#: Route -> (detector, embedder, minimum share of genuine photos, and of genuine passages of up to
#: 3 photos, accepted at the shipped threshold; measured 2026-11-30, docs/vision.md).
ROUTES = {
    "paddlex": ("yunet", "mobilefacenet_paddlex", 0.75, 0.98),
    "foamliu": ("yunet", "mobilefacenet_foamliu", 0.74, 0.93),
    "insightface": ("scrfd", "arcface", 0.91, 0.98),
    "0095": ("yunet", "face_reid_0095", 0.25, 0.59),
}


def synthetic(persons: int, photos: int, noise: float, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    samples = []
    for p in range(persons):
        centre = rng.normal(size=64)
        for i in range(photos):
            v = centre / np.linalg.norm(centre) + rng.normal(0, noise, 64)
            samples.append(Sample(f"id{p:02d}", f"id{p:02d}/{i}.jpg",
                                  (v / np.linalg.norm(v)).astype(np.float32), None))
    return samples


def test_folds_leave_every_identity_out_exactly_once() -> None:
    names = [f"p{i}" for i in range(10)]
    folds = [strangers_of_fold(names, k) for k in range(4)]
    assert sorted(n for fold in folds for n in fold) == names
    assert [len(f) for f in folds] == [3, 3, 2, 2]


def test_enrolment_keeps_a_probe_for_everybody() -> None:
    pair = [Sample("solo", f"solo/{i}.jpg", s.embedding, None)
            for i, s in enumerate(synthetic(1, 2, 0.1, seed=5))]
    samples = synthetic(3, 5, 0.1) + pair
    enrol, probe = enrolment_split(samples)
    assert [len(enrol[f"id{p:02d}"]) for p in range(3)] == [3, 3, 3]
    assert [len(probe[f"id{p:02d}"]) for p in range(3)] == [2, 2, 2]
    assert [s.label for s in enrol["solo"]] == ["solo/0.jpg"]
    assert [s.label for s in probe["solo"]] == ["solo/1.jpg"]


def test_clean_clusters_are_all_accepted_and_strangers_never() -> None:
    samples = synthetic(12, 5, 0.05)
    result = gallery_protocol(samples, threshold=0.6, margin=DEFAULT_MATCH_MARGIN)
    # each identity: 2 probes in the 3 folds it is enrolled in; 5 photos in its stranger fold
    assert len(result.genuine) == 12 * 2 * 3
    assert result.true_accepts == len(result.genuine)
    assert result.wrong_person_accepts == result.stranger_accepts == 0
    assert sum(not p.enrolled for p in result.probes) == 12 * 5
    assert result.tar_at_zero_far() == 1.0
    assert result.pair_scores().size == 12 * 2 * 3 * 8 + 12 * 5 * 9


def test_a_refused_photo_counts_as_a_genuine_probe_not_accepted() -> None:
    samples = synthetic(4, 5, 0.05)
    samples[4] = Sample("id00", "id00/4.jpg", None, None, "face too small")
    result = gallery_protocol(samples, threshold=0.6, margin=DEFAULT_MATCH_MARGIN)
    assert result.genuine_attempts == len(result.genuine) + 3
    assert ("fold 1: id00/4.jpg", "genuine") in result.refused


def test_folder_set_errors(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="not a folder"):
        folder_set(tmp_path / "missing")
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / name / f"{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "d").mkdir()
    cv2.imwrite(str(tmp_path / "d" / "only.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(EvaluationError, match=r"3 identity folder\(s\) with 2 or more photos; "
                       r"the gallery protocol needs at least 4"):
        folder_set(tmp_path)


@pytest.mark.parametrize(
    ("photos", "sizes"),
    [(0, []), (1, [1]), (2, [2]), (3, [3]), (4, [2, 2]), (5, [3, 2]), (7, [3, 2, 2]),
     (9, [3, 3, 3]), (10, [3, 3, 2, 2])],
)
def test_probe_photos_are_cut_into_even_disjoint_passages_of_up_to_three_looks(
        photos: int, sizes: list[int]) -> None:
    items = synthetic(1, photos, 0.1)
    groups = look_groups(items)
    assert [len(g) for g in groups] == sizes
    assert [s.label for g in groups for s in g] == [s.label for s in items]  # order, no reuse


def test_looks_must_be_positive() -> None:
    with pytest.raises(ValueError, match="looks must be at least 1, got 0"):
        look_groups(synthetic(1, 3, 0.1), 0)


def test_a_passage_never_probes_with_an_enrolment_photo() -> None:
    samples = synthetic(8, 8, 0.3)
    enrol, _probe = enrolment_split(samples)
    enrolled = {s.label for items in enrol.values() for s in items}
    result = passage_protocol(samples, threshold=0.5, margin=DEFAULT_MATCH_MARGIN)
    for probe in result.genuine:
        assert not set(probe.label.split(" + ")) & enrolled
    # 5 probe photos per person: passages of 3 + 2 looks, in each of the 3 folds it is enrolled.
    assert len(result.genuine) == 8 * 3 * 2
    # Strangers pass with all 8 photos: 3 + 3 + 2.
    assert sum(not p.enrolled for p in result.probes) == 8 * 3


def test_fusing_looks_raises_genuine_scores_of_noisy_photos() -> None:
    samples = synthetic(12, 10, 0.1, seed=3)
    photo = gallery_protocol(samples, threshold=0.5, margin=DEFAULT_MATCH_MARGIN)
    passage = passage_protocol(samples, threshold=0.5, margin=DEFAULT_MATCH_MARGIN)
    assert np.median(passage.genuine_scores()) > np.median(photo.genuine_scores()) + 0.05


@functools.cache
def dev_samples(models: Path, faces: Path, route: str) -> list[Sample]:
    det_kind, emb_kind, _photos, _passages = ROUTES[route]
    file, score = DETECTORS[det_kind]
    choices = route_choices(emb_kind)
    detector = load_detector(det_kind, models / file, input_size=(640, 480),
                             score_threshold=0.6 if det_kind == "yunet" else score)
    embedder = load_embedder(emb_kind, models / EMBEDDER_FILES[emb_kind],
                             mirror=choices.mirror_average)
    refiner = load_refiner(det_kind, models / file) if choices.refine_landmarks else None
    route_ = Route(detector, embedder, QualityThresholds(), refiner, det_kind)
    return sample_set(route_, folder_set(faces / DEV_SET))


@pytest.fixture
def dev_set(faces_dir: Path) -> Path:
    if not (faces_dir / DEV_SET).is_dir():
        pytest.skip(f"{faces_dir / DEV_SET} not found (the East-Asian dev set)")
    return faces_dir


@pytest.mark.timeout(600)
@pytest.mark.parametrize("route", list(ROUTES))
def test_shipped_threshold_is_safe_by_the_rule_on_the_east_asian_set(
    models_dir: Path, dev_set: Path, route: str
) -> None:
    """Issue 23: zero wrong-person and stranger accepts at the shipped threshold, for photos and
    for passages of several photos fused; the threshold is at least what the rule recommends for
    1,000 persons at FPIR 1e-3 on either's impostor pairs, and the true accepts are pinned
    (passages: issue 23's 95 % on the permissive default)."""
    _det, emb_kind, min_photos, min_passages = ROUTES[route]
    samples = dev_samples(models_dir, dev_set, route)
    threshold = default_match_threshold(emb_kind)
    scoring = route_choices(emb_kind).scoring
    for protocol, minimum in ((gallery_protocol, min_photos), (passage_protocol, min_passages)):
        result = protocol(samples, threshold=threshold, margin=DEFAULT_MATCH_MARGIN,
                          scoring=scoring)
        assert result.wrong_person_accepts == 0
        assert result.stranger_accepts == 0
        rule = recommend_threshold(result.pair_scores())
        assert rule.threshold <= threshold + 1e-9, (protocol.__name__, rule)
        assert threshold - rule.highest_impostor >= 0.10
        assert result.true_accepts / result.genuine_attempts >= minimum, protocol.__name__
        figures = report(result, samples, threshold=threshold, gallery_size=1000)
        assert figures["wrong_person_accepts"] == figures["stranger_accepts"] == 0


@pytest.mark.timeout(600)
def test_foamliu_old_default_was_unsafe_at_compound_scale(models_dir: Path, dev_set: Path) -> None:
    """Issue 23: foamliu's 0.55 is below what the rule needs; the shipped default is raised."""
    samples = dev_samples(models_dir, dev_set, "foamliu")
    result = gallery_protocol(samples, threshold=0.55, margin=DEFAULT_MATCH_MARGIN)
    rule = recommend_threshold(result.pair_scores())
    assert rule.fpir_at(0.55) > 5 * rule.fpir  # measured 0.0058: six times the target
    assert default_match_threshold("mobilefacenet_foamliu") >= rule.threshold
