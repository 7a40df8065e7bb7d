"""End to end with the real models: enrol the five people, recognise probes, reject strangers."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.vision.material import (
    PERSONS,
    PROBES,
    ROUTES,
    STRANGER,
    detector,
    embed_face,
    embedder,
    enrolment_templates,
    faces_left_to_right,
    gallery,
    image,
    t1_path,
)
from vision.embed import DEFAULT_MATCH_MARGIN, default_match_threshold
from vision.enrol import (
    EnrolmentError,
    decode_image,
    enrol_images,
    enrol_photos,
    read_image,
    single_face,
)
from vision.quality import QualityThresholds, assess

GATE = QualityThresholds()


def default_gallery(models: Path, faces: Path, det: str, emb: str):  # type: ignore[no-untyped-def]
    return gallery(models, faces, det, emb, threshold=default_match_threshold(emb),
                   margin=DEFAULT_MATCH_MARGIN)


@pytest.mark.parametrize(("det", "emb"), ROUTES)
def test_enrolled_people_are_recognised_in_probe_photos_and_nobody_else(
    models_dir: Path, faces_dir: Path, det: str, emb: str
) -> None:
    g = default_gallery(models_dir, faces_dir, det, emb)
    assert sorted(g.persons()) == list(PERSONS)
    recognised = set()
    for photo, identities in PROBES.items():
        bgr = image(faces_dir / photo)
        faces = faces_left_to_right(detector(models_dir, det), bgr)
        for face, identity in zip(faces, identities, strict=True):
            match = g.search(embed_face(embedder(models_dir, emb), bgr, face))
            expected = None if identity == STRANGER else identity
            assert match.person == expected, (photo, identity, match)
            if match.person:
                recognised.add(match.person)
    assert recognised == set(PERSONS)


@pytest.mark.parametrize(("det", "emb"), ROUTES)
def test_strangers_are_rejected(models_dir: Path, faces_dir: Path, det: str, emb: str) -> None:
    from skimage import data

    g = default_gallery(models_dir, faces_dir, det, emb)
    strangers = [image(t1_path()), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)]
    seen = 0
    for bgr in strangers:
        for face in detector(models_dir, det).detect(bgr):
            match = g.search(embed_face(embedder(models_dir, emb), bgr, face))
            assert match.person is None, match
            assert match.score < g.threshold - 0.1, "a stranger came close to the threshold"
            seen += 1
    assert seen == 7


@pytest.mark.parametrize(("det", "emb"), ROUTES)
def test_enrolled_people_do_not_match_each_other(
    models_dir: Path, faces_dir: Path, det: str, emb: str
) -> None:
    templates = enrolment_templates(models_dir, faces_dir, det, emb)
    for person, rows in templates.items():
        others = [t for p, t in templates.items() if p != person]
        assert float((rows @ np.vstack(others).T).max()) < default_match_threshold(emb) - 0.1


@pytest.mark.parametrize(("det", "emb"), ROUTES)
def test_enrolment_builds_templates_and_explains_rejections(
    models_dir: Path, faces_dir: Path, det: str, emb: str, tmp_path: Path
) -> None:
    blank = tmp_path / "wall.jpg"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 90, np.uint8))
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a photo")
    far = tmp_path / "far.jpg"  # the 240p frame at half size: a face of about 38 px
    cv2.imwrite(str(far), cv2.resize(image(faces_dir / "misc/obama-240p.jpg"), None, fx=0.5,
                                     fy=0.5, interpolation=cv2.INTER_AREA))
    photos = [
        *sorted((faces_dir / "enrol" / "obama").glob("*")),
        blank,
        faces_dir / "misc/two_people.jpg",
        far,
        not_image,
        tmp_path / "missing.jpg",
    ]
    result = enrol_photos(photos, detector(models_dir, det), embedder(models_dir, emb), GATE)
    assert result.accepted == [str(p) for p in photos[:2]]
    assert result.matrix().shape == (2, embedder(models_dir, emb).dim)
    assert result.rejected == {
        str(blank): f"{blank}: no face found",
        str(photos[3]): f"{photos[3]}: 2 faces found; use a photo showing only the person to enrol",
        str(photos[4]): result.rejected[str(photos[4])],
        str(not_image): f"{not_image}: not a readable image (JPEG or PNG expected)",
        str(photos[-1]): f"{photos[-1]}: file not found",
    }
    too_small = f"{photos[4]}: quality too low: face too small"
    assert result.rejected[str(photos[4])].startswith(too_small)


def test_probe_of_an_enrolled_person_is_accepted_with_both_templates(
    models_dir: Path, faces_dir: Path
) -> None:
    """Several enrolment photos per person: the probe is scored against all of them (mean)."""
    det, emb = "yunet", "mobilefacenet_paddlex"
    templates = enrolment_templates(models_dir, faces_dir, det, emb)["obama"]
    bgr = image(faces_dir / "probe/obama1.jpg")
    face = single_face(bgr, detector(models_dir, det), "probe")
    probe = embed_face(embedder(models_dir, emb), bgr, face)
    per_template = templates @ probe
    match = default_gallery(models_dir, faces_dir, det, emb).search(probe)
    assert match.person == "obama"
    assert len(per_template) == 2
    assert match.score == pytest.approx(per_template.mean(), abs=1e-6)
    assert GATE.recognisable(assess(bgr, face))


def test_read_image_errors(tmp_path: Path) -> None:
    with pytest.raises(EnrolmentError, match="file not found"):
        read_image(tmp_path / "nope.png")


def test_enrolment_from_photo_bytes_of_a_station_command(models_dir: Path, faces_dir: Path) -> None:
    sent = [(faces_dir / "enrol/biden/biden.jpg").read_bytes(), b"\xff\xd8garbage", b""]
    images = [(f"photo {i + 1}", functools.partial(decode_image, data, f"photo {i + 1}"))
              for i, data in enumerate(sent)]
    det, emb = detector(models_dir, "yunet"), embedder(models_dir, "mobilefacenet_paddlex")
    result = enrol_images(images, det, emb, GATE)
    assert result.accepted == ["photo 1"]
    assert result.rejected == {
        "photo 2": "photo 2: not a readable image (JPEG or PNG expected)",
        "photo 3": "photo 3: not a readable image (JPEG or PNG expected)",
    }
