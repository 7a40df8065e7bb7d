"""The face pipeline: frames in, observations out (a resident recognised, a face refused, a
passage's best portrait).

Per frame: motion gate → detect → track → quality → (only when worth it) align → embed → 1:N
match.  What keeps it cheap on a small board:

- idle frames stop at the motion gate (detection runs only on motion, while a face is tracked,
  and every ``idle_detect_seconds`` as a safety net);
- while every face in view is *followed* (decided, or its view too poor to identify for
  ``poor_view_follow_seconds`` with its liveness evidence complete: people standing back, a
  group passing at a distance), the detector runs only every ``follow_detect_seconds``: enough
  to follow those tracks to their end (tracks predict where a face moved between two
  detections), to see a poor view turn good and to find a newcomer a few frames later, at a
  fraction of the cost (the detector is nearly all of it); a track being identified (a new face,
  a recognisable view not yet decided, a match waiting for its liveness verdict) brings back
  every frame, so a resident walking up is identified as fast as before;
- once a track holds ``fuse_frames`` embeddings, a frame is embedded only when its quality beats
  the worst one kept; a decided track is never embedded again;
- a track's recognisable frames are embedded (landmarks refined first when a refiner is given)
  and fused over its best ``fuse_frames`` by quality (vision/fusion.py); once ``agree_frames``
  frames are fused, the fused embedding is searched after each new frame; a match then waits for
  the track's liveness verdict (:mod:`vision.liveness_track`: evidence of every frame of the
  track, waiting a few frames more when it is not complete yet).  A failed liveness
  check refuses the track for good (reason ``liveness_failed``) but its portrait is still taken.

Portraits obey the privacy policy (``off``, ``local``, ``upload``): with ``off`` no pixel of a face
is kept past the frame it was seen in; the capture carries metadata only (``jpeg=None``).

:class:`FacePipeline` is synchronous and single-threaded (tests and the benchmark drive it frame
by frame); :class:`PipelineWorker` runs it in the one inference thread with a latest-frame-wins
hand-off, and delivers observations through a callback (see :func:`loop_delivery`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from vision.detect import Detector, Face
from vision.embed import Embedder
from vision.fusion import DEFAULT_KEEP, TrackFusion
from vision.gallery import Gallery
from vision.landmarks import Refiner
from vision.liveness import LivenessGate
from vision.liveness_track import TrackLiveness
from vision.motion import MotionGate
from vision.quality import Quality, QualityThresholds, assess
from vision.track import DEFAULT_TIMEOUT_SECONDS, Track, Tracker

log = logging.getLogger(__name__)

PORTRAIT_POLICIES = ("off", "local", "upload")
LIVENESS_FAILED = "liveness_failed"
DEFAULT_AGREE_FRAMES = 3
DEFAULT_PORTRAIT_MARGIN = 0.4
DEFAULT_PORTRAIT_SIZE_PX = 256
DEFAULT_JPEG_QUALITY = 90
#: Detect at least this often while nothing moves (a person who crept in slowly).
DEFAULT_IDLE_DETECT_SECONDS = 2.0
#: Once ``fuse_frames`` frames are kept, a frame is embedded only when its quality rank beats the
#: worst kept one by this factor (a stranger walking past costs a few embeddings, not one per
#: frame).
DEFAULT_EMBED_IMPROVEMENT = 1.1
#: A face seen in fewer frames is more likely a false detection than a passage: no capture.
DEFAULT_MIN_CAPTURE_FRAMES = 2
#: Detect this often while every open track is followed: 0.3 s keeps a track alive (it ends
#: after ``track_timeout_seconds`` unseen) and finds a newcomer who walks in behind a decided
#: resident, or a poor view that turned good, within five frames at 15 fps.
DEFAULT_FOLLOW_DETECT_SECONDS = 0.3
#: A face whose view stayed too poor to identify this long is followed too: someone walking up to
#: the gate is recognisable well within a second (and then detected on every frame again).
DEFAULT_POOR_VIEW_FOLLOW_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class FaceRecognised:
    """The fused embedding of ``frames`` frames of one track matched ``person`` and liveness
    passed (or no liveness model is configured: ``liveness`` None); the door may open."""

    track_id: int
    person: str
    score: float
    second_score: float
    frames: int
    liveness: float | None
    ts: float


@dataclass(frozen=True, slots=True)
class FaceRefused:
    """A track that matched ``person`` but must not open the door (``reason``)."""

    track_id: int
    reason: str
    person: str | None
    score: float
    liveness: float | None
    ts: float


@dataclass(frozen=True, slots=True)
class TrackCapture:
    """The end of one passage: its best portrait (``jpeg`` None when the policy is ``off``)."""

    track_id: int
    person: str | None
    recognised: bool
    jpeg: bytes | None
    quality: Quality
    frames: int
    first_ts: float
    last_ts: float


Observation = FaceRecognised | FaceRefused | TrackCapture


@dataclass(frozen=True)
class PipelineSettings:
    """Decision and portrait settings (daemon/app.py maps ``vision`` and ``privacy`` here)."""

    agree_frames: int = DEFAULT_AGREE_FRAMES
    portraits: str = "off"
    portrait_margin: float = DEFAULT_PORTRAIT_MARGIN
    portrait_size_px: int = DEFAULT_PORTRAIT_SIZE_PX
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    idle_detect_seconds: float = DEFAULT_IDLE_DETECT_SECONDS
    follow_detect_seconds: float = DEFAULT_FOLLOW_DETECT_SECONDS
    poor_view_follow_seconds: float = DEFAULT_POOR_VIEW_FOLLOW_SECONDS
    track_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    embed_improvement: float = DEFAULT_EMBED_IMPROVEMENT
    min_capture_frames: int = DEFAULT_MIN_CAPTURE_FRAMES
    fuse_frames: int = DEFAULT_KEEP
    #: Kind of the detector ('scrfd', 'yunet'): the pose check corrects for its nose placement.
    detector_kind: str | None = None

    def __post_init__(self) -> None:
        if self.portraits not in PORTRAIT_POLICIES:
            raise ValueError(
                f"portrait policy must be one of {', '.join(PORTRAIT_POLICIES)}, "
                f"got {self.portraits!r}"
            )
        if self.agree_frames < 1:
            raise ValueError(f"agree_frames must be at least 1, got {self.agree_frames}")
        if self.fuse_frames < self.agree_frames:
            raise ValueError(
                f"fuse_frames ({self.fuse_frames}) must be at least agree_frames "
                f"({self.agree_frames})"
            )
        if not 0 <= self.follow_detect_seconds < self.track_timeout_seconds:
            raise ValueError(
                f"follow_detect_seconds ({self.follow_detect_seconds}) must be at least 0 and "
                f"shorter than track_timeout_seconds ({self.track_timeout_seconds}): a followed "
                "track would end between two detections"
            )

    @property
    def keeps_portraits(self) -> bool:
        return self.portraits != "off"


@dataclass
class PipelineStats:
    """Work done, for the benchmark and the health report."""

    frames: int = 0
    detections: int = 0
    embeddings: int = 0
    liveness_checks: int = 0
    #: frames not sent to the detector because every face in view was followed
    followed: int = 0


@dataclass
class _TrackState:
    fusion: TrackFusion
    best_score: float = -1.0
    decided: bool = False
    agreed: bool = False
    #: when the face's view became too poor to identify (None: its last view was good)
    poor_since: float | None = None
    candidate: str | None = None
    second_score: float = 0.0
    granted: str | None = None
    capture_frames: int = 0
    best_capture_rank: float = -1.0
    best_quality: Quality | None = None
    portrait: np.ndarray | None = None


def portrait_crop(bgr: np.ndarray, box: np.ndarray, margin: float, size_px: int) -> np.ndarray:
    """The face box grown by ``margin`` of its size on every side, clipped to the frame, scaled
    so its long side is ``size_px``."""
    height, width = bgr.shape[:2]
    box_w, box_h = float(box[2] - box[0]), float(box[3] - box[1])
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
    half_w, half_h = box_w * (1 + 2 * margin) / 2, box_h * (1 + 2 * margin) / 2
    x1, y1 = max(0, int(cx - half_w)), max(0, int(cy - half_h))
    x2, y2 = min(width, int(np.ceil(cx + half_w))), min(height, int(np.ceil(cy + half_h)))
    crop = bgr[y1:y2, x1:x2]
    if crop.size == 0:
        return np.zeros((size_px, size_px, 3), dtype=np.uint8)
    scale = size_px / max(crop.shape[:2])
    new_size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(crop, new_size, interpolation=interp)


def encode_jpeg(bgr: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


class FacePipeline:
    """One camera's face pipeline; call :meth:`process` with each frame, in time order."""

    def __init__(
        self,
        detector: Detector,
        embedder: Embedder,
        gallery: Gallery,
        *,
        liveness: TrackLiveness | LivenessGate | None = None,
        settings: PipelineSettings | None = None,
        motion: MotionGate | None = None,
        refiner: Refiner | None = None,
    ) -> None:
        self.detector = detector
        self.refiner = refiner
        self.embedder = embedder
        self.gallery = gallery
        if isinstance(liveness, LivenessGate):
            liveness = TrackLiveness(passive=liveness)
        self.liveness = liveness
        self.settings = settings or PipelineSettings()
        self.motion = motion if motion is not None else MotionGate()
        self.tracker = Tracker(timeout_seconds=self.settings.track_timeout_seconds)
        self.stats = PipelineStats()
        self._states: dict[int, _TrackState] = {}
        self._last_detect_ts: float | None = None
        if liveness is None:
            log.warning(
                "vision: no liveness model configured: face grants are not checked against "
                "photo or screen attacks (use card_and_face on doors that need it)"
            )

    def process(self, bgr: np.ndarray, ts: float) -> list[Observation]:
        """Observations caused by one frame taken at ``ts`` (monotonic seconds)."""
        self.stats.frames += 1
        moved = self.motion.moved(bgr)
        if not self._detect_now(moved, ts):
            return []
        self._last_detect_ts = ts
        self.stats.detections += 1
        faces = self.detector.detect(bgr)
        assigned, ended = self.tracker.update(faces, ts)
        observations: list[Observation] = []
        for track, face in assigned:
            observations.extend(self._observe(bgr, ts, track, face))
        observations.extend(self._unsettled(ts, track) for track in ended if self._pending(track))
        observations.extend(self._finish(track) for track in ended if self._capturable(track))
        for track in ended:
            self._states.pop(track.id, None)
            if self.liveness is not None:
                self.liveness.forget(track.id)
        return observations

    def _detect_now(self, moved: bool, ts: float) -> bool:
        """Whether this frame goes to the detector (see the module docstring)."""
        last = self._last_detect_ts
        if last is None:
            return True
        if self.tracker.tracks:
            if ts - last < self.settings.follow_detect_seconds and all(
                self._followed(track, ts) for track in self.tracker.tracks
            ):
                self.stats.followed += 1
                return False
            return True
        return moved or ts - last >= self.settings.idle_detect_seconds

    def _followed(self, track: Track, ts: float) -> bool:
        """Whether ``track`` can do without a detection on every frame: decided, or its view
        too poor to identify for a while (nothing to identify) with its liveness evidence
        complete."""
        state = self._states.get(track.id)
        if state is None:
            return False
        if state.decided:
            return True
        if state.agreed or state.poor_since is None:
            return False
        if ts - state.poor_since < self.settings.poor_view_follow_seconds:
            return False
        return self.liveness is None or not self.liveness.collecting(track.id)

    def flush(self) -> list[Observation]:
        """End every open track (camera lost or pipeline stopping): their captures."""
        ended = self.tracker.close_all()
        observations: list[Observation] = [
            self._unsettled(track.last_ts, track) for track in ended if self._pending(track)
        ]
        observations += [self._finish(track) for track in ended if self._capturable(track)]
        self._states.clear()
        if self.liveness is not None:
            self.liveness.reset()
        self.motion.reset()
        return observations

    def _observe(
        self, bgr: np.ndarray, ts: float, track: Track, face: Face
    ) -> list[Observation]:
        state = self._states.get(track.id)
        if state is None:
            state = self._states[track.id] = _TrackState(TrackFusion(self.settings.fuse_frames))
        quality = assess(bgr, face, detector=self.settings.detector_kind)
        thresholds = self.settings.quality
        recognisable = thresholds.recognisable(quality)
        if recognisable:
            state.poor_since = None
        elif state.poor_since is None:
            state.poor_since = ts
        if thresholds.capturable(quality):
            state.capture_frames += 1
            if quality.rank > state.best_capture_rank:
                state.best_capture_rank = quality.rank
                state.best_quality = quality
                if self.settings.keeps_portraits:
                    state.portrait = portrait_crop(
                        bgr, face.box, self.settings.portrait_margin, self.settings.portrait_size_px
                    )
        if self.liveness is not None and not state.decided:
            self.liveness.observe(track.id, bgr, face, ts)
        if state.agreed and not state.decided:
            return self._settle(ts, track, state)
        if state.decided or not recognisable:
            return []
        fusion = state.fusion
        if fusion.full() and quality.rank <= fusion.worst_rank() * self.settings.embed_improvement:
            return []
        if self.refiner is not None:
            face = self.refiner.refine(bgr, face)
        self.stats.embeddings += 1
        fusion.add(self.embedder.embed_face(bgr, face.kps), quality.rank)
        if len(fusion) < self.settings.agree_frames:
            return []
        match = self.gallery.search(fusion.fused())
        if match.person is None:
            return []
        state.agreed, state.candidate = True, match.person
        state.best_score, state.second_score = match.score, match.second_score
        return self._settle(ts, track, state)

    def _settle(self, ts: float, track: Track, state: _TrackState) -> list[Observation]:
        """The agreed person of a track, granted unless the track's liveness verdict refuses it
        (nothing yet while the verdict waits for evidence)."""
        person = state.candidate
        assert person is not None  # agreed implies a candidate
        live: float | None = None
        if self.liveness is not None:
            verdict = self.liveness.verdict(track.id)
            if verdict is None:
                return []
            self.stats.liveness_checks += 1
            live = verdict.score
            if not verdict.live:
                state.decided = True
                log.info("vision: track %d refused: liveness failed (%s)", track.id, verdict.reason)
                return [FaceRefused(track.id, LIVENESS_FAILED, person, state.best_score, live, ts)]
        state.decided = True
        state.granted = person
        return [FaceRecognised(
            track.id, person, state.best_score, state.second_score, len(state.fusion), live, ts
        )]

    def _pending(self, track: Track) -> bool:
        state = self._states.get(track.id)
        return state is not None and state.agreed and not state.decided

    def _unsettled(self, ts: float, track: Track) -> Observation:
        """A track that left while its liveness verdict still waited for evidence: refused."""
        state = self._states[track.id]
        log.info("vision: track %d refused: left before liveness evidence was complete", track.id)
        return FaceRefused(track.id, LIVENESS_FAILED, state.candidate, state.best_score, None, ts)

    def _capturable(self, track: Track) -> bool:
        state = self._states.get(track.id)
        return (
            state is not None
            and state.best_quality is not None
            and state.capture_frames >= self.settings.min_capture_frames
        )

    def _finish(self, track: Track) -> TrackCapture:
        state = self._states[track.id]
        assert state.best_quality is not None  # guaranteed by _capturable
        jpeg = None
        if self.settings.keeps_portraits and state.portrait is not None:
            jpeg = encode_jpeg(state.portrait, self.settings.jpeg_quality)
        return TrackCapture(
            track.id, state.granted, state.granted is not None, jpeg, state.best_quality,
            track.frames, track.first_ts, track.last_ts,
        )


Deliver = Callable[[Observation], None]


def loop_delivery(loop: asyncio.AbstractEventLoop, handler: Deliver) -> Deliver:
    """A ``deliver`` callback for :class:`PipelineWorker` that runs ``handler`` on ``loop``."""

    def deliver(observation: Observation) -> None:
        try:
            loop.call_soon_threadsafe(handler, observation)
        except RuntimeError:
            log.debug("vision: event loop closed, observation dropped: %r", type(observation))

    return deliver


class PipelineWorker:
    """The one inference thread of a camera, fed through a one-frame latest-wins slot.

    ``submit`` never blocks (the camera's grabber thread calls it): a frame still waiting when
    the next arrives is replaced and counted in ``dropped``, so the pipeline always works on the
    newest picture and never falls behind the door.
    """

    def __init__(self, pipeline: FacePipeline, deliver: Deliver, *, name: str = "vision") -> None:
        self.pipeline = pipeline
        self.deliver = deliver
        self.name = name
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self._pending: tuple[np.ndarray, float] | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def submit(self, image: np.ndarray, ts: float) -> None:
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (image, ts)
            self._cond.notify()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"infer:{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the frame in progress, end the open tracks (their captures are delivered)."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for observation in self.pipeline.flush():
            self.deliver(observation)

    def idle(self) -> bool:
        """Nothing waiting in the slot (the frame in progress may still be running)."""
        with self._cond:
            return self._pending is None

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._pending is not None)
                if self._stopping:
                    return
                assert self._pending is not None
                image, ts = self._pending
                self._pending = None
            try:
                observations = self.pipeline.process(image, ts)
            except Exception:
                self.errors += 1
                log.exception("%s: frame failed", self.name)
                continue
            self.processed += 1
            for observation in observations:
                self.deliver(observation)
