"""A passage: a credential (card or face) → lockout screen → access decision → door → events.

The order of the record is explicit and by construction: the decision is emitted first (the
journal numbers it in memory and hands it to its writer thread, so nothing here waits for a disk),
then the door is told, and what the door does (``door.unlocked`` ...) is emitted by the door
after it.  A grant the door refuses (lockdown, interlock, stopping) is recorded as a denial with
the door's reason, because the door is asked before the decision is recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from daemon.access import AccessController, Decision, Reason, decision_events
from daemon.door import DoorController
from daemon.events import Emit, Event
from daemon.lockout import Lockout
from daemon.pin_entry import PinEntry
from drivers.card import CardRead, mask

log = logging.getLogger(__name__)

#: Observation kinds the vision process reports (see :mod:`daemon.vision_link`).
FACE_RECOGNISED = "recognised"
FACE_REFUSED = "refused"
LIVENESS_FAILED = "liveness_failed"


class Passage:
    """Turns credentials into decisions and door movements, and records them in order.

    ``passed`` hears of every grant the door carried out, after its events (the gate's doors:
    first-person unlock).
    """

    def __init__(self, *, access: Callable[[], AccessController],
                 doors: Mapping[str, DoorController], lockout: Lockout, emit: Emit,
                 multi_factor_seconds: Callable[[str], float] = lambda door_id: 10.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 passed: Callable[[Decision], None] = lambda decision: None) -> None:
        self._access = access
        self._passed = passed
        self._multi_factor_seconds = multi_factor_seconds
        self._pins: dict[str, PinEntry] = {}  # reader → card waiting for its PIN, keys typed
        self._pin_checks: set[asyncio.Task[None]] = set()
        self._doors = doors
        self._lockout = lockout
        self._emit = emit
        self._clock = clock

    def _lockdown(self, door_id: str) -> bool:
        door = self._doors.get(door_id)
        return door is not None and door.mode == "lockdown"

    def card(self, reader_id: str, door_id: str, read: CardRead) -> None:
        """A card at a reader: screen for card scanning, decide, move the door, record.

        While a reader cools down after a card-scanning attack its *unknown* cards are ignored
        (no decision, no feedback); cards the store knows are decided as always.
        """
        now = time.monotonic()
        decision = self._access().decide_card(door_id, read.credential, self._clock(),
                                            reader=reader_id, lockdown=self._lockdown(door_id))
        if (decision.reason is Reason.UNKNOWN_CREDENTIAL
                and self._lockout.locked(reader_id, now)):
            ignored = self._lockout.ignore(reader_id)
            log.debug("reader %s: unknown card ignored during lockout (%d so far)", reader_id,
                      ignored)
            return
        self.decided(decision, reader=reader_id,
                     credential_ref=self._access().card_ref(read.credential),
                     card_mask=mask(read.credential))
        if decision.awaiting == "pin":  # a known card: its PIN comes on the keypad next
            self._pin_entry(reader_id, door_id).card_waiting(read.credential)
            return
        if not decision.granted and self._lockout.denied(reader_id, now):
            lockout = self._lockout
            log.warning("reader %s: card scanning suspected; unknown cards ignored for %g s",
                        reader_id, lockout.cooldown_seconds)
            self._emit(Event("reader.attack", door=door_id, reader=reader_id,
                             reason="card_scanning",
                             data={"denied": lockout.max_denied + 1,
                                   "window_seconds": lockout.window_seconds,
                                   "cooldown_seconds": lockout.cooldown_seconds}))
            self._emit(Event("reader.lockout_started", door=door_id, reader=reader_id,
                             reason="card_scanning",
                             data={"cooldown_seconds": lockout.cooldown_seconds}))
            asyncio.get_running_loop().call_later(lockout.cooldown_seconds, self._lockout_over,
                                                  reader_id, door_id)

    def lockout_status(self, now: float) -> dict[str, dict[str, Any]]:
        """Readers ignoring unknown cards now: ``{reader: {seconds_left, ignored}}``."""
        return {reader: {"seconds_left": round(left, 1), "ignored": ignored}
                for reader, (left, ignored) in self._lockout.active(now).items()}

    def _lockout_over(self, reader_id: str, door_id: str) -> None:
        """The cooldown of a reader ran out: say so, with how many unknown cards it ignored."""
        left = self._lockout.seconds_left(reader_id, time.monotonic())
        if left > 0:  # the monotonic clock and the loop's timer disagree by a hair
            asyncio.get_running_loop().call_later(left, self._lockout_over, reader_id, door_id)
            return
        ignored = self._lockout.ignored(reader_id)
        log.info("reader %s: card-scanning lockout over (%d unknown card(s) ignored)",
                 reader_id, ignored)
        self._emit(Event("reader.lockout_ended", door=door_id, reader=reader_id,
                         data={"ignored": ignored}))

    def _pin_entry(self, reader_id: str, door_id: str) -> PinEntry:
        return self._pins.setdefault(
            reader_id, PinEntry(reader_id, card_window_s=self._multi_factor_seconds(door_id)))

    def keys(self, reader_id: str, door_id: str, keys: str) -> None:
        """Keys from a reader's keypad: a PIN completed for a waiting card is decided."""
        entry = self._pin_entry(reader_id, door_id)
        for key in keys:
            done = entry.key(key)
            if done is not None:
                task = asyncio.get_running_loop().create_task(
                    self._decide_pin(reader_id, door_id, *done), name=f"pin:{reader_id}")
                self._pin_checks.add(task)  # a strong reference until it is done
                task.add_done_callback(self._pin_checks.discard)

    async def _decide_pin(self, reader_id: str, door_id: str, card: str, pin: str) -> None:
        access = self._access()
        decision = await access.decide_card_pin(door_id, card, pin, self._clock(),
                                                reader=reader_id,
                                                lockdown=self._lockdown(door_id))
        self.decided(decision, reader=reader_id, credential_ref=access.card_ref(card))

    def face(self, door_id: str, kind: str, person: str | None, reason: str | None) -> None:
        """What the vision process saw at a door's camera; the decision is taken here."""
        now = self._clock()
        if kind == FACE_RECOGNISED and person is not None:
            decision = self._access().decide_face(door_id, person, now,
                                                lockdown=self._lockdown(door_id))
            self.decided(decision, reader=None, credential_ref=None)
        elif kind == FACE_REFUSED and reason == LIVENESS_FAILED and person is not None:
            decision = self._access().decide_face(door_id, person, now, live=False)
            self.decided(decision, reader=None, credential_ref=None)
        else:
            self._emit(Event("access.denied", door=door_id, credential_kind="face",
                             person=person, reason=reason))

    def decided(self, decision: Decision, *, reader: str | None,
                credential_ref: str | None, card_mask: str | None = None) -> None:
        """Record the decision, then move the door (whose own events follow in the record).

        A card travels as its keyed hash (``credential_ref``) and, for people to read, as
        ``data.card`` masked to its last digits (``****5678``): never the number itself.
        """
        events = decision_events(decision, reader=reader, credential_ref=credential_ref)
        if card_mask is not None:
            events = [dataclasses.replace(e, data={**e.data, "card": card_mask}) for e in events]
        door = self._doors.get(decision.door)
        if door is None:
            log.error("door %s: not running; %s decision not carried out", decision.door,
                      decision.reason.value)
        elif decision.granted:
            refusal = door.refusal(decision.credential_kind)
            if refusal is not None:
                events[0] = dataclasses.replace(events[0], type="access.denied", reason=refusal)
        for event in events:
            self._emit(event)
        if door is None:
            return
        if decision.granted:
            if door.grant(decision.credential_kind, decision.person) is None:
                self._passed(decision)  # e.g. the first card of a first-person window
        elif decision.awaiting is None:  # waiting for a PIN or a face is no "denied" signal
            door.deny()


def observation_fields(observation: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(kind, person, reason) of an observation message, each checked for its type."""
    kind, person, reason = (observation.get(k) for k in ("kind", "person", "reason"))
    if not isinstance(kind, str):
        raise ValueError("observation: 'kind' must be a string")
    if person is not None and not isinstance(person, str):
        raise ValueError("observation: 'person' must be a string or null")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("observation: 'reason' must be a string or null")
    return kind, person, reason
