"""The passage records the decision first, then what the door did; a refused grant is a denial."""

from __future__ import annotations

from datetime import UTC, datetime

from gpiozero.pins.mock import MockFactory

from daemon.access import AccessController, AccessIndex, DoorPolicy, Group, Person
from daemon.config import AccessRule
from daemon.door import DoorController
from daemon.events import Event
from daemon.lockout import Lockout
from daemon.passage import FACE_REFUSED, Passage
from daemon.schedule import parse_schedule
from drivers.card import CardRead, card_credential
from drivers.lock import Lock

CARD = 0x0A0012D687


def rig(events: list[Event]) -> tuple[Passage, DoorController, MockFactory]:
    factory = MockFactory()
    door = DoorController("front", lock=Lock(17, pin_factory=factory), unlock_seconds=1.0,
                          emit=events.append)
    resident = Person("p-1", "Resident", groups=("residents",), cards=(card_credential(CARD),))
    access = AccessController(
        AccessIndex.build([resident], [Group("residents", ("front",), parse_schedule("always"))]),
        {"front": DoorPolicy("front", rule=AccessRule.CARD_OR_FACE)})
    passage = Passage(access=lambda: access, doors={"front": door},
                      lockout=Lockout(max_denied=5, window_seconds=60, cooldown_seconds=60),
                      emit=events.append, clock=lambda: datetime(2026, 11, 30, 12, tzinfo=UTC))
    return passage, door, factory


def read(card: int) -> CardRead:
    return CardRead(credential=card_credential(card), format="em4100", bits=40, value=card)


async def test_the_decision_is_recorded_before_the_door_moves() -> None:
    events: list[Event] = []
    passage, door, factory = rig(events)
    try:
        passage.card("front-card", "front", read(CARD))
        assert [e.type for e in events] == ["access.granted", "door.unlocked"]
        assert factory.pin(17).state  # the relay is energised
    finally:
        door.close()


async def test_a_grant_the_door_refuses_is_recorded_as_a_denial_with_its_reason() -> None:
    events: list[Event] = []
    passage, door, _factory = rig(events)
    try:
        door.set_mode("lockdown")
        events.clear()
        passage.card("front-card", "front", read(CARD))
        assert [(e.type, e.reason) for e in events] == [("access.denied", "lockdown")]
    finally:
        door.close()


async def test_an_unknown_card_and_a_refused_face_are_denials_and_the_door_stays_locked() -> None:
    events: list[Event] = []
    passage, door, factory = rig(events)
    try:
        passage.card("front-card", "front", read(0x0A00000001))
        passage.face("front", FACE_REFUSED, None, "unknown_face")
        assert [(e.type, e.reason) for e in events] == [
            ("access.denied", "unknown_credential"), ("access.denied", "unknown_face")]
        assert not factory.pin(17).state
    finally:
        door.close()
