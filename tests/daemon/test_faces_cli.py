"""`menjin enrol` and `menjin faces compare` with the real models and photos."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import pytest
from typer.testing import CliRunner

from daemon.cli.faces import (
    EnrolRefusedError,
    enrol_person,
    face_models,
    template_store,
)
from daemon.config import GateConfig
from daemon.configfile import EX_CONFIG, load_config
from daemon.keyring import Keyring
from daemon.store import parse_person
from menjin.cli import app
from vision.embed import ARCFACE_MATCH_THRESHOLD, MOBILEFACENET_PADDLEX_MATCH_THRESHOLD
from vision.gallery import TemplateStore, TemplateStoreError

ROUTES = {
    "permissive": ("yunet", "face_detection_yunet_2026may.onnx", 0.8,
                   "mobilefacenet_paddlex", "mobilefacenet_paddlex_128d.onnx"),
    "insightface": ("scrfd", "det_500m.onnx", 0.5, "arcface", "w600k_mbf_int8.onnx"),
}
THRESHOLDS = {"permissive": MOBILEFACENET_PADDLEX_MATCH_THRESHOLD,
              "insightface": ARCFACE_MATCH_THRESHOLD}


def write_config(
    tmp_path: Path, models: Path, route: str = "permissive", vision: bool = True
) -> Path:
    det, det_file, det_threshold, emb, emb_file = ROUTES[route]
    text = textwrap.dedent("""\
        version: 1
        state_dir: state
        gate: {id: g1, site: Test compound}
        doors:
          front:
            lock: {pin: 17}
            access: card_or_face
        camera: {source: frames, door: front}
        """)
    if vision:
        text += textwrap.dedent(f"""\
            vision:
              detector: {{kind: {det}, path: {models / det_file}, score_threshold: {det_threshold}}}
              embedder: {{kind: {emb}, path: {models / emb_file}}}
              threads: 1
            """)
    path = tmp_path / "gate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


runner = CliRunner()


def templates(cfg: GateConfig) -> TemplateStore:
    assert cfg.vision is not None
    return template_store(cfg.vision, Keyring(cfg).template_key())


def enrol(cfg: GateConfig, models: object, store: TemplateStore, person: str,
          photos: list[Path]) -> object:
    return enrol_person(cfg, models, store, person, photos, Keyring(cfg))  # type: ignore[arg-type]


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize(
    ("first", "second", "match"),
    [
        ("enrol/obama/obama.jpg", "probe/obama1.jpg", True),
        ("enrol/kit_harington/john2.jpeg", "probe/kit_with_rose.jpg", True),  # largest: Kit
        ("enrol/obama/obama.jpg", "enrol/biden/biden.jpg", False),
        ("enrol/kit_harington/john1.jpeg", "probe/alex_lacamoire1.jpg", False),
    ],
)
def test_compare_json(
    tmp_path: Path, models_dir: Path, faces_dir: Path, route: str, first: str, second: str,
    match: bool,
) -> None:
    config = write_config(tmp_path, models_dir, route)
    result = runner.invoke(
        app, ["faces", "compare", str(faces_dir / first), str(faces_dir / second), "--json",
              "-c", str(config)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == ["similarity", "match"]
    assert doc["match"] is match
    assert (doc["similarity"] >= THRESHOLDS[route]) is match


def test_compare_text_names_the_threshold(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    config = write_config(tmp_path, models_dir)
    result = runner.invoke(app, ["faces", "compare", str(faces_dir / "misc/two_people.jpg"),
                                 str(faces_dir / "enrol/obama/obama2.jpg"), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "two_people.jpg: 2 faces, using the largest" in result.stdout
    assert f"(threshold {MOBILEFACENET_PADDLEX_MATCH_THRESHOLD:.2f})" in result.stdout


def test_compare_refuses_a_photo_without_a_face(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    import cv2
    import numpy as np

    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((200, 200, 3), 90, np.uint8))
    config = write_config(tmp_path, models_dir)
    result = runner.invoke(app, ["faces", "compare", str(wall),
                                 str(faces_dir / "probe/obama1.jpg"), "-c", str(config)])
    assert result.exit_code == 1
    assert f"error: {wall}: no face found" in result.stderr


@pytest.mark.parametrize(
    ("vision", "models_ok", "message"),
    [
        (False, True, "no 'vision' section: face tools need a detector and an embedder"),
        (True, False, "vision.detector.path"),
    ],
)
def test_compare_exits_78_on_a_bad_config(
    tmp_path: Path, models_dir: Path, faces_dir: Path, vision: bool, models_ok: bool, message: str
) -> None:
    models = models_dir if models_ok else tmp_path / "nowhere"
    config = write_config(tmp_path, models, vision=vision)
    photo = str(faces_dir / "probe/obama1.jpg")
    result = runner.invoke(app, ["faces", "compare", photo, photo, "-c", str(config)])
    assert result.exit_code == EX_CONFIG
    assert message in result.stderr


CONSENT = {"date": "2026-11-02", "source": "signed form 118"}
RESIDENTS = [
    {"id": "obama", "name": "B. Obama", "cards": ["0004567890"], "face_consent": CONSENT},
    {"id": "biden", "name": "J. Biden", "face_consent": CONSENT},  # no card: a warning
    {"id": "kit", "name": "K. Harington", "cards": ["0004567891"]},  # no face consent
]


def seed_residents(config: Path) -> None:
    cfg = load_config(config)
    zone = ZoneInfo(cfg.gate.timezone)
    with Keyring(cfg).open_store(cfg) as store:
        store.upsert(parse_person(p, zone=zone) for p in RESIDENTS)


@pytest.mark.parametrize(
    ("person", "photo", "exit_code", "message"),
    [
        ("obama", "enrol/obama/obama.jpg", 0,
         "enrolled obama: 1 photo(s) accepted, 0 rejected, 1 template(s) stored"),
        ("biden", "enrol/biden/biden.jpg", 0,
         "warning: biden has no card: face entry must never be the only way in"),
        ("kit", "enrol/kit_harington/john1.jpeg", 1,
         "refused: no face consent recorded for kit (a separate consent is required)"),
        ("rose", "enrol/rose_leslie/img1.jpg", 1,
         "refused: rose is not in the resident store: add the person first"),
        ("obama", "probe/kit_with_rose.jpg", 1,
         "2 faces found; use a photo showing only the person to enrol"),
    ],
)
def test_enrol_command_checks_consent(
    tmp_path: Path, models_dir: Path, faces_dir: Path, person: str, photo: str, exit_code: int,
    message: str,
) -> None:
    config = write_config(tmp_path, models_dir)
    seed_residents(config)
    result = runner.invoke(app, ["enrol", "--person", person, "-c", str(config),
                                 str(faces_dir / photo)])
    assert result.exit_code == exit_code, result.output
    assert message in result.output
    assert (tmp_path / "state" / "templates.bin").exists() == (exit_code == 0)


def test_enrol_without_a_resident_store_is_refused(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    config = write_config(tmp_path, models_dir)
    result = runner.invoke(app, ["enrol", "--person", "obama", "-c", str(config),
                                 str(faces_dir / "enrol/obama/obama.jpg")])
    assert result.exit_code == 1
    assert "resident store" in result.stderr and "not found" in result.stderr
    assert not (tmp_path / "state" / "residents.db").exists()


@pytest.mark.parametrize("route", list(ROUTES))
def test_enrol_stores_encrypted_templates_and_audits(
    tmp_path: Path, models_dir: Path, faces_dir: Path, route: str
) -> None:
    cfg = load_config(write_config(tmp_path, models_dir, route))
    assert cfg.vision is not None
    models = face_models(cfg.vision)
    store = templates(cfg)
    photos = [*sorted((faces_dir / "enrol" / "obama").glob("*")), faces_dir / "misc/two_people.jpg"]
    outcome = enrol(cfg, models, store, "obama", photos)
    assert (outcome.accepted, outcome.templates) == (2, 2)
    assert list(outcome.rejected.values()) == [
        f"{photos[2]}: 2 faces found; use a photo showing only the person to enrol"
    ]
    enrol(cfg, models, store, "biden", sorted((faces_dir / "enrol" / "biden").glob("*")))
    # a restart: a new store object from the key file finds both persons
    reopened = TemplateStore(cfg.vision.templates, Keyring(cfg).template_key(),
                             model=cfg.vision.embedder.kind)
    gallery = reopened.load_gallery(models.embedder.dim, threshold=models.threshold, margin=0.05)
    assert sorted(gallery.persons()) == ["biden", "obama"]
    assert b"obama" not in cfg.vision.templates.read_bytes()
    audit = [json.loads(line) for line in cfg.privacy.audit_path.read_text().splitlines()]
    keyring = Keyring(cfg)
    assert [(e["action"], e["target"]) for e in audit] == [
        ("enrol", keyring.pseudonym("obama")), ("enrol", keyring.pseudonym("biden"))]
    assert "obama" not in cfg.privacy.audit_path.read_text()  # pseudonyms only
    assert audit[0]["details"] == {"photos_accepted": 2, "photos_rejected": 1, "templates": 2}


def test_enrol_refuses_a_face_already_enrolled_under_another_id(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    cfg = load_config(write_config(tmp_path, models_dir))
    assert cfg.vision is not None
    models, store = face_models(cfg.vision), templates(cfg)
    enrol(cfg, models, store, "obama", [faces_dir / "enrol/obama/obama.jpg"])
    with pytest.raises(EnrolRefusedError) as info:
        enrol(cfg, models, store, "p-0042", [faces_dir / "probe/obama1.jpg"])
    assert "matches already enrolled person obama" in info.value.messages[0]
    assert list(store.load()) == ["obama"]


def test_enrol_with_no_usable_photo_stores_nothing(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    cfg = load_config(write_config(tmp_path, models_dir))
    assert cfg.vision is not None
    far = tmp_path / "far.jpg"  # the 240p frame at half size: a face of about 38 px
    frame = cv2.imread(str(faces_dir / "misc/obama-240p.jpg"))
    cv2.imwrite(str(far), cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    with pytest.raises(EnrolRefusedError) as info:
        enrol(cfg, face_models(cfg.vision), templates(cfg), "obama", [far])
    assert info.value.messages[-1] == "obama: no usable photo"
    assert "quality too low: face too small" in info.value.messages[0]
    assert not cfg.vision.templates.exists()


def test_a_store_without_its_key_is_an_error_not_a_reset(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    cfg = load_config(write_config(tmp_path, models_dir))
    assert cfg.vision is not None
    enrol(cfg, face_models(cfg.vision), templates(cfg), "obama",
                 [faces_dir / "enrol/obama/obama.jpg"])
    before = cfg.vision.templates.read_bytes()
    (cfg.keys.dir / "root.key").unlink()  # another root key: the store must not be recreated
    with pytest.raises(TemplateStoreError, match=r"cannot decrypt the face templates"):
        templates(cfg).load()
    assert cfg.vision.templates.read_bytes() == before


def small_set(tmp_path: Path, faces: Path, persons: int = 6) -> Path:
    """A folder-per-identity set of a few East-Asian dev identities (symlinks, nothing copied)."""
    dev = faces / "east-asian-dev"
    if not dev.is_dir():
        pytest.skip(f"{dev} not found (the East-Asian dev set)")
    root = tmp_path / "residents"
    root.mkdir()
    for folder in sorted(p for p in dev.iterdir() if p.is_dir())[:persons]:
        (root / folder.name).symlink_to(folder.resolve())
    return root


@pytest.mark.timeout(300)
def test_evaluate_reports_accepts_impostors_and_the_rule(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    config = write_config(tmp_path, models_dir)
    folder = small_set(tmp_path, faces_dir)
    result = runner.invoke(app, ["faces", "evaluate", str(folder), "--json", "-c", str(config)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["identities"] == 6 and doc["photos"] == 28
    assert doc["threshold"] == THRESHOLDS["permissive"]
    assert doc["wrong_person_accepts"] == doc["stranger_accepts"] == 0
    assert 0 < doc["true_accepts"] <= doc["genuine_probes"]
    assert doc["impostor_pairs"]["max"] < doc["threshold"] - 0.1
    # six persons give too few impostor pairs to extrapolate the tail: said, not guessed
    assert "the tail estimate needs at least 2000" in doc["recommended"]["error"]
    text = runner.invoke(app, ["faces", "evaluate", str(folder), "-c", str(config)])
    assert text.exit_code == 0
    assert "6 persons, 28 photos" in text.stdout
    assert "wrong-person accepts" in text.stdout and "no recommendation:" in text.stdout


def test_evaluate_refuses_a_folder_that_is_not_a_set(tmp_path: Path, models_dir: Path) -> None:
    config = write_config(tmp_path, models_dir)
    result = runner.invoke(app, ["faces", "evaluate", str(tmp_path / "nope"), "-c", str(config)])
    assert result.exit_code == 1
    assert f"error: {tmp_path / 'nope'}: not a folder" in result.output


def test_enrol_says_when_the_daemon_picks_the_templates_up(
    tmp_path: Path, models_dir: Path, faces_dir: Path,
) -> None:
    config = write_config(tmp_path, models_dir)
    seed_residents(config)
    result = runner.invoke(app, ["enrol", "--person", "obama", "-c", str(config),
                                 str(faces_dir / "enrol/obama/obama.jpg")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "the daemon is not running: it loads the new templates when it starts")


async def test_enrol_makes_the_running_daemon_reload(tmp_path: Path, models_dir: Path) -> None:
    import asyncio

    from daemon.cli.faces import tell_daemon
    from daemon.control import ControlServer, Request

    cfg = load_config(write_config(tmp_path, models_dir))
    server = ControlServer(cfg.control.socket)
    calls: list[str] = []

    async def changed(req: Request) -> dict[str, bool]:
        calls.append(req.cmd)
        return {"reloaded": True}

    server.command("faces.changed", changed)
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    try:
        message = await asyncio.to_thread(tell_daemon, cfg)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert message == "the running daemon reloaded the face templates: the new face opens at once"
    assert calls == ["faces.changed"]
@pytest.mark.parametrize(
    ("route", "extra", "expected"),
    [
        ("permissive", "", ("mean", True, True)),
        ("insightface", "", ("max", False, False)),  # measured per route (docs/vision.md)
        ("insightface", "  scoring: mean\n  refine_landmarks: true\n", ("mean", False, True)),
        ("permissive", "  refine_landmarks: false\n", ("mean", True, False)),
    ],
)
def test_route_choices_default_per_embedder_and_the_config_overrides_them(
    tmp_path: Path, models_dir: Path, route: str, extra: str,
    expected: tuple[str, bool, bool],
) -> None:
    from daemon.faces import route_choices

    config = write_config(tmp_path, models_dir, route)
    config.write_text(config.read_text(encoding="utf-8") + extra, encoding="utf-8")
    vision = load_config(config).vision
    assert vision is not None
    choices = route_choices(vision)
    assert (choices.scoring, choices.mirror_average, choices.refine_landmarks) == expected
    models = face_models(vision)
    assert models.scoring == expected[0]
    assert (models.refiner is not None) is expected[2]
