"""Face quality: is this face good enough to match, or at least to keep as a portrait?

Small models are weakest exactly where a gate camera is worst (small, blurred, turned, badly lit
faces), and a poor probe raises impostor scores as much as it lowers genuine ones.  So the gate is
strict for recognition and looser for portraits, which only need to show a person to an officer.

- ``face_px``: side, in frame pixels, of the square the aligned 112x112 crop is taken from, from the
  landmarks (inter-eye distance and eye-to-mouth distance, whichever is larger, so turning the head
  one way does not shrink it).  Below 112 the embedder sees an upsampled face.
- ``sharpness``: variance of the Laplacian of the face box resized to a fixed 112x112 grey patch
  and scaled to a fixed contrast (standard deviation ``REFERENCE_CONTRAST``), so the number means
  the same at any face size and any exposure: without the contrast scaling a dark (night, IR) face
  read as blurred and was refused although every model still matches it.
- ``yaw``/``pitch``: landmark proxies in [-1, 1] (0 = frontal); not angles.
- ``brightness``: mean grey level (0-255) of the face box.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vision.align import ALIGNED_SIZE, ARCFACE_TEMPLATE
from vision.detect import Face

_EYE_L, _EYE_R, _NOSE, _MOUTH_L, _MOUTH_R = range(5)
#: Template distances in the 112 crop: eye to eye, and eye midpoint to mouth midpoint.
TEMPLATE_EYE_PX = float(ARCFACE_TEMPLATE[_EYE_R, 0] - ARCFACE_TEMPLATE[_EYE_L, 0])
TEMPLATE_EYE_MOUTH_PX = float(
    (ARCFACE_TEMPLATE[_MOUTH_L, 1] + ARCFACE_TEMPLATE[_MOUTH_R, 1]) / 2
    - (ARCFACE_TEMPLATE[_EYE_L, 1] + ARCFACE_TEMPLATE[_EYE_R, 1]) / 2
)
#: Where the nose tip sits between the eye line (0) and the mouth line (1) in a frontal face.
TEMPLATE_NOSE_RATIO = float(
    (ARCFACE_TEMPLATE[_NOSE, 1] - (ARCFACE_TEMPLATE[_EYE_L, 1] + ARCFACE_TEMPLATE[_EYE_R, 1]) / 2)
    / TEMPLATE_EYE_MOUTH_PX
)
SHARPNESS_PATCH_PX = ALIGNED_SIZE
#: Yaw proxy ~ tan(yaw) for a typical nose depth: 0.75 is roughly 35 degrees, past which the
#: small embedders lose accuracy and MiniFASNet (trained under 30 degrees) becomes unreliable.
MAX_ABS_YAW = 0.75
#: The detectors place the nose tip slightly differently (SCRFD reads frontal faces around +0.3),
#: so the pitch limit is looser.
MAX_ABS_PITCH = 0.6


#: Grey-level standard deviation every sharpness patch is scaled to (a typical well-lit face box).
REFERENCE_CONTRAST = 40.0
#: Median pitch proxy each detector gives the near-frontal faces of the East-Asian dev set (273
#: photos; YuNet 5th-95th percentile 0.03-0.23, SCRFD -0.20-0.44: SCRFD's nose is noisier).
#: Subtracted before the pitch limit, so the limit means the same for both detectors.
NOSE_PITCH_OFFSET: dict[str, float] = {"yunet": 0.12, "scrfd": 0.13}


@dataclass(frozen=True)
class Quality:
    face_px: float
    sharpness: float
    yaw: float
    pitch: float
    brightness: float

    @property
    def rank(self) -> float:
        """One number to pick a track's best frame: bigger, sharper and more frontal is better."""
        size = min(self.face_px / ALIGNED_SIZE, 1.0)
        sharp = min(self.sharpness / 100.0, 1.0)
        frontal = max(0.0, 1.0 - abs(self.yaw)) * max(0.0, 1.0 - abs(self.pitch))
        return size * (0.5 + 0.5 * sharp) * frontal


@dataclass(frozen=True)
class QualityThresholds:
    """Minimums for matching a face and, looser, for keeping it as a portrait.

    Defaults equal the config defaults (``vision.quality``); the pose and brightness limits apply
    to recognition only: a turned or dim face still makes a useful portrait.  Calibrated on
    degraded copies of the East-Asian dev set with paddlex (mean genuine score loss, vision.md):
    faces of 60 px lose 0.017 and of 45 px 0.049 (minimum 64); Gaussian blur of 1.2 px (sharpness
    median 31) loses 0.019 and of 2.4 px (median 12) 0.113 (minimum 20); faces darkened to a
    brightness of 38 lose 0.037 and to 18 lose 0.126 (minimum 25).
    """

    min_face_px_recognise: float = 64.0
    min_face_px_capture: float = 40.0
    min_sharpness_recognise: float = 20.0
    min_sharpness_capture: float = 10.0
    max_abs_yaw: float = MAX_ABS_YAW
    max_abs_pitch: float = MAX_ABS_PITCH
    min_brightness: float = 25.0
    max_brightness: float = 225.0

    def recognition_problems(self, q: Quality) -> list[str]:
        """Why ``q`` is not good enough to match (empty when it is)."""
        problems = []
        if q.face_px < self.min_face_px_recognise:
            problems.append(_too_small(q, self.min_face_px_recognise))
        if q.sharpness < self.min_sharpness_recognise:
            problems.append(_too_blurred(q, self.min_sharpness_recognise))
        if abs(q.yaw) > self.max_abs_yaw:
            problems.append(f"face turned sideways (yaw {q.yaw:+.2f})")
        if abs(q.pitch) > self.max_abs_pitch:
            problems.append(f"face tilted up or down (pitch {q.pitch:+.2f})")
        if not self.min_brightness <= q.brightness <= self.max_brightness:
            problems.append(f"face too dark or too bright (brightness {q.brightness:.0f})")
        return problems

    def capture_problems(self, q: Quality) -> list[str]:
        """Why ``q`` is not worth keeping as a portrait (empty when it is)."""
        problems = []
        if q.face_px < self.min_face_px_capture:
            problems.append(_too_small(q, self.min_face_px_capture))
        if q.sharpness < self.min_sharpness_capture:
            problems.append(_too_blurred(q, self.min_sharpness_capture))
        return problems

    def recognisable(self, q: Quality) -> bool:
        return not self.recognition_problems(q)

    def capturable(self, q: Quality) -> bool:
        return not self.capture_problems(q)


def _too_small(q: Quality, minimum: float) -> str:
    return f"face too small ({q.face_px:.0f} px < {minimum:.0f})"


def _too_blurred(q: Quality, minimum: float) -> str:
    return f"face too blurred (sharpness {q.sharpness:.0f} < {minimum:.0f})"


def face_px(kps: np.ndarray) -> float:
    """Side of the aligned crop's source square, from the landmarks (see the module docstring)."""
    kps = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    eye_px = float(np.linalg.norm(kps[_EYE_R] - kps[_EYE_L]))
    eye_mid = (kps[_EYE_L] + kps[_EYE_R]) / 2
    mouth_mid = (kps[_MOUTH_L] + kps[_MOUTH_R]) / 2
    eye_mouth_px = float(np.linalg.norm(mouth_mid - eye_mid))
    return max(
        eye_px * ALIGNED_SIZE / TEMPLATE_EYE_PX,
        eye_mouth_px * ALIGNED_SIZE / TEMPLATE_EYE_MOUTH_PX,
    )


def pose(kps: np.ndarray) -> tuple[float, float]:
    """Yaw and pitch proxies in [-1, 1] from where the nose sits between eyes and mouth."""
    kps = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    left = abs(kps[_NOSE, 0] - kps[_EYE_L, 0])
    right = abs(kps[_EYE_R, 0] - kps[_NOSE, 0])
    yaw = (left - right) / max(left + right, 1e-6)
    eye_y = (kps[_EYE_L, 1] + kps[_EYE_R, 1]) / 2
    mouth_y = (kps[_MOUTH_L, 1] + kps[_MOUTH_R, 1]) / 2
    ratio = (kps[_NOSE, 1] - eye_y) / max(mouth_y - eye_y, 1e-6)
    pitch = (ratio - TEMPLATE_NOSE_RATIO) / TEMPLATE_NOSE_RATIO
    return float(np.clip(yaw, -1, 1)), float(np.clip(pitch, -1, 1))


def face_patch(bgr: np.ndarray, face: Face) -> np.ndarray:
    """The face box clipped to the frame (may be empty for a box entirely outside)."""
    height, width = bgr.shape[:2]
    x1, y1 = max(int(face.box[0]), 0), max(int(face.box[1]), 0)
    x2, y2 = min(int(np.ceil(face.box[2])), width), min(int(np.ceil(face.box[3])), height)
    return bgr[y1:y2, x1:x2]


def assess(bgr: np.ndarray, face: Face, *, detector: str | None = None) -> Quality:
    """Measure one detected face in its frame.

    ``detector`` is the kind whose landmarks ``face`` carries ('scrfd' or 'yunet'): the pitch
    proxy is corrected for where that detector places the nose tip on frontal faces
    (``NOSE_PITCH_OFFSET``); None leaves it uncorrected."""
    patch = face_patch(bgr, face)
    yaw, pitch = pose(face.kps)
    pitch = float(np.clip(pitch - NOSE_PITCH_OFFSET.get(detector or "", 0.0), -1, 1))
    if patch.size == 0:
        return Quality(face_px(face.kps), 0.0, yaw, pitch, 0.0)
    grey = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY) if patch.ndim == 3 else patch
    side = (SHARPNESS_PATCH_PX, SHARPNESS_PATCH_PX)
    resized = cv2.resize(grey, side, interpolation=cv2.INTER_AREA).astype(np.float64)
    contrast = float(resized.std())
    scaled = resized * (REFERENCE_CONTRAST / contrast) if contrast > 1.0 else resized
    sharpness = float(cv2.Laplacian(scaled, cv2.CV_64F).var())
    return Quality(face_px(face.kps), sharpness, yaw, pitch, float(grey.mean()))
