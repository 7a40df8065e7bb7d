"""Simulated presentation attacks and paired RGB/NIR frames, for bench/liveness.py and the tests.

These are simulations of what a gate camera sees, not recordings of attacks:

- *screen*: a photo shown on a phone held up to the camera: downscaled into a bright panel with a
  dark bezel, moiré (the panel's pixel grid beating against the sensor's), a glare spot, and
  re-sharpening; in NIR the panel emits nothing (dark, with the illuminator's reflection);
- *print*: a photo printed on paper: compressed contrast (paper white, ink black are not 255/0),
  paper texture, blur, and a white margin; in NIR dye inks are almost transparent (the picture
  fades to the paper);
- *live*: the photo itself as the person (the tests' stand-in for a live face), animated with a
  synthetic head relief (an ellipsoid face and a nose bump) turning by a few degrees, so motion
  parallax exists; in NIR, skin looks like the red channel, smoothed and lit by the illuminator.

Attack tracks move as a plane: tilted by up to ``SPOOF_MAX_TILT_DEG`` and shifted, as a hand
holds them.  Frames: BGR uint8 ``FRAME_SIZE``; the NIR camera sees the scene through
``NIR_MAPPING`` (the second lens sits beside the first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

FRAME_SIZE = (640, 480)
SCENE_GREY = 92
#: RGB pixel → NIR pixel: the second lens a little to the side, a slightly wider view.
NIR_MAPPING = np.array([[0.94, 0.0, 30.0], [0.0, 0.94, 4.0], [0.0, 0.0, 1.0]])
TRACK_FRAMES = 6
FRAME_SECONDS = 1 / 15
SPOOF_MAX_TILT_DEG = 20.0
LIVE_MAX_YAW_DEG = 15.0
KINDS = ("live", "screen", "print")


@dataclass(frozen=True)
class PairedFrame:
    rgb: np.ndarray
    nir: np.ndarray
    ts: float


def _fit_into(photo: np.ndarray, height_px: int) -> np.ndarray:
    scale = height_px / photo.shape[0]
    return cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _moire(shape: tuple[int, int], period: float, angle: float, amplitude: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
    return amplitude * np.sin(phase) * (0.6 + 0.4 * np.sin(xx / 37.0))


def screen_medium(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo on a phone screen: (BGR medium, its NIR appearance)."""
    picture = _fit_into(photo, 300)
    blurred = cv2.GaussianBlur(picture, (0, 0), 1.0)
    picture = cv2.addWeighted(picture, 2.2, blurred, -1.2, 0)
    h, w = picture.shape[:2]
    moire = _moire((h, w), rng.uniform(2.6, 3.6), rng.uniform(0.1, 0.6), rng.uniform(10, 22))
    lit = picture.astype(np.float32) * 0.9 + 20 + moire[..., None]
    gy, gx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    glare = 120 * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (0.12 * w) ** 2))
    lit = np.clip(lit + glare[..., None], 0, 255).astype(np.uint8)
    bezel = 14
    medium = np.full((h + 2 * bezel, w + 2 * bezel, 3), 18, np.uint8)
    medium[bezel : bezel + h, bezel : bezel + w] = lit
    nir = np.full(medium.shape[:2], 12, np.float32)
    nir[bezel : bezel + h, bezel : bezel + w] += 0.5 * glare  # the illuminator on the glass
    return medium, np.clip(nir, 0, 255).astype(np.uint8)


def print_medium(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The photo printed on paper: (BGR medium, its NIR appearance)."""
    picture = _fit_into(photo, 300).astype(np.float32)
    picture = 25 + picture * (215 - 25) / 255  # ink never black, paper never white
    h, w = picture.shape[:2]
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.2)
    picture += 9 * fibres[..., None] / max(float(fibres.std()), 1e-6)
    picture = cv2.GaussianBlur(picture, (0, 0), rng.uniform(0.8, 1.6))
    margin = 18
    medium = np.full((h + 2 * margin, w + 2 * margin, 3), 218, np.float32)
    medium[margin : margin + h, margin : margin + w] = picture
    grey = cv2.cvtColor(np.clip(medium, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
    paper = 200.0
    nir = paper + 0.08 * (grey.astype(np.float32) - float(grey.mean()))  # dye ink: transparent
    return np.clip(medium, 0, 255).astype(np.uint8), np.clip(nir, 0, 255).astype(np.uint8)


def nir_of_skin(bgr: np.ndarray) -> np.ndarray:
    """NIR look of a live scene: skin close to the red channel, smooth, lit by the illuminator."""
    red = bgr[..., 2].astype(np.float32)
    return np.clip(cv2.GaussianBlur(red, (0, 0), 1.2) * 0.85 + 35, 0, 255).astype(np.uint8)


def _plane_matrix(size: tuple[int, int], centre: tuple[float, float], yaw: float, pitch: float,
                  shift: tuple[float, float], focal: float = 800.0) -> np.ndarray:
    """Homography of a plane at rest (1:1) turned about ``centre`` and moved by ``shift``."""
    w, h = size
    cx, cy = centre
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    ry, rx = np.radians(yaw), np.radians(pitch)
    rot_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    rot_x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    pts = np.c_[src[:, 0] - cx, src[:, 1] - cy, np.zeros(4)] @ (rot_x @ rot_y).T
    pts[:, 2] += focal
    dst = np.c_[focal * pts[:, 0] / pts[:, 2] + cx + shift[0],
                focal * pts[:, 1] / pts[:, 2] + cy + shift[1]]
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))


def _to_nir(scene_nir: np.ndarray) -> np.ndarray:
    return cv2.warpPerspective(scene_nir, NIR_MAPPING, FRAME_SIZE, borderValue=20)


def spoof_track(photo: np.ndarray, kind: str, seed: int) -> Iterator[PairedFrame]:
    """Frames of a screen or print attack moved by hand in front of the camera."""
    rng = np.random.default_rng(seed)
    medium, medium_nir = (screen_medium if kind == "screen" else print_medium)(photo, rng)
    w, h = FRAME_SIZE
    scene = np.full((h, w, 3), SCENE_GREY, np.uint8)
    scene_nir = np.full((h, w), 25, np.uint8)
    mh, mw = medium.shape[:2]
    y, x = (h - mh) // 2, (w - mw) // 2
    scene[y : y + mh, x : x + mw] = medium
    scene_nir[y : y + mh, x : x + mw] = medium_nir
    sign = 1 if rng.random() < 0.5 else -1
    for i in range(TRACK_FRAMES):
        share = i / (TRACK_FRAMES - 1)
        matrix = _plane_matrix(FRAME_SIZE, (w / 2, h / 2), sign * SPOOF_MAX_TILT_DEG * share,
                               rng.uniform(-4, 4), (6 * i, 2 * i))
        rgb = cv2.warpPerspective(scene, matrix, FRAME_SIZE, borderValue=(SCENE_GREY,) * 3)
        nir = cv2.warpPerspective(scene_nir, matrix, FRAME_SIZE, borderValue=25)
        yield PairedFrame(rgb, _to_nir(nir), i * FRAME_SECONDS)


def live_track(scene: np.ndarray, face_box: np.ndarray, face_kps: np.ndarray,
               seed: int) -> Iterator[PairedFrame]:
    """Frames of the person of ``scene`` (see :func:`scene_of`) turning the head a little
    (synthetic relief, see above); ``face_box`` and ``face_kps`` are the face's detection in it.
    """
    rng = np.random.default_rng(seed)
    h, w = scene.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    cx, cy = (face_box[0] + face_box[2]) / 2, (face_box[1] + face_box[3]) / 2
    half_w, half_h = (face_box[2] - face_box[0]) / 2, (face_box[3] - face_box[1]) / 2
    eye_distance = float(np.linalg.norm(face_kps[1] - face_kps[0]))
    nose_x, nose_y = face_kps[2]
    r2 = ((xx - cx) / half_w) ** 2 + ((yy - cy) / half_h) ** 2
    depth = 0.6 * half_w * np.sqrt(np.clip(1 - r2, 0, 1)) + 0.5 * eye_distance * np.exp(
        -((xx - nose_x) ** 2 + (yy - nose_y) ** 2) / (2 * (0.3 * eye_distance) ** 2)
    )
    sign = 1 if rng.random() < 0.5 else -1
    for i in range(TRACK_FRAMES):
        yaw = np.radians(sign * LIVE_MAX_YAW_DEG * i / (TRACK_FRAMES - 1))
        map_x = (cx + (xx - cx - depth * np.sin(yaw)) / np.cos(yaw) - 3 * i).astype(np.float32)
        map_y = (yy - i).astype(np.float32)
        rgb = cv2.remap(scene, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        yield PairedFrame(rgb, _to_nir(nir_of_skin(rgb)), i * FRAME_SECONDS)


def scene_of(photo: np.ndarray, centre: tuple[float, float] | None = None) -> np.ndarray:
    """The photo as the person in front of the camera: scaled to fill the frame, cropped around
    ``centre`` (photo pixels; default the middle), so no photo border is in view (a live person
    has none)."""
    w, h = FRAME_SIZE
    scale = max(w / photo.shape[1], h / photo.shape[0])
    picture = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ph, pw = picture.shape[:2]
    cx, cy = (pw / 2, ph / 2) if centre is None else (centre[0] * scale, centre[1] * scale)
    x = int(np.clip(cx - w / 2, 0, pw - w))
    y = int(np.clip(cy - h / 2, 0, ph - h))
    return np.ascontiguousarray(picture[y : y + h, x : x + w])


def still_track(image: np.ndarray, kind: str) -> Iterator[PairedFrame]:
    """A capture of the real spoof set held in view (a few pixels of hand shake, no tilt), with
    the NIR appearance its label implies (live skin, dark screen, faded print)."""
    w, h = FRAME_SIZE
    scale = min(w / image.shape[1], h / image.shape[0])
    picture = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    scene = np.full((h, w, 3), SCENE_GREY, np.uint8)
    ph, pw = picture.shape[:2]
    y, x = (h - ph) // 2, (w - pw) // 2
    scene[y : y + ph, x : x + pw] = picture
    if kind == "live":
        scene_nir = nir_of_skin(scene)
    elif kind == "screen":
        scene_nir = np.full((h, w), 12, np.uint8)
    else:  # print; masks have no NIR model here (silicone and resin can look like skin)
        grey = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY).astype(np.float32)
        scene_nir = np.clip(200 + 0.08 * (grey - grey.mean()), 0, 255).astype(np.uint8)
    for i in range(TRACK_FRAMES):
        shift = np.float32([[1, 0, i % 3], [0, 1, (i * 2) % 3]])
        rgb = cv2.warpAffine(scene, shift, FRAME_SIZE, borderValue=(SCENE_GREY,) * 3)
        nir = cv2.warpAffine(scene_nir, shift, FRAME_SIZE, borderValue=25)
        yield PairedFrame(rgb, _to_nir(nir), i * FRAME_SECONDS)
