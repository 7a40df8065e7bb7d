"""Liveness policy of the doors: what each door requires, what the gate provides, and the
builder of the vision process's per-track liveness checks from the config.

Strength, weakest first: ``none`` (no check), ``rgb`` (passive MiniFASNet models over the track
plus motion consistency: a printed or on-screen photo may pass), ``nir`` (an NIR camera as well:
screens and most prints fail).  A door a face alone opens (``card_or_face``) with less than
``nir`` is allowed, but check-config and the start-up log say what it means.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from daemon.config import AccessRule, CameraSection, GateConfig, VisionSection

if TYPE_CHECKING:
    from vision.liveness_track import TrackLiveness
    from vision.nir import NirCheck, NirFrames, NirUnavailable

log = logging.getLogger(__name__)

STRENGTH = ("none", "rgb", "nir")
Issue = tuple[tuple[str | int, ...], str]
#: NIR detection runs on a small crop around the mapped face: a small detector input suffices.
NIR_DETECTOR_INPUT = (160, 160)


def provided(config: GateConfig, door_id: str) -> str:
    """The liveness the gate can check for faces at ``door_id``."""
    camera, vision = config.camera, config.vision
    if camera is None or camera.door != door_id or vision is None or not vision.enabled:
        return "none"
    if camera.nir is not None:
        return "nir"
    return "rgb" if vision.liveness is not None else "none"


def _face_opens(config: GateConfig, door_id: str) -> bool:
    door, vision = config.doors[door_id], config.vision
    return door.access in (AccessRule.FACE, AccessRule.CARD_OR_FACE) and (
        config.camera is not None and config.camera.door == door_id
        and vision is not None and vision.enabled  # vision off (no models): no face opens it
    )


def liveness_issues(config: GateConfig) -> list[Issue]:
    """Doors requiring more liveness than the gate provides (config errors)."""
    issues: list[Issue] = []
    for door_id, door in config.doors.items():
        if door.liveness is None:
            continue
        have = provided(config, door_id)
        if STRENGTH.index(door.liveness) > STRENGTH.index(have):
            issues.append(
                (("doors", door_id, "liveness"),
                 f"requires {door.liveness} liveness but the gate provides {have}: "
                 f"{_missing(config, door_id, door.liveness)}")
            )
    return issues


def _missing(config: GateConfig, door_id: str, need: str) -> str:
    """What the config lacks for ``need`` liveness at ``door_id``, the first thing first."""
    camera, vision = config.camera, config.vision
    models = "vision.liveness (the MiniFASNet models)"
    nir = "camera.nir (an NIR camera)"
    if camera is None:
        return f"add a camera with camera.door: {door_id}" + (f" and {nir}" if need == "nir"
                                                               else f", and {models}")
    if camera.door != door_id:
        return f"the camera watches door {camera.door!r}, not this one"
    if vision is None or not vision.enabled:
        return "face recognition is off (vision)"
    if need == "nir":
        return f"add {nir} on the camera watching this door"
    return f"add {models}"


def liveness_warnings(config: GateConfig) -> list[str]:
    """Plain words for the installer about doors a photo may open (check-config, start-up log)."""
    warnings: list[str] = []
    for door_id in config.doors:
        if not _face_opens(config, door_id):
            continue
        have = provided(config, door_id)
        if have == "rgb":
            warnings.append(
                f"door {door_id}: face-only entry with only RGB passive liveness: a printed or "
                "on-screen photo may open this door; use card_and_face or add an NIR camera"
            )
        elif have == "none":
            warnings.append(
                f"door {door_id}: face-only entry without any liveness check: a printed or "
                "on-screen photo opens this door; use card_and_face or add an NIR camera"
            )
    camera, vision = config.camera, config.vision
    faces_on = vision is not None and vision.enabled
    if camera is not None and camera.nir is not None and faces_on and \
            not camera.nir.calibration.exists():
        warnings.append(
            f"camera.nir: no calibration at {camera.nir.calibration} yet: faces are refused until "
            "`menjin camera calibrate` has run"
        )
    return warnings


def build_liveness(
    vision: VisionSection, camera: CameraSection | None, nir_frames: NirFrames | None
) -> TrackLiveness | None:
    """The configured checks (blocking: loads models and the calibration).

    Raises ``vision.models.ModelError`` with the installer's fix.  A missing or unusable NIR
    calibration does not raise (a vision process that cannot start would be restarted forever):
    the NIR check then fails every face (fail closed, ``vision.nir.NirUnavailable``), said once
    in the log; cards keep working.
    """
    from vision.liveness import LivenessGate
    from vision.liveness_track import TrackLiveness
    from vision.models import load_detector, load_liveness
    from vision.nir import NirCalibration, NirError
    from vision.nir import NirCheck as Check
    from vision.nir import NirUnavailable as Unavailable
    from vision.planarity import MotionConsistency

    passive = motion = None
    nir: NirCheck | NirUnavailable | None = None
    frames = 1
    if vision.liveness is not None:
        section = vision.liveness
        passive = LivenessGate(
            load_liveness(section.kind, section.paths, threads=vision.threads), section.threshold
        )
        frames = section.frames
        motion = MotionConsistency() if section.motion else None
    if camera is not None and camera.nir is not None:
        if nir_frames is None:
            raise ValueError("camera.nir is configured but no NIR frames are delivered")
        try:
            calibration = NirCalibration.load(camera.nir.calibration)
        except NirError as exc:
            log.error("vision: door %s refuses every face until the NIR camera is calibrated: "
                      "%s", camera.door, exc)
            nir = Unavailable(str(exc))
        else:
            detector = load_detector(
                vision.detector.kind, vision.detector.path, input_size=NIR_DETECTOR_INPUT,
                score_threshold=vision.detector.score_threshold, threads=vision.threads,
            )
            nir = Check(
                detector, calibration, nir_frames,
                max_skew_seconds=camera.nir.max_skew_ms / 1000,
                min_reflectance=camera.nir.min_reflectance,
            )
    if passive is None and motion is None and nir is None:
        return None
    return TrackLiveness(passive=passive, motion=motion, nir=nir, passive_frames=frames)
