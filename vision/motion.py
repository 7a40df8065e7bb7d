"""Motion gate: skip the detector while nothing moves in front of the camera.

A gate camera shows an empty scene most of the day, and running the detector on every one of
those frames is what makes face capture too expensive for a small board.  The gate samples the
frame at a low resolution (every n-th pixel of one channel: no resize, no colour conversion),
blurs it a little against sensor noise and compares it with the previous sample.  An idle frame
thus costs a strided copy and two tiny array operations, well under a millisecond.

The pipeline keeps detecting while a face is being tracked (a resident standing still in front of
the camera does not move), and every ``idle_detect_seconds`` anyway, so a person who entered too
slowly to trip the gate is still found.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Width of the sampled image; 64 columns still see a face entering at gate distance.
DEFAULT_SAMPLE_WIDTH_PX = 64
#: Grey-level change of one sample that counts as changed (sensor noise stays below it).
DEFAULT_PIXEL_DELTA = 18
#: Share of samples that must change to call it motion (a person entering changes far more).
DEFAULT_CHANGED_FRACTION = 0.01
_GREEN = 1


class MotionGate:
    """Frame differencing on a strided, slightly blurred green channel."""

    def __init__(
        self,
        *,
        sample_width_px: int = DEFAULT_SAMPLE_WIDTH_PX,
        pixel_delta: int = DEFAULT_PIXEL_DELTA,
        changed_fraction: float = DEFAULT_CHANGED_FRACTION,
    ) -> None:
        if sample_width_px < 8:
            raise ValueError(f"sample width must be at least 8 px, got {sample_width_px}")
        self.sample_width_px = sample_width_px
        self.pixel_delta = pixel_delta
        self.changed_fraction = changed_fraction
        self._previous: np.ndarray | None = None
        self.last_changed_fraction = 0.0

    def sample(self, bgr: np.ndarray) -> np.ndarray:
        """The low-resolution grey sample of a frame."""
        step = max(1, bgr.shape[1] // self.sample_width_px)
        channel = bgr[::step, ::step, _GREEN] if bgr.ndim == 3 else bgr[::step, ::step]
        return cv2.blur(np.ascontiguousarray(channel), (3, 3))

    def moved(self, bgr: np.ndarray) -> bool:
        """True when this frame differs from the previous one (the first frame counts as motion)."""
        current = self.sample(bgr)
        previous, self._previous = self._previous, current
        if previous is None or previous.shape != current.shape:
            self.last_changed_fraction = 1.0
            return True
        changed = cv2.absdiff(current, previous) > self.pixel_delta
        self.last_changed_fraction = float(np.count_nonzero(changed)) / changed.size
        return self.last_changed_fraction >= self.changed_fraction

    def reset(self) -> None:
        """Forget the previous frame (after a camera reconnect the scene may have changed)."""
        self._previous = None
