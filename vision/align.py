"""Five-point similarity alignment to the ArcFace 112x112 template (and the template of Intel's
face-reidentification-retail-0095, which expects its own 128x128 layout).

This is insightface's ``face_align.norm_crop`` reimplemented with numpy and OpenCV: importing
insightface pulls in heavy optional modules (and its model-zoo guessing) that a gate board does not
need.  The similarity transform is the least-squares Umeyama estimate, the same one
``skimage.transform.SimilarityTransform`` (used by ``norm_crop``) computes, so crops are equal.
"""

from __future__ import annotations

import cv2
import numpy as np

ALIGNED_SIZE = 112
#: Landmark positions of the ArcFace template in a 112x112 crop (insightface ``arcface_dst``).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
#: face-reidentification-retail-0095 (Open Model Zoo): normalised landmark targets, times 128.
REID_0095_SIZE = 128
REID_0095_TEMPLATE = np.array(
    [
        [0.31556875, 0.46157411],
        [0.68262292, 0.46157411],
        [0.5002625, 0.64050536],
        [0.34947188, 0.82469196],
        [0.65343646, 0.82469196],
    ],
    dtype=np.float32,
) * REID_0095_SIZE
#: Crops whose side is not a multiple of 112 use insightface's 128-based layout.
_ALT_BASE = 128
_ALT_SHIFT = 8.0


def template(size: int = ALIGNED_SIZE) -> np.ndarray:
    """The template scaled to a ``size`` crop (insightface ``estimate_norm`` conventions)."""
    if size % ALIGNED_SIZE == 0:
        return ARCFACE_TEMPLATE * (size / ALIGNED_SIZE)
    ratio = size / _ALT_BASE
    dst = ARCFACE_TEMPLATE * ratio
    dst[:, 0] += _ALT_SHIFT * ratio
    return dst


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity mapping ``src`` points onto ``dst`` (Umeyama)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align(
    bgr: np.ndarray, kps: np.ndarray, size: int = ALIGNED_SIZE, dst: np.ndarray | None = None
) -> np.ndarray:
    """The face at ``kps`` (5x2, frame pixels) warped to a ``size``x``size`` BGR crop.

    ``dst`` is the landmark template in crop pixels; by default ArcFace's scaled to ``size``."""
    target = template(size) if dst is None else dst
    matrix = similarity_transform(np.asarray(kps).reshape(5, 2), target)
    return cv2.warpAffine(bgr, matrix, (size, size), borderValue=0.0)
