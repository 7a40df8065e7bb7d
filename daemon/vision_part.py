"""The camera and face pipeline part of the gate, and what its observations become.

The pipeline reports what it saw (a recognised person, a refusal, the best portrait of a passage)
and decides nothing: recognitions go to the passage for the access decision; captures become
``capture`` events with their portrait (per the portrait policy).  Inference runs on the
pipeline's own thread, camera capture on the camera's thread; only observations reach the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from daemon.config import CameraSection, VisionSection
from daemon.events import Emit, Event
from daemon.faces import template_store
from daemon.passage import FACE_RECOGNISED, FACE_REFUSED, Passage

log = logging.getLogger(__name__)

#: ``capture(event, jpeg)``: record a ``capture`` event with its portrait (None: no portrait).
Capture = Callable[[Event, bytes | None], None]


def build_pipeline(vision: VisionSection, portraits: str) -> Any:
    """Config → face models, template gallery and pipeline (blocking: model loading)."""
    from vision.embed import default_match_threshold
    from vision.liveness import LivenessGate
    from vision.models import load_detector, load_embedder, load_liveness
    from vision.pipeline import FacePipeline, PipelineSettings
    from vision.quality import QualityThresholds

    det, q = vision.detector, vision.quality
    detector = load_detector(det.kind, det.path, input_size=det.input_size,
                             score_threshold=det.score_threshold, roi=det.roi,
                             threads=vision.threads)
    embedder = load_embedder(vision.embedder.kind, vision.embedder.path, threads=vision.threads)
    liveness = None
    if vision.liveness is not None:
        liveness = LivenessGate(load_liveness(vision.liveness.kind, vision.liveness.paths,
                                              threads=vision.threads), vision.liveness.threshold)
    threshold = vision.match_threshold or default_match_threshold(vision.embedder.kind)
    gallery = template_store(vision).load_gallery(embedder.dim, threshold=threshold,
                                                  margin=vision.match_margin)
    log.info("vision: %d enrolled person(s), match threshold %.2f", len(gallery), threshold)
    settings = PipelineSettings(
        agree_frames=vision.agree_frames, portraits=portraits,
        portrait_margin=vision.portrait_margin, portrait_size_px=vision.portrait_size,
        quality=QualityThresholds(
            min_face_px_recognise=q.min_face_px_recognise,
            min_face_px_capture=q.min_face_px_capture,
            min_sharpness_recognise=q.min_sharpness_recognise,
            min_sharpness_capture=q.min_sharpness_capture,
        ),
    )
    return FacePipeline(detector, embedder, gallery, liveness=liveness, settings=settings)


def _threadsafe(loop: asyncio.AbstractEventLoop, callback: Callable[..., None],
                *args: Any) -> None:
    """Run ``callback(*args)`` on ``loop`` (from a driver's thread); dropped once it closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


class VisionPart:
    """Runs the camera and pipeline of one door; ``state`` and ``cameras`` for status and sim."""

    def __init__(self, *, passage: Passage, emit: Emit, capture: Capture,
                 simulate: bool) -> None:
        self._passage = passage
        self._emit = emit
        self._capture = capture
        self._simulate = simulate
        self.state = "absent"
        self.cameras: dict[str, Any] = {}  # door → synthetic camera source (simulate mode)

    async def run(self, cam: CameraSection, vision: VisionSection, portraits: str) -> None:
        """Camera → face pipeline (one inference thread) → observations on the loop.

        The portrait policy goes to the pipeline itself: with ``off`` no face pixel outlives
        its frame and no JPEG is ever encoded.
        """
        from drivers.camera import Camera, SyntheticSource, open_source
        from vision.pipeline import PipelineWorker, loop_delivery

        loop = asyncio.get_running_loop()
        pipeline = await asyncio.to_thread(build_pipeline, vision, portraits)
        size = (cam.width, cam.height)
        synthetic = SyntheticSource(size) if self._simulate else None
        source = synthetic or open_source(cam.source, size=size, fps=cam.fps)
        worker = PipelineWorker(pipeline, loop_delivery(loop, functools.partial(
            self._observation, cam.door)), name=f"vision:{cam.door}")
        camera = Camera(
            source, fps=cam.fps, name=f"camera:{cam.door}",
            on_frame=lambda frame: worker.submit(frame.image, frame.ts),
            on_fault=functools.partial(_threadsafe, loop, self._fault, cam.door),
            on_restored=functools.partial(_threadsafe, loop, self._restored, cam.door),
        )
        self.state = "ok"
        if synthetic is not None:
            self.cameras[cam.door] = synthetic
        worker.start()
        camera.start()
        try:
            await asyncio.Event().wait()
        finally:
            self.cameras.pop(cam.door, None)
            self.state = "absent"
            await asyncio.to_thread(camera.stop)  # joins threads: never on the loop
            await asyncio.to_thread(worker.stop)

    def _observation(self, door_id: str, observation: Any) -> None:
        from vision.pipeline import FaceRecognised, FaceRefused, TrackCapture

        if isinstance(observation, FaceRecognised):
            self._passage.face(door_id, FACE_RECOGNISED, observation.person, None)
        elif isinstance(observation, FaceRefused):
            self._passage.face(door_id, FACE_REFUSED, observation.person, observation.reason)
        elif isinstance(observation, TrackCapture):
            self._capture(Event("capture", door=door_id, person=observation.person,
                                data={"recognised": observation.recognised,
                                      "frames": observation.frames,
                                      "portrait": observation.jpeg is not None}),
                          observation.jpeg)

    def _fault(self, door_id: str, reason: str) -> None:
        self.state = "fault"
        self._emit(Event("camera.fault", door=door_id, reason="unavailable",
                         data={"detail": reason}))

    def _restored(self, door_id: str) -> None:
        self.state = "ok"
        self._emit(Event("camera.restored", door=door_id))
