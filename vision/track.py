"""Face tracking: one person passing the camera is one track.

Without tracks every frame is a new face: a resident would be granted fifteen times a second and
a passer-by captured fifteen times.  Tracks let the pipeline ask "have K frames of *this* person
agreed?", keep one best portrait per passage, and embed a face only when a better view arrives.

Association is greedy on box overlap (IoU) with a centroid fallback: at 15 fps a face walking
across a gate camera moves less than its own width between frames, but a frame dropped by the
latest-frame-wins hand-off can leave boxes that barely overlap, so a centre within
``max_jump`` box sizes of the track's expected centre still continues it.  Each track keeps a
smoothed velocity, and a face is compared with where its track is expected at the frame's time
(last box moved by velocity × time since): the pipeline detects only every few frames while every
face in view is decided, and a person walking across the camera then moves more than a face
width between two detections.  A track ends when it has not been seen for ``timeout_seconds``
(frame timestamps, so dropped frames do not shorten it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vision.detect import Face

DEFAULT_MIN_IOU = 0.2
#: Centre distance, in units of the larger box diagonal, that still continues a track.
DEFAULT_MAX_JUMP = 0.6
DEFAULT_TIMEOUT_SECONDS = 1.0
#: Weight of the newest box step in a track's velocity (exponential smoothing): detections
#: jitter by a few pixels, which at 15 fps would be tens of pixels per second on their own.
VELOCITY_SMOOTHING = 0.5


@dataclass(eq=False)
class Track:
    """A face followed across frames (the pipeline keeps its own state per ``id``).

    ``velocity``: of the box corners, pixels per second (float32, shape (4,); zero until the
    track's second frame)."""

    id: int
    box: np.ndarray
    first_ts: float
    last_ts: float
    frames: int = 1
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.float32))

    def expected_box(self, ts: float) -> np.ndarray:
        """Where the box should be at ``ts`` if the face kept its pace."""
        return self.box + self.velocity * np.float32(ts - self.last_ts)

    def move(self, box: np.ndarray, ts: float) -> None:
        """The face seen at ``box`` at ``ts`` (later than ``last_ts``)."""
        elapsed = ts - self.last_ts
        if elapsed > 0:
            step = (box - self.box) / np.float32(elapsed)
            self.velocity = (
                step if self.frames == 1
                else VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * self.velocity
            ).astype(np.float32)
        self.box = box
        self.last_ts = ts
        self.frames += 1


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1y1x2y2 boxes."""
    w = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    h = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = w * h
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def _diagonal(box: np.ndarray) -> float:
    return float(np.hypot(box[2] - box[0], box[3] - box[1]))


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)


class Tracker:
    """Greedy IoU/centroid association of each frame's faces with the open tracks."""

    def __init__(
        self,
        *,
        min_iou: float = DEFAULT_MIN_IOU,
        max_jump: float = DEFAULT_MAX_JUMP,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.min_iou = min_iou
        self.max_jump = max_jump
        self.timeout_seconds = timeout_seconds
        self.tracks: list[Track] = []
        self._next_id = 1

    def _affinity(self, expected: np.ndarray, face: Face) -> float:
        """How well ``face`` continues a track expected at box ``expected``: IoU in
        (min_iou, 1], a jump in (0, min_iou), 0 for no match."""
        overlap = iou(expected, face.box)
        if overlap >= self.min_iou:
            return overlap
        reach = self.max_jump * max(_diagonal(expected), _diagonal(face.box))
        distance = float(np.linalg.norm(_centre(face.box) - _centre(expected)))
        if reach > 0 and distance <= reach:
            return self.min_iou * (1.0 - distance / reach) * 0.999 + 1e-6
        return 0.0

    def update(self, faces: list[Face], ts: float) -> tuple[list[tuple[Track, Face]], list[Track]]:
        """Assign this frame's faces to tracks (new faces open new tracks).

        Returns the (track, face) pairs of this frame and the tracks that ended (unseen for
        longer than the timeout)."""
        ended = self.expire(ts)
        expected = [track.expected_box(ts) for track in self.tracks]
        pairs = sorted(
            (
                (self._affinity(expected[t], face), t, f)
                for t in range(len(self.tracks))
                for f, face in enumerate(faces)
            ),
            key=lambda item: -item[0],
        )
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        assigned: list[tuple[Track, Face]] = []
        for affinity, t, f in pairs:
            if affinity <= 0:
                break
            if t in used_tracks or f in used_faces:
                continue
            used_tracks.add(t)
            used_faces.add(f)
            track = self.tracks[t]
            track.move(faces[f].box, ts)
            assigned.append((track, faces[f]))
        for f, face in enumerate(faces):
            if f not in used_faces:
                track = Track(self._next_id, face.box, ts, ts)
                self._next_id += 1
                self.tracks.append(track)
                assigned.append((track, face))
        return assigned, ended

    def expire(self, ts: float) -> list[Track]:
        """Close the tracks not seen for longer than the timeout."""
        ended = [t for t in self.tracks if ts - t.last_ts > self.timeout_seconds]
        if ended:
            self.tracks = [t for t in self.tracks if t not in ended]
        return ended

    def close_all(self) -> list[Track]:
        """End every open track (camera stopped or lost)."""
        ended, self.tracks = self.tracks, []
        return ended
