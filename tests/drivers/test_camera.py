"""Camera: sources by kind, latest-frame grabbing, fault once / restored once on real files."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from drivers.camera import (
    Camera,
    CameraError,
    Frame,
    ImageFolderSource,
    OpenCvSource,
    SyntheticSource,
    describe,
    open_source,
)

FAST_BACKOFF = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05}
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def write_images(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for i, colour in enumerate(COLOURS):
        cv2.imwrite(str(folder / f"{i:02d}.png"), np.full((48, 64, 3), colour, dtype=np.uint8))


def write_video(path: Path, frames: int = 5) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 40 * i, dtype=np.uint8))
    writer.release()


class Recorder:
    """The camera's callbacks, counted (they arrive on the grabber thread)."""

    def __init__(self) -> None:
        self.faults: list[str] = []
        self.restored = 0
        self.frames: list[Frame] = []
        self.lock = threading.Lock()

    def on_fault(self, reason: str) -> None:
        with self.lock:
            self.faults.append(reason)

    def on_restored(self) -> None:
        with self.lock:
            self.restored += 1

    def on_frame(self, frame: Frame) -> None:
        with self.lock:
            self.frames.append(frame)

    def camera(self, source: object, **kwargs: object) -> Camera:
        return Camera(source, fps=200, on_fault=self.on_fault,  # type: ignore[arg-type]
                      on_restored=self.on_restored, on_frame=self.on_frame,
                      **FAST_BACKOFF, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "kind", "paced"),
    [
        (0, OpenCvSource, False),
        ("2", OpenCvSource, False),
        ("/dev/video0", OpenCvSource, False),
        ("rtsp://user:pw@10.0.0.5/stream1", OpenCvSource, False),
        ("http://10.0.0.5/mjpg", OpenCvSource, False),
        ("clip.avi", OpenCvSource, True),
    ],
)
def test_open_source_picks_the_kind(source: int | str, kind: type, paced: bool) -> None:
    picked = open_source(source)
    assert isinstance(picked, kind)
    assert picked.paced is paced


def test_a_folder_is_an_image_folder_source(tmp_path: Path) -> None:
    assert isinstance(open_source(str(tmp_path)), ImageFolderSource)


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("rtsp://admin:secret@10.0.0.5:554/s1", "rtsp://***@10.0.0.5:554/s1"),
        ("http://10.0.0.5/mjpg", "http://10.0.0.5/mjpg"),
        ("/dev/video0", "/dev/video0"),
    ],
)
def test_describe_hides_stream_credentials(source: str, shown: str) -> None:
    assert describe(source) == shown


def test_synthetic_source_keeps_a_photo_until_enough_frames_were_processed() -> None:
    """A starved consumer (2 loaded cores) processed no frame in the photo's 3 s: the demo's
    face step failed.  The photo now stays until ``done``, within ``max_seconds``."""
    now = [100.0]
    processed = [0]
    source = SyntheticSource((64, 48), clock=lambda: now[0])
    empty = source.read()
    photo = np.full((30, 20, 3), 250, dtype=np.uint8)
    source.show(photo, seconds=3.0, done=lambda: processed[0] >= 12, max_seconds=40.0)
    shown = source.read()
    now[0] += 20.0  # long past 3 s, no frame processed yet: still there
    assert np.array_equal(source.read(), shown)
    processed[0] = 11
    assert np.array_equal(source.read(), shown)
    processed[0] = 12
    assert np.array_equal(source.read(), empty)
    source.show(photo, seconds=3.0, done=lambda: False, max_seconds=40.0)
    now[0] += 39.9
    assert np.array_equal(source.read(), shown)
    now[0] += 0.2  # the upper bound: never longer than max_seconds
    assert np.array_equal(source.read(), empty)
    source.show(photo, seconds=3.0, done=lambda: True, max_seconds=40.0)
    now[0] += 2.9  # enough frames early: still the minimum seconds
    assert np.array_equal(source.read(), shown)
    now[0] += 0.2
    assert np.array_equal(source.read(), empty)


@pytest.mark.timeout(30)
def test_image_folder_loops_in_name_order(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs")
    rec = Recorder()
    with rec.camera(ImageFolderSource(tmp_path / "imgs")):
        wait_until(lambda: len(rec.frames) >= 7)
    blue_green_red = [tuple(int(c) for c in f.image[0, 0]) for f in rec.frames[:7]]
    assert blue_green_red == [*COLOURS, *COLOURS, COLOURS[0]]
    assert [f.seq for f in rec.frames[:7]] == list(range(1, 8))
    assert rec.faults == []


@pytest.mark.timeout(30)
def test_latest_frame_skips_what_the_reader_had_no_time_for(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs")
    camera = Camera(ImageFolderSource(tmp_path / "imgs"), fps=200)
    with camera:
        first = camera.wait_frame(0, timeout=10)
        assert first is not None
        # A slow reader: by the time it asks again, several frames were grabbed.
        wait_until(lambda: (camera.latest() or first).seq >= first.seq + 3)
        newer = camera.wait_frame(first.seq, timeout=10)
    assert newer is not None
    assert newer.seq >= first.seq + 3


@pytest.mark.timeout(60)
def test_emptied_folder_faults_once_then_restores_once(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    write_images(folder)
    rec = Recorder()
    camera = rec.camera(ImageFolderSource(folder))
    with camera:
        wait_until(lambda: len(rec.frames) >= 3)
        for image in folder.iterdir():
            image.unlink()
        wait_until(lambda: len(rec.faults) == 1)
        attempts = camera.open_attempts
        wait_until(lambda: camera.open_attempts >= attempts + 3)  # reconnects keep failing
        assert len(rec.faults) == 1
        assert rec.restored == 0
        assert camera.backoff_seconds <= FAST_BACKOFF["backoff_max_seconds"]
        write_images(folder)
        wait_until(lambda: rec.restored == 1)
        count = len(rec.frames)
        wait_until(lambda: len(rec.frames) >= count + 3)
    assert len(rec.faults) == 1
    assert rec.restored == 1
    assert not camera.faulted


@pytest.mark.timeout(60)
def test_unopenable_device_faults_once_and_keeps_retrying() -> None:
    rec = Recorder()
    camera = rec.camera(OpenCvSource("/dev/menjin-no-such-camera"))
    with camera:
        wait_until(lambda: camera.open_attempts >= 4)
    assert len(rec.faults) == 1
    assert "cannot open" in rec.faults[0]
    assert rec.restored == 0
    assert rec.frames == []


@pytest.mark.timeout(60)
def test_video_file_loops_then_removed_faults_then_restored(tmp_path: Path) -> None:
    video = tmp_path / "gate.avi"
    write_video(video, frames=5)
    rec = Recorder()
    with rec.camera(OpenCvSource(str(video), size=(32, 24))):
        wait_until(lambda: len(rec.frames) >= 12)  # more than the file holds: it looped
        assert rec.frames[0].image.shape == (24, 32, 3)
        shutil.move(video, tmp_path / "away.avi")
        wait_until(lambda: len(rec.faults) == 1)
        assert "removed" in rec.faults[0] or "not found" in rec.faults[0]
        shutil.move(tmp_path / "away.avi", video)
        wait_until(lambda: rec.restored == 1)
    assert len(rec.faults) == 1


@pytest.mark.timeout(30)
def test_a_damaged_image_is_skipped_not_a_fault(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "01.png").write_bytes(b"not an image")
    rec = Recorder()
    with rec.camera(ImageFolderSource(tmp_path / "imgs")):
        wait_until(lambda: len(rec.frames) >= 4)
    colours = [tuple(int(c) for c in f.image[0, 0]) for f in rec.frames[:4]]
    assert colours == [COLOURS[0], COLOURS[2], COLOURS[0], COLOURS[2]]
    assert rec.faults == []


@pytest.mark.timeout(30)
def test_a_failing_frame_consumer_is_not_a_camera_fault(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs")
    rec = Recorder()
    calls: list[int] = []

    def broken(frame: Frame) -> None:
        calls.append(frame.seq)
        raise RuntimeError("consumer bug")

    camera = Camera(ImageFolderSource(tmp_path / "imgs"), fps=200, on_frame=broken,
                    on_fault=rec.on_fault)
    with camera:
        wait_until(lambda: len(calls) >= 5)
    assert rec.faults == []
    assert calls[:5] == [1, 2, 3, 4, 5]


def test_folder_without_images_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="no images"):
        ImageFolderSource(tmp_path).open()


def test_synthetic_source_shows_a_photo_for_its_seconds() -> None:
    now = [100.0]
    source = SyntheticSource((64, 48), clock=lambda: now[0])
    empty = source.read()
    photo = np.full((30, 20, 3), 250, dtype=np.uint8)
    source.show(photo, seconds=2.0)
    shown = source.read()
    now[0] += 1.9
    still = source.read()
    now[0] += 0.2
    after = source.read()
    assert shown.shape == (48, 64, 3)
    assert int(shown[24, 32, 0]) == 250 and int(empty[24, 32, 0]) != 250
    assert np.array_equal(still, shown)
    assert np.array_equal(after, empty)


@pytest.mark.timeout(30)
def test_synthetic_camera_delivers_pushed_photo() -> None:
    source = SyntheticSource((64, 48))
    camera = Camera(source, fps=100)
    with camera:
        source.show(np.full((48, 64, 3), 7, dtype=np.uint8), seconds=30)
        def shown() -> bool:
            latest = camera.latest()
            return latest is not None and int(latest.image[0, 0, 0]) == 7

        wait_until(shown)
    assert camera.open_attempts == 1


def test_fps_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fps must be positive"):
        Camera(ImageFolderSource(tmp_path), fps=0)
