"""Track fusion: quality-weighted mean of a track's best frames."""

from __future__ import annotations

import numpy as np
import pytest

from vision.fusion import TrackFusion, fuse


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_fuse_is_the_renormalised_weighted_mean() -> None:
    fused = fuse(np.vstack([unit(1, 0), unit(0, 1)]), np.array([3.0, 1.0]))
    np.testing.assert_allclose(fused, unit(3, 1), atol=1e-6)
    assert np.linalg.norm(fused) == pytest.approx(1.0)


def test_noise_of_single_frames_cancels_in_the_fused_embedding() -> None:
    rng = np.random.default_rng(1)
    truth = unit(*rng.normal(size=128))
    frames = truth + rng.normal(0, 0.12, size=(5, 128)).astype(np.float32)
    frames /= np.linalg.norm(frames, axis=1, keepdims=True)
    single = frames @ truth
    assert float(fuse(frames) @ truth) > float(single.max())


def test_track_fusion_keeps_the_best_frames_by_quality() -> None:
    fusion = TrackFusion(keep=2)
    fusion.add(unit(1, 0), 0.2)
    fusion.add(unit(0, 1), 0.9)
    fusion.add(unit(1, 1), 0.5)
    assert len(fusion) == 2 and fusion.full()
    assert sorted(fusion.ranks) == [0.5, 0.9]
    assert fusion.worst_rank() == 0.5
    np.testing.assert_allclose(fusion.fused(), fuse(np.vstack([unit(0, 1), unit(1, 1)]),
                                                    np.array([0.9, 0.5])), atol=1e-6)


@pytest.mark.parametrize(
    ("rows", "weights", "message"),
    [
        (np.zeros((0, 4)), None, "at least one embedding"),
        (np.ones((2, 4)), np.array([1.0, 0.0]), "one positive weight per embedding"),
        (np.ones((2, 4)), np.array([1.0]), "one positive weight per embedding"),
    ],
)
def test_fuse_refuses_bad_input(rows: np.ndarray, weights: np.ndarray | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fuse(rows, weights)
