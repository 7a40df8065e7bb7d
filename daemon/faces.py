"""Face templates on the gate: the encrypted template store, consent checks, storing enrolments.

Runtime code shared by the daemon (station ``enrol``/``remove``/``forget`` commands, the vision
process loading its gallery) and the installer's CLI (:mod:`daemon.cli.faces`).  Enrolment stores
only templates, never photos; it refuses a person without a recorded face consent (a guardian's
too under 14; PIPL arts. 29 and 31) and photos that already match another enrolled person (two ids
for one face would break the margin rule and open each other's doors).  Every stored enrolment is
written to the audit log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemon.audit import AuditLog
from daemon.config import GateConfig, VisionSection
from daemon.keyring import Keyring
from daemon.keys import KeyProviderError

if TYPE_CHECKING:  # the vision stack (OpenCV, ONNX Runtime) loads only when faces are used
    from vision.detect import Detector
    from vision.embed import Embedder, RouteChoices
    from vision.enrol import Enrolment
    from vision.gallery import Gallery, TemplateStore
    from vision.landmarks import Refiner
    from vision.quality import QualityThresholds

log = logging.getLogger(__name__)


def route_choices(vision: VisionSection) -> RouteChoices:
    """The configured route's pipeline choices: the config's where set, else the embedder kind's
    measured defaults (vision/embed.py)."""
    from vision.embed import RouteChoices
    from vision.embed import route_choices as kind_choices

    default = kind_choices(vision.embedder.kind)
    return RouteChoices(
        scoring=vision.scoring or default.scoring,
        mirror_average=(default.mirror_average if vision.embedder.mirror_average is None
                        else vision.embedder.mirror_average),
        refine_landmarks=(default.refine_landmarks if vision.refine_landmarks is None
                          else vision.refine_landmarks),
    )


@dataclass
class FaceModels:
    """The detector, embedder and gates a config names, built once for a command."""

    detector: Detector
    embedder: Embedder
    thresholds: QualityThresholds
    threshold: float
    margin: float
    refiner: Refiner | None = None
    scoring: str = "mean"


def face_models(vision: VisionSection) -> FaceModels:
    """Map the vision config to the model objects (heavy imports only when faces are used).

    Raises :class:`vision.models.ModelError` for a missing or unloadable model file.

    No region of interest here: enrolment and compare photos are not camera frames.
    """
    from vision.embed import default_match_threshold
    from vision.models import load_detector, load_embedder, load_refiner
    from vision.quality import QualityThresholds

    q = vision.quality
    choices = route_choices(vision)
    detector = load_detector(
        vision.detector.kind, vision.detector.path, input_size=vision.detector.input_size,
        score_threshold=vision.detector.score_threshold, threads=vision.threads,
    )
    embedder = load_embedder(vision.embedder.kind, vision.embedder.path, threads=vision.threads,
                             mirror=choices.mirror_average)
    refiner = (load_refiner(vision.detector.kind, vision.detector.path, threads=vision.threads)
               if choices.refine_landmarks else None)
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
        scoring=choices.scoring,
    )


def template_store(vision: VisionSection, key: bytes) -> TemplateStore:
    """The gate's encrypted template store under ``key`` (:meth:`Keyring.template_key`).

    A wrong key is an error when the store is read (never a reason to start over empty, which
    would silently unenrol everybody).
    """
    from vision.gallery import TemplateStore

    return TemplateStore(vision.templates, key, model=vision.embedder.kind)


@dataclass(frozen=True)
class ConsentCheck:
    """``problem`` refuses the enrolment; ``warning`` is told to the installer."""

    problem: str | None = None
    warning: str | None = None


def check_consent(cfg: GateConfig, person: str, keyring: Keyring) -> ConsentCheck:
    """Whether ``person``'s separate face consent (and a guardian's, under 14) is recorded in the
    resident store (PIPL arts. 29 and 31), and whether they also hold a card or PIN."""
    from daemon.store import StoreError

    db = cfg.access.db
    if not db.exists():
        return ConsentCheck(f"resident store {db} not found: add {person} with their face "
                            "consent first")
    try:
        with keyring.open_store(cfg) as store:
            record = store.person(person)
    except (StoreError, KeyProviderError, OSError) as exc:
        return ConsentCheck(f"cannot read the resident store: {exc}")
    if record is None:
        return ConsentCheck(f"{person} is not in the resident store: add the person first")
    if not record.face_consent:
        return ConsentCheck(f"no face consent recorded for {person} (a separate consent is "
                            "required)")
    if not record.may_use_face:
        return ConsentCheck(f"{person} is under 14: a guardian's face consent is required too")
    if not record.cards:  # a PIN only works together with a card: no alternative on its own
        return ConsentCheck(warning=f"{person} has no card: face entry must never be "
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


def store_enrolment(
    cfg: GateConfig,
    models: FaceModels,
    store: TemplateStore,
    person: str,
    result: Enrolment,
    *,
    actor: str,
    keyring: Keyring,
) -> EnrolOutcome:
    """Persist an enrolment (from files, or from a station ``enrol`` command) and audit it.

    Re-enrolling a person adds to their templates.  Raises EnrolRefusedError when no photo was
    usable or one matches somebody else; then nothing is stored.
    """
    if not result.templates:
        raise EnrolRefusedError([*result.rejected.values(), f"{person}: no usable photo"])
    others = store.load_gallery(models.embedder.dim, threshold=models.threshold, margin=0.0,
                                scoring=models.scoring)
    others.remove(person)
    clashes = _clashes(others, result, person)
    if clashes:
        raise EnrolRefusedError(clashes)
    total = store.add(person, result.matrix())
    alias = keyring.pseudonym(person)
    AuditLog(cfg.privacy.audit_path).append(
        "enrol", actor=actor, target=alias,
        details={"photos_accepted": len(result.accepted), "photos_rejected": len(result.rejected),
                 "templates": total},
    )
    log.info("face enrolment of %s: %d template(s) stored", alias, total)
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
