"""Face detection: SCRFD and YuNet decoded here, with our own non-maximum suppression.

Each detector is written against its model's documented outputs (see the models README that ships
with the test material) instead of insightface's ``model_zoo``, which guesses a decoder from the
number of outputs and decodes YuNet as if it were SCRFD.  The configured ``kind`` picks the class;
``vision.models`` builds it.

Both detectors letterbox the frame (or its region of interest) into the configured input size,
keeping the aspect ratio and padding bottom and right, so coordinates map back with one scale and
one offset.  Landmark order is the same for both: image-left eye, image-right eye, nose tip,
image-left mouth corner, image-right mouth corner: the order the ArcFace template expects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
#: Both models need input sides that are multiples of the coarsest stride.
SIZE_MULTIPLE = 32
SCRFD_ANCHORS_PER_CELL = 2
SCRFD_OUTPUTS = 3 * len(STRIDES)
SCRFD_NMS_IOU = 0.4
YUNET_NMS_IOU = 0.3
#: Candidates kept before NMS; a gate camera never sees more faces than this at once.
MAX_CANDIDATES = 200


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in frame pixels.

    ``box`` is x1, y1, x2, y2 (float32, shape (4,)); ``kps`` the five landmarks (float32, (5, 2)).
    Boxes of faces cut by the frame border may extend past it: quality and cropping clip them.
    """

    box: np.ndarray
    kps: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


class Detector(Protocol):
    """Anything that finds faces in a BGR frame."""

    def detect(self, bgr: np.ndarray) -> list[Face]:
        """Faces in the frame, best score first."""
        ...


def round_up(value: int, multiple: int = SIZE_MULTIPLE) -> int:
    return -(-value // multiple) * multiple


def letterbox(bgr: np.ndarray, size_wh: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Fit ``bgr`` into a zero canvas of ``size_wh`` (top-left aligned); return it and the scale."""
    width, height = size_wh
    src_h, src_w = bgr.shape[:2]
    scale = min(width / src_w, height / src_h)
    new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(bgr, (new_w, new_h), interpolation=interp)
    return canvas, scale


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-6)
        order = rest[iou <= iou_threshold]
    return keep


def _grid(height: int, width: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row index of every cell, row-major (the order of the models' outputs)."""
    rows, cols = np.mgrid[: height // stride, : width // stride]
    return cols.reshape(-1).astype(np.float32), rows.reshape(-1).astype(np.float32)


class _LetterboxDetector:
    """Shared plumbing: region of interest, letterboxing, mapping back, NMS."""

    nms_iou: float

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        input_size: tuple[int, int],
        score_threshold: float,
        roi: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        fixed = session.get_inputs()[0].shape[2:]
        if all(isinstance(side, int) for side in fixed):
            # A graph with a fixed input (YuNet 2023mar) only accepts that size.
            size = (int(fixed[1]), int(fixed[0]))
            if size != tuple(input_size):
                log.info("detector input fixed by the model at %sx%s", *size)
        else:
            size = (round_up(input_size[0]), round_up(input_size[1]))
        self.input_size: tuple[int, int] = size
        self.score_threshold = score_threshold
        self.roi = roi

    def detect(self, bgr: np.ndarray) -> list[Face]:
        offset = np.zeros(2, dtype=np.float32)
        image = bgr
        if self.roi is not None:
            x, y, w, h = self.roi
            x, y = max(x, 0), max(y, 0)
            image = bgr[y : y + h, x : x + w]
            offset[:] = (x, y)
        if image.size == 0:
            return []
        canvas, scale = letterbox(image, self.input_size)
        boxes, kps, scores = self._decode(canvas)
        if not len(scores):
            return []
        top = scores.argsort()[::-1][:MAX_CANDIDATES]
        boxes, kps, scores = boxes[top], kps[top], scores[top]
        faces = []
        for i in nms(boxes, scores, self.nms_iou):
            box = boxes[i] / scale + np.tile(offset, 2)
            points = kps[i].reshape(5, 2) / scale + offset
            faces.append(Face(box.astype(np.float32), points.astype(np.float32), float(scores[i])))
        return faces

    def _decode(self, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError


class ScrfdDetector(_LetterboxDetector):
    """SCRFD (insightface ``det_500m``/``det_2.5g``/``det_10g``): RGB, (x - 127.5) / 128.

    Outputs in graph order: three score maps, three box maps, three landmark maps (strides 8, 16,
    32), two anchors per cell, scores already sigmoid, distances in units of the stride.
    """

    nms_iou = SCRFD_NMS_IOU

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        input_size: tuple[int, int],
        score_threshold: float,
        roi: tuple[int, int, int, int] | None = None,
    ) -> None:
        super().__init__(session, input_size=input_size, score_threshold=score_threshold, roi=roi)
        outputs = len(session.get_outputs())
        if outputs != SCRFD_OUTPUTS:
            raise ValueError(
                f"this model has {outputs} outputs, SCRFD with landmarks has {SCRFD_OUTPUTS} "
                "(scores, boxes, landmarks at 3 strides); check the detector kind and file"
            )

    def _decode(self, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        blob = cv2.dnn.blobFromImage(
            canvas, 1.0 / 128, canvas.shape[1::-1], (127.5, 127.5, 127.5), swapRB=True
        )
        outputs = self.session.run(None, {self.input_name: blob})
        height, width = canvas.shape[:2]
        boxes, kps, scores = [], [], []
        for level, stride in enumerate(STRIDES):
            score = np.asarray(outputs[level]).reshape(-1)
            dist = np.asarray(outputs[level + 3]).reshape(-1, 4) * stride
            marks = np.asarray(outputs[level + 6]).reshape(-1, 10) * stride
            keep = np.flatnonzero(score >= self.score_threshold)
            if not keep.size:
                continue
            cols, rows = _grid(height, width, stride)
            cx = np.repeat(cols * stride, SCRFD_ANCHORS_PER_CELL)[keep]
            cy = np.repeat(rows * stride, SCRFD_ANCHORS_PER_CELL)[keep]
            d = dist[keep]
            boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1))
            centres = np.tile(np.stack([cx, cy], 1), 5)
            kps.append(centres + marks[keep])
            scores.append(score[keep])
        return _concat(boxes, kps, scores)


class YunetDetector(_LetterboxDetector):
    """YuNet (OpenCV Zoo, MIT): BGR raw 0-255 floats; outputs named ``cls_s``, ``obj_s``, ...

    Score = sqrt(cls * obj); box centre and landmarks are offsets from the cell in stride units,
    box size is exp(.) * stride.
    """

    nms_iou = YUNET_NMS_IOU

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        input_size: tuple[int, int],
        score_threshold: float,
        roi: tuple[int, int, int, int] | None = None,
    ) -> None:
        super().__init__(session, input_size=input_size, score_threshold=score_threshold, roi=roi)
        self.output_names = [o.name for o in session.get_outputs()]
        expected = {f"{part}_{s}" for part in ("cls", "obj", "bbox", "kps") for s in STRIDES}
        if not expected <= set(self.output_names):
            raise ValueError(
                "this model does not have YuNet's outputs (cls_8, obj_8, bbox_8, kps_8, ...); "
                "check the detector kind in the config"
            )

    def _decode(self, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        blob = cv2.dnn.blobFromImage(canvas, 1.0, canvas.shape[1::-1], (0, 0, 0), swapRB=False)
        outputs = self.session.run(None, {self.input_name: blob})
        named = dict(zip(self.output_names, outputs, strict=True))
        height, width = canvas.shape[:2]
        boxes, kps, scores = [], [], []
        for stride in STRIDES:
            cls = np.clip(np.asarray(named[f"cls_{stride}"]).reshape(-1), 0, 1)
            obj = np.clip(np.asarray(named[f"obj_{stride}"]).reshape(-1), 0, 1)
            score = np.sqrt(cls * obj)
            keep = np.flatnonzero(score >= self.score_threshold)
            if not keep.size:
                continue
            cols, rows = _grid(height, width, stride)
            cols, rows = cols[keep], rows[keep]
            b = np.asarray(named[f"bbox_{stride}"]).reshape(-1, 4)[keep]
            cx, cy = (cols + b[:, 0]) * stride, (rows + b[:, 1]) * stride
            w, h = np.exp(b[:, 2]) * stride, np.exp(b[:, 3]) * stride
            boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1))
            k = np.asarray(named[f"kps_{stride}"]).reshape(-1, 10)[keep]
            cells = np.tile(np.stack([cols, rows], 1), 5)
            kps.append((k + cells) * stride)
            scores.append(score[keep])
        return _concat(boxes, kps, scores)


def _concat(
    boxes: list[np.ndarray], kps: list[np.ndarray], scores: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not scores:
        empty = np.zeros((0,), dtype=np.float32)
        return empty.reshape(0, 4), empty.reshape(0, 10), empty
    return np.concatenate(boxes), np.concatenate(kps), np.concatenate(scores)
