"""`menjin enrol`, `menjin faces compare` and `menjin faces evaluate`: the installer's face tools.

Enrolment turns photos into templates and stores only the templates, encrypted, in the gate's
template store (``vision.templates`` with the key in ``vision.template_key_file``).  It refuses a
person who is not in the resident store or has no recorded face consent there (a guardian's too
under 14; PIPL arts. 29 and 31), photos without exactly one good face, and photos that already
match another enrolled person (two ids for one face would break the margin rule and open each
other's doors); it warns when the person has no card or PIN.  Every enrolment is written to the
audit log.

``faces compare`` prints the similarity of two photos and whether it is a match under the
configured threshold; installers use it to check a threshold, tests use it too.  ``faces evaluate``
runs the gallery protocol of vision/evaluate.py on a folder-per-identity set (consenting
residents' photos) and prints true accepts, the impostor distribution and the threshold the rule
of vision/calibration.py recommends for the configured route.
"""

from __future__ import annotations

import getpass
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer

from daemon.audit import AuditLog
from daemon.config import GateConfig, VisionSection
from daemon.configfile import EX_CONFIG, ConfigError, load_config
from daemon.keys import KeyFileError, load_or_create_key, read_key

if TYPE_CHECKING:  # the vision stack (OpenCV, ONNX Runtime) loads only when a face command runs
    from vision.detect import Detector
    from vision.embed import Embedder
    from vision.enrol import Enrolment
    from vision.gallery import Gallery, TemplateStore
    from vision.landmarks import Refiner
    from vision.quality import QualityThresholds

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("/etc/menjin/gate.yaml")
EX_REFUSED = 1

faces_app = typer.Typer(help="Face tools: compare photos to check the match threshold.",
                        no_args_is_help=True)

ConfigOpt = Annotated[
    Path,
    typer.Option("-c", "--config", envvar="MENJIN_CONFIG", help="Gate config file (YAML)."),
]


class StoreKeyError(Exception):
    """The template store exists but its key cannot be read: a start-up error, never a reset."""


@dataclass
class FaceModels:
    """The detector, embedder and gates a config names, built once for a command."""

    detector: Detector
    embedder: Embedder
    thresholds: QualityThresholds
    threshold: float
    margin: float
    refiner: Refiner | None = None


def vision_config(config: Path) -> tuple[GateConfig, VisionSection]:
    """Load the config (exit 78 with every problem listed) and insist on a vision section."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EX_CONFIG) from exc
    if cfg.vision is None:
        typer.echo(f"{config}: no 'vision' section: face tools need a detector and an embedder",
                   err=True)
        raise typer.Exit(EX_CONFIG)
    return cfg, cfg.vision


def face_models(vision: VisionSection) -> FaceModels:
    """Map the vision config to the model objects (heavy imports only when a face command runs).

    No region of interest here: enrolment and compare photos are not camera frames.
    """
    from vision.embed import default_match_threshold
    from vision.models import ModelError, load_detector, load_embedder, load_refiner
    from vision.quality import QualityThresholds

    q = vision.quality
    try:
        detector = load_detector(
            vision.detector.kind, vision.detector.path, input_size=vision.detector.input_size,
            score_threshold=vision.detector.score_threshold, threads=vision.threads,
        )
        embedder = load_embedder(vision.embedder.kind, vision.embedder.path, threads=vision.threads,
                             mirror=vision.embedder.mirror_average)
        refiner = (load_refiner(vision.detector.kind, vision.detector.path, threads=vision.threads)
                   if vision.refine_landmarks else None)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EX_CONFIG) from exc
    return FaceModels(
        detector=detector,
        embedder=embedder,
        thresholds=QualityThresholds(
            min_face_px_recognise=q.min_face_px_recognise,
            min_face_px_capture=q.min_face_px_capture,
            min_sharpness_recognise=q.min_sharpness_recognise,
            min_sharpness_capture=q.min_sharpness_capture,
        ),
        threshold=vision.match_threshold or default_match_threshold(vision.embedder.kind),
        margin=vision.match_margin,
        refiner=refiner,
    )


def template_store(vision: VisionSection) -> TemplateStore:
    """The gate's encrypted template store.

    The key is created together with a new store; for an existing store a missing or unreadable
    key is an error (creating a fresh key would silently unenrol everybody).
    """
    from vision.gallery import TemplateStore

    key_file = vision.template_key_file
    if vision.templates.exists() and not key_file.exists():
        raise StoreKeyError(
            f"{vision.templates} exists but its key {key_file} is missing: restore the key file "
            "(the templates cannot be read without it)"
        )
    try:
        key = read_key(key_file) if key_file.exists() else load_or_create_key(key_file)
    except (KeyFileError, OSError) as exc:
        raise StoreKeyError(f"template key {key_file}: {exc}") from exc
    return TemplateStore(vision.templates, key, model=vision.embedder.kind)


@dataclass(frozen=True)
class ConsentCheck:
    """``problem`` refuses the enrolment; ``warning`` is told to the installer."""

    problem: str | None = None
    warning: str | None = None


def check_consent(cfg: GateConfig, person: str) -> ConsentCheck:
    """Whether ``person``'s separate face consent (and a guardian's, under 14) is recorded in the
    resident store (PIPL arts. 29 and 31), and whether they also hold a card or PIN."""
    from daemon.store import Store, StoreError

    db = cfg.access.db
    if not db.exists():
        return ConsentCheck(f"resident store {db} not found: add {person} with their face "
                            "consent first")
    try:
        card_key_file = cfg.access.card_hash_key_file
        card_key = read_key(card_key_file) if card_key_file is not None else None
        with Store(db, card_key=card_key, zone=ZoneInfo(cfg.gate.timezone)) as store:
            record = store.person(person)
    except (StoreError, KeyFileError, OSError) as exc:
        return ConsentCheck(f"cannot read the resident store: {exc}")
    if record is None:
        return ConsentCheck(f"{person} is not in the resident store: add the person first")
    if not record.face_consent:
        return ConsentCheck(f"no face consent recorded for {person} (a separate consent is "
                            "required)")
    if not record.may_use_face:
        return ConsentCheck(f"{person} is under 14: a guardian's face consent is required too")
    if not record.cards and record.pin_hash is None:
        return ConsentCheck(warning=f"{person} has no card or PIN: face entry must never be "
                                    "the only way in; add a card")
    return ConsentCheck()


class EnrolRefusedError(Exception):
    """Nothing was stored; ``messages`` say why, one line each."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class EnrolOutcome:
    accepted: int
    rejected: dict[str, str]
    templates: int


def enrol_person(
    cfg: GateConfig, models: FaceModels, store: TemplateStore, person: str, photos: list[Path]
) -> EnrolOutcome:
    """Add templates of ``person`` from photo files to ``store`` (consent already checked)."""
    from vision.enrol import enrol_photos

    result = enrol_photos(photos, models.detector, models.embedder, models.thresholds,
                          models.refiner)
    return store_enrolment(cfg, models, store, person, result, actor=f"cli:{getpass.getuser()}")


def store_enrolment(
    cfg: GateConfig,
    models: FaceModels,
    store: TemplateStore,
    person: str,
    result: Enrolment,
    *,
    actor: str,
) -> EnrolOutcome:
    """Persist an enrolment (from files, or from a station ``enrol`` command) and audit it.

    Re-enrolling a person adds to their templates.  Raises EnrolRefusedError when no photo was
    usable or one matches somebody else; then nothing is stored.
    """
    if not result.templates:
        raise EnrolRefusedError([*result.rejected.values(), f"{person}: no usable photo"])
    others = store.load_gallery(models.embedder.dim, threshold=models.threshold, margin=0.0)
    others.remove(person)
    clashes = _clashes(others, result, person)
    if clashes:
        raise EnrolRefusedError(clashes)
    total = store.add(person, result.matrix())
    AuditLog(cfg.privacy.audit_path).append(
        "enrol", actor=actor, target=person,
        details={"photos_accepted": len(result.accepted), "photos_rejected": len(result.rejected),
                 "templates": total},
    )
    log.info("face enrolment of %s: %d template(s) stored", person, total)
    return EnrolOutcome(len(result.accepted), result.rejected, total)


def _clashes(others: Gallery, result: Enrolment, person: str) -> list[str]:
    """Photos that already match someone else: one face must not be enrolled under two ids."""
    messages = []
    for label, row in zip(result.accepted, result.templates, strict=True):
        match = others.search(row)
        if match.person is not None:
            messages.append(
                f"{label}: matches already enrolled person {match.person} "
                f"(similarity {match.score:.2f}), not {person}; check the person id"
            )
    return messages


def enrol(
    person: Annotated[
        str, typer.Option("--person", "-p", help="Person id (as in the resident store).")
    ],
    photos: Annotated[
        list[Path], typer.Argument(help="One or more photos showing only this person.")
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Enrol a resident's face from photos; stores only templates, encrypted.

    Refuses a person without recorded face consent, and every photo with no face, several faces,
    a too small or blurred face, or a face that already matches another enrolled person.  Several
    photos (different days, light, glasses) make recognition more reliable.

    Example: menjin enrol --person p-0042 front.jpg left.jpg -c /etc/menjin/gate.yaml
    """
    from vision.gallery import TemplateStoreError

    cfg, vision = vision_config(config)
    consent = check_consent(cfg, person)
    if consent.problem is not None:
        typer.echo(f"refused: {consent.problem}", err=True)
        raise typer.Exit(EX_REFUSED)
    if consent.warning is not None:
        typer.echo(f"warning: {consent.warning}", err=True)
    models = face_models(vision)
    try:
        outcome = enrol_person(cfg, models, template_store(vision), person, photos)
    except (StoreKeyError, TemplateStoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EX_CONFIG) from exc
    except EnrolRefusedError as exc:
        for message in exc.messages:
            typer.echo(f"refused: {message}", err=True)
        raise typer.Exit(EX_REFUSED) from exc
    for message in outcome.rejected.values():
        typer.echo(f"rejected: {message}", err=True)
    typer.echo(f"enrolled {person}: {outcome.accepted} photo(s) accepted, "
               f"{len(outcome.rejected)} rejected, {outcome.templates} template(s) stored")


@faces_app.command("compare")
def compare(
    image1: Annotated[Path, typer.Argument(help="First photo.")],
    image2: Annotated[Path, typer.Argument(help="Second photo.")],
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"similarity": .., "match": ..}.')
    ] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Cosine similarity of the largest face in each photo, and whether it is a match.

    The match uses the configured threshold (vision.match_threshold, or the calibrated default of
    the embedder).  Exit status 1 when a photo shows no face.

    Example: menjin faces compare alice-2024.jpg alice-gate.jpg --json -c /etc/menjin/gate.yaml
    """
    from vision.enrol import EnrolmentError, read_image
    from vision.quality import face_px

    _cfg, vision = vision_config(config)
    models = face_models(vision)
    vectors = []
    for path in (image1, image2):
        try:
            bgr = read_image(path)
        except EnrolmentError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EX_REFUSED) from exc
        faces = models.detector.detect(bgr)
        if not faces:
            typer.echo(f"error: {path}: no face found", err=True)
            raise typer.Exit(EX_REFUSED)
        face = max(faces, key=lambda f: face_px(f.kps))
        if len(faces) > 1 and not as_json:
            typer.echo(f"{path}: {len(faces)} faces, using the largest")
        if models.refiner is not None:
            face = models.refiner.refine(bgr, face)
        vectors.append(models.embedder.embed_face(bgr, face.kps))
    similarity = round(float(vectors[0] @ vectors[1]), 4)
    match = similarity >= models.threshold
    if as_json:
        typer.echo(json.dumps({"similarity": similarity, "match": match}))
        return
    verdict = "match" if match else "no match"
    typer.echo(f"similarity {similarity:.3f}: {verdict} (threshold {models.threshold:.2f})")


@faces_app.command("evaluate")
def evaluate(
    folder: Annotated[Path, typer.Argument(help="One sub-folder of photos per person.")],
    gallery_size: Annotated[
        int, typer.Option(help="Enrolled persons the recommended threshold must hold for.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Check the configured route on consenting residents' photos before face entry goes on.

    Gallery protocol: each person enrols up to 3 photos and probes with the rest; in turn a
    quarter of the persons are left out and probe as strangers.  Prints true accepts at the
    configured threshold, wrong-person and stranger accepts, true accepts at zero false accepts,
    the impostor distribution, and the threshold the calibration rule recommends for a gallery
    of --gallery-size persons (default: the rule's compound size).  Exit status 1 when any
    wrong-person or stranger accept happened.

    Example: menjin faces evaluate /srv/consented-photos --gallery-size 800 -c /etc/menjin/gate.yaml
    """
    from vision.calibration import DEFAULT_GALLERY_SIZE
    from vision.evaluate import (
        EvaluationError,
        Route,
        folder_set,
        gallery_protocol,
        report,
        sample_set,
    )

    _cfg, vision = vision_config(config)
    models = face_models(vision)
    try:
        identities = folder_set(folder)
    except EvaluationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EX_REFUSED) from exc
    route = Route(models.detector, models.embedder, models.thresholds, models.refiner,
                  vision.detector.kind)
    samples = sample_set(route, identities)
    result = gallery_protocol(samples, threshold=models.threshold, margin=models.margin)
    figures = report(result, samples, threshold=models.threshold,
                     gallery_size=gallery_size or DEFAULT_GALLERY_SIZE)
    if as_json:
        typer.echo(json.dumps(figures))
    else:
        for line in describe_report(figures):
            typer.echo(line)
    if result.wrong_person_accepts or result.stranger_accepts:
        raise typer.Exit(EX_REFUSED)


def describe_report(figures: dict[str, object]) -> list[str]:
    """The human-readable lines of ``faces evaluate``."""
    lines = [
        f"{figures['identities']} persons, {figures['photos']} photos "
        f"({figures['photos_refused']} refused by the quality gate or without a face)",
        f"threshold {figures['threshold']:.2f}: {figures['true_accepts']}/"
        f"{figures['genuine_probes']} genuine probes accepted ({figures['true_accept_rate']:.1%}), "
        f"{figures['wrong_person_accepts']} wrong-person accepts, "
        f"{figures['stranger_accepts']}/{figures['stranger_probes']} stranger accepts",
        f"true accepts at zero false accepts: {figures['tar_at_zero_far']:.1%}",
    ]
    for key in ("genuine", "impostor_pairs", "impostor_best_per_probe"):
        d = figures[key]
        assert isinstance(d, dict)
        if d.get("n"):
            lines.append(
                f"{key.replace('_', ' ')}: n={d['n']} mean {d['mean']:.3f} median {d['p50']:.3f} "
                f"p99 {d['p99']:.3f} p99.9 {d['p99.9']:.3f} max {d['max']:.3f}"
            )
    rec = figures["recommended"]
    assert isinstance(rec, dict)
    if "error" in rec:
        lines.append(f"no recommendation: {rec['error']}")
    else:
        lines.append(
            f"recommended threshold {rec['threshold']:.2f} for a gallery of {rec['gallery_size']} "
            f"persons at FPIR {rec['fpir']:g} (stranger accepts per search); the configured "
            f"threshold gives FPIR {rec['fpir_at_threshold']:g}"
        )
    for label, problem in dict(figures["refusals"]).items():  # type: ignore[call-overload]
        lines.append(f"refused: {label}: {problem}")
    return lines
