"""The card-scanning lockout is visible: events when it starts and ends, and in `menjin status`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from gpiozero.pins.mock import MockFactory
from rich.console import Console

from daemon.access import AccessController, AccessIndex, DoorPolicy, Group
from daemon.cli.run import render_status
from daemon.config import AccessRule
from daemon.door import DoorController
from daemon.events import Event
from daemon.lockout import Lockout
from daemon.passage import Passage
from daemon.schedule import parse_schedule
from drivers.card import CardRead, card_credential
from drivers.lock import Lock


def read(card: int) -> CardRead:
    return CardRead(credential=card_credential(card), format="em4100", bits=40, value=card)


async def test_lockout_started_and_ended_events_and_status() -> None:
    events: list[Event] = []
    over = asyncio.Event()

    def emit(event: Event) -> None:
        events.append(event)
        if event.type == "reader.lockout_ended":
            over.set()

    door = DoorController("front", lock=Lock(17, pin_factory=MockFactory()), unlock_seconds=1.0,
                          emit=emit)
    access = AccessController(
        AccessIndex.build([], [Group("residents", ("front",), parse_schedule("always"))]),
        {"front": DoorPolicy("front", rule=AccessRule.CARD_OR_FACE)})
    passage = Passage(access=lambda: access, doors={"front": door},
                      lockout=Lockout(max_denied=2, window_seconds=60, cooldown_seconds=0.3),
                      emit=emit, clock=lambda: datetime(2026, 11, 30, 12, tzinfo=UTC))
    for card in (1, 2, 3):
        passage.card("front-card", "front", read(card))
    types = [e.type for e in events]
    assert types[-2:] == ["reader.attack", "reader.lockout_started"]
    started = events[-1]
    assert (started.reader, started.door, started.reason, started.data) == (
        "front-card", "front", "card_scanning", {"cooldown_seconds": 0.3})
    passage.card("front-card", "front", read(4))  # ignored: no decision
    passage.card("front-card", "front", read(5))
    assert len(events) == len(types)
    status = passage.lockout_status(time.monotonic())
    assert list(status) == ["front-card"]
    assert status["front-card"]["ignored"] == 2
    assert 0 < status["front-card"]["seconds_left"] <= 0.3

    await asyncio.wait_for(over.wait(), 10)
    end = events[-1]
    assert (end.reader, end.door, end.data) == ("front-card", "front", {"ignored": 2})
    assert passage.lockout_status(time.monotonic()) == {}
    door.close()


def test_status_shows_the_reader_in_lockout() -> None:
    console = Console(record=True, width=160)
    render_status({"gate": "g1", "readers": {
        "front-card": {"door": "front", "type": "em4100", "status": "lockout",
                       "lockout": {"seconds_left": 251.6, "ignored": 3}},
        "vehicle-card": {"door": "vehicle", "type": "wiegand", "status": "ok", "lockout": None},
    }}, console)
    text = console.export_text()
    assert ("lockout: unknown cards ignored for 252 s more (3 so far; card scanning suspected)"
            in text)
    assert "vehicle-card │ vehicle │ wiegand │ ok" in text
