"""Near-infrared evidence: a live face must also be there, bright, in the NIR camera's frame.

Dual-lens gate camera modules pair a colour sensor with a monochrome one behind an 850 nm
illuminator.  Skin reflects that light well, so a live face shows up bright and with its shape;
a phone or tablet screen emits no NIR (its face vanishes, only the dark panel and a glare spot
remain), and dye-ink prints are largely transparent to it (the picture fades to the paper).

Per RGB face: the NIR frame closest in time (within ``max_skew_seconds``) is taken from
:class:`NirFrames`; the RGB face box is mapped into it through the calibration homography
(:class:`NirCalibration`, measured once by ``menjin camera calibrate``); a face must be detected
near the mapped spot (centre within ``max_offset`` of the face width, size within
``SIZE_RATIO_RANGE``), the mean grey of its box (0–1, the *reflectance*) must reach
``min_reflectance``, and its *contrast* (standard deviation over mean of the box) must reach
``min_contrast``: eyes, brows and hair stay dark in NIR while skin is bright, whereas a faded
print leaves only a faint ghost of the face on bright paper (which a detector may still find).

Limits: carbon-toner prints and some masks do show in NIR; the other checks still apply to them.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.detect import Detector, Face

#: NIR frames kept for pairing (about 2 s at 15 fps).
BUFFER_FRAMES = 30
DEFAULT_MAX_SKEW_SECONDS = 0.06
DEFAULT_MAX_OFFSET = 0.35
DEFAULT_MIN_REFLECTANCE = 0.25
DEFAULT_MIN_CONTRAST = 0.12
#: The NIR face's width over the mapped RGB face's width.
SIZE_RATIO_RANGE = (0.6, 1.6)
#: The detector sees the mapped face box grown by this factor on each side (cheap, small input).
ROI_GROWTH = 1.0
CALIBRATION_VERSION = 1
MIN_CALIBRATION_POINTS = 8


class NirError(Exception):
    """A calibration that cannot be loaded or fitted (the message says what to do)."""


@dataclass(frozen=True)
class NirCalibration:
    """Homography (3, 3) from RGB frame pixels to NIR frame pixels; ``error_px`` its RMS fit."""

    matrix: np.ndarray
    error_px: float
    points: int

    def map_box(self, box: np.ndarray) -> np.ndarray:
        """x1, y1, x2, y2 of the RGB box's corners mapped into the NIR frame (their hull)."""
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        corners = np.array([[[x1, y1]], [[x2, y1]], [[x2, y2]], [[x1, y2]]], np.float64)
        mapped = cv2.perspectiveTransform(corners, self.matrix).reshape(-1, 2)
        return np.array([*mapped.min(0), *mapped.max(0)], np.float32)

    def save(self, path: Path) -> None:
        doc = {
            "version": CALIBRATION_VERSION,
            "rgb_to_nir": np.asarray(self.matrix, float).round(9).tolist(),
            "error_px": round(self.error_px, 3),
            "points": self.points,
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> NirCalibration:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NirError(
                f"no NIR calibration at {path}: run `menjin camera calibrate` with a person in "
                "front of the camera"
            ) from None
        except (OSError, ValueError) as exc:
            raise NirError(f"NIR calibration {path} unreadable ({exc}): run "
                           "`menjin camera calibrate` again") from None
        matrix = np.asarray(doc.get("rgb_to_nir") if isinstance(doc, dict) else None, float)
        if (
            not isinstance(doc, dict)
            or doc.get("version") != CALIBRATION_VERSION
            or matrix.shape != (3, 3)
            or not np.isfinite(matrix).all()
        ):
            raise NirError(f"NIR calibration {path} is not a version {CALIBRATION_VERSION} "
                           "calibration: run `menjin camera calibrate` again")
        return cls(matrix, float(doc.get("error_px", 0.0)), int(doc.get("points", 0)))

    @classmethod
    def fit(cls, rgb_points: np.ndarray, nir_points: np.ndarray) -> NirCalibration:
        """Fit from landmarks (N, 2) of faces seen by both cameras (affine, RANSAC)."""
        rgb = np.asarray(rgb_points, np.float32).reshape(-1, 2)
        nir = np.asarray(nir_points, np.float32).reshape(-1, 2)
        if len(rgb) != len(nir) or len(rgb) < MIN_CALIBRATION_POINTS:
            raise NirError(
                f"calibration needs at least {MIN_CALIBRATION_POINTS} landmark pairs, got "
                f"{min(len(rgb), len(nir))}: was a face visible to both cameras?"
            )
        # Affine, not a full homography: two lenses side by side differ by scale and shift,
        # and the landmarks of faces at the gate cluster mid-frame, where a homography's
        # perspective terms are poorly determined and extrapolate badly to the frame's edges.
        affine, inliers = cv2.estimateAffine2D(rgb, nir, method=cv2.RANSAC,
                                               ransacReprojThreshold=5.0)
        if affine is None:
            raise NirError("the RGB and NIR faces do not line up: are both cameras aimed at "
                           "the same spot?")
        matrix = np.vstack([affine, [0.0, 0.0, 1.0]])
        mapped = cv2.perspectiveTransform(rgb.reshape(-1, 1, 2).astype(np.float64), matrix)
        error = float(np.sqrt(((mapped.reshape(-1, 2) - nir) ** 2).sum(1).mean()))
        return cls(matrix, error, int(inliers.sum()))


class NirFrames:
    """The latest NIR frames with their capture times (monotonic s); thread-safe.

    The NIR camera's grabber calls :meth:`push`; the vision thread asks :meth:`nearest`.
    """

    def __init__(self, maxlen: int = BUFFER_FRAMES) -> None:
        self._frames: deque[tuple[float, np.ndarray]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def push(self, image: np.ndarray, ts: float) -> None:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        with self._lock:
            self._frames.append((ts, grey))

    def nearest(self, ts: float, max_skew_seconds: float) -> np.ndarray | None:
        """The grey NIR frame taken closest to ``ts``, if within ``max_skew_seconds``."""
        with self._lock:
            frames = list(self._frames)
        if not frames:
            return None
        best_ts, best = min(frames, key=lambda item: abs(item[0] - ts))
        return best if abs(best_ts - ts) <= max_skew_seconds else None


@dataclass(frozen=True)
class NirEvidence:
    """One RGB frame's NIR check: ``live`` when a bright face was found at the mapped spot."""

    live: bool
    found: bool
    reflectance: float
    offset: float
    contrast: float = 0.0


class NirUnavailable:
    """The NIR check of a camera that cannot run it (no calibration): every face fails it.

    Fail closed without stopping the vision process: the door configured for NIR liveness
    refuses faces (cards keep working) until the installer calibrates; ``reason`` says why.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def evaluate(self, face: Face, ts: float) -> NirEvidence:
        """Never live: no NIR face can be mapped without the calibration."""
        return NirEvidence(live=False, found=False, reflectance=0.0, offset=0.0)


class NirCheck:
    """The NIR test of one RGB face (see the module docstring)."""

    def __init__(
        self,
        detector: Detector,
        calibration: NirCalibration,
        frames: NirFrames,
        *,
        max_skew_seconds: float = DEFAULT_MAX_SKEW_SECONDS,
        max_offset: float = DEFAULT_MAX_OFFSET,
        min_reflectance: float = DEFAULT_MIN_REFLECTANCE,
        min_contrast: float = DEFAULT_MIN_CONTRAST,
    ) -> None:
        if not 0 < min_reflectance < 1:
            raise ValueError(f"min_reflectance must be in (0, 1), got {min_reflectance}")
        self.detector = detector
        self.calibration = calibration
        self.frames = frames
        self.max_skew_seconds = max_skew_seconds
        self.max_offset = max_offset
        self.min_reflectance = min_reflectance
        self.min_contrast = min_contrast

    def evaluate(self, face: Face, ts: float) -> NirEvidence | None:
        """The evidence for ``face`` (RGB frame at ``ts``); None when no NIR frame pairs with it."""
        nir = self.frames.nearest(ts, self.max_skew_seconds)
        if nir is None:
            return None
        return self.evaluate_frame(nir, face)

    def evaluate_frame(self, nir: np.ndarray, face: Face) -> NirEvidence:
        """The evidence for ``face`` against one grey NIR frame (H, W) uint8."""
        mapped = self.calibration.map_box(face.box)
        width = max(float(mapped[2] - mapped[0]), 1.0)
        height = max(float(mapped[3] - mapped[1]), 1.0)
        grow_x, grow_y = width * ROI_GROWTH, height * ROI_GROWTH
        rows, cols = nir.shape[:2]
        x1, y1 = int(mapped[0] - grow_x), int(mapped[1] - grow_y)
        x2, y2 = int(mapped[2] + grow_x), int(mapped[3] + grow_y)
        inside = nir[max(y1, 0) : min(y2, rows), max(x1, 0) : min(x2, cols)]
        if inside.shape[0] < 8 or inside.shape[1] < 8:
            return NirEvidence(False, False, 0.0, float("inf"))
        # A face cut by the frame edge sits on the crop's edge, where detectors miss it: pad
        # the crop back to its full size (replicated edge) instead.
        padded = cv2.copyMakeBorder(
            np.ascontiguousarray(inside), max(-y1, 0), max(y2 - rows, 0), max(-x1, 0),
            max(x2 - cols, 0), cv2.BORDER_REPLICATE,
        )
        roi = cv2.cvtColor(padded, cv2.COLOR_GRAY2BGR)
        centre = np.array([(mapped[0] + mapped[2]) / 2 - x1, (mapped[1] + mapped[3]) / 2 - y1])
        best: tuple[float, Face] | None = None
        for candidate in self.detector.detect(roi):
            offset = float(np.linalg.norm(
                np.array([(candidate.box[0] + candidate.box[2]) / 2,
                          (candidate.box[1] + candidate.box[3]) / 2]) - centre
            )) / width
            ratio = candidate.width / width
            if SIZE_RATIO_RANGE[0] <= ratio <= SIZE_RATIO_RANGE[1] and (
                best is None or offset < best[0]
            ):
                best = (offset, candidate)
        if best is None or best[0] > self.max_offset:
            return NirEvidence(False, False, 0.0, best[0] if best else float("inf"))
        offset, found = best
        fx1, fy1 = max(int(found.box[0]), 0), max(int(found.box[1]), 0)
        fx2, fy2 = min(int(found.box[2]), roi.shape[1]), min(int(found.box[3]), roi.shape[0])
        patch = roi[fy1:fy2, fx1:fx2, 0]
        if not patch.size:
            return NirEvidence(False, True, 0.0, offset)
        reflectance = float(patch.mean()) / 255.0
        contrast = float(patch.std()) / max(float(patch.mean()), 1.0)
        live = reflectance >= self.min_reflectance and contrast >= self.min_contrast
        return NirEvidence(live, True, reflectance, offset, contrast)


def landmark_pairs(
    pairs: Sequence[tuple[Face | None, Face | None]],
) -> tuple[np.ndarray, np.ndarray]:
    """Stack the landmarks of frames where both cameras saw a face: (N*5, 2) RGB and NIR."""
    rgb = [p[0].kps for p in pairs if p[0] is not None and p[1] is not None]
    nir = [p[1].kps for p in pairs if p[0] is not None and p[1] is not None]
    if not rgb:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    return np.concatenate(rgb), np.concatenate(nir)
