"""Track fusion: one embedding per passage from its best frames, before the 1:N decision.

A single frame carries its own noise (landmarks a pixel off, motion blur, a blink, a shadow);
averaging the unit embeddings of several frames of the same track cancels much of it, for genuine
and impostor probes alike: genuine scores rise, and the impostor tail narrows.  Frames are weighted
by their quality rank (bigger, sharper, more frontal weighs more) and only the best ``keep`` are
kept, so a passage's blurred first frames do not dilute its good ones.  Fusion lifts the impostor
tail a little too, so the threshold is calibrated on fused passages as well as on single photos
(vision/calibration.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: A passage of a second or two at 15 fps gives a few looks of 3-5 usable frames each; keeping 12
#: fuses every look instead of the last look's biggest frames (East-Asian passages, paddlex at its
#: threshold: 177 of 195 accepted with 5 kept, 186 with 12; docs/vision.md).
DEFAULT_KEEP = 12


def fuse(embeddings: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of unit row vectors (n x dim), renormalised: a unit float32 vector.

    Raises ValueError for no rows or weights that are not positive."""
    rows = np.asarray(embeddings, dtype=np.float32)
    if rows.ndim != 2 or not len(rows):
        raise ValueError("fuse needs at least one embedding (n x dim)")
    w = np.ones(len(rows), np.float32) if weights is None else np.asarray(weights, np.float32)
    if w.shape != (len(rows),) or np.any(w <= 0):
        raise ValueError("one positive weight per embedding expected")
    mean: np.ndarray = (w[:, None] * rows).sum(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


@dataclass
class TrackFusion:
    """The best ``keep`` embedded frames of one track, by quality rank."""

    keep: int = DEFAULT_KEEP
    embeddings: list[np.ndarray] = field(default_factory=list)
    ranks: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.embeddings)

    def worst_rank(self) -> float:
        return min(self.ranks) if self.ranks else 0.0

    def full(self) -> bool:
        return len(self.embeddings) >= self.keep

    def add(self, embedding: np.ndarray, rank: float) -> None:
        """Keep this frame; the worst kept frame is dropped once ``keep`` are held."""
        self.embeddings.append(np.asarray(embedding, dtype=np.float32))
        self.ranks.append(max(float(rank), 1e-6))
        if len(self.embeddings) > self.keep:
            worst = int(np.argmin(self.ranks))
            del self.embeddings[worst], self.ranks[worst]

    def fused(self) -> np.ndarray:
        """The quality-weighted fused embedding (ValueError when empty)."""
        return fuse(np.vstack(self.embeddings), np.asarray(self.ranks))
