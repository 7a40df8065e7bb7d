"""Face embeddings: an aligned BGR crop in, an L2-normalised float32 vector out.

The ArcFace-template models (112x112) differ only in colour order and normalisation; Intel's
face-reidentification-retail-0095 has its own 128x128 landmark template and takes raw BGR.  Callers
use :meth:`OnnxEmbedder.embed_face` (frame + landmarks), which aligns to the model's own template.
These differences and getting that wrong
do not fail loudly: it just makes every face look a little more like every other face.  So each
kind's preprocessing is spelled out here and chosen by the configured kind, never inferred.

Default match thresholds are per kind because cosine scales differ between models; they were
calibrated for zero false accepts on the test material with a safety margin (docs/vision.md holds
the measured score distributions and the command that produced them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from vision.align import ALIGNED_SIZE, REID_0095_SIZE, REID_0095_TEMPLATE, align, template

ARCFACE_MEAN = 127.5
ARCFACE_STD = 127.5
IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)

#: Cosine similarity a probe needs to match a person, per embedder kind: the highest of what the
#: threshold rule of vision/calibration.py gives on the East-Asian dev set for single photos and
#: for passages fused over several looks (gallery and passage protocols of vision/evaluate.py, with
#: the kind's :data:`ROUTE_CHOICES`; YuNet for the 128-d models, SCRFD for arcface) for a gallery
#: of 1,000 persons at FPIR 1e-3, never below the highest impostor score + 0.10 (docs/vision.md).
#: Fusing looks lifts the impostor tail a little (paddlex: 0.59 for photos, 0.62 for passages).  A
#: false accept opens the door to a stranger, so true accepts are won back with several enrolment
#: photos, fused frames and the quality gate, never by lowering these.  foamliu's old 0.55 sat
#: 0.003 above an East-Asian impostor pair; face_reid_0095 needs 0.78 and is not recommended.
ARCFACE_MATCH_THRESHOLD = 0.55
MOBILEFACENET_FOAMLIU_MATCH_THRESHOLD = 0.62
MOBILEFACENET_PADDLEX_MATCH_THRESHOLD = 0.62
FACE_REID_0095_MATCH_THRESHOLD = 0.78
DEFAULT_MATCH_THRESHOLDS: dict[str, float] = {
    "arcface": ARCFACE_MATCH_THRESHOLD,
    "mobilefacenet_foamliu": MOBILEFACENET_FOAMLIU_MATCH_THRESHOLD,
    "mobilefacenet_paddlex": MOBILEFACENET_PADDLEX_MATCH_THRESHOLD,
    "face_reid_0095": FACE_REID_0095_MATCH_THRESHOLD,
}
#: Lead the best person needs over the best other person.
DEFAULT_MATCH_MARGIN = 0.05


@dataclass(frozen=True)
class RouteChoices:
    """How a route makes and scores embeddings, measured per embedder kind (docs/vision.md).

    ``scoring``: a person's score from their templates (:class:`vision.gallery.Gallery`);
    ``mirror_average``: embed each face and its mirror image and average; ``refine_landmarks``:
    second detector pass on the face crop and its mirror (vision/landmarks.py).  Templates and
    probes must be made the same way: re-enrol after changing the first two."""

    scoring: str = "mean"
    mirror_average: bool = True
    refine_landmarks: bool = True


#: Per embedder kind.  The 128-d and 256-d models gain from all three (they were chosen on
#: paddlex); arcface does best with insightface's own way, plain landmarks and the best template
#: (East-Asian set, photos at each choice's own rule threshold: 89.5 % with the paddlex choices,
#: 94.4 % with these).
ROUTE_CHOICES: dict[str, RouteChoices] = {
    "arcface": RouteChoices(scoring="max", mirror_average=False, refine_landmarks=False),
    "mobilefacenet_foamliu": RouteChoices(),
    "mobilefacenet_paddlex": RouteChoices(),
    "face_reid_0095": RouteChoices(),
}


def route_choices(kind: str) -> RouteChoices:
    """The measured pipeline choices of an embedder kind (KeyError names the known kinds)."""
    try:
        return ROUTE_CHOICES[kind]
    except KeyError:
        raise KeyError(f"no route choices for embedder kind {kind!r} "
                       f"(known: {', '.join(sorted(ROUTE_CHOICES))})") from None


class Embedder(Protocol):
    """Anything that turns a face into a unit vector."""

    dim: int

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """Unit float32 vector of shape (dim,) of a crop aligned to the model's template."""
        ...

    def embed_face(self, bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Align the face at ``kps`` (5x2 frame pixels) to the model's template, then embed it."""
        ...


def default_match_threshold(kind: str) -> float:
    """The calibrated threshold of an embedder kind (KeyError names the known kinds)."""
    try:
        return DEFAULT_MATCH_THRESHOLDS[kind]
    except KeyError:
        known = ", ".join(sorted(DEFAULT_MATCH_THRESHOLDS))
        raise KeyError(
            f"no calibrated threshold for embedder kind {kind!r} (known: {known})"
        ) from None


def arcface_blob(aligned_bgr: np.ndarray) -> np.ndarray:
    """insightface ArcFace: RGB, (x - 127.5) / 127.5, NCHW."""
    return cv2.dnn.blobFromImage(
        aligned_bgr, 1.0 / ARCFACE_STD, (ALIGNED_SIZE, ALIGNED_SIZE),
        (ARCFACE_MEAN, ARCFACE_MEAN, ARCFACE_MEAN), swapRB=True,
    )


def imagenet_blob(aligned_bgr: np.ndarray) -> np.ndarray:
    """foamliu MobileFaceNet (upstream evaluation): RGB, x / 255, ImageNet mean and std, NCHW."""
    rgb = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    rgb = (rgb - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def paddlex_blob(aligned_bgr: np.ndarray) -> np.ndarray:
    """PaddleX MobileFaceNet: BGR kept (it separated people better), (x - 127.5) / 127.5, NCHW."""
    return cv2.dnn.blobFromImage(
        aligned_bgr, 1.0 / ARCFACE_STD, (ALIGNED_SIZE, ALIGNED_SIZE),
        (ARCFACE_MEAN, ARCFACE_MEAN, ARCFACE_MEAN), swapRB=False,
    )


def reid_0095_blob(aligned_bgr: np.ndarray) -> np.ndarray:
    """face-reidentification-retail-0095: BGR, raw 0-255 floats, NCHW (128x128)."""
    return cv2.dnn.blobFromImage(
        aligned_bgr, 1.0, (REID_0095_SIZE, REID_0095_SIZE), (0, 0, 0), swapRB=False
    )


Preprocess = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Layout:
    """The crop a model expects: side in pixels and the 5 landmark targets in crop pixels."""

    size: int
    template: np.ndarray


ARCFACE_LAYOUT = Layout(ALIGNED_SIZE, template(ALIGNED_SIZE))
REID_0095_LAYOUT = Layout(REID_0095_SIZE, REID_0095_TEMPLATE)


class OnnxEmbedder:
    """One ONNX embedding model with its preprocessing, one face per call.

    One face per call is required by ``w600k_mbf_int8`` (dynamic quantisation computes activation
    scales over the whole batch, so a batch changes the embeddings) and costs the float models
    nothing measurable at a gate's one or two faces per frame.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        kind: str,
        preprocess: Preprocess,
        layout: Layout = ARCFACE_LAYOUT,
        mirror: bool = False,
    ) -> None:
        self.session = session
        self.kind = kind
        self.preprocess = preprocess
        self.layout = layout
        self.mirror = mirror
        self.input_name = session.get_inputs()[0].name
        grey = _grey_face(layout.size)
        self.dim = int(self.session.run(None, {self.input_name: preprocess(grey)})[0].size)

    def embed_face(self, bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """With ``mirror``, the mean of the crop's and its mirror image's embeddings: the two
        halves of a face are lit and seen differently, and averaging both views cancels part of
        that (on the East-Asian dev set +18 of 486 genuine probes accepted with paddlex at the
        same threshold, and the impostor tail unchanged; docs/vision.md)."""
        crop = align(bgr, kps, self.layout.size, self.layout.template)
        if not self.mirror:
            return self.embed(crop)
        return normalise(self.embed(crop) + self.embed(cv2.flip(crop, 1)))

    def embed(self, aligned_bgr: np.ndarray) -> np.ndarray:
        side = self.layout.size
        if aligned_bgr.shape[:2] != (side, side):
            raise ValueError(f"expected an aligned {side}x{side} face, got {aligned_bgr.shape}")
        vector = np.asarray(
            self.session.run(None, {self.input_name: self.preprocess(aligned_bgr)})[0],
            dtype=np.float32,
        ).reshape(-1)
        return normalise(vector)


def normalise(vector: np.ndarray) -> np.ndarray:
    """Unit-length float32 copy (a zero vector stays zero rather than becoming NaN)."""
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _grey_face(size: int) -> np.ndarray:
    """A neutral input used once at start-up to learn the output size from the model itself."""
    return np.full((size, size, 3), 128, dtype=np.uint8)
