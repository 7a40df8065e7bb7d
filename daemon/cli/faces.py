"""`menjin enrol` and `menjin faces compare`: the installer's face tools.

Enrolment turns photos into templates and stores only the templates, encrypted, in the gate's
template store (``vision.templates`` with the key in ``vision.template_key_file``).  It refuses a
person who is not in the resident store or has no recorded face consent there (a guardian's too
under 14; PIPL arts. 29 and 31), photos without exactly one good face, and photos that already
match another enrolled person (two ids for one face would break the margin rule and open each
other's doors); it warns when the person has no card or PIN.  Every enrolment is written to the
audit log.

``faces compare`` prints the similarity of two photos and whether it is a match under the
configured threshold; installers use it to check a threshold, tests use it too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from daemon.audit import local_actor
from daemon.config import GateConfig, VisionSection
from daemon.configfile import EX_CONFIG, ConfigError, load_config
from daemon.faces import (
    EnrolOutcome,
    EnrolRefusedError,
    FaceModels,
    check_consent,
    store_enrolment,
    template_store,
)
from daemon.keyring import Keyring
from daemon.keys import KeyProviderError

if TYPE_CHECKING:  # the vision stack (OpenCV, ONNX Runtime) loads only when a face command runs
    from vision.gallery import TemplateStore

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("/etc/menjin/gate.yaml")
EX_REFUSED = 1

faces_app = typer.Typer(help="Face tools: compare photos to check the match threshold.",
                        no_args_is_help=True)

ConfigOpt = Annotated[
    Path,
    typer.Option("-c", "--config", envvar="MENJIN_CONFIG", help="Gate config file (YAML)."),
]


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
    """The config's face models; a model that cannot load is one error line and exit 78."""
    from daemon import faces
    from vision.models import ModelError

    try:
        return faces.face_models(vision)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EX_CONFIG) from exc


def enrol_person(
    cfg: GateConfig, models: FaceModels, store: TemplateStore, person: str, photos: list[Path],
    keyring: Keyring,
) -> EnrolOutcome:
    """Add templates of ``person`` from photo files to ``store`` (consent already checked)."""
    from vision.enrol import enrol_photos

    result = enrol_photos(photos, models.detector, models.embedder, models.thresholds)
    return store_enrolment(cfg, models, store, person, result, actor=local_actor(),
                           keyring=keyring)


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
    try:
        keyring = Keyring(cfg)
        template_key = keyring.template_key()
    except KeyProviderError as exc:
        typer.echo(f"error: face key: {exc} (with keys.provider station, enrol from the "
                   "station)", err=True)
        raise typer.Exit(EX_CONFIG) from exc
    consent = check_consent(cfg, person, keyring)
    if consent.problem is not None:
        typer.echo(f"refused: {consent.problem}", err=True)
        raise typer.Exit(EX_REFUSED)
    if consent.warning is not None:
        typer.echo(f"warning: {consent.warning}", err=True)
    models = face_models(vision)
    try:
        outcome = enrol_person(cfg, models, template_store(vision, template_key), person, photos,
                               keyring)
    except TemplateStoreError as exc:
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
    from vision.align import align
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
        vectors.append(models.embedder.embed(align(bgr, face.kps)))
    similarity = round(float(vectors[0] @ vectors[1]), 4)
    match = similarity >= models.threshold
    if as_json:
        typer.echo(json.dumps({"similarity": similarity, "match": match}))
        return
    verdict = "match" if match else "no match"
    typer.echo(f"similarity {similarity:.3f}: {verdict} (threshold {models.threshold:.2f})")
