"""Face pipeline on synthetic gate video built from the real test photos, with the real models.

Scenes: an empty, slightly noisy gate backdrop; residents' probe photos (never their enrolment
photos) and a stranger (scikit-image's astronaut) walk across it with idle stretches between.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from drivers.camera import Camera, SyntheticSource
from drivers.sim.gate_scene import GateScene
from tests.vision import material
from vision.detect import Detector, Face
from vision.embed import DEFAULT_MATCH_MARGIN, default_match_threshold
from vision.liveness import LivenessGate
from vision.liveness_track import TrackLiveness
from vision.models import load_detector, load_embedder, load_liveness
from vision.motion import MotionGate
from vision.pipeline import (
    LIVENESS_FAILED,
    FacePipeline,
    FaceRecognised,
    FaceRefused,
    Observation,
    PipelineSettings,
    PipelineWorker,
    TrackCapture,
    loop_delivery,
)

T = TypeVar("T")
FPS = 10.0
FRAME_SIZE = (640, 480)
STRANGER = "astronaut"
#: (photo, person, sprite height px, direction)
PASSAGES = [
    ("probe/obama1.jpg", "obama", 300, 1),
    ("probe/alex_lacamoire1.jpg", "alex_lacamoire", 300, -1),
    (STRANGER, None, 330, 1),
]
PASSAGE_SECONDS = 3.0
IDLE_SECONDS = 1.5


def photo(faces: Path, name: str) -> np.ndarray:
    if name == STRANGER:
        return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    return material.image(faces / name)


def scene(faces: Path, passages: list[tuple[str, str | None, int, int]]) -> GateScene:
    gate = GateScene(FRAME_SIZE, FPS)
    start = IDLE_SECONDS
    for name, _, height, direction in passages:
        gate.add(photo(faces, name), start_s=start, duration_s=PASSAGE_SECONDS,
                 height_px=height, direction=direction, label=name)
        start += PASSAGE_SECONDS + IDLE_SECONDS
    ended = GateScene(FRAME_SIZE, FPS, seconds=start)  # ends with an idle stretch
    ended.passages = gate.passages
    return ended


ROUTES = {
    "permissive": ("yunet", "mobilefacenet_paddlex"),
    "insightface": ("scrfd", "arcface"),
}


def build(
    models: Path, faces: Path, route: str = "permissive", **settings: object
) -> FacePipeline:
    det_kind, emb_kind = ROUTES[route]
    file, threshold = material.DETECTORS[det_kind]
    detector = load_detector(det_kind, models / file, input_size=FRAME_SIZE,
                             score_threshold=threshold)
    embedder = load_embedder(emb_kind, models / material.EMBEDDERS[emb_kind])
    gallery = material.gallery(models, faces, det_kind, emb_kind,
                               threshold=default_match_threshold(emb_kind),
                               margin=DEFAULT_MATCH_MARGIN)
    liveness = LivenessGate(load_liveness(
        "minifasnet", [models / f for f in material.LIVENESS_FILES]))
    return FacePipeline(detector, embedder, gallery, liveness=liveness,
                        settings=PipelineSettings(**settings))  # type: ignore[arg-type]


def run(pipeline: FacePipeline, gate: GateScene) -> list[tuple[float, Observation]]:
    seen: list[tuple[float, Observation]] = []
    for image, ts in gate.frames():
        seen.extend((ts, obs) for obs in pipeline.process(image, ts))
    seen.extend((gate.seconds, obs) for obs in pipeline.flush())
    return seen


def of_type(seen: list[tuple[float, Observation]], kind: type[T]) -> list[T]:
    return [obs for _, obs in seen if isinstance(obs, kind)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("route", list(ROUTES))
def test_one_capture_per_passage_and_residents_recognised(
    models_dir: Path, faces_dir: Path, route: str
) -> None:
    pipeline = build(models_dir, faces_dir, route, portraits="upload", portrait_size_px=200)
    gate = scene(faces_dir, PASSAGES)
    seen = run(pipeline, gate)

    captures = of_type(seen, TrackCapture)
    assert len(captures) == len(PASSAGES), [(c.track_id, c.person, c.frames) for c in captures]
    assert len({c.track_id for c in captures}) == len(PASSAGES)
    # Each capture is delivered after its passage left, before the next one ended.
    capture_times = [ts for ts, obs in seen if isinstance(obs, TrackCapture)]
    ends = [p.start_s + p.duration_s for p in gate.passages]
    for ts, end, next_end in zip(capture_times, ends, [*ends[1:], gate.seconds], strict=True):
        assert end <= ts <= next_end
    assert [c.person for c in captures] == [p for _, p, _, _ in PASSAGES]
    assert [c.recognised for c in captures] == [p is not None for _, p, _, _ in PASSAGES]

    granted = of_type(seen, FaceRecognised)
    assert sorted(g.person for g in granted) == sorted(p for _, p, _, _ in PASSAGES if p)
    assert all(g.liveness is not None and g.liveness >= 0.5 for g in granted)
    assert of_type(seen, FaceRefused) == []
    for capture in captures:
        assert capture.jpeg is not None
        portrait = cv2.imdecode(np.frombuffer(capture.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert portrait is not None and max(portrait.shape[:2]) == 200


@pytest.mark.timeout(120)
def test_policy_off_lets_no_image_out(models_dir: Path, faces_dir: Path) -> None:
    pipeline = build(models_dir, faces_dir, portraits="off")
    seen = run(pipeline, scene(faces_dir, PASSAGES[:1]))
    captures = of_type(seen, TrackCapture)
    assert len(captures) == 1
    assert captures[0].jpeg is None
    assert captures[0].recognised and captures[0].person == "obama"
    for _, obs in seen:
        for value in dataclasses.asdict(obs).values():
            assert not isinstance(value, bytes | np.ndarray), obs


@pytest.mark.timeout(120)
@pytest.mark.parametrize("agree_frames", [1, 3, 5])
def test_a_grant_needs_k_agreeing_frames_of_the_track(
    models_dir: Path, faces_dir: Path, agree_frames: int
) -> None:
    pipeline = build(models_dir, faces_dir, agree_frames=agree_frames)
    gate = scene(faces_dir, PASSAGES[:1])
    grants: list[tuple[int, FaceRecognised]] = []
    for image, ts in gate.frames():
        for obs in pipeline.process(image, ts):
            if isinstance(obs, FaceRecognised):
                grants.append((pipeline.stats.embeddings, obs))
    assert len(grants) == 1
    embeddings_before_grant, grant = grants[0]
    assert grant.frames == agree_frames
    assert grant.person == "obama"
    assert embeddings_before_grant >= agree_frames


def test_fusing_fewer_frames_than_must_agree_is_refused() -> None:
    with pytest.raises(ValueError, match=r"fuse_frames \(2\) must be at least agree_frames \(3\)"):
        PipelineSettings(agree_frames=3, fuse_frames=2)


@pytest.mark.timeout(120)
def test_more_agreeing_frames_than_the_passage_has_is_no_grant(
    models_dir: Path, faces_dir: Path
) -> None:
    pipeline = build(models_dir, faces_dir, agree_frames=30, fuse_frames=30)
    seen = run(pipeline, scene(faces_dir, PASSAGES[:1]))
    assert of_type(seen, FaceRecognised) == []
    (capture,) = of_type(seen, TrackCapture)
    assert not capture.recognised and capture.person is None


class SpoofEverything:
    """A liveness check that finds every face spoofed (as a real model does a photo attack)."""

    def score(self, bgr: np.ndarray, face: Face) -> float:
        return 0.02


@pytest.mark.timeout(120)
def test_failed_liveness_refuses_but_still_captures(models_dir: Path, faces_dir: Path) -> None:
    pipeline = build(models_dir, faces_dir, portraits="local")
    pipeline.liveness = TrackLiveness(passive=LivenessGate(SpoofEverything(), 0.5))
    seen = run(pipeline, scene(faces_dir, PASSAGES[:1]))
    assert of_type(seen, FaceRecognised) == []
    (refused,) = of_type(seen, FaceRefused)
    assert refused.reason == LIVENESS_FAILED
    assert refused.person == "obama"
    assert refused.liveness == pytest.approx(0.02)
    (capture,) = of_type(seen, TrackCapture)
    assert not capture.recognised
    assert capture.jpeg is not None


@pytest.mark.timeout(60)
def test_idle_frames_skip_detection(models_dir: Path, faces_dir: Path) -> None:
    pipeline = build(models_dir, faces_dir, idle_detect_seconds=2.0)
    gate = GateScene(FRAME_SIZE, FPS, seconds=5.0)
    assert run(pipeline, gate) == []
    # Only the first frame (no reference yet) and the 2-second safety net: t = 0, 2, 4.
    assert pipeline.stats.frames == 50
    assert pipeline.stats.detections == 3
    assert pipeline.stats.embeddings == 0


@pytest.mark.timeout(120)
def test_a_stranger_is_embedded_only_when_the_view_improves(
    models_dir: Path, faces_dir: Path
) -> None:
    # Five frames kept (the default keeps 12, every look of a passage): once they are held, a
    # frame is embedded only when it beats the worst kept one.
    pipeline = build(models_dir, faces_dir, fuse_frames=5)
    seen = run(pipeline, scene(faces_dir, PASSAGES[2:]))
    (capture,) = of_type(seen, TrackCapture)
    assert not capture.recognised
    assert 1 <= pipeline.stats.embeddings < capture.frames / 2


def newcomer_scene(faces: Path) -> GateScene:
    """Alex walks in (lower, the other way) while Obama, already recognised, is still crossing."""
    gate = GateScene(FRAME_SIZE, FPS)
    gate.add(photo(faces, "probe/obama1.jpg"), start_s=0.5, duration_s=6.0, height_px=230,
             top_px=0, label="obama")
    gate.add(photo(faces, "probe/alex_lacamoire1.jpg"), start_s=2.5, duration_s=6.0,
             height_px=230, top_px=250, direction=-1, label="alex")
    ended = GateScene(FRAME_SIZE, FPS, seconds=9.0)
    ended.passages = gate.passages
    return ended


@pytest.mark.timeout(180)
def test_decided_faces_are_followed_with_fewer_detections_and_the_same_outcome(
    models_dir: Path, faces_dir: Path
) -> None:
    outcomes = {}
    for follow in (0.0, 0.3):  # 0: the detector on every frame
        pipeline = build(models_dir, faces_dir, follow_detect_seconds=follow)
        seen = run(pipeline, newcomer_scene(faces_dir))
        outcomes[follow] = pipeline.stats, [
            (g.track_id, g.person) for g in of_type(seen, FaceRecognised)
        ], [(c.track_id, c.person) for c in of_type(seen, TrackCapture)]
    every, followed = outcomes[0.0], outcomes[0.3]
    # The newcomer is found and recognised although the first face was only followed.
    assert followed[1] == every[1] == [(1, "obama"), (2, "alex_lacamoire")]
    assert followed[2] == every[2]
    assert every[0].followed == 0
    assert followed[0].followed > 0
    assert followed[0].detections + followed[0].followed <= every[0].detections
    assert followed[0].detections < every[0].detections * 0.75


@pytest.mark.timeout(120)
def test_a_face_too_small_to_identify_for_a_second_is_followed(
    models_dir: Path, faces_dir: Path
) -> None:
    captures = {}
    stats = {}
    for follow in (0.0, 0.3):
        pipeline = build(models_dir, faces_dir, follow_detect_seconds=follow)
        seen = run(pipeline, scene(faces_dir, [(STRANGER, None, 180, 1)]))
        captures[follow] = [(c.track_id, c.person) for c in of_type(seen, TrackCapture)]
        stats[follow] = pipeline.stats
    assert captures[0.3] == captures[0.0] == [(1, None)]
    assert stats[0.3].embeddings == stats[0.0].embeddings == 0
    assert stats[0.3].followed > 0
    assert stats[0.3].detections < stats[0.0].detections


def test_a_followed_track_must_be_seen_before_it_times_out() -> None:
    with pytest.raises(ValueError, match=r"follow_detect_seconds \(1.0\) must be at least 0 and "
                       r"shorter than track_timeout_seconds \(1.0\)"):
        PipelineSettings(follow_detect_seconds=1.0)


def test_unknown_portrait_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="portrait policy must be one of off, local, upload"):
        PipelineSettings(portraits="sometimes")


class GatedDetector:
    """The real detector, held at the first frame until the test releases it."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[int] = []

    def detect(self, bgr: np.ndarray) -> list[Face]:
        self.seen.append(int(bgr[0, 0, 0]))
        self.entered.set()
        self.release.wait(30)
        return self.inner.detect(bgr)


@pytest.mark.timeout(60)
def test_worker_drops_stale_frames_latest_wins(models_dir: Path, faces_dir: Path) -> None:
    pipeline = build(models_dir, faces_dir)
    gated = GatedDetector(pipeline.detector)
    pipeline.detector = gated
    pipeline.motion = MotionGate()
    delivered: list[Observation] = []
    worker = PipelineWorker(pipeline, delivered.append)
    frames = [np.full((480, 640, 3), 10 * i, dtype=np.uint8) for i in range(1, 7)]
    worker.start()
    try:
        worker.submit(frames[0], 0.0)
        assert gated.entered.wait(10)
        for i, frame in enumerate(frames[1:], start=1):  # the worker is busy meanwhile
            worker.submit(frame, i / FPS)
        gated.release.set()
        deadline = time.monotonic() + 30
        while not (worker.processed == 2 and worker.idle()) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.stop()
    assert gated.seen == [10, 60]  # the first frame, then only the newest
    assert worker.dropped == 4
    assert worker.processed == 2
    assert worker.errors == 0


@pytest.mark.timeout(120)
async def test_worker_delivers_to_the_event_loop(models_dir: Path, faces_dir: Path) -> None:
    pipeline = build(models_dir, faces_dir, portraits="upload")
    queue: asyncio.Queue[Observation] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    handled_on: list[int] = []

    def handler(obs: Observation) -> None:
        handled_on.append(threading.get_ident())
        queue.put_nowait(obs)

    worker = PipelineWorker(pipeline, loop_delivery(loop, handler))
    worker.start()
    gate = scene(faces_dir, PASSAGES[:1])
    try:
        for image, ts in gate.frames():
            worker.submit(image, ts)
            await asyncio.sleep(0.05)  # a camera's pace; the loop stays free meanwhile
    finally:
        await asyncio.to_thread(worker.stop)
    received: list[Observation] = []
    while len(received) < 2:
        received.append(await asyncio.wait_for(queue.get(), 30))
    kinds = {type(obs) for obs in received}
    assert kinds == {FaceRecognised, TrackCapture}
    assert set(handled_on) == {threading.get_ident()}
    assert gallery_person(received) == "obama"


def gallery_person(observations: list[Observation]) -> str | None:
    for obs in observations:
        if isinstance(obs, FaceRecognised):
            return obs.person
    return None



@pytest.mark.timeout(120)
def test_photo_shown_to_the_synthetic_camera_is_granted_once(
    models_dir: Path, faces_dir: Path
) -> None:
    """The simulate-mode path of `menjin sim face DOOR PHOTO`: camera → worker → observations."""
    pipeline = build(models_dir, faces_dir, portraits="off")
    delivered: list[Observation] = []
    lock = threading.Lock()

    def deliver(obs: Observation) -> None:
        with lock:
            delivered.append(obs)

    worker = PipelineWorker(pipeline, deliver)
    # The daemon's default camera size; MiniFASNet needs the context a real frame gives (the same
    # photo squeezed into 640x480 with grey bars scores 0.39 and is refused).
    source = SyntheticSource((1280, 720))
    camera = Camera(source, fps=15, on_frame=lambda f: worker.submit(f.image, f.ts))
    worker.start()
    camera.start()
    try:
        source.show(material.image(faces_dir / "probe/obama1.jpg"), seconds=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if any(isinstance(obs, FaceRecognised) for obs in delivered):
                    break
            time.sleep(0.05)
    finally:
        camera.stop()
        worker.stop()
    granted = [obs for obs in delivered if isinstance(obs, FaceRecognised)]
    assert [g.person for g in granted] == ["obama"]
    (capture,) = [obs for obs in delivered if isinstance(obs, TrackCapture)]
    assert capture.recognised and capture.jpeg is None
