"""Evaluate a route on a folder-per-identity photo set, the way a gate works.

Gallery protocol (issue 23): every identity enrols up to ``enrol_max`` photos (the first ones, in
file-name order, that pass the recognition quality gate) and is probed with the rest; in turn, a
quarter of the identities (``folds`` = 4: every 4th identity in sorted order, with an offset per
fold) is left out of the gallery and probes as strangers.  Every probe is one 1:N search of the
gallery with the route's threshold and margin, and is counted as

- a true accept (its own person accepted), a wrong-person accept (another enrolled person), or a
  stranger accept (a left-out identity accepted as anybody);
- its genuine score (own person) and impostor score (best person that is not the probe's own):
  the impostor scores are what the threshold rule of :mod:`vision.calibration` extrapolates.

Photos that show no face, or a face below the recognition quality gate, are counted and reported,
never silently dropped: a refused probe is a genuine probe not accepted.

Passage protocol (:func:`passage_protocol`): a camera sees a person walking up several times
over a second or two, from slightly different angles and in changing light.  The same split is
used, but a probe is a *passage* of up to ``looks`` (3) of the person's probe photos: each
identity's probe photos (a stranger's: all of its photos), in file-name order, are cut into
disjoint groups of consecutive photos, as few groups as ``looks`` allows and sizes as even as
possible (5 photos: 3 + 2; 4: 2 + 2; 1: a passage of one look).  No photo is in two passages, and
no enrolment photo is ever a genuine probe.  The passage is searched with the fusion
(:func:`vision.fusion.fuse`) of its looks' embeddings; its impostor pair scores feed the same
threshold rule, so a fused stranger is calibrated as a fused stranger.

Inputs: a :class:`Route` (detector, embedder, optional landmark refiner, quality thresholds) and a
folder ``ROOT/<identity>/<photo>.jpg|.jpeg|.png``.  Errors: :class:`EvaluationError` for a folder
that is not such a set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vision.detect import Detector, Face
from vision.embed import Embedder
from vision.enrol import EnrolmentError, read_image
from vision.fusion import fuse
from vision.gallery import DEFAULT_SCORING, Gallery
from vision.landmarks import Refiner
from vision.quality import Quality, QualityThresholds, assess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_ENROL_MAX = 3
DEFAULT_FOLDS = 4
#: Probe photos per passage (a second or two of a person walking up to the camera).
DEFAULT_LOOKS = 3


class EvaluationError(Exception):
    """The folder is not a usable folder-per-identity set; the message says why."""


@dataclass(frozen=True)
class Route:
    """What a gate runs: detector, embedder, landmark refinement and the quality gate."""

    detector: Detector
    embedder: Embedder
    thresholds: QualityThresholds
    refiner: Refiner | None = None
    detector_kind: str = "yunet"


@dataclass(frozen=True)
class Sample:
    """One photo of ``identity``: its embedding, or None with ``problem`` saying why not."""

    identity: str
    label: str
    embedding: np.ndarray | None
    quality: Quality | None
    problem: str | None = None


def folder_set(root: Path | str) -> dict[str, list[Path]]:
    """``{identity: [photo, ...]}`` of a folder-per-identity set, sorted; identities with fewer
    than 2 photos cannot be probed and are left out."""
    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"{root}: not a folder")
    identities = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(photos) >= 2:
            identities[folder.name] = photos
    if len(identities) < DEFAULT_FOLDS:
        raise EvaluationError(
            f"{root}: {len(identities)} identity folder(s) with 2 or more photos; the gallery "
            f"protocol needs at least {DEFAULT_FOLDS} (one folder per person, photos inside)"
        )
    return identities


def central_face(faces: Sequence[Face], shape: tuple[int, ...]) -> Face | None:
    """The face the photo is of: the one nearest the image centre (photos of a set, like LFW's,
    may show bystanders, sometimes larger than the subject)."""
    centre = np.array([shape[1] / 2, shape[0] / 2])

    def distance(face: Face) -> float:
        return float(np.linalg.norm((face.box[:2] + face.box[2:]) / 2 - centre))

    return min(faces, key=distance) if faces else None


def embed_image(route: Route, bgr: np.ndarray, face: Face) -> tuple[np.ndarray | None, Quality,
                                                                      list[str]]:
    """Embedding of ``face`` if it passes the recognition gate, its quality, and the problems."""
    quality = assess(bgr, face, detector=route.detector_kind)
    problems = route.thresholds.recognition_problems(quality)
    if problems:
        return None, quality, problems
    if route.refiner is not None:
        face = route.refiner.refine(bgr, face)
    return route.embedder.embed_face(bgr, face.kps), quality, []


def sample_set(route: Route, identities: dict[str, list[Path]]) -> list[Sample]:
    """One :class:`Sample` per photo, in set order."""
    samples = []
    for identity, photos in identities.items():
        for photo in photos:
            label = f"{identity}/{photo.name}"
            try:
                bgr = read_image(photo)
            except EnrolmentError as exc:
                samples.append(Sample(identity, label, None, None, str(exc)))
                continue
            face = central_face(route.detector.detect(bgr), bgr.shape)
            if face is None:
                samples.append(Sample(identity, label, None, None, "no face found"))
                continue
            embedding, quality, problems = embed_image(route, bgr, face)
            samples.append(Sample(identity, label, embedding, quality, "; ".join(problems) or None))
    return samples


@dataclass(frozen=True)
class Probe:
    """One search: who the probe was, whether enrolled, what the gallery said."""

    fold: int
    identity: str
    label: str
    enrolled: bool
    accepted: str | None
    genuine_score: float | None
    impostor_score: float


@dataclass
class ProtocolResult:
    """All searches of the gallery protocol, with the counts of issue 23's Done-when."""

    probes: list[Probe] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    enrolled_templates: int = 0
    impostor_pairs: list[np.ndarray] = field(default_factory=list)

    @property
    def genuine(self) -> list[Probe]:
        return [p for p in self.probes if p.enrolled]

    @property
    def true_accepts(self) -> int:
        return sum(p.accepted == p.identity for p in self.genuine)

    @property
    def wrong_person_accepts(self) -> int:
        return sum(p.accepted not in (None, p.identity) for p in self.genuine)

    @property
    def stranger_accepts(self) -> int:
        return sum(p.accepted is not None for p in self.probes if not p.enrolled)

    @property
    def genuine_attempts(self) -> int:
        """Genuine probes, including the ones the quality gate refused."""
        return len(self.genuine) + sum(1 for _label, kind in self.refused if kind == "genuine")

    def impostor_scores(self) -> np.ndarray:
        """Per probe, the best person that is not its own (what a false accept needs to beat)."""
        return np.array([p.impostor_score for p in self.probes], dtype=np.float64)

    def pair_scores(self) -> np.ndarray:
        """Every (probe, enrolled person not its own) score: the input of the threshold rule."""
        if not self.impostor_pairs:
            return np.zeros(0)
        return np.concatenate(self.impostor_pairs).astype(np.float64)

    def genuine_scores(self) -> np.ndarray:
        return np.array([p.genuine_score for p in self.genuine], dtype=np.float64)

    def tar_at_zero_far(self) -> float:
        """Share of genuine attempts whose own score beats every impostor score of the run."""
        if not self.genuine_attempts:
            return 0.0
        worst = float(self.impostor_scores().max()) if self.probes else -1.0
        return float((self.genuine_scores() > worst).sum()) / self.genuine_attempts


def strangers_of_fold(identities: Sequence[str], fold: int, folds: int = DEFAULT_FOLDS) -> set[str]:
    """Every ``folds``-th identity in sorted order, starting at ``fold``."""
    return {name for i, name in enumerate(sorted(identities)) if i % folds == fold}


def enrolment_split(
    samples: Iterable[Sample], enrol_max: int = DEFAULT_ENROL_MAX
) -> tuple[dict[str, list[Sample]], dict[str, list[Sample]]]:
    """Per identity: the first ``enrol_max`` usable samples to enrol, and the rest to probe.

    An identity keeps at least one photo to probe with, so with ``n`` usable photos it enrols
    ``min(enrol_max, n - 1)``."""
    by_identity: dict[str, list[Sample]] = {}
    for sample in samples:
        by_identity.setdefault(sample.identity, []).append(sample)
    enrol, probe = {}, {}
    for identity, items in by_identity.items():
        usable = [s for s in items if s.embedding is not None]
        count = min(enrol_max, max(len(usable) - 1, 0))
        chosen = {id(s) for s in usable[:count]}
        enrol[identity] = [s for s in items if id(s) in chosen]
        probe[identity] = [s for s in items if id(s) not in chosen]
    return enrol, probe


def _enrol_fold(gallery: Gallery, enrol: dict[str, list[Sample]], strangers: set[str]) -> None:
    """Enrol every identity of the fold but its strangers, with its embedded enrolment photos."""
    for identity in sorted(enrol):  # the order the gallery's templates were always added in
        if identity not in strangers and enrol[identity]:
            gallery.add(identity, np.vstack([s.embedding for s in enrol[identity]
                                             if s.embedding is not None]))


def gallery_protocol(
    samples: Sequence[Sample],
    *,
    threshold: float,
    margin: float,
    scoring: str = DEFAULT_SCORING,
    enrol_max: int = DEFAULT_ENROL_MAX,
    folds: int = DEFAULT_FOLDS,
) -> ProtocolResult:
    """Run the gallery protocol over embedded samples (see the module docstring)."""
    enrol, probe = enrolment_split(samples, enrol_max)
    identities = sorted(enrol)
    dim = next(s.embedding.size for s in samples if s.embedding is not None)
    result = ProtocolResult()
    for fold in range(folds):
        gallery = Gallery(dim, threshold=threshold, margin=margin, scoring=scoring)
        _enrol_fold(gallery, enrol, strangers_of_fold(identities, fold, folds))
        result.enrolled_templates += len(gallery)
        persons = gallery.persons()
        for identity in identities:
            enrolled = identity in persons
            # A stranger probes with every photo; an enrolled person with the ones not enrolled.
            items = probe[identity] + ([] if enrolled else enrol[identity])
            for sample in items:
                if sample.embedding is None:
                    kind = "genuine" if enrolled else "stranger"
                    result.refused.append((f"fold {fold}: {sample.label}", kind))
                    continue
                result.probes.append(
                    search(gallery, persons, fold, identity, sample.label, sample.embedding,
                           result.impostor_pairs)
                )
    return result


def look_groups(items: Sequence[Sample], looks: int = DEFAULT_LOOKS) -> list[list[Sample]]:
    """Disjoint passages of consecutive ``items``: ceil(n / looks) groups, sizes as even as
    possible, earlier groups the larger (ValueError for ``looks`` below 1)."""
    if looks < 1:
        raise ValueError(f"looks must be at least 1, got {looks}")
    count = -(-len(items) // looks)
    groups, start = [], 0
    for i in range(count):
        size = len(items) // count + (1 if i < len(items) % count else 0)
        groups.append(list(items[start:start + size]))
        start += size
    return groups


def passage_protocol(
    samples: Sequence[Sample],
    *,
    threshold: float,
    margin: float,
    scoring: str = DEFAULT_SCORING,
    looks: int = DEFAULT_LOOKS,
    enrol_max: int = DEFAULT_ENROL_MAX,
    folds: int = DEFAULT_FOLDS,
) -> ProtocolResult:
    """The gallery protocol with passages of up to ``looks`` probe photos, each searched with the
    fused embedding of its usable looks (module docstring).  A passage none of whose looks passed
    the quality gate is a refused probe."""
    enrol, probe = enrolment_split(samples, enrol_max)
    identities = sorted(enrol)
    dim = next(s.embedding.size for s in samples if s.embedding is not None)
    result = ProtocolResult()
    for fold in range(folds):
        gallery = Gallery(dim, threshold=threshold, margin=margin, scoring=scoring)
        _enrol_fold(gallery, enrol, strangers_of_fold(identities, fold, folds))
        result.enrolled_templates += len(gallery)
        persons = gallery.persons()
        for identity in identities:
            enrolled = identity in persons
            items = probe[identity] + ([] if enrolled else enrol[identity])
            for group in look_groups(items, looks):
                label = " + ".join(s.label for s in group)
                rows = [s.embedding for s in group if s.embedding is not None]
                if not rows:
                    result.refused.append((f"fold {fold}: {label}",
                                           "genuine" if enrolled else "stranger"))
                    continue
                result.probes.append(search(gallery, persons, fold, identity, label,
                                            fuse(np.vstack(rows)), result.impostor_pairs))
    return result


def search(
    gallery: Gallery,
    persons: list[str],
    fold: int,
    identity: str,
    label: str,
    embedding: np.ndarray,
    pairs: list[np.ndarray],
) -> Probe:
    """One 1:N search of ``identity``'s probe; its impostor pair scores go to ``pairs``."""
    scores = gallery.person_scores(embedding)
    enrolled = identity in persons
    own = persons.index(identity) if enrolled else -1
    genuine = float(scores[own]) if enrolled else None
    others = np.delete(scores, own) if enrolled else scores
    pairs.append(np.asarray(others, dtype=np.float32))
    match = gallery.search(embedding)
    return Probe(fold, identity, label, enrolled, match.person, genuine,
                 float(others.max()) if others.size else -1.0)


def distribution(values: np.ndarray) -> dict[str, float | int]:
    """n, mean, std and quantiles of a score sample, rounded for a report."""
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return {"n": 0}
    q = np.quantile(values, [0.5, 0.99, 0.999])
    return {
        "n": int(values.size), "mean": round(float(values.mean()), 4),
        "std": round(float(values.std()), 4), "p50": round(float(q[0]), 4),
        "p99": round(float(q[1]), 4), "p99.9": round(float(q[2]), 4),
        "max": round(float(values.max()), 4),
    }


def report(
    result: ProtocolResult, samples: Sequence[Sample], *, threshold: float, gallery_size: int
) -> dict[str, object]:
    """The figures ``menjin faces evaluate`` prints (JSON-ready)."""
    from vision.calibration import CalibrationError, recommend_threshold

    try:
        rec = recommend_threshold(result.pair_scores(), gallery_size=gallery_size)
        recommended: dict[str, object] = {
            "threshold": rec.threshold, "gallery_size": rec.gallery_size, "fpir": rec.fpir,
            "tail_threshold": round(rec.tail_threshold, 4),
            "centre": round(rec.centre, 4), "spread": round(rec.spread, 4),
            "fpir_at_threshold": float(f"{rec.fpir_at(threshold):.3g}"),
        }
    except CalibrationError as exc:
        recommended = {"error": str(exc)}
    attempts = result.genuine_attempts
    refused = [s for s in samples if s.embedding is None]
    return {
        "identities": len({s.identity for s in samples}),
        "photos": len(samples),
        "photos_refused": len(refused),
        "refusals": {s.label: s.problem for s in refused},
        "threshold": threshold,
        "genuine_probes": attempts,
        "true_accepts": result.true_accepts,
        "true_accept_rate": round(result.true_accepts / attempts, 4) if attempts else 0.0,
        "wrong_person_accepts": result.wrong_person_accepts,
        "stranger_probes": sum(not p.enrolled for p in result.probes),
        "stranger_accepts": result.stranger_accepts,
        "tar_at_zero_far": round(result.tar_at_zero_far(), 4),
        "genuine": distribution(result.genuine_scores()),
        "impostor_pairs": distribution(result.pair_scores()),
        "impostor_best_per_probe": distribution(result.impostor_scores()),
        "recommended": recommended,
    }
