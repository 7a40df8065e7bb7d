"""Enrolment: face templates from a resident's photos, with a clear reason for every refusal.

A photo becomes a template only when it shows exactly one face that passes the recognition quality
gate: a second face could enrol the wrong person, and a poor photo makes a template that lets
look-alikes closer to the threshold.  Only templates leave this module, never the photos.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vision.detect import Detector, Face
from vision.embed import Embedder
from vision.landmarks import Refiner
from vision.quality import QualityThresholds, assess


class EnrolmentError(Exception):
    """A photo that cannot become a template; the message says why, for the installer."""


@dataclass
class Enrolment:
    """Templates built from the accepted photos, and the refusal message of every other photo."""

    templates: list[np.ndarray] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)

    def matrix(self) -> np.ndarray:
        return np.vstack(self.templates) if self.templates else np.zeros((0, 0), dtype=np.float32)


def read_image(path: Path | str) -> np.ndarray:
    """Decode an image file as BGR; EnrolmentError when it is missing or not an image."""
    if not Path(path).is_file():
        raise EnrolmentError(f"{path}: file not found")
    return decode_image(Path(path).read_bytes(), str(path))


def decode_image(data: bytes, label: str = "photo") -> np.ndarray:
    """Decode image bytes (a file, or a photo sent by the station) as BGR."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise EnrolmentError(f"{label}: not a readable image (JPEG or PNG expected)")
    return image


def single_face(bgr: np.ndarray, detector: Detector, label: str) -> Face:
    """The one face of an enrolment photo, or EnrolmentError naming the problem."""
    faces = detector.detect(bgr)
    if not faces:
        raise EnrolmentError(f"{label}: no face found")
    if len(faces) > 1:
        raise EnrolmentError(
            f"{label}: {len(faces)} faces found; use a photo showing only the person to enrol"
        )
    return faces[0]


def template(
    bgr: np.ndarray,
    detector: Detector,
    embedder: Embedder,
    thresholds: QualityThresholds,
    label: str = "photo",
    refiner: Refiner | None = None,
) -> np.ndarray:
    """The template of the single, good-quality face in ``bgr``; landmarks refined as the
    pipeline refines them (templates and probes must be made the same way)."""
    face = single_face(bgr, detector, label)
    problems = thresholds.recognition_problems(assess(bgr, face))
    if problems:
        raise EnrolmentError(f"{label}: quality too low: {'; '.join(problems)}")
    if refiner is not None:
        face = refiner.refine(bgr, face)
    return embedder.embed_face(bgr, face.kps)


def enrol_photos(
    photos: Iterable[Path | str],
    detector: Detector,
    embedder: Embedder,
    thresholds: QualityThresholds,
    refiner: Refiner | None = None,
) -> Enrolment:
    """Try every photo file; a bad one is reported and skipped, never fatal to the others."""
    return enrol_images(
        ((str(photo), functools.partial(read_image, photo)) for photo in photos),
        detector, embedder, thresholds, refiner,
    )


def enrol_images(
    images: Iterable[tuple[str, Callable[[], np.ndarray]]],
    detector: Detector,
    embedder: Embedder,
    thresholds: QualityThresholds,
    refiner: Refiner | None = None,
) -> Enrolment:
    """Like ``enrol_photos`` for (label, loader) pairs, e.g. base64 photos of a station command:
    ``(f"photo {i + 1}", lambda: decode_image(data))``.  Loaders run one at a time, so only one
    decoded photo is in memory at once."""
    result = Enrolment()
    for label, load in images:
        try:
            result.templates.append(
                template(load(), detector, embedder, thresholds, label, refiner)
            )
        except EnrolmentError as exc:
            result.rejected[label] = str(exc)
        else:
            result.accepted.append(label)
    return result
