"""Liveness (anti-spoofing): how likely a detected face is a real person in front of the camera.

The check is pluggable (``Liveness``) so a door can run without a liveness model (the daemon then
says so at start-up and the config can demand card+face).  ``MiniFasLiveness`` follows
Silent-Face-Anti-Spoofing's own method: each model sees the face box scaled by its factor (2.7 or
4.0) around the centre, shrunk when that leaves the frame and shifted to stay inside, resized to
80x80, as raw BGR 0-255 floats; the softmax outputs of the models are averaged and class 1 is
"live".  Upstream notes the models expect camera captures and faces turned less than 30 degrees.

``InsightfaceLiveness`` runs insightface's separately distributed liveness addon (``liveness.onnx``)
when an installer provides its file: an 80x80 RGB crop aligned on five landmarks, x/255, whose
single output is already P(live).  menjin never downloads it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from vision.align import similarity_transform
from vision.detect import Face

log = logging.getLogger(__name__)

MINIFAS_INPUT_PX = 80
MINIFAS_LIVE_CLASS = 1
#: Crop scale of each upstream model, keyed by the prefix of its file name (upstream's convention).
MINIFAS_CROP_SCALES = {"2.7": 2.7, "4_0_0": 4.0}
#: P(live) below this refuses a face grant (config ``vision.liveness.threshold``).
DEFAULT_LIVENESS_THRESHOLD = 0.5


class Liveness(Protocol):
    """Anything that scores a detected face as live."""

    def score(self, bgr: np.ndarray, face: Face) -> float:
        """Probability in [0, 1] that ``face`` in ``bgr`` is a live person."""
        ...


@dataclass(frozen=True)
class LivenessVerdict:
    """P(live) of one face and whether it clears the threshold (``live`` False = refuse a grant)."""

    score: float
    live: bool


class LivenessGate:
    """A liveness model with the door's threshold: the question asked before any face grant."""

    def __init__(self, liveness: Liveness, threshold: float = DEFAULT_LIVENESS_THRESHOLD) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"liveness threshold must be between 0 and 1, got {threshold}")
        self.liveness = liveness
        self.threshold = threshold

    def check(self, bgr: np.ndarray, face: Face) -> LivenessVerdict:
        score = self.liveness.score(bgr, face)
        return LivenessVerdict(score, score >= self.threshold)


def scaled_box(
    frame_wh: tuple[int, int], box: np.ndarray, scale: float
) -> tuple[int, int, int, int]:
    """Upstream ``CropImage._get_new_box``: x1, y1, x2, y2 (inclusive) of the enlarged crop."""
    src_w, src_h = frame_wh
    x, y = float(box[0]), float(box[1])
    box_w = max(float(box[2] - box[0]), 1.0)
    box_h = max(float(box[3] - box[1]), 1.0)
    scale = min((src_h - 1) / box_h, (src_w - 1) / box_w, scale)
    new_w, new_h = box_w * scale, box_h * scale
    centre_x, centre_y = x + box_w / 2, y + box_h / 2
    left, top = centre_x - new_w / 2, centre_y - new_h / 2
    right, bottom = centre_x + new_w / 2, centre_y + new_h / 2
    if left < 0:
        right -= left
        left = 0
    if top < 0:
        bottom -= top
        top = 0
    if right > src_w - 1:
        left -= right - src_w + 1
        right = src_w - 1
    if bottom > src_h - 1:
        top -= bottom - src_h + 1
        bottom = src_h - 1
    return int(left), int(top), int(right), int(bottom)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


class MiniFasLiveness:
    """The two Silent-Face MiniFASNet models, softmax averaged; score = P(class 1, live)."""

    def __init__(self, models: Sequence[tuple[ort.InferenceSession, float]]) -> None:
        if not models:
            raise ValueError("MiniFasLiveness needs at least one (session, crop scale) pair")
        self.models = [(session, session.get_inputs()[0].name, scale) for session, scale in models]

    def crop(self, bgr: np.ndarray, face: Face, scale: float) -> np.ndarray:
        """The 80x80 input of the model with crop ``scale``."""
        x1, y1, x2, y2 = scaled_box((bgr.shape[1], bgr.shape[0]), face.box, scale)
        patch = bgr[max(y1, 0) : y2 + 1, max(x1, 0) : x2 + 1]
        return cv2.resize(patch, (MINIFAS_INPUT_PX, MINIFAS_INPUT_PX))

    def probabilities(self, bgr: np.ndarray, face: Face) -> list[float]:
        """P(live) of each model on its own (for calibration and reports)."""
        result = []
        for session, input_name, scale in self.models:
            patch = self.crop(bgr, face, scale)
            blob = patch.astype(np.float32).transpose(2, 0, 1)[None]
            logits = np.asarray(session.run(None, {input_name: blob})[0], dtype=np.float64)
            result.append(float(_softmax(logits)[0, MINIFAS_LIVE_CLASS]))
        return result

    def score(self, bgr: np.ndarray, face: Face) -> float:
        return float(np.mean(self.probabilities(bgr, face)))


#: Landmark template of the insightface liveness addon's 80x80 crop (``addons/liveness.py``).
ADDON_LANDMARKS = np.array(
    [[32.03, 38.06], [47.89, 37.98], [40.01, 47.08], [33.50, 56.36], [46.63, 56.29]],
    dtype=np.float32,
)
ADDON_INPUT_PX = 80
#: The addon refuses crops with more than this share outside the frame (too close to the border).
ADDON_MAX_OUTSIDE = 0.30


class InsightfaceLiveness:
    """insightface's liveness addon; a face too close to the frame border scores 0 (not live)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if (
            len(inputs) != 1
            or len(outputs) != 1
            or list(inputs[0].shape[1:]) != [3, ADDON_INPUT_PX, ADDON_INPUT_PX]
            or len(outputs[0].shape) != 1
        ):
            raise ValueError(
                "not insightface's liveness addon: expected input [N, 3, 80, 80] and one "
                "output [N] (a live probability)"
            )
        self.session = session
        self.input_name = inputs[0].name

    def score(self, bgr: np.ndarray, face: Face) -> float:
        matrix = similarity_transform(face.kps, ADDON_LANDMARKS)
        size = (ADDON_INPUT_PX, ADDON_INPUT_PX)
        inside = cv2.warpAffine(np.ones(bgr.shape[:2], np.float32), matrix, size)
        outside = 1.0 - float(inside.mean())
        if outside > ADDON_MAX_OUTSIDE:
            log.debug("liveness: face too near the frame border (%.0f%% outside)", outside * 100)
            return 0.0
        crop = cv2.warpAffine(bgr, matrix, size, borderMode=cv2.BORDER_REPLICATE)
        blob = np.ascontiguousarray(crop[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0
        return float(np.asarray(self.session.run(None, {self.input_name: blob})[0]).reshape(-1)[0])
