"""`menjin vision`: the vision process, child of the door daemon, owner of camera and models.

It runs camera → face pipeline (:mod:`vision.pipeline`, on its own inference thread) and sends
what it saw to the door daemon over the UNIX socket it inherited (file descriptor ``--fd``),
one bounded JSON line per message (:mod:`daemon.vision_wire`).  It decides nothing: the door
daemon takes every access decision.  Its health line every second is the heartbeat.

It raises its own ``oom_score_adj`` first thing, so that on a board short of memory the kernel
kills it (the largest process: it holds the models) rather than the process holding the relays,
and lowers its CPU priority (``vision.cpu_priority``, SCHED_IDLE by default) before it starts a
thread, so that every thread it starts (ONNX Runtime's among them) inherits it: a card's bytes
and the door daemon that moves the relay never wait behind an inference.
When the daemon goes away (end of file on the socket) it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon import logsetup
from daemon.config import CameraSection, GateConfig, VisionSection
from daemon.configfile import EX_CONFIG, ConfigError, load_config
from daemon.faces import route_choices, template_store
from daemon.keys import KEY_BYTES
from daemon.liveness import build_liveness
from daemon.vision_wire import (
    HEALTH_SECONDS,
    MAX_BURST_FRAMES,
    MAX_BURST_SECONDS,
    MAX_MESSAGE_BYTES,
    WireError,
    count,
    decode,
    encode,
)

log = logging.getLogger("daemon.vision_process")  # also when run as __main__

#: Above the door daemon's (systemd/menjin.service sets OOMScoreAdjust=-500): killed first.
VISION_OOM_SCORE_ADJ = 800
EXIT_FAILED = 1


def raise_oom_score(value: int = VISION_OOM_SCORE_ADJ) -> None:
    """Make this process the OOM killer's first choice (raising needs no privilege)."""
    try:
        Path("/proc/self/oom_score_adj").write_text(str(value))
    except OSError as exc:
        log.warning("vision: cannot set oom_score_adj (%s)", exc)


#: nice value of ``cpu_priority: low`` (the lowest there is).
LOW_NICE = 19


def lower_cpu_priority(priority: str) -> None:
    """Put the calling thread, and every thread it starts from now on, below the door daemon:
    ``idle`` → SCHED_IDLE, ``low`` → nice 19, ``normal`` → unchanged.

    Linux keeps the policy and nice value per thread and a new thread inherits its creator's,
    so call this before any thread starts.  Lowering needs no privilege (and systemd's
    RestrictRealtime= only forbids the real-time policies); a refusal is logged, not fatal.
    """
    try:
        if priority == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif priority == "low":
            os.setpriority(os.PRIO_PROCESS, 0, LOW_NICE)
    except OSError as exc:
        log.warning("vision: cannot lower the CPU priority to %s (%s)", priority, exc)


def leave_cpus(reserved: int) -> list[int]:
    """Keep the calling thread, and every thread it starts from now on, off the first
    ``reserved`` CPUs it may run on (on a board with no more CPUs, on the last one only).

    Returns the CPUs vision runs on.  A refusal is logged, not fatal.
    """
    allowed = sorted(os.sched_getaffinity(0))
    cpus = allowed[reserved:] or allowed[-1:]
    if cpus != allowed:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as exc:
            log.warning("vision: cannot keep off CPU(s) %s (%s)", allowed[:reserved], exc)
            return allowed
    return cpus


def model_threads(configured: int) -> int:
    """Intra-op threads per model: as configured, but no more than the CPUs vision may use
    (threads beyond them would only wait for each other)."""
    cpus = len(os.sched_getaffinity(0))
    if configured > cpus:
        log.info("vision: %d thread(s) per model, not %d: vision runs on %d CPU(s)",
                 cpus, configured, cpus)
    return min(configured, cpus)


def build_pipeline(vision: VisionSection, portraits: str, template_key: bytes, *,
                   camera: CameraSection | None = None, nir_frames: Any = None) -> Any:
    """Config → face models, template gallery and pipeline (blocking: model loading)."""
    from vision.embed import default_match_threshold
    from vision.models import load_detector, load_embedder, load_refiner
    from vision.pipeline import FacePipeline, PipelineSettings
    from vision.quality import QualityThresholds

    vision = vision.model_copy(update={"threads": model_threads(vision.threads)})
    det, q = vision.detector, vision.quality
    choices = route_choices(vision)
    detector = load_detector(det.kind, det.path, input_size=det.input_size,
                             score_threshold=det.score_threshold, roi=det.roi,
                             threads=vision.threads)
    embedder = load_embedder(vision.embedder.kind, vision.embedder.path, threads=vision.threads,
                             mirror=choices.mirror_average)
    refiner = (load_refiner(det.kind, det.path, threads=vision.threads)
               if choices.refine_landmarks else None)
    liveness = build_liveness(vision, camera, nir_frames)
    threshold = vision.match_threshold or default_match_threshold(vision.embedder.kind)
    gallery = template_store(vision, template_key).load_gallery(
        embedder.dim, threshold=threshold, margin=vision.match_margin, scoring=choices.scoring)
    log.info("vision: %d enrolled person(s), match threshold %.2f", len(gallery), threshold)
    settings = PipelineSettings(
        agree_frames=vision.agree_frames, fuse_frames=vision.fuse_frames, detector_kind=det.kind,
        portraits=portraits,
        portrait_margin=vision.portrait_margin, portrait_size_px=vision.portrait_size,
        quality=QualityThresholds(
            min_face_px_recognise=q.min_face_px_recognise,
            min_face_px_capture=q.min_face_px_capture,
            min_sharpness_recognise=q.min_sharpness_recognise,
            min_sharpness_capture=q.min_sharpness_capture,
        ),
    )
    return FacePipeline(detector, embedder, gallery, liveness=liveness, settings=settings,
                        refiner=refiner)


#: Enrolment frames are kept sharp: the templates are made from them.
BURST_JPEG_QUALITY = 95


@dataclass
class Burst:
    """Frames of an enrolment burst: ``wanted`` frames, one per ``interval`` seconds of camera
    time (camera thread adds, the loop reads once ``done``)."""

    wanted: int
    interval: float
    jpegs: list[bytes] = field(default_factory=list)
    next_ts: float | None = None

    def offer(self, image: Any, ts: float) -> bool:
        """Keep this frame if its time has come; True once the burst is complete."""
        import cv2

        if self.next_ts is None or ts >= self.next_ts:
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, BURST_JPEG_QUALITY])
            if ok:
                self.jpegs.append(data.tobytes())
                self.next_ts = ts + self.interval
        return len(self.jpegs) >= self.wanted


class Session:
    """One vision process's camera, pipeline and link to the daemon."""

    def __init__(self, config: GateConfig, writer: asyncio.StreamWriter,
                 template_key: bytes) -> None:
        assert config.camera is not None and config.vision is not None
        self.config = config
        self._template_key = template_key
        self.camera_section = config.camera
        self.vision_section = config.vision
        self.writer = writer
        self.frames = 0
        self.worker: Any = None
        self.synthetic: Any = None
        self.last_error: str | None = None
        self.burst: Burst | None = None
        self.burst_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        #: why this door refuses every face while vision runs (fail closed), else None
        self.faces_refused: str | None = None

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message for the daemon (event loop only)."""
        try:
            self.writer.write(encode(message))
        except WireError as exc:
            log.error("vision: message not sent: %s", exc)

    def send_threadsafe(self, loop: asyncio.AbstractEventLoop, message: dict[str, Any]) -> None:
        """:meth:`send` from a camera thread; dropped once the loop closed."""
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.send, message)

    def health(self) -> dict[str, Any]:
        w = self.worker
        return {"type": "health", "frames": self.frames,
                "processed": w.processed if w else 0, "dropped": w.dropped if w else 0,
                "errors": w.errors if w else 0, "last_error": self.last_error,
                "faces_refused": self.faces_refused}

    async def heartbeat(self) -> None:
        while True:
            self.send(self.health())
            await self.writer.drain()
            await asyncio.sleep(HEALTH_SECONDS)

    def observation(self, observation: Any) -> None:
        from vision.pipeline import FaceRecognised, FaceRefused, TrackCapture

        if isinstance(observation, FaceRecognised):
            self.send({"type": "observation", "kind": "recognised", "person": observation.person,
                       "score": round(float(observation.score), 4)})
        elif isinstance(observation, FaceRefused):
            self.send({"type": "observation", "kind": "refused", "person": observation.person,
                       "reason": observation.reason})
        elif isinstance(observation, TrackCapture):
            jpeg = observation.jpeg
            self.send({"type": "capture", "person": observation.person,
                       "recognised": bool(observation.recognised),
                       "frames": int(observation.frames),
                       "portrait": base64.b64encode(jpeg).decode() if jpeg else None})

    def frame(self, frame: Any) -> None:
        self.frames += 1
        with self.burst_lock:
            burst = self.burst
            if burst is not None and burst.offer(frame.image, frame.ts):
                self.burst = None
                assert self.loop is not None
                self.send_threadsafe(self.loop, self.burst_message(burst.jpegs))
        self.worker.submit(frame.image, frame.ts)

    def burst_message(self, jpegs: list[bytes]) -> dict[str, Any]:
        message = {"type": "burst", "frames": [base64.b64encode(j).decode() for j in jpegs]}
        try:
            encode(message)
        except WireError as exc:
            return {"type": "burst", "error": f"frames too large to send: {exc}"}
        return message

    def start_burst(self, message: dict[str, Any]) -> None:
        """Begin an enrolment burst; a new request replaces one still running."""
        try:
            wanted = count(message, "frames")
            seconds = message.get("seconds", 2.0)
            if not 1 <= wanted <= MAX_BURST_FRAMES:
                raise WireError(f"frames: 1 to {MAX_BURST_FRAMES} expected")
            if (not isinstance(seconds, int | float) or isinstance(seconds, bool)
                    or not 0 < seconds <= MAX_BURST_SECONDS):
                raise WireError(f"seconds: more than 0 and at most {MAX_BURST_SECONDS:g}")
        except WireError as exc:
            self.send({"type": "burst", "error": str(exc)})
            return
        with self.burst_lock:
            self.burst = Burst(wanted, float(seconds) / wanted)

    async def run(self, reader: asyncio.StreamReader) -> None:
        from drivers.camera import Camera, SyntheticSource, open_source
        from vision.pipeline import PipelineWorker, loop_delivery

        loop = self.loop = asyncio.get_running_loop()
        cam, vision = self.camera_section, self.vision_section
        heartbeat = asyncio.create_task(self.heartbeat(), name="heartbeat")
        try:
            nir_camera, nir_frames = self.nir_camera(loop)
            pipeline = await asyncio.to_thread(build_pipeline, vision,
                                               self.config.privacy.portraits, self._template_key,
                                               camera=cam, nir_frames=nir_frames)
            from vision.nir import NirUnavailable
            nir = getattr(pipeline.liveness, "nir", None)
            if isinstance(nir, NirUnavailable):
                self.faces_refused = nir.reason
            size = (cam.width, cam.height)
            self.synthetic = SyntheticSource(size) if self.config.hardware.simulate else None
            source = self.synthetic or open_source(cam.source, size=size, fps=cam.fps)
            self.worker = PipelineWorker(pipeline, loop_delivery(loop, self.observation),
                                         name=f"vision:{cam.door}")
            camera = Camera(
                source, fps=cam.fps, name=f"camera:{cam.door}", on_frame=self.frame,
                on_fault=lambda reason: self.send_threadsafe(
                    loop, {"type": "camera", "state": "fault", "detail": reason}),
                on_restored=lambda: self.send_threadsafe(loop, {"type": "camera", "state": "ok"}),
            )
            self.worker.start()
            camera.start()
            if nir_camera is not None:
                nir_camera.start()
            try:
                self.send({"type": "ready", "door": cam.door})
                self.send(self.health())  # the door's refusal, if any, at once
                await self.commands(reader)  # returns at end of file: the daemon went away
            finally:
                await asyncio.to_thread(camera.stop)
                if nir_camera is not None:
                    await asyncio.to_thread(nir_camera.stop)
                await asyncio.to_thread(self.worker.stop)  # ends open tracks: their captures
                await asyncio.sleep(0)  # run the deliveries queued by the stop
                with contextlib.suppress(ConnectionError):
                    await self.writer.drain()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await heartbeat

    def nir_camera(self, loop: asyncio.AbstractEventLoop) -> tuple[Any, Any]:
        """The NIR camera feeding the frame buffer the liveness check pairs with (or Nones)."""
        from drivers.camera import Camera, SyntheticSource, open_source
        from vision.nir import NirFrames

        cam = self.camera_section
        if cam.nir is None:
            return None, None
        frames = NirFrames()
        nir = cam.nir
        size = (nir.width, nir.height)
        # Simulate mode has no infrared scene: an empty one, so faces fail NIR (fail closed).
        source = (SyntheticSource(size) if self.config.hardware.simulate
                  else open_source(nir.source, size=size, fps=nir.fps))
        camera = Camera(
            source, fps=nir.fps, name=f"camera:{cam.door}:nir",
            on_frame=lambda frame: frames.push(frame.image, frame.ts),
            on_fault=lambda reason: self.send_threadsafe(
                loop, {"type": "camera", "state": "fault", "detail": f"NIR: {reason}"}),
            on_restored=lambda: self.send_threadsafe(loop, {"type": "camera", "state": "ok"}),
        )
        return camera, frames

    async def commands(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            message = decode(line)
            if message["type"] == "show" and self.synthetic is not None:
                self.show(message)
            elif message["type"] == "plug" and self.synthetic is not None:
                self.synthetic.unplug(present=message.get("present") is True)
            elif message["type"] == "burst":
                self.start_burst(message)

    def show(self, message: dict[str, Any]) -> None:
        import cv2
        import numpy as np

        data = base64.b64decode(str(message.get("photo", "")))
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            log.warning("vision: sim photo is not a readable image")
            return
        frames = int(message.get("frames", 0))
        done = None
        if frames > 0 and self.worker is not None:
            # until the pipeline handled that many frames of it, not only for wall-clock time
            worker, target = self.worker, self.worker.processed + frames
            done = lambda: worker.processed >= target  # noqa: E731
        self.synthetic.show(image, float(message.get("seconds", 2.0)), done=done,
                            max_seconds=float(message.get("max_seconds", 0.0)) or None)


async def serve(config: GateConfig, fd: int, template_key: bytes) -> int:
    """Run until the daemon closes the socket; EXIT_FAILED when the pipeline cannot start."""
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_MESSAGE_BYTES)
    session = Session(config, writer, template_key)
    session.send({"type": "hello", "pid": os.getpid()})
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        await session.run(reader)
    except asyncio.CancelledError:  # SIGTERM from the daemon: tracks ended, captures sent
        return 0
    except Exception as error:  # the models, the camera: told to the daemon, then exit
        session.last_error = f"{type(error).__name__}: {error}"
        log.error("vision: %s", session.last_error)
        session.send({"type": "fatal", "error": session.last_error})
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return EXIT_FAILED
    finally:
        writer.close()
    return 0


def read_template_key() -> bytes:
    """The template key, as the daemon writes it to our stdin (one hex line; never in argv or
    the environment, which other processes of the user can read)."""
    line = sys.stdin.readline().strip()
    try:
        key = bytes.fromhex(line)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError("no template key on stdin (the door daemon starts this process)")
    return key


def main(config_path: Path, fd: int) -> int:
    """The vision process of the gate configured in ``config_path``, talking over ``fd``."""
    raise_oom_score()
    try:
        template_key = read_template_key()
    except ValueError as exc:
        logsetup.configure("INFO")
        log.error("vision: %s", exc)
        return EX_CONFIG
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        logsetup.configure("INFO")
        log.error("vision: %s: cannot start with this config:\n%s", config_path, exc)
        return EX_CONFIG
    logsetup.configure(config.logging.level, config.logging.components)
    if config.camera is None or config.vision is None:
        log.error("vision: %s has no camera and vision sections", config_path)
        return EX_CONFIG
    # Before asyncio.run starts any thread: every thread inherits both.
    lower_cpu_priority(config.vision.cpu_priority)
    cpus = leave_cpus(config.vision.reserved_cpus)
    log.info("vision: CPU priority %s, on CPU(s) %s", config.vision.cpu_priority,
             ",".join(map(str, cpus)))
    return asyncio.run(serve(config, fd, template_key))


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="menjin vision", description=__doc__)
    parser.add_argument("-c", "--config", type=Path, required=True)
    parser.add_argument("--fd", type=int, required=True)
    args = parser.parse_args(argv)
    return main(args.config, args.fd)


if __name__ == "__main__":
    sys.exit(cli())
