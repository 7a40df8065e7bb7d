"""MiniFASNet liveness scores of the ordinary test photos and of simulated re-captures of them.

A re-capture is what a camera sees when someone holds up a printed photo or a phone screen: the
picture is downscaled (the print or screen is smaller and farther away), re-sharpened (printer and
phone pipelines sharpen) and overlaid with moire (the screen's pixel grid beating against the
sensor's).  These are simulations, not real attacks: the numbers say how the models react to those
artefacts, not how they would fare against a real spoof.

Baseline side by side: each model alone (V2 at 2.7, V1SE at 4.0) and their average (what menjin
uses).

Usage: .venv/bin/python bench/liveness_scores.py [--quick] [--models DIR] [--faces DIR]
Last line JSON: {"threshold", "live_min", "live_passed", "live_faces", "recapture_max",
"recapture_refused", "recapture_faces", "recapture": {photo: score}}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vision.liveness import DEFAULT_LIVENESS_THRESHOLD, MiniFasLiveness  # noqa: E402
from vision.models import load_detector, load_liveness  # noqa: E402

LIVENESS_FILES = ("2.7_80x80_MiniFASNetV2.onnx", "4_0_0_80x80_MiniFASNetV1SE.onnx")
RECAPTURE_SCALE = 0.5
MOIRE_PERIOD_PX = 3.1
MOIRE_ANGLE_RAD = 0.3
MOIRE_AMPLITUDE = 18.0
UNSHARP_AMOUNT = 1.5


def recapture(bgr: np.ndarray) -> np.ndarray:
    """Downscale, re-sharpen (unsharp mask) and add a moire interference pattern."""
    small = cv2.resize(
        bgr, None, fx=RECAPTURE_SCALE, fy=RECAPTURE_SCALE, interpolation=cv2.INTER_AREA
    )
    blurred = cv2.GaussianBlur(small, (0, 0), 1.0)
    sharp = cv2.addWeighted(small, 1 + UNSHARP_AMOUNT, blurred, -UNSHARP_AMOUNT, 0)
    height, width = sharp.shape[:2]
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    direction = xx * np.cos(MOIRE_ANGLE_RAD) + yy * np.sin(MOIRE_ANGLE_RAD)
    phase = direction * 2 * np.pi / MOIRE_PERIOD_PX
    pattern = MOIRE_AMPLITUDE * np.sin(phase) * (0.6 + 0.4 * np.sin(xx / 37.0))
    return np.clip(sharp.astype(np.float32) + pattern[..., None], 0, 255).astype(np.uint8)


def photos(faces: Path, quick: bool) -> list[Path]:
    found = sorted(p for p in faces.glob("*/**/*") if p.suffix.lower() in {".jpg", ".jpeg"})
    return found[:3] if quick else found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="three photos only")
    parser.add_argument(
        "--models", type=Path,
        default=Path(os.environ.get("MENJIN_MODELS", REPO.parent / "shared" / "models")),
    )
    parser.add_argument(
        "--faces", type=Path,
        default=Path(os.environ.get("MENJIN_FACES", REPO.parent / "shared" / "faces")),
    )
    args = parser.parse_args()
    detector = load_detector(
        "yunet", args.models / "face_detection_yunet_2026may.onnx",
        input_size=(640, 640), score_threshold=0.8,
    )
    liveness = load_liveness("minifasnet", [args.models / f for f in LIVENESS_FILES])
    assert isinstance(liveness, MiniFasLiveness)
    threshold = DEFAULT_LIVENESS_THRESHOLD
    live: list[float] = []
    spoof: dict[str, float] = {}
    print(f"{'photo':40s} {'face':>4s}  {'V2 live':>7s} {'V1SE':>5s} {'mean':>5s} | re-capture "
          f"{'V2':>5s} {'V1SE':>5s} {'mean':>5s}")
    for path in photos(args.faces, args.quick):
        bgr = cv2.imread(str(path))
        copy = recapture(bgr)
        faces = sorted(detector.detect(bgr), key=lambda f: float(f.box[0]))
        copies = sorted(detector.detect(copy), key=lambda f: float(f.box[0]))
        for i, face in enumerate(faces):
            v2, v1se = liveness.probabilities(bgr, face)
            live.append((v2 + v1se) / 2)
            name = f"{path.relative_to(args.faces)}#{i}"
            line = f"{name:40s} {i:4d}  {v2:7.3f} {v1se:5.3f} {(v2 + v1se) / 2:5.3f} | "
            if len(copies) == len(faces):
                r2, r1 = liveness.probabilities(copy, copies[i])
                spoof[name] = round((r2 + r1) / 2, 3)
                line += f"{'':10s} {r2:5.3f} {r1:5.3f} {spoof[name]:5.3f}"
            else:
                line += "face lost in the re-capture"
            print(line)
    refused = sum(s < threshold for s in spoof.values())
    print(f"ordinary photos: {sum(s >= threshold for s in live)}/{len(live)} faces live at "
          f"{threshold}, lowest {min(live):.3f}")
    print(f"simulated re-captures: {refused}/{len(spoof)} refused, "
          f"highest {max(spoof.values()):.3f}, median {float(np.median(list(spoof.values()))):.3f}")
    print(json.dumps({
        "threshold": threshold,
        "live_min": round(min(live), 3),
        "live_passed": sum(s >= threshold for s in live),
        "live_faces": len(live),
        "recapture_max": max(spoof.values()),
        "recapture_refused": refused,
        "recapture_faces": len(spoof),
        "recapture": spoof,
    }))


if __name__ == "__main__":
    main()
