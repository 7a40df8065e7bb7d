"""Handlers of the station's signed commands (``config``, ``open``, ``mode``, ``sync``,
``sync_part``, ``enrol``, ``remove``, ``forget``, ``resend``).

The command processor (:mod:`daemon.commands`) checks signature, expiry and replay; these
handlers only carry out a verified command.  A refusal raises (``ValueError`` and friends), which
the processor turns into an ``ok: false`` result.  Administrative actions are audited.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.builders import redacted
from daemon.commands import CommandProcessor
from daemon.config import GateConfig, VisionSection
from daemon.credentials import load_station_key
from daemon.door import DoorController
from daemon.doors import Doors
from daemon.events import Emit
from daemon.faces import EnrolOutcome, check_consent, face_models, store_enrolment, template_store
from daemon.journal import Journal
from daemon.keyring import Keyring
from daemon.sync_transfer import STAGING_FILE, SyncStaging
from daemon.trusted_time import TrustedTime
from daemon.upkeep import AuditTrail, Erasure, Residents
from protocol.envelope import RESEND_MAX_EVENTS

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def enrol_from_station(config: GateConfig, vision: VisionSection, person: str,
                       photos_b64: list[str], keyring: Keyring) -> EnrolOutcome:
    """Templates from base64 photos of a station ``enrol`` command (blocking: inference)."""
    from vision.enrol import decode_image, enrol_images

    models = face_models(vision)
    images = [
        (f"photo {i + 1}", functools.partial(decode_image, base64.b64decode(data),
                                             f"photo {i + 1}"))
        for i, data in enumerate(photos_b64)
    ]
    result = enrol_images(images, models.detector, models.embedder, models.thresholds,
                          models.refiner)
    return store_enrolment(config, models, template_store(vision, keyring.template_key()),
                           person, result, actor="station", keyring=keyring)


def enrol_burst_from_station(config: GateConfig, vision: VisionSection, person: str,
                             frames: list[bytes], keyring: Keyring) -> EnrolOutcome:
    """Templates from a burst of the door camera (a station ``enrol`` naming a ``door``)."""
    from vision.burst import enrol_burst
    from vision.enrol import decode_image

    models = face_models(vision)
    images = ((f"frame {i + 1}", decode_image(data, f"frame {i + 1}"))
              for i, data in enumerate(frames))
    result = enrol_burst(images, models.detector, models.embedder, models.thresholds,
                         same_person=models.threshold, refiner=models.refiner,
                         detector_kind=vision.detector.kind)
    return store_enrolment(config, models, template_store(vision, keyring.template_key()),
                           person, result, actor="station", keyring=keyring)


#: A station enrolment at the door: this many frames over this many seconds.
STATION_BURST_FRAMES = 10
STATION_BURST_SECONDS = 2.0
Burst = Callable[[str, int, float], Awaitable[list[bytes]]]


class StationCommands:
    """What a verified station command does on this gate."""

    def __init__(self, *, config: Callable[[], GateConfig], doors: Doors,
                 residents: Callable[[], Residents], erasure: Callable[[], Erasure],
                 audit: AuditTrail, faces_changed: Callable[[], Awaitable[None]],
                 keyring: Keyring, unwrap: Handler | None = None,
                 burst: Burst | None = None) -> None:
        self._config = config
        self._keyring = keyring
        self._unwrap = unwrap  # provider station: the face key's answer
        self._doors = doors
        self._residents = residents
        self._erasure = erasure
        self._audit = audit
        self._faces_changed = faces_changed
        self._staging: SyncStaging | None = None
        self._burst = burst  # burst(door, frames, seconds): the door camera's frames

    def handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {
            "config": self.config, "open": self.open, "sync": self.sync,
            "sync_part": self.sync_part, "enrol": self.enrol, "remove": self.remove,
            "forget": self.forget, "mode": self.mode}
        if self._unwrap is not None:
            handlers["unwrap"] = self._unwrap
        return handlers

    def processor(self, config: GateConfig, journal: Journal, emit: Emit,
                  time: TrustedTime | None = None) -> CommandProcessor:
        """The command processor of ``config``'s uplink, with the station's public key; its
        counters and nonces are kept in ``journal``, its validity judged on ``time``."""
        assert config.uplink is not None
        key_file = config.uplink.station_public_key_file
        if key_file is None:
            log.warning("uplink: no station_public_key_file: every station command is refused")
        return CommandProcessor(
            gate=config.gate.id,
            station_key=load_station_key(key_file) if key_file is not None else None,
            remember_nonce=journal.remember_nonce, emit=emit,
            handlers={**self.handlers(), "resend": functools.partial(resend, journal)},
            remember_counter=journal.remember_counter, time=time,
        )

    async def config(self, args: dict[str, Any]) -> dict[str, Any]:
        """The running config for the station, without anything secret."""
        return redacted(self._config())

    def _door(self, args: dict[str, Any]) -> tuple[str, DoorController]:
        door_id = str(args.get("door"))
        controller = self._doors.get(door_id)
        if controller is None:
            raise ValueError(f"no running door {door_id!r}")
        return door_id, controller

    async def open(self, args: dict[str, Any]) -> dict[str, Any]:
        """Signed remote open from the station (verified by the command processor)."""
        door_id, controller = self._door(args)
        seconds = float(args["seconds"]) if "seconds" in args else None
        refusal = controller.grant("remote", seconds=seconds)
        await self._audit.record("remote.open", actor="station", target=door_id,
                                 details={"seconds": seconds, "refused": refusal})
        return {"door": door_id, "opened": refusal is None, "refusal": refusal}

    async def mode(self, args: dict[str, Any]) -> dict[str, Any]:
        """Signed door mode change (lockdown, hold_open, normal; ``schedule`` cancels a set mode)
        with an optional end time ``until_ms`` (UTC ms); durable, audited.  A refused change
        (ModeError, a ValueError) becomes an ok=false result."""
        door_id, controller = self._door(args)
        mode = str(args.get("mode"))
        until = args.get("until_ms")
        if until is not None and (not isinstance(until, int) or isinstance(until, bool)):
            raise ValueError("until_ms: UTC milliseconds (an integer) or absent")
        previous = controller.mode
        effective = await self._doors.change_mode(door_id, mode, source="station",
                                                  actor="station", until_ms=until)
        await self._audit.record("door.mode", actor="station", target=door_id,
                                 details={"mode": mode, "previous": previous, "until_ms": until})
        return {"door": door_id, "previous": previous, **effective.as_dict()}

    async def sync(self, args: dict[str, Any]) -> dict[str, Any]:
        """Station credential sync: one transaction, then the new index swapped in."""
        residents = self._residents()
        async with residents.lock:  # a SyncRefusedError becomes an ok=false result
            result = await asyncio.to_thread(residents.store.apply_sync, args)
        await residents.reload()
        return result.as_dict()

    async def sync_part(self, args: dict[str, Any]) -> dict[str, Any]:
        """One signed piece of a large sync (:mod:`daemon.sync_transfer`): staged; the last one
        applies them all in one transaction and swaps the new index in."""
        if self._staging is None:
            self._staging = SyncStaging(self._config().state_dir / STAGING_FILE,
                                        self._keyring.local().store)
        staging = self._staging
        transfer, have, count = await asyncio.to_thread(staging.stage, args)
        answer: dict[str, Any] = {"transfer": transfer, "received": have, "count": count,
                                  "complete": have >= count}
        if have < count:
            return answer
        residents = self._residents()
        async with residents.lock:
            try:
                result = await asyncio.to_thread(
                    lambda: residents.store.apply_sync_parts(staging.pieces(transfer)))
            finally:  # applied or refused: the staged resident list goes, file and all
                self._staging = None
                await asyncio.to_thread(staging.remove)
        await residents.reload()
        return {**answer, **result.as_dict()}

    async def enrol(self, args: dict[str, Any]) -> dict[str, Any]:
        """Station face enrolment: consent checked, templates stored (never the photos), audited.

        ``photos`` (base64 JPEG) or ``door``: a burst of that door's camera while the resident
        looks at it (vision/burst.py).  The vision part restarts afterwards to load the new
        gallery.
        """
        from vision.burst import BurstRefusedError

        config = self._config()
        vision = config.vision
        if vision is None:
            raise ValueError("this gate has no face recognition (no vision section)")
        person, photos, door = str(args.get("person", "")), args.get("photos"), args.get("door")
        if door is None and (not isinstance(photos, list) or not photos):
            raise ValueError("photos: a non-empty list of base64 JPEG photos is required "
                             "(or door: enrol at that door's camera)")
        consent = await asyncio.to_thread(check_consent, config, person, self._keyring)
        if consent.problem is not None:
            raise ValueError(consent.problem)
        if door is not None:
            if self._burst is None or str(door) not in config.doors:
                raise ValueError(f"door {door!r}: no such door with a camera on this gate")
            try:
                frames = await self._burst(str(door), STATION_BURST_FRAMES,
                                           STATION_BURST_SECONDS)
            except LookupError as exc:
                raise ValueError(f"door {door}: {exc}") from exc
            try:
                outcome = await asyncio.to_thread(enrol_burst_from_station, config, vision,
                                                  person, frames, self._keyring)
            except BurstRefusedError as exc:
                raise ValueError(f"{person}: {exc}") from exc
        else:
            assert isinstance(photos, list)
            outcome = await asyncio.to_thread(enrol_from_station, config, vision, person,
                                              [str(p) for p in photos], self._keyring)
        await self._faces_changed()
        return {"person": person, "accepted": outcome.accepted, "rejected": outcome.rejected,
                "templates": outcome.templates, "warning": consent.warning}

    async def remove(self, args: dict[str, Any]) -> dict[str, Any]:
        """Station removal of a person's face templates (opt-out); cards are not touched."""
        vision = self._config().vision
        if vision is None:
            raise ValueError("this gate has no face recognition (no vision section)")
        person = str(args.get("person", ""))
        key = self._keyring.template_key()
        removed = await asyncio.to_thread(lambda: template_store(vision, key).remove(person))
        await self._audit.record("face.remove", actor="station",
                                 target=self._keyring.pseudonym(person),
                                 details={"removed": removed})
        await self._faces_changed()
        return {"person": person, "removed": removed}

    async def forget(self, args: dict[str, Any]) -> dict[str, Any]:
        """The station's signed erasure request."""
        person = args.get("person")
        if not isinstance(person, str) or not person:
            raise ValueError("person: a person id is required")
        return await self._erasure().forget(person, actor="station")


def _seq_arg(args: dict[str, Any], key: str) -> int:
    value = args.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 2**53:
        raise ValueError(f"{key}: a seq number between 1 and 2^53 is required")
    return value


async def resend(journal: Journal, args: dict[str, Any]) -> dict[str, Any]:
    """The station saw a gap in this gate's ``seq``: publish ``from..to`` again from the journal.

    Answers ``{"from", "to", "resent", "missing": [[low, high], ...], "next"}``: ``missing`` are
    ranges the journal no longer holds (retention, quota), ``next`` the seq to ask for next when
    more than :data:`~protocol.envelope.RESEND_MAX_EVENTS` were asked at once (else null).
    """
    low, high = _seq_arg(args, "from"), _seq_arg(args, "to")
    if high < low:
        raise ValueError("to: must not be below from")
    seqs, missing = await asyncio.to_thread(journal.redeliver, low, high,
                                            limit=RESEND_MAX_EVENTS)
    more = len(seqs) >= RESEND_MAX_EVENTS and seqs[-1] < high
    log.info("station asked for seq %s-%s again: %s events queued, %s ranges no longer held",
             low, high, len(seqs), len(missing))
    return {"from": low, "to": high, "resent": len(seqs),
            "missing": [list(r) for r in missing], "next": seqs[-1] + 1 if more else None}
