"""A burst of a door camera's frames for `menjin enrol --at-door`, wherever the camera is held.

While the daemon runs, its vision process owns the camera (a V4L2 device or an RTSP session is
not shared reliably, and a second reader would steal frames from the door): the burst is asked of
the daemon over the control socket (``faces.burst``), which asks the vision process
(:mod:`daemon.vision_wire` ``burst``).  In simulate mode this is also the only way: the synthetic
camera that `menjin sim face` shows photos to lives in the running vision process.  When no
daemon listens (installation day, before the service is started), the CLI opens the configured
camera itself for the burst, as `menjin camera calibrate` does.
"""

from __future__ import annotations

import asyncio
import base64
import time

from daemon import control
from daemon.config import GateConfig


class BurstError(Exception):
    """No burst: the message says why and what to do."""


def door_burst(cfg: GateConfig, door: str, frames: int, seconds: float) -> list[bytes]:
    """``frames`` JPEG (or PNG) encoded frames of ``door``'s camera over ``seconds``.

    Raises BurstError for a door without a camera, a camera that delivers nothing, or a daemon
    that refuses the burst."""
    camera = cfg.camera
    if door not in cfg.doors:
        raise BurstError(f"no door {door!r} (doors: {', '.join(cfg.doors)})")
    if camera is None or camera.door != door:
        raise BurstError(f"door {door} has no camera (camera.door in the config)")
    try:
        result = asyncio.run(control.call(cfg.control.socket, "faces.burst",
                                          {"door": door, "frames": frames, "seconds": seconds}))
    except control.ControlUnavailableError:
        return _direct(cfg, frames, seconds)
    except control.ControlError as exc:
        raise BurstError(str(exc)) from exc
    return [base64.b64decode(item, validate=True) for item in result["frames"]]


def _direct(cfg: GateConfig, frames: int, seconds: float) -> list[bytes]:
    """The burst read from the camera by this process (no daemon holds it)."""
    import cv2

    from drivers.camera import CameraError, open_source

    camera = cfg.camera
    assert camera is not None
    if cfg.hardware.simulate:
        raise BurstError("simulate mode: the synthetic camera lives in the running daemon; "
                         "start it (menjin run) and show the resident with menjin sim face")
    source = open_source(camera.source, size=(camera.width, camera.height), fps=camera.fps)
    interval = seconds / frames
    encoded: list[bytes] = []
    deadline = time.monotonic() + seconds + max(2.0, 5 / camera.fps)
    try:
        source.open()
        next_at = time.monotonic()
        while len(encoded) < frames and time.monotonic() < deadline:
            image = source.read()
            if time.monotonic() >= next_at:
                ok, data = cv2.imencode(".png", image)
                if ok:
                    encoded.append(data.tobytes())
                    next_at = time.monotonic() + interval
    except CameraError as exc:
        raise BurstError(f"camera {camera.source}: {exc}") from exc
    finally:
        source.close()
    if not encoded:
        raise BurstError(f"camera {camera.source} delivered no frame in {seconds:g} s")
    return encoded
