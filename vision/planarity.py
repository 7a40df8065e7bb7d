"""Motion consistency: a flat photo moves by one homography across frames; a head does not.

A photo or a phone held up to the camera is a plane.  Whatever its holder does (move it, tilt
it, bring it closer), every point of the picture moves by one homography.  A real head is not
flat: the nose stands about half an eye distance in front of the eyes and cheeks, so when the
head turns, points at different depths move differently (parallax).

The five detector landmarks are too noisy for this: on photos tilted by 10–30 degrees YuNet's
nose moves off the plane by up to 0.15 eye distances by itself (measured while writing this
module), as much as a real head turning by 15 degrees.  Points tracked with pyramidal
Lucas-Kanade optical flow inside the face box are an order of magnitude more precise, cost a few
milliseconds a frame, and need no extra model.  So per track:

- the first frame's face box gives up to ``MAX_POINTS`` corners (``goodFeaturesToTrack``), which
  are followed frame to frame;
- against the first frame, a RANSAC homography of the tracked points gives the *parallax* (the
  ``PARALLAX_PERCENTILE``-th percentile of point residuals, over the face width) and the *tilt*
  (how far that homography is from a similarity: how much a plane would have turned in depth,
  the box corners' residual over the face width).

The verdict of a track is one of:

- ``3d``: parallax at least ``live_parallax`` (parts of the face moved apart: a head);
- ``planar``: the tracked points tilted by at least ``planar_tilt`` yet stayed on one homography
  (a photo tilted in front of the camera): a spoof;
- ``still``: too little motion to tell.  A person standing still and a photo held still look the
  same, so ``still`` refuses nothing: this check vetoes moved photos, it is no proof of life.

Frames are BGR uint8 (H, W, 3); boxes x1, y1, x2, y2 in frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_POINTS = 120
MIN_POINTS = 12
#: Corner quality relative to the strongest (``goodFeaturesToTrack``): low, faces are smooth.
CORNER_QUALITY = 0.01
RANSAC_REPROJ_PX = 2.0
FORWARD_BACKWARD_PX = 0.5
PARALLAX_PERCENTILE = 90
#: Lucas-Kanade window and pyramid depth: faces move tens of pixels between frames at a gate.
FLOW_WINDOW_PX = 21
FLOW_LEVELS = 3
#: Share of the face width: the 90th-percentile point left the plane by this much (a head).
#: Simulated screens and prints tilted by hand up to 20 degrees stay at or below 0.014 with this
#: tracker; synthetic heads turned by up to 15 degrees reach 0.031 or more (bench/liveness.py).
DEFAULT_LIVE_PARALLAX = 0.02
#: Share of the face width: the plane turned in depth this much, so a head would have shown
#: parallax; below it the track is ``still``.
DEFAULT_PLANAR_TILT = 0.02
VERDICTS = ("3d", "planar", "still")


@dataclass(frozen=True)
class MotionEvidence:
    """What a track's motion says: the largest parallax and tilt seen over ``frames``."""

    verdict: str
    parallax: float
    tilt: float
    frames: int

    @property
    def refuses(self) -> bool:
        return self.verdict == "planar"


def _grey(bgr: np.ndarray) -> np.ndarray:
    return bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def homography_tilt(matrix: np.ndarray, box: np.ndarray) -> float:
    """How far ``matrix`` moves the box corners from the best similarity, over the box width."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float64)
    mapped = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), matrix).reshape(-1, 2)
    src_c, dst_c = corners - corners.mean(0), mapped - mapped.mean(0)
    a = float((src_c * dst_c).sum())
    b = float((src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0]).sum())
    rot = np.array([[a, -b], [b, a]]) / max(float((src_c**2).sum()), 1e-12)
    residual = dst_c - src_c @ rot.T
    return float(np.sqrt((residual**2).sum(1).mean())) / max(x2 - x1, 1.0)


class TrackMotion:
    """The points of one track, followed frame by frame (call :meth:`add` in time order)."""

    def __init__(self, live_parallax: float, planar_tilt: float) -> None:
        self.live_parallax = live_parallax
        self.planar_tilt = planar_tilt
        self._reference: np.ndarray | None = None
        self._points: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._box: np.ndarray | None = None
        self.frames = 0
        self.parallax = 0.0
        self.tilt = 0.0

    def add(self, bgr: np.ndarray, box: np.ndarray) -> None:
        grey = _grey(bgr)
        self.frames += 1
        if self._reference is None or self._points is None or self._previous is None:
            self._start(grey, box)
            return
        window = (FLOW_WINDOW_PX, FLOW_WINDOW_PX)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            self._previous, grey, self._points, np.empty_like(self._points), winSize=window,
            maxLevel=FLOW_LEVELS,
        )
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(
            grey, self._previous, moved, np.empty_like(moved), winSize=window, maxLevel=FLOW_LEVELS
        )
        # Forward-backward check: a point that does not track back to where it came from slid
        # along an edge or onto the background; its residual would read as parallax.
        round_trip = np.linalg.norm((back - self._points).reshape(-1, 2), axis=1)
        kept = (status.reshape(-1) == 1) & (status_back.reshape(-1) == 1)
        kept &= round_trip < FORWARD_BACKWARD_PX
        self._previous = grey
        self._reference, self._points = self._reference[kept], moved[kept]
        if len(self._points) < MIN_POINTS:
            # Lost the face's texture (occlusion, blur): start again from this frame.
            self._start(grey, box)
            return
        matrix, _ = cv2.findHomography(
            self._reference, self._points, cv2.RANSAC, RANSAC_REPROJ_PX
        )
        if matrix is None:
            return
        assert self._box is not None
        width = max(float(self._box[2] - self._box[0]), 1.0)
        predicted = cv2.perspectiveTransform(self._reference, matrix)
        residual = np.linalg.norm((predicted - self._points).reshape(-1, 2), axis=1)
        parallax = float(np.percentile(residual, PARALLAX_PERCENTILE)) / width
        self.parallax = max(self.parallax, parallax)
        self.tilt = max(self.tilt, homography_tilt(matrix, self._box))

    def _start(self, grey: np.ndarray, box: np.ndarray) -> None:
        height, width = grey.shape
        x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
        x2, y2 = min(int(box[2]), width), min(int(box[3]), height)
        mask = np.zeros_like(grey)
        mask[y1:y2, x1:x2] = 255
        side = max(x2 - x1, 1)
        points = cv2.goodFeaturesToTrack(
            grey, MAX_POINTS, CORNER_QUALITY, max(2.0, side / 30), mask=mask
        )
        self._previous = grey
        self._box = np.asarray(box, np.float64)
        if points is None or len(points) < MIN_POINTS:
            self._reference = self._points = None
            return
        self._reference = points.astype(np.float32)
        self._points = self._reference.copy()

    def evidence(self) -> MotionEvidence:
        if self.parallax >= self.live_parallax:
            verdict = "3d"
        elif self.tilt >= self.planar_tilt:
            verdict = "planar"
        else:
            verdict = "still"
        return MotionEvidence(verdict, self.parallax, self.tilt, self.frames)


class MotionConsistency:
    """Factory of per-track motion state with the configured limits."""

    def __init__(
        self,
        *,
        live_parallax: float = DEFAULT_LIVE_PARALLAX,
        planar_tilt: float = DEFAULT_PLANAR_TILT,
    ) -> None:
        if not 0 < planar_tilt < 1 or not 0 < live_parallax < 1:
            raise ValueError("live_parallax and planar_tilt are shares of the face width in (0, 1)")
        self.live_parallax = live_parallax
        self.planar_tilt = planar_tilt

    def track(self) -> TrackMotion:
        return TrackMotion(self.live_parallax, self.planar_tilt)
