"""Face numerics equal the x86 reference on any CPU: landmarks, embeddings, scores and decisions.

The reference in ``data/face_reference.json`` was recorded on x86_64 with the project's own
detection, alignment and embedding code (record it again with
``python -m tests.vision.test_reference_numerics --record``). On aarch64 (``make test-arm64``) ONNX
Runtime and OpenCV run other kernels (NEON instead of AVX), so values differ in the last digits; a
board must still find the same faces, give the same vectors within the tolerances below, and accept
and reject the same people at the shipped thresholds, the INT8 recogniser (w600k_mbf_int8, whose
activation scales are computed at run time) included.

Tolerances: landmarks 0.5 px; each of the first embedding components and each per-person cosine
0.02. Every recorded best score lies more than the cosine tolerance away from its threshold (and,
when above it, its lead more than twice the tolerance away from the margin), so scores within
tolerance imply the same decision; the decisions are compared as well.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tests.vision.material import (
    PROBES,
    ROUTES,
    STRANGER,
    detector,
    embed_face,
    embedder,
    faces_left_to_right,
    gallery,
    image,
)
from vision.embed import DEFAULT_MATCH_MARGIN, default_match_threshold

REFERENCE = Path(__file__).parent / "data" / "face_reference.json"
#: Embedding components recorded per face (the cosines cover the whole vector).
HEAD = 8
LANDMARK_TOLERANCE_PX = 0.5
COMPONENT_TOLERANCE = 0.02
COSINE_TOLERANCE = 0.02


def route_name(det: str, emb: str) -> str:
    return f"{det}+{emb}"


def photos(faces: Path) -> list[str]:
    """Enrolment photos, then the probes, as paths relative to the faces folder."""
    enrol = [p.relative_to(faces).as_posix() for p in sorted((faces / "enrol").glob("*/*"))]
    return enrol + sorted(PROBES)


def measure(models: Path, faces: Path, det: str, emb: str) -> dict[str, Any]:
    """Landmarks, embedding heads, per-person best cosines and decisions of one route.

    Faces are keyed ``PHOTO#INDEX`` left to right; scores and decisions come from a gallery of the
    enrolment photos at the kind's shipped threshold and margin."""
    g = gallery(models, faces, det, emb, threshold=default_match_threshold(emb),
                margin=DEFAULT_MATCH_MARGIN)
    found: dict[str, Any] = {}
    for photo in photos(faces):
        bgr = image(faces / photo)
        for i, face in enumerate(faces_left_to_right(detector(models, det), bgr)):
            vector = embed_face(embedder(models, emb), bgr, face)
            match = g.search(vector)
            found[f"{photo}#{i}"] = {
                "landmarks": np.asarray(face.kps, dtype=float).round(2).tolist(),
                "head": vector[:HEAD].astype(float).round(5).tolist(),
                "scores": dict(zip(g.persons(), g.person_scores(vector).astype(float).round(5)
                                   .tolist(), strict=True)),
                "decision": match.person,
            }
    return {"persons": g.persons(), "faces": found}


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize(("det", "emb"), ROUTES)
def test_the_reference_is_far_enough_from_every_threshold(
    reference: dict[str, Any], det: str, emb: str
) -> None:
    """Scores within the tolerance can only give the reference's decisions.

    The margin matters only above the threshold (below it nobody is accepted anyway)."""
    threshold = default_match_threshold(emb)
    for key, face in reference["routes"][route_name(det, emb)]["faces"].items():
        best, second = sorted(face["scores"].values(), reverse=True)[:2]
        assert abs(best - threshold) > COSINE_TOLERANCE, (key, best, threshold)
        if best > threshold:
            assert best - second - DEFAULT_MATCH_MARGIN > 2 * COSINE_TOLERANCE, (key, best, second)


def deviations(got: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The largest absolute difference of each quantity over all faces, and where it is.

    Returns ``{"landmarks_px": (max, face), "head": (max, face), "cosine": (max, face),
    "decisions": [(face, expected, got), ...]}``; faces found in only one of them are left to
    the caller."""
    worst: dict[str, Any] = {"landmarks_px": (0.0, ""), "head": (0.0, ""), "cosine": (0.0, "")}
    changed = []
    for key in sorted(set(expected["faces"]) & set(got["faces"])):
        want, have = expected["faces"][key], got["faces"][key]
        for name, a, b in (
            ("landmarks_px", have["landmarks"], want["landmarks"]),
            ("head", have["head"], want["head"]),
            ("cosine", [have["scores"].get(p, np.nan) for p in want["scores"]],
             list(want["scores"].values())),
        ):
            d = float(np.max(np.abs(np.subtract(a, b, dtype=float))))
            if not d <= worst[name][0]:  # NaN (a missing person) counts as worst
                worst[name] = (d, key)
        if have["decision"] != want["decision"]:
            changed.append((key, want["decision"], have["decision"]))
    return {**worst, "decisions": changed}


@pytest.mark.parametrize(("det", "emb"), ROUTES)
def test_numerics_match_the_x86_reference(
    models_dir: Path, faces_dir: Path, reference: dict[str, Any], det: str, emb: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every face's landmarks, embedding head and cosines within tolerance, the same decisions.

    The measured maxima are printed (also when the test passes), so that a run on another CPU
    shows how far it is from the x86 reference, not only whether it is within tolerance."""
    expected = reference["routes"][route_name(det, emb)]
    got = measure(models_dir, faces_dir, det, emb)
    dev = deviations(got, expected)
    with capsys.disabled():
        print(f"\n{route_name(det, emb)} on {platform.machine()} vs {reference['recorded_on']}: "
              f"max |d landmark| {dev['landmarks_px'][0]:.3f} px ({dev['landmarks_px'][1]}), "
              f"max |d head| {dev['head'][0]:.5f} ({dev['head'][1]}), "
              f"max |d cosine| {dev['cosine'][0]:.5f} ({dev['cosine'][1]}), "
              f"decisions changed: {dev['decisions'] or 'none'}")
    assert got["persons"] == expected["persons"]
    assert sorted(got["faces"]) == sorted(expected["faces"]), "other faces were found"
    assert dev["decisions"] == [], "other decisions"
    assert dev["landmarks_px"][0] <= LANDMARK_TOLERANCE_PX, dev
    assert dev["head"][0] <= COMPONENT_TOLERANCE, dev
    assert dev["cosine"][0] <= COSINE_TOLERANCE, dev


@pytest.mark.parametrize(("det", "emb"), ROUTES)
def test_reference_decisions_are_the_true_identities(
    reference: dict[str, Any], det: str, emb: str
) -> None:
    """Enrolment photos match their own person, probes their labelled person, strangers nobody."""
    faces = reference["routes"][route_name(det, emb)]["faces"]
    for key, face in faces.items():
        photo, index = key.rsplit("#", 1)
        if photo.startswith("enrol/"):
            assert face["decision"] == photo.split("/")[1], key
        else:
            identity = PROBES[photo][int(index)]
            assert face["decision"] == (None if identity == STRANGER else identity), key


def test_the_int8_recogniser_is_in_the_reference(reference: dict[str, Any]) -> None:
    """w600k_mbf_int8 (kind arcface) is covered, with strangers rejected and residents accepted."""
    decisions = [f["decision"] for f in reference["routes"]["scrfd+arcface"]["faces"].values()]
    assert None in decisions and len(set(decisions) - {None}) == 5


def record(models: Path, faces: Path) -> dict[str, Any]:
    return {
        "recorded_on": platform.machine(),
        "versions": {"onnxruntime": ort.__version__, "opencv": cv2.__version__,
                     "numpy": np.__version__},
        "routes": {route_name(det, emb): measure(models, faces, det, emb) for det, emb in ROUTES},
    }


def dump(doc: dict[str, Any]) -> str:
    """JSON with one line per face, so that a new recording diffs face by face."""
    def line(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))

    routes = []
    for name, route in doc["routes"].items():
        faces = ",\n".join(f"   {line(key)}: {line(face)}" for key, face in route["faces"].items())
        routes.append(f'  {line(name)}: {{"persons": {line(route["persons"])}, "faces": {{\n'
                      f"{faces}\n  }}}}")
    head = {key: value for key, value in doc.items() if key != "routes"}
    return line(head)[:-1] + ',\n "routes": {\n' + ",\n".join(routes) + "\n }\n}\n"


if __name__ == "__main__":
    from tests.conftest import FACES_DIR, MODELS_DIR

    parser = argparse.ArgumentParser(description="Record the face numerics reference (on x86_64).")
    parser.add_argument("--record", action="store_true", required=True)
    parser.parse_args()
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(dump(record(MODELS_DIR, FACES_DIR)))
