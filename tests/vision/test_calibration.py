"""The threshold rule of vision/calibration.py on score samples with known tails."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from vision.calibration import (
    DEFAULT_FPIR,
    DEFAULT_GALLERY_SIZE,
    MIN_SAFETY,
    CalibrationError,
    recommend_threshold,
)


def normal_scores(n: int = 200_000, mean: float = 0.05, std: float = 0.1) -> np.ndarray:
    return np.random.default_rng(7).normal(mean, std, n)


def test_normal_impostors_give_the_analytic_tail_quantile() -> None:
    scores = normal_scores()
    rec = recommend_threshold(scores)
    z = NormalDist().inv_cdf(1 - DEFAULT_FPIR / DEFAULT_GALLERY_SIZE)  # 4.75
    assert rec.tail_threshold == pytest.approx(0.05 + 0.1 * z, abs=0.01)
    assert rec.highest_impostor == pytest.approx(scores.max())
    expected = max(rec.tail_threshold, scores.max() + MIN_SAFETY)
    assert rec.threshold == pytest.approx(np.ceil(expected * 100) / 100)
    assert rec.fpir_at(rec.threshold) <= DEFAULT_FPIR


def test_a_larger_gallery_needs_a_higher_threshold() -> None:
    scores = normal_scores(5000)
    small = recommend_threshold(scores, gallery_size=100)
    large = recommend_threshold(scores, gallery_size=10_000)
    assert large.threshold > small.threshold
    # 100 times more impostors: the tail quantile moves from z(1-1e-5) to z(1-1e-7).
    assert large.tail_threshold - small.tail_threshold == pytest.approx(0.1 * (5.199 - 4.265),
                                                                        abs=0.02)


def test_a_heavy_tail_widens_the_spread_instead_of_being_averaged_away() -> None:
    rng = np.random.default_rng(3)
    light = normal_scores()
    heavy = light.copy()
    tail = rng.choice(heavy.size, heavy.size // 100, replace=False)
    heavy[tail] += 0.3  # a 1 % cluster of look-alikes
    assert float(heavy.std()) < 0.105  # barely visible in the standard deviation
    assert recommend_threshold(heavy).spread > recommend_threshold(light).spread * 1.3


def test_never_below_the_highest_impostor_plus_the_safety_margin() -> None:
    scores = normal_scores(5000, std=0.01)
    scores[0] = 0.7  # one look-alike pair far out
    rec = recommend_threshold(scores)
    assert rec.threshold == pytest.approx(0.7 + MIN_SAFETY, abs=1e-9)


def test_the_threshold_is_rounded_up_to_a_hundredth() -> None:
    rec = recommend_threshold(normal_scores())
    assert rec.threshold == round(rec.threshold, 2)
    assert rec.threshold >= rec.tail_threshold


def test_too_few_scores_are_refused_with_the_reason() -> None:
    with pytest.raises(CalibrationError, match="1999 impostor pair scores; the tail estimate "
                       r"needs at least 2000 \(more persons or photos\)"):
        recommend_threshold(normal_scores(1999))


@pytest.mark.parametrize(("gallery_size", "fpir"), [(0, 1e-3), (100, 0.0), (100, 1.0)])
def test_nonsense_targets_are_refused(gallery_size: int, fpir: float) -> None:
    with pytest.raises(ValueError, match="gallery_size must be >= 1 and fpir in"):
        recommend_threshold(normal_scores(), gallery_size=gallery_size, fpir=fpir)
