"""Liveness per check and combined: APCER and BPCER per track, and the CPU cost per track.

Material (see bench/spoof_sim.py for what each simulation does):

- ``real``: the labelled captures of ``faces/spoof/`` (live, print, screen, mask) held in view
  for a short track (stills: the motion check has nothing to judge there); NIR frames are
  synthesised from each label (live skin, dark screen, faded print; masks have no NIR model and
  are left out of the NIR rows);
- ``sim``: photos of ``faces/`` (enrol, probe, misc) as a live person (synthetic head turn), on
  a phone screen and on paper moved by hand;
- ``sim_lfw`` (not with ``--quick``): the same with the first photo of each person of
  ``faces/east-asian-dev/`` (250x250 LFW crops, upscaled to fill the frame: soft pictures).

APCER: share of attack tracks accepted; BPCER: share of live tracks refused (ISO/IEC 30107-3
terms, per track).  Checks: passive (MiniFASNet pair, median over the track, threshold 0.5),
motion (homography parallax), nir (NIR face at the mapped spot), rgb (passive + motion: what a
gate without NIR has) and all.  A baseline from the same run: the single-frame MiniFASNet
decision of the old pipeline (the frame the old code scored: the track's third frame).

Usage: .venv/bin/python bench/liveness.py [--quick] [--models DIR] [--faces DIR]
Last line JSON: {"material": {name: {check: {"apcer", "bpcer", "attacks", "live"}}},
"cpu_ms_per_track": {check: ms}, "cpu_ratio_vs_single_frame", "tracks": n}.  CPU is process
time of the liveness work only (face detection is the pipeline's, run anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import with_machine  # noqa: E402
from bench.spoof_sim import (  # noqa: E402
    KINDS,
    NIR_MAPPING,
    PairedFrame,
    live_track,
    scene_of,
    spoof_track,
    still_track,
)
from vision.detect import Face  # noqa: E402
from vision.liveness import LivenessGate  # noqa: E402
from vision.liveness_track import TrackLiveness  # noqa: E402
from vision.models import load_detector, load_liveness  # noqa: E402
from vision.nir import NirCalibration, NirCheck, NirFrames  # noqa: E402
from vision.planarity import MotionConsistency  # noqa: E402

LIVENESS_FILES = ("2.7_80x80_MiniFASNetV2.onnx", "4_0_0_80x80_MiniFASNetV1SE.onnx")
DETECTOR = "face_detection_yunet_2026may.onnx"
CHECKS = ("passive", "motion", "nir", "rgb", "all", "single_frame_baseline")
BASELINE_FRAME = 2
TRACK_SPACING_SECONDS = 100.0


class Timed:
    """Adds the process time of ``method`` calls on ``target`` to ``totals[name]``."""

    def __init__(self, target: Any, method: str, name: str, totals: dict[str, float]) -> None:
        self._target, self._method, self._name, self._totals = target, method, name, totals

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if attr != self._method:
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return value(*args, **kwargs)
            finally:
                self._totals[self._name] += time.process_time() - start

        return timed


def largest(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda f: f.width) if faces else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few photos only")
    parser.add_argument("--models", type=Path, default=Path(os.environ.get(
        "MENJIN_MODELS", REPO.parent / "shared" / "models")))
    parser.add_argument("--faces", type=Path, default=Path(os.environ.get(
        "MENJIN_FACES", REPO.parent / "shared" / "faces")))
    args = parser.parse_args()

    detector = load_detector("yunet", args.models / DETECTOR, input_size=(640, 480),
                             score_threshold=0.8)
    nir_detector = load_detector("yunet", args.models / DETECTOR, input_size=(160, 160),
                                 score_threshold=0.8)
    model = load_liveness("minifasnet", [args.models / f for f in LIVENESS_FILES])
    cpu: dict[str, float] = defaultdict(float)
    gate = LivenessGate(Timed(model, "score", "passive", cpu))
    frames = NirFrames()
    nir_check = NirCheck(nir_detector, NirCalibration(NIR_MAPPING, 0.0, 0), frames)
    motion = MotionConsistency()

    # outcome[material][check] -> list of (is_attack, accepted)
    outcome: dict[str, dict[str, list[tuple[bool, bool]]]] = defaultdict(lambda: defaultdict(list))
    tracks = 0

    def run_track(material: str, label: str, paired: list[PairedFrame], name: str) -> None:
        nonlocal tracks
        judge = TrackLiveness(passive=gate, motion=motion,
                              nir=Timed(nir_check, "evaluate", "nir", cpu))  # type: ignore[arg-type]
        seen: list[tuple[np.ndarray, Face]] = []
        for frame in paired:
            face = largest(detector.detect(frame.rgb))
            if face is None:
                continue
            ts = tracks * TRACK_SPACING_SECONDS + frame.ts  # tracks never pair across
            frames.push(frame.nir, ts)
            start = time.process_time()
            judge.observe(0, frame.rgb, face, ts)
            cpu["observe_total"] += time.process_time() - start
            seen.append((frame.rgb, face))
        if not seen:
            print(f"{material:5s} {label:7s} {name}: no face detected in any frame, skipped")
            return
        tracks += 1
        verdict = judge.verdict(0)
        attack = label != "live"
        failed = set(verdict.failed) if verdict is not None else {"passive", "motion", "nir"}
        baseline_rgb, baseline_face = seen[min(BASELINE_FRAME, len(seen) - 1)]
        start = time.process_time()
        baseline = model.score(baseline_rgb, baseline_face) >= gate.threshold
        cpu["single_frame_baseline"] += time.process_time() - start
        results = {
            "passive": "passive" not in failed, "motion": "motion" not in failed,
            "nir": "nir" not in failed, "rgb": not failed & {"passive", "motion"},
            "all": not failed, "single_frame_baseline": baseline,
        }
        for check, accepted in results.items():
            if check in ("nir", "all") and label == "mask":
                continue  # no NIR model of masks
            outcome[material][check].append((attack, accepted))
        detail = verdict.details if verdict is not None else {}
        decided = "accepted" if not failed else "refused "
        print(f"{material:7s} {label:7s} {name:28.28s} {decided} "
              + "; ".join(f"{k}: {v}" for k, v in detail.items()))

    spoof_dir = args.faces / "spoof"
    for label in ("live", "print", "screen", "mask"):
        for path in sorted((spoof_dir / label).glob("*")):
            image = cv2.imread(str(path))
            if image is None:
                continue
            kind = label if label != "mask" else "print"
            run_track("real", label, list(still_track(image, kind)), path.name)

    photos = [("sim", p) for p in sorted(
        p for sub in ("enrol", "probe", "misc") for p in (args.faces / sub).rglob("*")
        if p.suffix.lower() in {".jpg", ".jpeg"}
    )]
    if args.quick:
        photos = photos[:4]
    else:
        # 250x250 LFW crops, upscaled 2.6x to fill the frame: kept apart, soft pictures.
        photos += [("sim_lfw", p)
                   for p in sorted((args.faces / "east-asian-dev").glob("*/*_0001.jpg"))]
    for n, (material, path) in enumerate(photos):
        photo = cv2.imread(str(path))
        if photo is None:
            continue
        found = largest(detector.detect(photo))
        if found is None:
            continue
        centre = ((found.box[0] + found.box[2]) / 2, (found.box[1] + found.box[3]) / 2)
        scene = scene_of(photo, centre)
        face = largest(detector.detect(scene))
        if face is None:
            continue
        for kind in KINDS:
            paired = (list(live_track(scene, face.box, face.kps, n)) if kind == "live"
                      else list(spoof_track(photo, kind, n)))
            run_track(material, kind, paired, path.name)

    summary: dict[str, dict[str, dict[str, float | int | None]]] = {}
    print(f"{'material':8s} {'check':22s} {'APCER':>12s} {'BPCER':>12s}")
    for material, checks in outcome.items():
        summary[material] = {}
        for check in CHECKS:
            rows = checks.get(check, [])
            if material == "real" and check == "motion":
                # Stills: nothing moved, every track is "still", which refuses nothing.
                summary[material][check] = {"apcer": None, "bpcer": None, "attacks": 0,
                                            "live": 0}
                print(f"{material:8s} {check:22s} not measured (still captures)")
                continue
            attacks = [acc for is_attack, acc in rows if is_attack]
            lives = [acc for is_attack, acc in rows if not is_attack]
            apcer = sum(attacks) / len(attacks) if attacks else 0.0
            bpcer = sum(not a for a in lives) / len(lives) if lives else 0.0
            summary[material][check] = {"apcer": round(apcer, 3), "bpcer": round(bpcer, 3),
                                        "attacks": len(attacks), "live": len(lives)}
            print(f"{material:8s} {check:22s} {sum(attacks):3d}/{len(attacks):3d} {apcer:5.1%}"
                  f" {sum(not a for a in lives):3d}/{len(lives):3d} {bpcer:5.1%}")
    per_track = {k: round(v * 1000 / max(tracks, 1), 2) for k, v in cpu.items()}
    per_track["motion"] = round(per_track.get("observe_total", 0.0) - per_track.get("passive", 0.0)
                                - per_track.get("nir", 0.0), 2)
    ratio = round(per_track["observe_total"] / max(per_track["single_frame_baseline"], 1e-6), 1)
    print(f"CPU per track (ms, {tracks} tracks): {per_track}; {ratio}x the single-frame check")
    print(json.dumps(with_machine({"material": summary, "cpu_ms_per_track": per_track,
                                   "cpu_ratio_vs_single_frame": ratio, "tracks": tracks},
                                  libraries=("onnxruntime", "opencv-python"))))


if __name__ == "__main__":
    main()
