"""The gate camera: a grabber thread that always holds the newest frame, and survives losing it.

A camera delivers frames at its own pace whether or not anyone reads them; OpenCV queues them, so
a slow reader sees the past (seconds of lag at a gate means the door opens for somebody who
already left).  The grabber thread reads continuously and keeps only the latest frame; whoever
needs one takes the latest (``latest()``) or is called with each new one (``on_frame``), and
drops what it cannot handle.

Sources, all behind :class:`FrameSource` so simulate mode and tests use the same camera code:

- :class:`OpenCvSource`: V4L2 index (``0``) or device path (``/dev/video0``), ``rtsp://`` /
  ``http://`` URL, or a video file (looped).
- :class:`ImageFolderSource`: a folder of images, looped (simulate mode without models of the
  scene).
- :class:`SyntheticSource`: a still background onto which the simulate mode pushes photos
  (``menjin sim face DOOR PHOTO``), as if someone stood in front of the camera.

A camera that fails (device unplugged, stream down, file gone) calls ``on_fault`` once, reopens
with a capped exponential backoff, and calls ``on_restored`` once it delivers frames again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from protocol.backoff import Backoff

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
#: Live cameras keep one buffered frame: older ones are stale by the time they are read.
LIVE_BUFFER_FRAMES = 1
DEFAULT_BACKOFF_INITIAL_SECONDS = 0.5
DEFAULT_BACKOFF_MAX_SECONDS = 30.0
#: A stream that yields nothing for this long counts as lost (a stalled RTSP/HTTP camera).
DEFAULT_STALL_SECONDS = 10.0
SYNTHETIC_BACKGROUND_GREY = 96


class CameraError(Exception):
    """A source that cannot be opened or read (the message names the source)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured image: BGR pixels, its sequence number and capture time (monotonic s)."""

    image: np.ndarray
    seq: int
    ts: float


class FrameSource(Protocol):
    """Where frames come from.  ``paced`` sources (files, folders, synthetic) are read as fast
    as asked, so the camera paces them to its fps; live ones block until the next frame."""

    paced: bool

    def open(self) -> None:
        """Start delivering; CameraError when the source is not there."""
        ...

    def read(self) -> np.ndarray:
        """The next BGR frame; CameraError when the source was lost."""
        ...

    def close(self) -> None: ...


def _fit(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize to the configured (width, height) when it differs (files and folders)."""
    if size is None or (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class OpenCvSource:
    """cv2.VideoCapture over a device, a stream URL or a video file (looped at its end)."""

    def __init__(
        self, source: int | str, *, size: tuple[int, int] | None = None, fps: float | None = None
    ) -> None:
        self.source = source
        self.size = size
        self.fps = fps
        self.is_file = isinstance(source, str) and not is_live(source)
        self.paced = self.is_file
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if self.is_file and not Path(str(self.source)).is_file():
            raise CameraError(f"camera {describe(self.source)}: file not found")
        if isinstance(self.source, str) and self.source.startswith(URL_SCHEMES):
            # Without timeouts a stalled stream blocks the grabber for FFmpeg's default.
            stall_ms = int(DEFAULT_STALL_SECONDS * 1000)
            cap = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, stall_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, stall_ms,
            ])
        else:
            cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"camera {describe(self.source)}: cannot open")
        if not self.is_file:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, LIVE_BUFFER_FRAMES)
            if self.size is not None:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            if self.fps is not None:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        self._cap = cap

    def read(self) -> np.ndarray:
        if self._cap is None:
            raise CameraError(f"camera {describe(self.source)}: not open")
        ok, image = self._cap.read()
        if not ok and self.is_file:
            # End of a video file: loop, unless the file went away meanwhile.
            if not Path(str(self.source)).is_file():
                raise CameraError(f"camera {describe(self.source)}: file removed")
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        if not ok or image is None:
            raise CameraError(f"camera {describe(self.source)}: no frame")
        return _fit(image, self.size) if self.is_file else image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource:
    """The images of a folder in name order, looped; the folder is listed again at each loop so
    files added or removed while running take effect."""

    paced = True

    def __init__(self, folder: Path | str, *, size: tuple[int, int] | None = None) -> None:
        self.folder = Path(folder)
        self.size = size
        self._files: list[Path] = []
        self._next = 0

    def _list(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        except OSError:
            return []

    def open(self) -> None:
        self._files = self._list()
        self._next = 0
        if not self._files:
            raise CameraError(f"camera {self.folder}: no images in the folder")

    def read(self) -> np.ndarray:
        """The next readable image; one damaged file is skipped, not a lost camera."""
        for _ in range(len(self._files) + 1):
            if self._next >= len(self._files):
                self.open()
            path = self._files[self._next]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return _fit(image, self.size)
            log.debug("camera %s: skipping unreadable %s", self.folder, path.name)
        raise CameraError(f"camera {self.folder}: no readable image in the folder")

    def close(self) -> None:
        self._files = []


class SyntheticSource:
    """A still scene; ``show(photo, seconds)`` puts a photo in front of it for a while.

    The photo is scaled to fit the frame and centred, like a person standing at the gate.  The
    background is uniform grey unless one is given.  Thread-safe: the simulate mode pushes photos
    from the event loop while the grabber reads.
    """

    paced = True

    def __init__(
        self,
        size: tuple[int, int] = (640, 480),
        *,
        background: np.ndarray | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        width, height = size
        if background is None:
            background = np.full((height, width, 3), SYNTHETIC_BACKGROUND_GREY, dtype=np.uint8)
        self.background = _fit(background, size)
        self.size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._scene = self.background
        self._until = 0.0
        self._deadline = 0.0
        self._done: Callable[[], bool] | None = None
        self._present = True

    def unplug(self, present: bool = False) -> None:
        """Take the simulated device away (``present=False``), as a USB camera pulled out, or
        plug it back: while it is away ``open`` and ``read`` fail like a vanished device."""
        with self._lock:
            self._present = present

    def show(self, photo: np.ndarray, seconds: float, *,
             done: Callable[[], bool] | None = None, max_seconds: float | None = None) -> None:
        """Show ``photo`` (BGR) for ``seconds``, then the empty scene again.

        With ``done`` the photo stays after ``seconds`` until ``done()`` is true (e.g. enough
        frames were processed: a starved consumer on a loaded board may handle none in a few
        seconds of wall time), but never longer than ``max_seconds`` (default: ``seconds``).
        """
        width, height = self.size
        scale = min(width / photo.shape[1], height / photo.shape[0])
        new_w, new_h = max(1, int(photo.shape[1] * scale)), max(1, int(photo.shape[0] * scale))
        scene = self.background.copy()
        x, y = (width - new_w) // 2, (height - new_h) // 2
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(photo, (new_w, new_h), interpolation=interp)
        scene[y : y + new_h, x : x + new_w] = resized
        with self._lock:
            self._scene = scene
            now = self._clock()
            self._until = now + seconds
            self._done = done
            self._deadline = now + max(seconds, max_seconds if max_seconds is not None
                                       else seconds)

    def _expired(self) -> bool:
        now = self._clock()
        if now >= self._deadline:
            return True
        return now >= self._until and (self._done is None or self._done())

    def open(self) -> None:
        """Nothing to open: the synthetic scene is there unless it was unplugged."""
        with self._lock:
            if not self._present:
                raise CameraError("synthetic camera: no such device (unplugged)")

    def read(self) -> np.ndarray:
        with self._lock:
            if not self._present:
                raise CameraError("synthetic camera: device gone (unplugged)")
            if self._scene is not self.background and self._expired():
                self._scene = self.background
            return self._scene.copy()

    def close(self) -> None:
        """Nothing to release."""


def is_live(source: int | str) -> bool:
    """A device or stream (paced by itself) rather than a file."""
    if isinstance(source, int):
        return True
    return source.isdigit() or source.startswith(URL_SCHEMES) or source.startswith("/dev/")


def describe(source: int | str | Path) -> str:
    """The source for a log line, without credentials of a stream URL."""
    text = str(source)
    scheme, sep, rest = text.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return text


def open_source(
    source: int | str, *, size: tuple[int, int] | None = None, fps: float | None = None
) -> FrameSource:
    """The source for a configured ``camera.source`` (index, device, URL, video file, folder)."""
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if isinstance(source, str) and not is_live(source) and Path(source).is_dir():
        return ImageFolderSource(source, size=size)
    return OpenCvSource(source, size=size, fps=fps)


class Camera:
    """A source read by one grabber thread that keeps only the latest frame.

    ``on_frame(frame)``, ``on_fault(reason)`` and ``on_restored()`` are called on the grabber
    thread: bridge them to an event loop with ``loop.call_soon_threadsafe``.  ``on_fault`` is
    called once per outage (the first open failing counts as one), however many reconnects fail.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        fps: float = 15.0,
        name: str = "camera",
        on_frame: Callable[[Frame], None] | None = None,
        on_fault: Callable[[str], None] | None = None,
        on_restored: Callable[[], None] | None = None,
        backoff_initial_seconds: float = DEFAULT_BACKOFF_INITIAL_SECONDS,
        backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.source = source
        self.frame_interval_seconds = 1.0 / fps
        self.name = name
        self.on_frame = on_frame
        self.on_fault = on_fault
        self.on_restored = on_restored
        self.backoff_initial_seconds = backoff_initial_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.faulted = False
        self.open_attempts = 0
        #: The delay before the current reconnect attempt (0 while frames flow).
        self.backoff_seconds = 0.0
        self._backoff = Backoff(backoff_initial_seconds, backoff_max_seconds)
        self._consumer_failed = False
        self._latest: Frame | None = None
        self._seq = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"grab:{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the grabber and release the source."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Camera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def latest(self) -> Frame | None:
        """The newest frame (None before the first)."""
        with self._cond:
            return self._latest

    def wait_frame(self, after_seq: int = 0, timeout: float | None = None) -> Frame | None:
        """The newest frame with a sequence number above ``after_seq``; None on timeout/stop."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._stop.is_set()
                or (self._latest is not None and self._latest.seq > after_seq),
                timeout,
            )
            latest = self._latest
        return latest if latest is not None and latest.seq > after_seq else None

    def _run(self) -> None:
        self._backoff.reset()
        while not self._stop.is_set():
            try:
                self.open_attempts += 1
                self.source.open()
                self._stream()
            except CameraError as exc:
                self._fault(str(exc))
            except Exception as exc:  # OpenCV may raise cv2.error on a broken stream
                self._fault(f"camera {self.name}: {exc}")
            finally:
                self.source.close()
            self.backoff_seconds = self._backoff.next()
            if self._stop.wait(self.backoff_seconds):
                return

    def _stream(self) -> None:
        """Read until the source fails or the camera is stopped."""
        next_due = time.monotonic()
        while not self._stop.is_set():
            image = self.source.read()
            now = time.monotonic()
            self._backoff.reset()
            if self.faulted:
                self.faulted = False
                log.info("%s: back", self.name)
                if self.on_restored is not None:
                    self.on_restored()
            with self._cond:
                self._seq += 1
                frame = Frame(image, self._seq, now)
                self._latest = frame
                self._cond.notify_all()
            if self.on_frame is not None:
                try:
                    self.on_frame(frame)
                except Exception:  # a consumer's bug is not a camera fault; logged once
                    if not self._consumer_failed:
                        log.exception("%s: frame consumer failed", self.name)
                    self._consumer_failed = True
            if self.source.paced:
                next_due = max(next_due + self.frame_interval_seconds, now)
                if self._stop.wait(max(0.0, next_due - time.monotonic())):
                    return

    def _fault(self, reason: str) -> None:
        if self.faulted:
            log.debug("%s: still unavailable: %s", self.name, reason)
            return
        self.faulted = True
        log.warning("%s: unavailable: %s", self.name, reason)
        if self.on_fault is not None:
            self.on_fault(reason)
