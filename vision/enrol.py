"""Enrolment: face templates from a resident's photos, with a clear reason for every refusal.

A photo becomes a template only when it shows exactly one face that passes the recognition quality
gate: a second face could enrol the wrong person, and a poor photo makes a template that lets
look-alikes closer to the threshold.  Only templates leave this module, never the photos.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vision.align import align
from vision.detect import Detector, Face
from vision.embed import Embedder
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
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise EnrolmentError(f"{path}: file not found")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise EnrolmentError(f"{path}: not a readable image (JPEG or PNG expected)")
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
) -> np.ndarray:
    """The template of the single, good-quality face in ``bgr``."""
    face = single_face(bgr, detector, label)
    problems = thresholds.recognition_problems(assess(bgr, face))
    if problems:
        raise EnrolmentError(f"{label}: quality too low: {'; '.join(problems)}")
    return embedder.embed(align(bgr, face.kps))


def enrol_photos(
    photos: Iterable[Path | str],
    detector: Detector,
    embedder: Embedder,
    thresholds: QualityThresholds,
) -> Enrolment:
    """Try every photo; a bad one is reported and skipped, never fatal to the others."""
    result = Enrolment()
    for photo in photos:
        label = str(photo)
        try:
            bgr = read_image(photo)
            result.templates.append(template(bgr, detector, embedder, thresholds, label))
        except EnrolmentError as exc:
            result.rejected[label] = str(exc)
        else:
            result.accepted.append(label)
    return result
