"""Enrolment at the door: a few diverse, good templates from a burst of the door camera's frames.

A resident enrolled from the gate's own camera is enrolled in the light, angle and optics the gate
will see them in, which photos from elsewhere are not.  The burst is a second or two of frames
while the resident looks at the camera (and moves their head a little).  Every frame must show
exactly one face passing the recognition quality gate; of the good frames, up to ``keep`` are kept:
the best by quality rank first, then, among frames of at least ``MIN_RANK_SHARE`` of the best
rank, each time the one least similar to those already kept (farthest point: different poses and
expressions make a person's mean score steadier than near-copies of one frame).

Refused (:class:`BurstRefusedError`, nothing kept) when fewer than ``min_good`` frames are good,
with the reasons counted (``too dark``, ``2 faces`` ...) so the installer knows what to change, or
when the good frames do not all show the same person (someone walked through the burst).

Only templates leave this module.  The duplicate check against other enrolled persons is the
caller's (:func:`daemon.faces.store_enrolment`), as for photos.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vision.detect import Detector
from vision.embed import Embedder
from vision.enrol import Enrolment
from vision.landmarks import Refiner
from vision.quality import QualityThresholds, assess

DEFAULT_KEEP = 3
DEFAULT_MIN_GOOD = 3
#: A kept frame's quality rank is at least this share of the best frame's.
MIN_RANK_SHARE = 0.6


class BurstRefusedError(Exception):
    """Nothing enrolled from this burst; the message says why and what to change."""


@dataclass(frozen=True)
class _Good:
    label: str
    rank: float
    embedding: np.ndarray


def _reason(problem: str) -> str:
    """The kind of a quality problem ("face too small (40 px < 64)" -> "face too small")."""
    return problem.split(" (")[0]


def enrol_burst(
    frames: Iterable[tuple[str, np.ndarray]],
    detector: Detector,
    embedder: Embedder,
    thresholds: QualityThresholds,
    *,
    same_person: float,
    refiner: Refiner | None = None,
    detector_kind: str | None = None,
    keep: int = DEFAULT_KEEP,
    min_good: int = DEFAULT_MIN_GOOD,
) -> Enrolment:
    """Templates of up to ``keep`` diverse good frames of (label, BGR frame) pairs.

    ``same_person``: the cosine every pair of good frames must reach (the route's match
    threshold: frames of one person standing at the camera score far above it).  Raises
    BurstRefusedError (module docstring); ValueError for ``keep`` or ``min_good`` below 1."""
    if keep < 1 or min_good < 1:
        raise ValueError("keep and min_good must be at least 1")
    good: list[_Good] = []
    reasons: Counter[str] = Counter()
    total = 0
    for label, bgr in frames:
        total += 1
        faces = detector.detect(bgr)
        if len(faces) != 1:
            reasons["no face" if not faces else "several faces"] += 1
            continue
        face = faces[0]
        quality = assess(bgr, face, detector=detector_kind)
        problems = thresholds.recognition_problems(quality)
        if problems:
            reasons.update({_reason(p) for p in problems})
            continue
        if refiner is not None:
            face = refiner.refine(bgr, face)
        good.append(_Good(label, quality.rank, embedder.embed_face(bgr, face.kps)))
    if len(good) < min_good:
        why = ", ".join(f"{reason} in {n}" for reason, n in reasons.most_common())
        raise BurstRefusedError(
            f"{len(good)} of {total} frames showed one clear face, {min_good} needed"
            + (f" ({why})" if why else "")
            + ": the resident alone in front of the camera, face lit, at the usual distance"
        )
    rows = np.vstack([g.embedding for g in good])
    similarity = rows @ rows.T
    if float(similarity.min()) < same_person:
        raise BurstRefusedError(
            f"the frames do not all show the same person (lowest similarity "
            f"{float(similarity.min()):.2f} < {same_person:.2f}): only the resident may be in "
            "front of the camera during the burst"
        )
    chosen = _diverse(good, similarity, keep)
    result = Enrolment()
    for i in chosen:
        result.templates.append(good[i].embedding)
        result.accepted.append(good[i].label)
    return result


def _diverse(good: list[_Good], similarity: np.ndarray, keep: int) -> list[int]:
    """Best rank first, then farthest points among the frames of high enough rank."""
    best = max(range(len(good)), key=lambda i: good[i].rank)
    floor = MIN_RANK_SHARE * good[best].rank
    candidates = [i for i, g in enumerate(good) if g.rank >= floor and i != best]
    chosen = [best]
    while candidates and len(chosen) < keep:
        nearest = similarity[np.ix_(candidates, chosen)].max(axis=1)
        pick = candidates[int(np.argmin(nearest))]
        chosen.append(pick)
        candidates.remove(pick)
    return chosen
