"""ONNX Runtime sessions and the explicit registry of model kinds.

Sessions are tuned for Raspberry-Pi-class boards: a configured number of intra-op threads (the
board also runs card readers and the uplink), one inter-op thread with sequential execution (these
small graphs have no parallel branches worth a thread pool), and full graph optimisation.  A session
is built once per (file, threads) and reused: loading costs tens of milliseconds and megabytes.

Kinds are stated in the config and looked up here; nothing is guessed from the number or shape of a
model's outputs (insightface's ``model_zoo`` does that and decodes YuNet as SCRFD).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from vision.detect import Detector, ScrfdDetector, YunetDetector
from vision.embed import (
    ARCFACE_LAYOUT,
    REID_0095_LAYOUT,
    Embedder,
    Layout,
    OnnxEmbedder,
    Preprocess,
    arcface_blob,
    imagenet_blob,
    paddlex_blob,
    reid_0095_blob,
)
from vision.landmarks import Refiner
from vision.liveness import (
    MINIFAS_CROP_SCALES,
    InsightfaceLiveness,
    Liveness,
    MiniFasLiveness,
)

log = logging.getLogger(__name__)

#: ORT's default severity prints a VerifyOutputSizes warning on every SCRFD call at sizes other
#: than the declared 640x640 (results are correct); errors still reach the log.
ORT_LOG_SEVERITY_ERROR = 3

DETECTORS: dict[str, type[ScrfdDetector] | type[YunetDetector]] = {
    "scrfd": ScrfdDetector,
    "yunet": YunetDetector,
}
EMBEDDER_PREPROCESS: dict[str, tuple[Preprocess, Layout]] = {
    "arcface": (arcface_blob, ARCFACE_LAYOUT),
    "mobilefacenet_foamliu": (imagenet_blob, ARCFACE_LAYOUT),
    "mobilefacenet_paddlex": (paddlex_blob, ARCFACE_LAYOUT),
    "face_reid_0095": (reid_0095_blob, REID_0095_LAYOUT),
}
LIVENESS_KINDS = ("minifasnet", "insightface")


class ModelError(Exception):
    """A model file that is missing, unreadable, or configured with an unknown kind."""


_sessions: dict[tuple[str, int, int, int], ort.InferenceSession] = {}
_sessions_lock = threading.Lock()


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = ORT_LOG_SEVERITY_ERROR
    return options


def create_session(path: Path | str, *, threads: int = 1) -> ort.InferenceSession:
    """The shared session of one model file (built on first use, and again if the file changed:
    an installer who replaces a model and reloads the config gets the new one)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise ModelError(f"model file not found: {path}") from None
    key = (str(path.resolve()), threads, stat.st_mtime_ns, stat.st_size)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is not None:
            return session
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped errors for corrupt files
            raise ModelError(f"cannot load model {path}: {exc}") from exc
        log.info("model loaded: %s (%d thread(s))", path.name, threads)
        _sessions[key] = session
        return session


def _unknown(kind: str, role: str, known: Sequence[str]) -> ModelError:
    return ModelError(f"unknown {role} kind {kind!r} (known: {', '.join(sorted(known))})")


def load_detector(
    kind: str,
    path: Path | str,
    *,
    input_size: tuple[int, int] = (640, 480),
    score_threshold: float = 0.6,
    roi: tuple[int, int, int, int] | None = None,
    threads: int = 1,
) -> Detector:
    """Detector of the configured ``kind`` ('scrfd' or 'yunet')."""
    if kind not in DETECTORS:
        raise _unknown(kind, "detector", list(DETECTORS))
    session = create_session(path, threads=threads)
    try:
        return DETECTORS[kind](
            session, input_size=input_size, score_threshold=score_threshold, roi=roi
        )
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from exc


#: Input of the second, landmark-refining detector pass: the face crop is resized to it, so the
#: pass costs the same for any face size (YuNet: about 2 x 3 ms a face on one x86 core).
REFINE_INPUT_SIZE = (160, 160)
REFINE_SCORE_THRESHOLD = 0.5


def load_refiner(kind: str, path: Path | str, *, threads: int = 1) -> Refiner:
    """Landmark refiner (vision/landmarks.py) running the configured detector on face crops."""
    detector = load_detector(
        kind, path, input_size=REFINE_INPUT_SIZE, score_threshold=REFINE_SCORE_THRESHOLD,
        threads=threads,
    )
    return Refiner(detector)


def load_embedder(
    kind: str, path: Path | str, *, threads: int = 1, mirror: bool = False
) -> Embedder:
    """Embedder of the configured ``kind`` (arcface, mobilefacenet_foamliu, mobilefacenet_paddlex
    or face_reid_0095); ``mirror`` averages each face with its mirror image (vision/embed.py)."""
    if kind not in EMBEDDER_PREPROCESS:
        raise _unknown(kind, "embedder", list(EMBEDDER_PREPROCESS))
    session = create_session(path, threads=threads)
    preprocess, layout = EMBEDDER_PREPROCESS[kind]
    return OnnxEmbedder(session, kind=kind, preprocess=preprocess, layout=layout, mirror=mirror)


def load_liveness(kind: str, paths: Sequence[Path | str], *, threads: int = 1) -> Liveness:
    """Liveness check of the configured ``kind``.

    'minifasnet' takes the two Silent-Face files; each file's crop scale is read from its upstream
    name (``2.7_80x80_MiniFASNetV2``, ``4_0_0_80x80_MiniFASNetV1SE``).  'insightface' takes the
    one ``liveness.onnx`` file of insightface's addon.
    """
    if kind not in LIVENESS_KINDS:
        raise _unknown(kind, "liveness", LIVENESS_KINDS)
    if kind == "insightface":
        if len(paths) != 1:
            raise ModelError("liveness 'insightface' takes exactly one file (liveness.onnx)")
        try:
            return InsightfaceLiveness(create_session(paths[0], threads=threads))
        except ValueError as exc:
            raise ModelError(f"{paths[0]}: {exc}") from exc
    if not paths:
        raise ModelError("liveness 'minifasnet' needs its model files (2.7 and 4.0 crops)")
    models = []
    for path in paths:
        scale = MINIFAS_CROP_SCALES.get(_minifas_prefix(Path(path).name))
        if scale is None:
            raise ModelError(
                f"{path}: cannot tell the crop scale of this MiniFASNet file; keep the upstream "
                f"name starting with one of {', '.join(MINIFAS_CROP_SCALES)}"
            )
        models.append((create_session(path, threads=threads), scale))
    return MiniFasLiveness(models)


def _minifas_prefix(name: str) -> str:
    return name.split("_80x80")[0]
