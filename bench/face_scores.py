"""Genuine and impostor score distributions of each embedder on the five Western test faces: a
cross-check of the default match thresholds in vision/embed.py, which are calibrated on the
East-Asian dev set by the rule of vision/calibration.py (``menjin faces evaluate``,
bench/face_passages.py; results in docs/vision.md).

Material: the five enrolled people of the shared test photos (every enrolment photo becomes a
template), their probe and misc photos (genuine), and strangers (the six people of insightface's
t1.jpg, the child in probe/obama_and_biden.jpg, scikit-image's astronaut).  Each probe and stranger
face is also scored in degraded copies a gate camera produces (downscaled to the recognition
minimum, blurred, darker, brighter, mirrored, JPEG-compressed); a copy counts only when it passes
the recognition quality gate, as in the pipeline.

Scores are per person, as the gallery computes them (mean over the person's templates).
- genuine: a probe face against its own person;
- impostor: a probe face against every other enrolled person, every stranger face against every
  enrolled person, and every enrolment template against the templates of every other person.

Usage: .venv/bin/python bench/face_scores.py [--quick] [--models DIR] [--faces DIR]
The last line is JSON: per embedder kind, the measured extremes and the accept rates at the
default threshold.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import with_machine  # noqa: E402
from vision.align import align  # noqa: E402
from vision.detect import Detector, Face  # noqa: E402
from vision.embed import DEFAULT_MATCH_MARGIN, Embedder, default_match_threshold  # noqa: E402
from vision.gallery import Gallery  # noqa: E402
from vision.models import load_detector, load_embedder  # noqa: E402
from vision.quality import QualityThresholds, assess  # noqa: E402

STRANGER = "stranger"
#: Left-to-right identities of every probe photo (faces README); None = not scored.
PROBES: dict[str, list[str]] = {
    "probe/alex_lacamoire1.jpg": ["alex_lacamoire"],
    "probe/johnsnow_test1.jpg": ["kit_harington"],
    "probe/kit_with_rose.jpg": ["rose_leslie", "kit_harington"],
    "probe/obama1.jpg": ["obama"],
    "probe/obama_and_biden.jpg": ["biden", "obama", STRANGER],
    "misc/obama-240p.jpg": ["obama"],
    "misc/obama-480p.jpg": ["obama"],
    "misc/obama3.jpg": ["obama"],
    "misc/obama_small.jpg": ["obama"],
    "misc/obama_partial_face.jpg": ["obama"],
    "misc/two_people.jpg": ["obama", "biden"],
}
DETECTORS = {
    "scrfd": ("det_500m.onnx", 0.5),
    "yunet": ("face_detection_yunet_2026may.onnx", 0.8),
}
EMBEDDERS = {
    "arcface": "w600k_mbf_int8.onnx",
    "mobilefacenet_foamliu": "mobilefacenet_foamliu_128d.onnx",
    "mobilefacenet_paddlex": "mobilefacenet_paddlex_128d.onnx",
}
DETECTOR_INPUT = (640, 640)
QUALITY = QualityThresholds()
#: Face side the "small" copy is downscaled to: just above the recognition minimum.
SMALL_FACE_PX = QUALITY.min_face_px_recognise * 1.05
JPEG_POOR_QUALITY = 30
#: The pipeline's default agree_frames: a passage is granted after this many agreeing frames.
AGREE_FRAMES = 3
BRIGHTNESS_STEP = 40


def t1_path() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        raise SystemExit("insightface is not installed (t1.jpg ships in its wheel)")
    return Path(spec.origin).parent / "data" / "images" / "t1.jpg"


def astronaut() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


Variant = Callable[[np.ndarray, Face], np.ndarray]


def _small(bgr: np.ndarray, face: Face) -> np.ndarray:
    from vision.quality import face_px

    factor = min(1.0, SMALL_FACE_PX / face_px(face.kps))
    size = (max(1, round(bgr.shape[1] * factor)), max(1, round(bgr.shape[0] * factor)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)


def _blur(bgr: np.ndarray, face: Face) -> np.ndarray:
    from vision.quality import face_px

    sigma = face_px(face.kps) / 112
    return cv2.GaussianBlur(bgr, (0, 0), sigma)


def _jpeg(bgr: np.ndarray, _face: Face) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_POOR_QUALITY])
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else bgr


VARIANTS: dict[str, Variant] = {
    "original": lambda bgr, _f: bgr,
    "small": _small,
    "blur": _blur,
    "dark": lambda bgr, _f: cv2.convertScaleAbs(bgr, alpha=1.0, beta=-BRIGHTNESS_STEP),
    "bright": lambda bgr, _f: cv2.convertScaleAbs(bgr, alpha=1.0, beta=BRIGHTNESS_STEP),
    "mirror": lambda bgr, _f: cv2.flip(bgr, 1),
    "jpeg": _jpeg,
}


def _best_overlap(faces: list[Face], box: np.ndarray) -> Face | None:
    """The detection in a degraded copy that corresponds to ``box`` (already mapped)."""
    best, best_iou = None, 0.3
    for face in faces:
        x1, y1 = np.maximum(face.box[:2], box[:2])
        x2, y2 = np.minimum(face.box[2:], box[2:])
        inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        union = face.width * face.height + (box[2] - box[0]) * (box[3] - box[1]) - inter
        if union > 0 and inter / union > best_iou:
            best, best_iou = face, inter / union
    return best


def _mapped_box(name: str, bgr: np.ndarray, copy: np.ndarray, box: np.ndarray) -> np.ndarray:
    scale_x, scale_y = copy.shape[1] / bgr.shape[1], copy.shape[0] / bgr.shape[0]
    mapped = box * np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
    if name == "mirror":
        width = copy.shape[1]
        mapped = np.array([width - mapped[2], mapped[1], width - mapped[0], mapped[3]])
    return mapped


def labelled_faces(
    detector: Detector, photos: list[tuple[str, np.ndarray, list[str]]]
) -> Iterator[tuple[str, str, np.ndarray, Face]]:
    """(photo, identity, image, face) for every face of every photo, left to right."""
    for label, bgr, identities in photos:
        faces = sorted(detector.detect(bgr), key=lambda f: float(f.box[0]))
        if len(faces) != len(identities):
            raise SystemExit(f"{label}: expected {len(identities)} face(s), found {len(faces)}")
        for face, identity in zip(faces, identities, strict=True):
            yield label, identity, bgr, face


def variant_embeddings(
    detector: Detector, embedder: Embedder, bgr: np.ndarray, face: Face, variants: list[str]
) -> Iterator[tuple[str, np.ndarray]]:
    """Embeddings of the face in each degraded copy that passes the recognition quality gate."""
    for name in variants:
        copy = VARIANTS[name](bgr, face)
        target = face if name == "original" else _best_overlap(
            detector.detect(copy), _mapped_box(name, bgr, copy, face.box)
        )
        if target is None or not QUALITY.recognisable(assess(copy, target)):
            continue
        yield name, embedder.embed(align(copy, target.kps))


@dataclass
class Scores:
    """Per-person cosine scores, and the gallery's decisions per frame and per passage."""

    genuine: list[float] = field(default_factory=list)
    genuine_one_photo: list[float] = field(default_factory=list)
    impostor: list[float] = field(default_factory=list)
    stranger: list[float] = field(default_factory=list)
    enrolled: list[float] = field(default_factory=list)
    frames: int = 0
    frames_accepted: int = 0
    false_accepts: int = 0
    passages: int = 0
    passages_accepted: int = 0


def measure(
    models: Path, faces: Path, detector_kind: str, embedder_kind: str, variants: list[str]
) -> Scores:
    model_file, det_threshold = DETECTORS[detector_kind]
    detector = load_detector(
        detector_kind, models / model_file, input_size=DETECTOR_INPUT, score_threshold=det_threshold
    )
    embedder = load_embedder(embedder_kind, models / EMBEDDERS[embedder_kind])
    threshold = default_match_threshold(embedder_kind)
    gallery = Gallery(embedder.dim, threshold=threshold, margin=DEFAULT_MATCH_MARGIN)
    enrol = [
        (str(p.relative_to(faces)), cv2.imread(str(p)), [p.parent.name])
        for p in sorted((faces / "enrol").glob("*/*"))
    ]
    for _label, person, bgr, face in labelled_faces(detector, enrol):
        gallery.add(person, embedder.embed(align(bgr, face.kps)))
    persons = gallery.persons()
    result = Scores()
    for a in persons:
        for b in persons:
            if a < b:
                cross = gallery.templates(a) @ gallery.templates(b).T
                result.enrolled.append(float(cross.max()))
    probes = [(name, cv2.imread(str(faces / name)), ids) for name, ids in PROBES.items()]
    strangers = [("t1.jpg", cv2.imread(str(t1_path())), [STRANGER] * 6)]
    strangers.append(("astronaut", astronaut(), [STRANGER]))
    for _label, identity, bgr, face in labelled_faces(detector, probes + strangers):
        agreeing = 0
        for _name, emb in variant_embeddings(detector, embedder, bgr, face, variants):
            scores = dict(zip(persons, gallery.person_scores(emb).tolist(), strict=True))
            decision = gallery.search(emb).person
            if decision is not None and decision != identity:
                result.false_accepts += 1
            if identity == STRANGER:
                result.stranger += scores.values()
                continue
            result.frames += 1
            agreeing += decision == identity
            result.genuine.append(scores[identity])
            result.genuine_one_photo.append(float(gallery.templates(identity)[0] @ emb))
            result.impostor += [s for p, s in scores.items() if p != identity]
        if identity != STRANGER:
            result.passages += 1
            result.frames_accepted += agreeing
            result.passages_accepted += agreeing >= min(AGREE_FRAMES, len(variants))
    return result


def describe(values: list[float]) -> str:
    arr = np.asarray(values)
    q = np.percentile(arr, [0, 5, 50, 95, 100])
    return (
        f"n={arr.size:4d} min {q[0]:.3f} p5 {q[1]:.3f} median {q[2]:.3f} "
        f"p95 {q[3]:.3f} max {q[4]:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one route, no degraded copies")
    parser.add_argument(
        "--models", type=Path,
        default=Path(os.environ.get("MENJIN_MODELS", REPO.parent / "shared" / "models")),
    )
    parser.add_argument(
        "--faces", type=Path,
        default=Path(os.environ.get("MENJIN_FACES", REPO.parent / "shared" / "faces")),
    )
    args = parser.parse_args()
    variants = ["original"] if args.quick else list(VARIANTS)
    embedders = ["mobilefacenet_paddlex"] if args.quick else list(EMBEDDERS)
    detectors = ["yunet"] if args.quick else list(DETECTORS)
    summary: dict[str, dict[str, float | int]] = {}
    started = time.perf_counter()
    for embedder_kind in embedders:
        threshold = default_match_threshold(embedder_kind)
        merged = Scores()
        for detector_kind in detectors:
            scores = measure(args.models, args.faces, detector_kind, embedder_kind, variants)
            print(f"{embedder_kind} with {detector_kind} landmarks:")
            for key in ("genuine", "genuine_one_photo", "impostor", "stranger", "enrolled"):
                print(f"  {key:17s} {describe(getattr(scores, key))}")
            for key, value in vars(scores).items():
                setattr(merged, key, getattr(merged, key) + value)
        impostors = merged.impostor + merged.stranger + merged.enrolled
        worst = max(impostors)
        mean, std = float(np.mean(impostors)), float(np.std(impostors))
        genuine = np.asarray(merged.genuine)
        one_photo = np.asarray(merged.genuine_one_photo)
        summary[embedder_kind] = {
            "threshold": threshold,
            "max_impostor": round(worst, 3),
            "impostor_mean": round(mean, 3),
            "impostor_std": round(std, 3),
            "min_genuine": round(float(genuine.min()), 3),
            "safety_margin": round(threshold - worst, 3),
            "false_accepts": merged.false_accepts,
            "impostor_scores": len(impostors),
            "genuine_frames": merged.frames,
            "frame_accept_rate": round(merged.frames_accepted / max(merged.frames, 1), 3),
            "frame_accept_rate_one_photo": round(float((one_photo >= threshold).mean()), 3),
            "passages": merged.passages,
            "passages_granted": merged.passages_accepted,
        }
        print(f"  impostor mean {mean:.3f} std {std:.3f}")
        print(
            f"  => threshold {threshold:.2f}: worst impostor {worst:.3f} (safety "
            f"{threshold - worst:.3f}), false accepts {merged.false_accepts}; single frames "
            f"accepted {merged.frames_accepted}/{merged.frames} (one enrolment photo: "
            f"{int((one_photo >= threshold).sum())}/{one_photo.size}); passages granted with "
            f"{AGREE_FRAMES} agreeing frames {merged.passages_accepted}/{merged.passages}"
        )
    print(f"({time.perf_counter() - started:.1f} s)")
    result = {"variants": variants, "detectors": detectors, "embedders": summary}
    print(json.dumps(with_machine(result, libraries=("onnxruntime", "opencv-python"))))


if __name__ == "__main__":
    main()
