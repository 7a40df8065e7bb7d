"""Passages of the East-Asian dev set through each route: per-passage true, wrong-person and
stranger accepts and CPU per passage, against insightface's FaceAnalysis at the same threshold rule.

Protocol (vision/evaluate.py): each identity enrols up to 3 photos (the first usable ones) and
probes with the rest; in turn a quarter of the identities are left out and probe as strangers
with all their photos.  Photo level: one 1:N search per probe photo.  Passage level (the passage
protocol of vision/evaluate.py): an identity's probe photos (a stranger's: all its photos) are cut
into disjoint passages of up to 3 consecutive photos (``LOOKS``), never an enrolment photo; each
passage is a short sequence of ``FRAMES`` camera frames (640x480, 15 fps) in which the person walks
towards the camera, one look (photo) after the other, the frames shared evenly between the looks:
the face moves across and down the frame, grows from about 0.75x to 1.2x, rolls a few degrees, is
motion-blurred in the first frames and brightens from dim to normal light, and each look has its
own light level (a gain of 0.85-1.0 on top).  The frames go through the real ``FacePipeline``
(one track, quality gate, landmark refinement, fusion of the best frames, 1:N search); a passage
counts as accepted when the pipeline reports ``FaceRecognised``.  Every fused embedding the
pipeline searches is recorded: per passage and enrolled person, the highest fused score is an
impostor pair of the fused protocol (its own person excluded), and the threshold rule of
vision/calibration.py is applied to these pairs as well (``passage.rule_threshold``).

Routes at their shipped thresholds (vision/embed.py): YuNet + mobilefacenet_paddlex (the
permissive default), YuNet + foamliu, YuNet + face-reidentification-retail-0095, SCRFD +
w600k_mbf_int8 (the insightface route).  Baseline: ``insightface.app.FaceAnalysis`` on the same
two model files as the insightface route, every frame, best template per person (its usual use),
a passage accepted when ``AGREE_FRAMES`` frames agree, with the threshold the rule of
vision/calibration.py gives for its own photo-level impostor scores.

Usage: .venv/bin/python bench/face_passages.py [--quick] [--models DIR] [--faces DIR]
``--quick``: the permissive route and the baseline, 8 identities, one fold, 4 frames (< 60 s).
The last line is JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import with_machine  # noqa: E402
from vision.calibration import CalibrationError, recommend_threshold  # noqa: E402
from vision.detect import Detector, Face  # noqa: E402
from vision.embed import (  # noqa: E402
    DEFAULT_MATCH_MARGIN,
    Embedder,
    default_match_threshold,
    route_choices,
)
from vision.enrol import read_image  # noqa: E402
from vision.evaluate import (  # noqa: E402
    DEFAULT_FOLDS,
    DEFAULT_LOOKS,
    Route,
    Sample,
    central_face,
    distribution,
    enrolment_split,
    folder_set,
    gallery_protocol,
    look_groups,
    passage_protocol,
    sample_set,
    strangers_of_fold,
)
from vision.gallery import Gallery  # noqa: E402
from vision.landmarks import Refiner  # noqa: E402
from vision.models import load_detector, load_embedder, load_refiner  # noqa: E402
from vision.motion import MotionGate  # noqa: E402
from vision.pipeline import FacePipeline, FaceRecognised, PipelineSettings  # noqa: E402
from vision.quality import QualityThresholds  # noqa: E402

DEV_SET = "east-asian-dev"
DETECTORS = {
    "yunet": ("face_detection_yunet_2026may.onnx", 0.6),
    "scrfd": ("det_500m.onnx", 0.5),
}
EMBEDDERS = {
    "arcface": "w600k_mbf_int8.onnx",
    "mobilefacenet_foamliu": "mobilefacenet_foamliu_128d.onnx",
    "mobilefacenet_paddlex": "mobilefacenet_paddlex_128d.onnx",
    "face_reid_0095": "face-reidentification-retail-0095_FP16.onnx",
}
ROUTES = {
    "paddlex": ("yunet", "mobilefacenet_paddlex"),
    "foamliu": ("yunet", "mobilefacenet_foamliu"),
    "0095": ("yunet", "face_reid_0095"),
    "insightface": ("scrfd", "arcface"),
}
BASELINE = "faceanalysis"
CANVAS_WH = (640, 480)
DETECTOR_INPUT = (640, 480)
FPS = 15.0
FRAMES = 12
QUICK_FRAMES = 8
QUICK_IDENTITIES = 8
AGREE_FRAMES = 3
#: Dimmest frame of a passage, as a gain on the photo (brightness about 45 % of normal).
DIM_GAIN = 0.45
MAX_BLUR_PX = 7


#: Light level of one look relative to the passage's brightening (clouds, the person's own shadow).
LOOK_GAIN = (0.85, 1.0)


def passage_frames(photos: list[np.ndarray], frames: int, seed: int) -> list[np.ndarray]:
    """The camera frames of one passage, the looks (photos) one after the other (module
    docstring)."""
    rng = np.random.default_rng(seed)
    width, height = CANVAS_WH
    noise = rng.normal(90, 25, (height // 16, width // 16)).astype(np.float32)
    background = cv2.resize(noise, CANVAS_WH, interpolation=cv2.INTER_CUBIC)
    background = cv2.cvtColor(np.clip(background, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    start = np.array([width * rng.uniform(0.3, 0.4), height * 0.45])
    end = np.array([width * rng.uniform(0.5, 0.6), height * 0.55])
    roll = rng.uniform(-5, 5, size=frames)
    look_gain = rng.uniform(*LOOK_GAIN, size=len(photos))
    out = []
    for i in range(frames):
        look = i * len(photos) // frames
        photo = photos[look]
        centre = (photo.shape[1] / 2, photo.shape[0] / 2)
        t = i / max(frames - 1, 1)
        scale = 0.75 + 0.45 * t
        x, y = start + (end - start) * t + rng.normal(0, 3, 2)
        matrix = cv2.getRotationMatrix2D(centre, float(roll[i]), scale)
        matrix[:, 2] += (x - centre[0], y - centre[1])
        frame = background.copy()
        cv2.warpAffine(photo, matrix, CANVAS_WH, dst=frame, borderMode=cv2.BORDER_TRANSPARENT)
        blur = round(MAX_BLUR_PX * (1 - t))
        if blur >= 2:
            kernel = np.zeros((blur, blur), np.float32)
            kernel[blur // 2, :] = 1.0 / blur
            frame = cv2.filter2D(frame, -1, kernel)
        gain = (DIM_GAIN + (1 - DIM_GAIN) * t) * look_gain[look]
        out.append(cv2.convertScaleAbs(frame, alpha=gain, beta=0))
    return out


def _key(*arrays: np.ndarray) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()


@dataclass
class CachedDetector:
    """The same frame is detected once across the folds (CPU is measured in fold 0, cold)."""

    inner: Detector
    cache: dict[bytes, list[Face]] = field(default_factory=dict)

    def detect(self, bgr: np.ndarray) -> list[Face]:
        key = _key(bgr)
        if key not in self.cache:
            self.cache[key] = self.inner.detect(bgr)
        return self.cache[key]


@dataclass
class CachedEmbedder:
    inner: Embedder
    cache: dict[bytes, np.ndarray] = field(default_factory=dict)
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.dim = self.inner.dim

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        return self.inner.embed(aligned_bgr)

    def embed_face(self, bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        key = _key(bgr, kps)
        if key not in self.cache:
            self.cache[key] = self.inner.embed_face(bgr, kps)
        return self.cache[key]


@dataclass
class Counts:
    genuine: int = 0
    true_accepts: int = 0
    wrong_person_accepts: int = 0
    strangers: int = 0
    stranger_accepts: int = 0
    split: int = 0
    cpu_s: float = 0.0
    timed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "genuine": self.genuine, "true_accepts": self.true_accepts,
            "true_accept_rate": round(self.true_accepts / max(self.genuine, 1), 4),
            "wrong_person_accepts": self.wrong_person_accepts,
            "strangers": self.strangers, "stranger_accepts": self.stranger_accepts,
            "passages_with_several_tracks": self.split,
            "cpu_ms_per_passage": round(1000 * self.cpu_s / max(self.timed, 1), 1),
        }

    def count(self, identity: str, enrolled: bool, accepted: str | None) -> None:
        if enrolled:
            self.genuine += 1
            self.true_accepts += accepted == identity
            self.wrong_person_accepts += accepted not in (None, identity)
        else:
            self.strangers += 1
            self.stranger_accepts += accepted is not None


def passages(
    identities: dict[str, list[Path]], samples: list[Sample], folds: list[int], frames: int
) -> Iterator[tuple[int, set[str], dict[str, list[Sample]], str, bool, list[np.ndarray]]]:
    """(fold, strangers, enrolment, identity, enrolled, frames) of every passage: the looks of
    vision.evaluate.look_groups, never an enrolment photo of an enrolled identity."""
    enrol, probe = enrolment_split(samples)
    by_label = {f"{i}/{p.name}": p for i, photos in identities.items() for p in photos}
    names = sorted(enrol)
    for fold in folds:
        strangers = strangers_of_fold(names, fold)
        for identity in names:
            enrolled = identity not in strangers
            items = probe[identity] + ([] if enrolled else enrol[identity])
            for group in look_groups(items, DEFAULT_LOOKS):
                labels = " + ".join(sample.label for sample in group)
                photos = [read_image(by_label[sample.label]) for sample in group]
                seed = int.from_bytes(_key(np.frombuffer(labels.encode(), np.uint8))[:4])
                yield fold, strangers, enrol, identity, enrolled, passage_frames(
                    photos, frames, seed)


@dataclass
class RecordingGallery:
    """The fold's gallery, remembering every fused embedding the pipeline searched with."""

    inner: Gallery
    searched: list[np.ndarray] = field(default_factory=list)

    def search(self, embedding: np.ndarray) -> Any:
        self.searched.append(np.asarray(embedding, np.float32))
        return self.inner.search(embedding)

    def fused_scores(self, identity: str) -> tuple[float | None, np.ndarray]:
        """The passage's highest fused score for its own person (None: a stranger, or never
        searched) and, per other enrolled person, its highest fused score."""
        persons = self.inner.persons()
        if not self.searched:
            return None, np.zeros(0, np.float32)
        scores = np.max([self.inner.person_scores(v) for v in self.searched], axis=0)
        if identity not in persons:
            return None, scores
        own = persons.index(identity)
        return float(scores[own]), np.delete(scores, own)


def fold_gallery(
    enrol: dict[str, list[Sample]], strangers: set[str], dim: int, threshold: float, scoring: str
) -> Gallery:
    gallery = Gallery(dim, threshold=threshold, margin=DEFAULT_MATCH_MARGIN, scoring=scoring)
    for identity, items in enrol.items():
        rows = [s.embedding for s in items if s.embedding is not None]
        if identity not in strangers and rows:
            gallery.add(identity, np.vstack(rows))
    return gallery


def run_route(
    name: str, models: Path, identities: dict[str, list[Path]], folds: list[int], frames: int
) -> dict[str, Any]:
    det_kind, emb_kind = ROUTES[name]
    det_file, det_threshold = DETECTORS[det_kind]
    detector = load_detector(det_kind, models / det_file, input_size=DETECTOR_INPUT,
                             score_threshold=det_threshold)
    choices = route_choices(emb_kind)
    embedder = load_embedder(emb_kind, models / EMBEDDERS[emb_kind],
                             mirror=choices.mirror_average)
    refiner = load_refiner(det_kind, models / det_file) if choices.refine_landmarks else None
    thresholds = QualityThresholds()
    threshold = default_match_threshold(emb_kind)
    samples = sample_set(Route(detector, embedder, thresholds, refiner, det_kind), identities)
    photo = gallery_protocol(samples, threshold=threshold, margin=DEFAULT_MATCH_MARGIN,
                             scoring=choices.scoring, folds=DEFAULT_FOLDS)
    rule_threshold, rule_fpir = rule_for(photo.pair_scores(), threshold)
    cached_det, cached_emb = CachedDetector(detector), CachedEmbedder(embedder)
    cached_refiner = Refiner(CachedDetector(refiner.detector)) if refiner is not None else None
    settings = PipelineSettings(agree_frames=AGREE_FRAMES, quality=thresholds,
                                detector_kind=det_kind)
    looks = passage_protocol(samples, threshold=threshold, margin=DEFAULT_MATCH_MARGIN,
                             scoring=choices.scoring, folds=DEFAULT_FOLDS)
    looks_rule, looks_fpir = rule_for(looks.pair_scores(), threshold)
    counts = Counts()
    fused_pairs: list[np.ndarray] = []
    stranger_best: list[float] = []
    genuine_best: list[float] = []
    for fold, strangers, enrol, identity, enrolled, clip in passages(
        identities, samples, folds, frames
    ):
        gallery = RecordingGallery(
            fold_gallery(enrol, strangers, embedder.dim, threshold, choices.scoring))
        pipeline = FacePipeline(cached_det, cached_emb, gallery,  # type: ignore[arg-type]
                                settings=settings, motion=MotionGate(), refiner=cached_refiner)
        cpu0 = time.process_time()
        accepted = None
        tracks = set()
        for i, frame in enumerate(clip):
            for obs in pipeline.process(frame, i / FPS):
                tracks.add(obs.track_id)
                if isinstance(obs, FaceRecognised) and accepted is None:
                    accepted = obs.person
        tracks.update(obs.track_id for obs in pipeline.flush())
        if fold == folds[0]:
            counts.cpu_s += time.process_time() - cpu0
            counts.timed += 1
        counts.count(identity, enrolled, accepted)
        counts.split += len(tracks) > 1
        genuine, others = gallery.fused_scores(identity)
        if others.size:
            fused_pairs.append(others)
            if not enrolled:
                stranger_best.append(float(others.max()))
        if genuine is not None:
            genuine_best.append(genuine)
    pairs = np.concatenate(fused_pairs) if fused_pairs else np.zeros(0)
    fused_rule, fused_fpir = rule_for(pairs, threshold)
    return {
        "detector": det_kind, "embedder": emb_kind, "threshold": threshold,
        "rule_threshold": rule_threshold, "rule_fpir_at_threshold": rule_fpir,
        "scoring": choices.scoring, "mirror_average": choices.mirror_average,
        "refine_landmarks": choices.refine_landmarks,
        "photo": _photo_figures(photo),
        "looks": {**_photo_figures(looks), "rule_threshold": looks_rule,
                  "rule_fpir_at_threshold": looks_fpir},
        "passage": {
            **counts.as_dict(), "rule_threshold": fused_rule,
            "rule_fpir_at_threshold": fused_fpir,
            "impostor_pairs": distribution(pairs),
            "stranger_best": distribution(np.asarray(stranger_best)),
            "genuine_best": distribution(np.asarray(genuine_best)),
        },
    }


def rule_for(pairs: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    """The rule's threshold and the tail model's FPIR at ``threshold`` (None, None when the set
    is too small to estimate the tail, as in --quick)."""
    try:
        rule = recommend_threshold(pairs)
    except CalibrationError:
        return None, None
    return rule.threshold, float(f"{rule.fpir_at(threshold):.3g}")


def _photo_figures(result: Any) -> dict[str, Any]:
    attempts = result.genuine_attempts
    return {
        "genuine": attempts, "true_accepts": result.true_accepts,
        "true_accept_rate": round(result.true_accepts / max(attempts, 1), 4),
        "wrong_person_accepts": result.wrong_person_accepts,
        "strangers": sum(not p.enrolled for p in result.probes),
        "stranger_accepts": result.stranger_accepts,
        "tar_at_zero_far": round(result.tar_at_zero_far(), 4),
        "max_impostor": round(float(result.impostor_scores().max()), 4),
    }


def run_baseline(
    models: Path, identities: dict[str, list[Path]], folds: list[int], frames: int
) -> dict[str, Any]:
    """insightface FaceAnalysis (det_500m + w600k_mbf_int8), threshold from the same rule."""
    import onnxruntime as ort
    from insightface.app import FaceAnalysis

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as root:
        pack = Path(root) / "models" / "menjin_sc"
        pack.mkdir(parents=True)
        for name in ("det_500m.onnx", "w600k_mbf_int8.onnx"):
            (pack / name).symlink_to((models / name).resolve())
        app = FaceAnalysis(name="menjin_sc", root=root,
                           allowed_modules=["detection", "recognition"],
                           providers=["CPUExecutionProvider"], sess_options=options)
        app.prepare(ctx_id=-1, det_size=(640, 640))

        cache: dict[bytes, np.ndarray | None] = {}

        def embed(bgr: np.ndarray) -> np.ndarray | None:
            key = _key(bgr)
            if key not in cache:
                cache[key] = embed_uncached(bgr)
            return cache[key]

        def embed_uncached(bgr: np.ndarray) -> np.ndarray | None:
            found = app.get(bgr)
            faces = [Face(np.asarray(f.bbox, np.float32), np.asarray(f.kps, np.float32),
                          float(f.det_score)) for f in found]
            face = central_face(faces, bgr.shape)
            if face is None:
                return None
            return np.asarray(found[faces.index(face)].normed_embedding, np.float32)

        samples = []
        for identity, photos in identities.items():
            for photo in photos:
                vector = embed(read_image(photo))
                samples.append(Sample(identity, f"{identity}/{photo.name}", vector, None,
                                      None if vector is not None else "no face found"))
        probe = gallery_protocol(samples, threshold=1.0, margin=DEFAULT_MATCH_MARGIN,
                                 scoring="max")
        # --quick has too few identities for the rule: the insightface route's shipped default.
        threshold = rule_for(probe.pair_scores(), 0.0)[0] or default_match_threshold("arcface")
        at_rule = gallery_protocol(samples, threshold=threshold, margin=DEFAULT_MATCH_MARGIN,
                                   scoring="max")
        looks = passage_protocol(samples, threshold=threshold, margin=DEFAULT_MATCH_MARGIN,
                                 scoring="max")
        counts = Counts()
        for fold, strangers, enrol, identity, enrolled, clip in passages(
            identities, samples, folds, frames
        ):
            gallery = fold_gallery(enrol, strangers, 512, threshold, "max")
            cpu0 = time.process_time()
            votes: dict[str, int] = {}
            accepted = None
            for frame in clip:
                vector = embed(frame)
                person = gallery.search(vector).person if vector is not None else None
                if person is not None:
                    votes[person] = votes.get(person, 0) + 1
                    if votes[person] >= AGREE_FRAMES and accepted is None:
                        accepted = person
            if fold == folds[0]:
                counts.cpu_s += time.process_time() - cpu0
                counts.timed += 1
            counts.count(identity, enrolled, accepted)
    return {"detector": "scrfd", "embedder": "arcface", "threshold": threshold,
            "rule_threshold": threshold, "photo": _photo_figures(at_rule),
            "looks": {**_photo_figures(looks),
                      "rule_threshold": rule_for(looks.pair_scores(), threshold)[0]},
            "passage": counts.as_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="permissive route and baseline only")
    parser.add_argument(
        "--models", type=Path,
        default=Path(os.environ.get("MENJIN_MODELS", REPO.parent / "shared" / "models")),
    )
    parser.add_argument(
        "--faces", type=Path,
        default=Path(os.environ.get("MENJIN_FACES", REPO.parent / "shared" / "faces")),
    )
    parser.add_argument("--routes", nargs="*", choices=[*ROUTES, BASELINE], default=None)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    # Every passage builds a pipeline without liveness; its start-up warning is not news here.
    logging.getLogger("vision.pipeline").setLevel(logging.ERROR)
    identities = folder_set(args.faces / DEV_SET)
    frames, folds = FRAMES, list(range(DEFAULT_FOLDS))
    routes = args.routes or [*ROUTES, BASELINE]
    if args.quick:
        identities = dict(list(identities.items())[:QUICK_IDENTITIES])
        frames, folds = QUICK_FRAMES, [0]
        routes = args.routes or ["paddlex", BASELINE]
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for name in routes:
        t0 = time.perf_counter()
        if name == BASELINE:
            results[name] = run_baseline(args.models, identities, folds, frames)
        else:
            results[name] = run_route(name, args.models, identities, folds, frames)
        r = results[name]
        print(f"{name}: threshold {r['threshold']:.2f} (rule {r['rule_threshold']}); "
              f"photos {json.dumps(r['photo'])}; passages {json.dumps(r['passage'])} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    base_cpu = results.get(BASELINE, {}).get("passage", {}).get("cpu_ms_per_passage")
    ratios = {
        name: round(r["passage"]["cpu_ms_per_passage"] / base_cpu, 3)
        for name, r in results.items() if base_cpu and name != BASELINE
    }
    print(json.dumps(with_machine({
        "set": DEV_SET, "identities": len(identities), "folds": len(folds), "frames": frames,
        "routes": results, "cpu_ratio_vs_faceanalysis": ratios,
        "seconds": round(time.perf_counter() - started, 1),
    }, libraries=("insightface", "onnxruntime"))))


if __name__ == "__main__":
    main()
