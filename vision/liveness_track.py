"""The liveness decision of a track: evidence from every frame of a passage, not one frame.

Each configured check collects evidence while the track is followed, and the decision needs all
of them (a missing NIR frame is no pass: the door fails closed, cards still work):

- ``passive``: the RGB models (MiniFASNet pair) on up to ``passive_frames`` frames; the track
  passes when the *median* P(live) reaches the gate's threshold (one lucky or unlucky frame does
  not decide);
- ``motion``: :mod:`vision.planarity` on every frame; refuses a track whose tracked points stayed
  on one homography while the face tilted (a photo or phone moved in front of the camera);
- ``nir``: :mod:`vision.nir` on the frames an NIR frame pairs with; passes when at least
  ``nir_frames`` paired frames were seen and a bright face was at the mapped spot in more than
  half of them.

:meth:`TrackLiveness.verdict` is None while evidence is still missing and fewer than
``max_wait_frames`` frames were seen; after that, missing evidence refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vision.detect import Face
from vision.liveness import LivenessGate
from vision.nir import NirCheck, NirEvidence, NirUnavailable
from vision.planarity import MotionConsistency, MotionEvidence, TrackMotion

DEFAULT_PASSIVE_FRAMES = 5
DEFAULT_NIR_FRAMES = 3
DEFAULT_MAX_WAIT_FRAMES = 30
CHECKS = ("passive", "motion", "nir")


@dataclass(frozen=True)
class TrackVerdict:
    """The decision of a track: ``live``, the ``failed`` check names, and each check's summary
    (``passive``: median P(live); ``motion``: the verdict; ``nir``: share of paired frames with a
    live NIR face)."""

    live: bool
    score: float | None
    failed: tuple[str, ...]
    details: dict[str, str]

    @property
    def reason(self) -> str:
        return ", ".join(f"{name}: {self.details[name]}" for name in self.failed)


@dataclass
class _Evidence:
    frames: int = 0
    passive: list[float] = field(default_factory=list)
    motion: TrackMotion | None = None
    nir: list[NirEvidence] = field(default_factory=list)


class TrackLiveness:
    """Per-track evidence of the configured checks (any of them may be None, not all)."""

    def __init__(
        self,
        *,
        passive: LivenessGate | None = None,
        motion: MotionConsistency | None = None,
        nir: NirCheck | NirUnavailable | None = None,
        passive_frames: int = DEFAULT_PASSIVE_FRAMES,
        nir_frames: int = DEFAULT_NIR_FRAMES,
        max_wait_frames: int = DEFAULT_MAX_WAIT_FRAMES,
    ) -> None:
        if passive is None and motion is None and nir is None:
            raise ValueError("TrackLiveness needs at least one check")
        if passive_frames < 1 or nir_frames < 1 or max_wait_frames < 1:
            raise ValueError("frame counts must be at least 1")
        self.passive = passive
        self.motion = motion
        self.nir = nir
        self.passive_frames = passive_frames
        self.nir_frames = nir_frames
        self.max_wait_frames = max_wait_frames
        self.model_runs = 0
        self._tracks: dict[int, _Evidence] = {}

    @property
    def checks(self) -> tuple[str, ...]:
        """Names of the configured checks, strongest last."""
        present = {"passive": self.passive, "motion": self.motion, "nir": self.nir}
        return tuple(name for name in CHECKS if present[name] is not None)

    def observe(self, track_id: int, bgr: np.ndarray, face: Face, ts: float) -> None:
        """Collect this frame's evidence for ``track_id`` (frames in time order)."""
        evidence = self._tracks.setdefault(track_id, _Evidence())
        evidence.frames += 1
        if self.passive is not None and len(evidence.passive) < self.passive_frames:
            self.model_runs += 1
            evidence.passive.append(self.passive.liveness.score(bgr, face))
        if self.motion is not None:
            if evidence.motion is None:
                evidence.motion = self.motion.track()
            evidence.motion.add(bgr, face.box)
        if self.nir is not None and len(evidence.nir) < self.max_wait_frames:
            found = self.nir.evaluate(face, ts)
            if found is not None:
                evidence.nir.append(found)

    def collecting(self, track_id: int) -> bool:
        """Whether the checks still want every frame of ``track_id``: passive or NIR evidence
        missing, or the motion check configured (it follows points from one frame to the next,
        which skipped frames would break)."""
        if self.motion is not None:
            return True
        evidence = self._tracks.get(track_id)
        if evidence is None:
            return True
        if self.passive is not None and len(evidence.passive) < self.passive_frames:
            return True
        return self.nir is not None and len(evidence.nir) < self.nir_frames

    def verdict(self, track_id: int) -> TrackVerdict | None:
        """The decision, or None while waiting for evidence (see the module docstring)."""
        evidence = self._tracks.get(track_id, _Evidence())
        waiting = evidence.frames < self.max_wait_frames
        details: dict[str, str] = {}
        failed: list[str] = []
        score: float | None = None
        if self.passive is not None:
            if len(evidence.passive) < min(self.passive_frames, 3) and waiting:
                return None
            if evidence.passive:
                score = float(np.median(evidence.passive))
            details["passive"] = "no frame" if score is None else f"median {score:.2f}"
            if score is None or score < self.passive.threshold:
                failed.append("passive")
        if self.motion is not None:
            motion = (
                evidence.motion.evidence() if evidence.motion is not None
                else MotionEvidence("still", 0.0, 0.0, 0)
            )
            details["motion"] = (
                f"{motion.verdict} (parallax {motion.parallax:.3f}, tilt {motion.tilt:.3f})"
            )
            if motion.refuses:
                failed.append("motion")
        if self.nir is not None:
            if len(evidence.nir) < self.nir_frames and waiting:
                return None
            live = sum(e.live for e in evidence.nir)
            details["nir"] = f"live face in {live}/{len(evidence.nir)} paired NIR frames"
            if len(evidence.nir) < self.nir_frames or live * 2 <= len(evidence.nir):
                failed.append("nir")
        return TrackVerdict(not failed, score, tuple(failed), details)

    def forget(self, track_id: int) -> None:
        self._tracks.pop(track_id, None)

    def reset(self) -> None:
        self._tracks.clear()
