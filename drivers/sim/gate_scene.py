"""A synthetic gate camera: people (photos) walking across a still scene, with idle stretches.

Tests and the face-pipeline benchmark need video of what a gate camera sees (mostly nothing, then
somebody entering, crossing and leaving) with known identities.  This scene pastes photos that
slide across a textured background, adds a little sensor noise (so "idle" is not bit-identical,
as on a real camera), and renders any frame on demand from its index, so a minute of video
never has to be held in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_SIZE = (640, 480)
DEFAULT_FPS = 15.0
#: Standard deviation of the added sensor noise, in grey levels.
DEFAULT_NOISE = 2.0
#: Distinct noise patterns cycled through (generating noise per frame would cost more than the
#: motion gate it is meant to exercise).
_NOISE_PATTERNS = 8


@dataclass(frozen=True)
class Passage:
    """One photo crossing the frame from ``start_s`` for ``duration_s``; ``direction`` +1 walks
    left to right, -1 right to left, 0 stands still in the middle."""

    sprite: np.ndarray
    start_s: float
    duration_s: float
    top_px: int
    direction: int = 1
    label: str = ""

    def left_px(self, t: float, frame_width: int) -> int | None:
        """The sprite's left edge at time ``t`` (None when it is not in the frame)."""
        progress = (t - self.start_s) / self.duration_s
        if not 0 <= progress < 1:
            return None
        width = int(self.sprite.shape[1])
        if self.direction == 0:
            return (frame_width - width) // 2
        travel = frame_width + width
        if self.direction > 0:
            return round(-width + progress * travel)
        return round(frame_width - progress * travel)


def background(size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0) -> np.ndarray:
    """A plausible gate backdrop: a lit wall gradient, a door frame and some texture."""
    width, height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(70, 150, width, dtype=np.float32)
    scene = np.repeat(ramp[None, :, None], height, axis=0).repeat(3, axis=2)
    scene += rng.normal(0, 6, (height // 8, width // 8, 3)).astype(np.float32).repeat(
        8, axis=0
    ).repeat(8, axis=1)[:height, :width]
    image = np.clip(scene, 0, 255).astype(np.uint8)
    cv2.rectangle(image, (width // 5, height // 8), (4 * width // 5, height), (60, 70, 90), 12)
    cv2.line(image, (0, 7 * height // 8), (width, 7 * height // 8), (40, 40, 40), 4)
    return image


class GateScene:
    """Frames of a scene with passages; ``frame(i)`` is deterministic for a given seed."""

    def __init__(
        self,
        size: tuple[int, int] = DEFAULT_SIZE,
        fps: float = DEFAULT_FPS,
        *,
        seconds: float | None = None,
        noise: float = DEFAULT_NOISE,
        seed: int = 0,
    ) -> None:
        self.size = size
        self.fps = fps
        self.background = background(size, seed)
        self.passages: list[Passage] = []
        self._seconds = seconds
        rng = np.random.default_rng(seed + 1)
        width, height = size
        self._noise = [
            rng.normal(0, noise, (height, width, 3)).astype(np.int16)
            for _ in range(_NOISE_PATTERNS)
        ] if noise > 0 else []

    def add(
        self,
        photo: np.ndarray,
        *,
        start_s: float,
        duration_s: float,
        height_px: int,
        direction: int = 1,
        top_px: int | None = None,
        label: str = "",
    ) -> Passage:
        """Let ``photo``, scaled to ``height_px`` tall, cross the scene."""
        scale = height_px / photo.shape[0]
        sprite = cv2.resize(
            photo, (max(1, round(photo.shape[1] * scale)), height_px),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        if top_px is None:
            top_px = max(0, (self.size[1] - height_px) // 3)
        passage = Passage(sprite, start_s, duration_s, top_px, direction, label)
        self.passages.append(passage)
        return passage

    @property
    def seconds(self) -> float:
        ends = [p.start_s + p.duration_s for p in self.passages]
        return self._seconds if self._seconds is not None else max(ends, default=0.0)

    @property
    def frame_count(self) -> int:
        return round(self.seconds * self.fps)

    def frame(self, index: int) -> np.ndarray:
        t = index / self.fps
        image = self.background.copy()
        width, height = self.size
        for passage in self.passages:
            left = passage.left_px(t, width)
            if left is None:
                continue
            sprite = passage.sprite
            x1, x2 = max(left, 0), min(left + sprite.shape[1], width)
            y1, y2 = passage.top_px, min(passage.top_px + sprite.shape[0], height)
            if x1 < x2 and y1 < y2:
                image[y1:y2, x1:x2] = sprite[: y2 - y1, x1 - left : x2 - left]
        if self._noise:
            noisy = image.astype(np.int16) + self._noise[index % len(self._noise)]
            image = np.clip(noisy, 0, 255).astype(np.uint8)
        return image

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """Every frame with its timestamp in seconds."""
        for index in range(self.frame_count):
            yield self.frame(index), index / self.fps

    def visible(self, t: float) -> list[str]:
        """Labels of the passages in the frame at ``t``."""
        return [p.label for p in self.passages if p.left_px(t, self.size[0]) is not None]

    def write_video(self, path: Path | str) -> Path:
        """Encode the scene as Motion-JPEG AVI (readable by the file camera source)."""
        path = Path(path)
        writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter.fourcc(*"MJPG"), self.fps, self.size
        )
        if not writer.isOpened():
            raise OSError(f"cannot write video {path}")
        try:
            for image, _ in self.frames():
                writer.write(image)
        finally:
            writer.release()
        return path
