"""`menjin enrol`, `menjin faces compare` and `menjin faces evaluate`: the installer's face tools.

Enrolment turns photos into templates and stores only the templates, encrypted, in the gate's
template store (``vision.templates``, sealed under the face key of ``keys:``).  It refuses a
person who is not in the resident store or has no recorded face consent there (a guardian's too
under 14; PIPL arts. 29 and 31), photos without exactly one good face, and photos that already
match another enrolled person (two ids for one face would break the margin rule and open each
other's doors); it warns when the person has no card.  Every enrolment is written to the
audit log.

``faces compare`` prints the similarity of two photos and whether it is a match under the
configured threshold; installers use it to check a threshold, tests use it too.  ``faces evaluate``
runs the gallery protocol of vision/evaluate.py on a folder-per-identity set (consenting
residents' photos) and prints true accepts, the impostor distribution and the threshold the rule
of vision/calibration.py recommends for the configured route.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from daemon.audit import local_actor
from daemon.config import GateConfig, VisionSection
from daemon.configfile import EX_CONFIG, ConfigError, load_config_file
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
        loaded = load_config_file(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EX_CONFIG) from exc
    cfg = loaded.config
    if loaded.warnings:  # the models are missing: face tools cannot work without them
        typer.echo("\n".join(str(w) for w in loaded.warnings), err=True)
        raise typer.Exit(EX_CONFIG)
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

    result = enrol_photos(photos, models.detector, models.embedder, models.thresholds,
                          models.refiner)
    return store_enrolment(cfg, models, store, person, result, actor=local_actor(),
                           keyring=keyring)


DEFAULT_BURST_FRAMES = 10
DEFAULT_BURST_SECONDS = 2.0


def enrol_at_door(
    cfg: GateConfig, vision: VisionSection, models: FaceModels, store: TemplateStore, person: str,
    door: str, frames: int, seconds: float, keyring: Keyring,
) -> EnrolOutcome:
    """Templates of ``person`` from a burst of ``door``'s camera (consent already checked).

    Raises BurstError (no frames) or BurstRefusedError (not good enough, not one person)."""
    from daemon.cli.burst import door_burst
    from vision.burst import enrol_burst
    from vision.enrol import decode_image

    encoded = door_burst(cfg, door, frames, seconds)
    images = ((f"frame {i + 1}", decode_image(data, f"frame {i + 1}"))
              for i, data in enumerate(encoded))
    result = enrol_burst(images, models.detector, models.embedder, models.thresholds,
                         same_person=models.threshold, refiner=models.refiner,
                         detector_kind=vision.detector.kind)
    return store_enrolment(cfg, models, store, person, result, actor=local_actor(),
                           keyring=keyring)


def enrol(
    person: Annotated[
        str, typer.Option("--person", "-p", help="Person id (as in the resident store).")
    ],
    photos: Annotated[
        list[Path] | None,
        typer.Argument(help="One or more photos showing only this person (or --at-door)."),
    ] = None,
    at_door: Annotated[
        str | None,
        typer.Option("--at-door", help="Capture a burst from this door's camera instead of "
                                       "photos: the resident looks at the camera."),
    ] = None,
    frames: Annotated[
        int, typer.Option("--frames", min=3, max=12, help="Frames in the burst (--at-door).")
    ] = DEFAULT_BURST_FRAMES,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.5, max=10.0,
                            help="Length of the burst in seconds (--at-door).")
    ] = DEFAULT_BURST_SECONDS,
    config: ConfigOpt = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Enrol a resident's face from photos or at a door's camera; stores only templates,
    encrypted.

    Refuses a person without recorded face consent, and every photo with no face, several faces,
    a too small or blurred face, or a face that already matches another enrolled person.  Several
    photos (different days, light, glasses) make recognition more reliable.  With --at-door, a
    burst of the door camera's frames is taken (through the running daemon, or directly when it
    is stopped) and up to 3 diverse good frames become templates; the burst is refused when too
    few frames show one clear face or they show different people.

    \b
    Examples:
      menjin enrol --person p-0042 front.jpg left.jpg -c /etc/menjin/gate.yaml
      menjin enrol --person p-0042 --at-door front -c /etc/menjin/gate.yaml
    """
    from daemon.cli.burst import BurstError
    from vision.burst import BurstRefusedError
    from vision.gallery import TemplateStoreError

    if bool(photos) == (at_door is not None):
        typer.echo("error: give either photos or --at-door DOOR", err=True)
        raise typer.Exit(2)
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
        store = template_store(vision, template_key)
        if at_door is not None:
            outcome = enrol_at_door(cfg, vision, models, store, person, at_door, frames, seconds,
                                    keyring)
        else:
            outcome = enrol_person(cfg, models, store, person, photos or [], keyring)
    except TemplateStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EX_CONFIG) from exc
    except BurstError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EX_REFUSED) from exc
    except BurstRefusedError as exc:
        typer.echo(f"refused: {person}: {exc}", err=True)
        raise typer.Exit(EX_REFUSED) from exc
    except EnrolRefusedError as exc:
        for message in exc.messages:
            typer.echo(f"refused: {message}", err=True)
        raise typer.Exit(EX_REFUSED) from exc
    daemon = tell_daemon(cfg)
    if as_json:
        typer.echo(json.dumps({"person": person, "accepted": outcome.accepted,
                               "rejected": outcome.rejected, "templates": outcome.templates,
                               "daemon": daemon}, ensure_ascii=False))
        return
    for message in outcome.rejected.values():
        typer.echo(f"rejected: {message}", err=True)
    source = "frame(s) kept" if at_door is not None else "photo(s) accepted"
    typer.echo(f"enrolled {person}: {outcome.accepted} {source}, "
               f"{len(outcome.rejected)} rejected, {outcome.templates} template(s) stored")
    typer.echo(daemon)


def tell_daemon(cfg: GateConfig) -> str:
    """Make a running daemon load the changed template store now; says what happened."""
    import asyncio

    from daemon import control

    try:
        asyncio.run(control.call(cfg.control.socket, "faces.changed"))
    except control.ControlUnavailableError:
        return "the daemon is not running: it loads the new templates when it starts"
    except control.ControlError as exc:
        return (f"the running daemon did not reload the templates ({exc}): reload it with "
                "sudo systemctl reload menjin")
    return "the running daemon reloaded the face templates: the new face opens at once"


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

    \b
    Example:
      menjin faces compare alice-2024.jpg alice-gate.jpg --json -c gate.yaml
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

    \b
    Example:
      menjin faces evaluate /srv/consented-photos --gallery-size 800 -c gate.yaml
    """
    from vision.calibration import DEFAULT_GALLERY_SIZE
    from vision.evaluate import (
        EvaluationError,
        Route,
        folder_set,
        gallery_protocol,
        passage_protocol,
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
    size = gallery_size or DEFAULT_GALLERY_SIZE
    result = gallery_protocol(samples, threshold=models.threshold, margin=models.margin,
                              scoring=models.scoring)
    figures = report(result, samples, threshold=models.threshold, gallery_size=size)
    passages = passage_protocol(samples, threshold=models.threshold, margin=models.margin,
                                scoring=models.scoring)
    fused = report(passages, samples, threshold=models.threshold, gallery_size=size)
    figures["passages"] = {key: fused[key] for key in PASSAGE_KEYS}
    if as_json:
        typer.echo(json.dumps(figures))
    else:
        for line in describe_report(figures):
            typer.echo(line)
    if (result.wrong_person_accepts or result.stranger_accepts
            or passages.wrong_person_accepts or passages.stranger_accepts):
        raise typer.Exit(EX_REFUSED)


#: What ``faces evaluate`` reports of the passage protocol (passages of up to 3 photos, fused).
PASSAGE_KEYS = ("genuine_probes", "true_accepts", "true_accept_rate", "wrong_person_accepts",
                "stranger_probes", "stranger_accepts", "impostor_pairs", "recommended")


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
    passages = figures.get("passages")
    if isinstance(passages, dict):
        lines.append(
            f"passages of up to 3 photos, fused: {passages['true_accepts']}/"
            f"{passages['genuine_probes']} accepted ({passages['true_accept_rate']:.1%}), "
            f"{passages['wrong_person_accepts']} wrong-person accepts, "
            f"{passages['stranger_accepts']}/{passages['stranger_probes']} stranger accepts"
        )
        fused = passages["recommended"]
        if "threshold" in fused:
            lines.append(
                f"recommended threshold for fused passages {fused['threshold']:.2f} (configured "
                f"threshold: FPIR {fused['fpir_at_threshold']:g}); use the higher of the two"
            )
    for label, problem in dict(figures["refusals"]).items():  # type: ignore[call-overload]
        lines.append(f"refused: {label}: {problem}")
    return lines
