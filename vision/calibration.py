"""The threshold rule: zero false accepts with a margin that holds at gallery scale.

A pair test compares a stranger with one person; a gate compares every stranger with all N
enrolled persons, so it meets N times more impostor pairs, and what decides a false accept is the
upper tail of the impostor score distribution, beyond anything a test set of a few dozen
identities shows.  The rule therefore extrapolates that tail instead of reading its maximum:

1. ``scores``: impostor pair scores, one per (probe, enrolled person not the probe's own), as the
   gallery computes them (same route, same person scoring).
2. A normal tail: centre ``m`` = the median, spread ``s`` = the largest of the standard deviation
   and the spreads the 99th and 99.9th percentiles imply ((q - m) / z_q): a tail heavier than
   normal widens ``s`` instead of being averaged away.  On the East-Asian dev set this model
   predicts 5-14 times more pairs above the observed maximum than there are: it errs on the safe
   side (docs/vision.md).
3. A search of ``gallery_size`` persons accepts a stranger with probability (FPIR, the false
   positive identification rate of ISO/IEC 19795-1) about ``gallery_size`` x the pair false match
   rate; the threshold makes it at most ``fpir``:  t = m + s * z(1 - fpir / gallery_size).
   The defaults, FPIR 1e-3 at 1,000 persons, are a pair false match rate of 1e-6: ten times
   stricter than the 0.001 % FAR face terminals are commonly specified with.
4. Never below the highest impostor score observed plus ``MIN_SAFETY``; rounded up to ``STEP``.

A gate searches with fused embeddings (vision/fusion.py), and fusing several looks of one person
lifts the impostor tail a little (the noise that fusion removes also pulled impostor scores
towards zero): on the East-Asian set, paddlex needs 0.59 for single photos and 0.62 for passages
of up to three photos fused.  The rule is therefore applied to the impostor pairs of both the
photo and the passage protocols of vision/evaluate.py, and the shipped threshold is the higher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

#: Percentiles whose implied spread widens ``s`` when the tail is heavier than normal.
TAIL_QUANTILES = (0.99, 0.999)
#: The 99.9th percentile needs a few thousand scores to mean anything.
MIN_SCORES = 2000
DEFAULT_FPIR = 1e-3
DEFAULT_GALLERY_SIZE = 1000
MIN_SAFETY = 0.10
STEP = 0.01
_NORMAL = NormalDist()


class CalibrationError(ValueError):
    """Too few impostor scores to estimate the tail."""


@dataclass(frozen=True)
class Recommendation:
    """The rule's threshold and how it was reached (cosine scores)."""

    threshold: float
    tail_threshold: float
    centre: float
    spread: float
    highest_impostor: float
    impostor_pairs: int
    gallery_size: int
    fpir: float

    def fpir_at(self, threshold: float) -> float:
        """The tail model's stranger accepts per search of ``gallery_size`` persons."""
        pair = 1.0 - _NORMAL.cdf((threshold - self.centre) / self.spread)
        return min(1.0, self.gallery_size * pair)


def recommend_threshold(
    scores: np.ndarray,
    *,
    gallery_size: int = DEFAULT_GALLERY_SIZE,
    fpir: float = DEFAULT_FPIR,
) -> Recommendation:
    """The threshold of the rule (module docstring) for these impostor pair scores.

    Raises CalibrationError with fewer than ``MIN_SCORES`` scores, ValueError for a gallery
    size below 1 or an FPIR outside (0, 1)."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.size < MIN_SCORES:
        raise CalibrationError(
            f"{values.size} impostor pair scores; the tail estimate needs at least {MIN_SCORES} "
            "(more persons or photos)"
        )
    if gallery_size < 1 or not 0 < fpir < 1:
        raise ValueError("gallery_size must be >= 1 and fpir in (0, 1)")
    centre = float(np.median(values))
    spreads = [float(values.std())]
    for q in TAIL_QUANTILES:
        spreads.append((float(np.quantile(values, q)) - centre) / _NORMAL.inv_cdf(q))
    spread = max(max(spreads), 1e-6)
    pair_rate = fpir / gallery_size
    tail = centre + spread * _NORMAL.inv_cdf(1.0 - pair_rate)
    highest = float(values.max())
    threshold = max(tail, highest + MIN_SAFETY)
    threshold = math.ceil(round(threshold / STEP, 6)) * STEP
    return Recommendation(
        threshold=round(threshold, 4),
        tail_threshold=tail,
        centre=centre,
        spread=spread,
        highest_impostor=highest,
        impostor_pairs=int(values.size),
        gallery_size=gallery_size,
        fpir=fpir,
    )
