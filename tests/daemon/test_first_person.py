"""First-person unlock (issue 16): the first card of a group in a window holds the door open until
the window ends; durable across restarts, below lockdown and set modes, never on untrusted time.

Real parts: the door part of :class:`daemon.doors.Doors` on MockFactory pins, the passage and the
access decision over a real index, the mode file, a SQLite journal, trusted time.  Only the
clocks are injected: the loop's clock (door timers, the mode keeper) and the wall clock move
together when a test says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockFactory

from daemon.access import AccessController, AccessIndex, DoorPolicy, Group, Person
from daemon.config import DoorSection
from daemon.configfile import ConfigError, load_config
from daemon.door import MODES
from daemon.door_modes import MODES_FILE, FirstPersonRun, ModeBook
from daemon.doors import Doors
from daemon.events import Event
from daemon.journal import Journal, read_events
from daemon.lockout import Lockout
from daemon.passage import FACE_RECOGNISED, Passage
from daemon.schedule import parse_schedule
from daemon.trusted_time import TrustedTime
from drivers.card import CardRead, card_credential
from tests.daemon.door_rig import VirtualClockLoop

SHANGHAI = ZoneInfo("Asia/Shanghai")
MANAGER_CARD, MANAGER_DURESS_CARD, DEPUTY_CARD, STAFF_CARD, EXPIRED_CARD = (
    0x0A00001001, 0x0A00001009, 0x0A00001002, 0x0A00002002, 0x0A00003003)
NATIONAL_DAY = date(2026, 10, 1)
WINDOW = "mon-fri 07:00-09:00"


def at(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=SHANGHAI)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


#: Tuesday 2026-12-01, inside the window.
TUESDAY_0730 = at("2026-12-01", "07:30")
TUESDAY_0900 = at("2026-12-01", "09:00")


def index() -> AccessIndex:
    staff = Group("staff", ("front",), parse_schedule("always"))
    managers = Group("managers", ("front",), parse_schedule("always"))
    persons = [
        Person("m1", "Manager Li", groups=("staff", "managers"),
               cards=(card_credential(MANAGER_CARD),),
               duress_cards=(card_credential(MANAGER_DURESS_CARD),), face_consent=True),
        Person("m2", "Deputy Zhao", groups=("managers",), cards=(card_credential(DEPUTY_CARD),)),
        Person("s1", "Clerk Wang", groups=("staff",), cards=(card_credential(STAFF_CARD),)),
        Person("m3", "Former manager", groups=("managers",),
               cards=(card_credential(EXPIRED_CARD),),
               valid_until=at("2026-11-01", "00:00")),
    ]
    return AccessIndex.build(persons, [staff, managers], holidays=[NATIONAL_DAY], zone=SHANGHAI)


def door_section(first_person: dict[str, Any] | None = None, **door: Any) -> DoorSection:
    fields: dict[str, Any] = {"lock": {"pin": 17}, "access": "card_or_face", **door}
    if first_person is not None:
        fields["first_person"] = first_person
    return DoorSection.model_validate(fields)


RULE = {"group": "managers", "schedule": WINDOW}


class Clocks:
    """The wall clock (UTC ms) and monotonic clock of the gate, and the kernel's sync flag."""

    def __init__(self, moment: datetime, *, synced: bool = True) -> None:
        self.wall_ms = ms(moment)
        self.mono = 100.0
        self.synced = synced

    def wall(self) -> int:
        return self.wall_ms

    def monotonic(self) -> float:
        return self.mono

    def synchronised(self) -> bool:
        return self.synced

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_ms / 1000, UTC)


@dataclass
class Gate:
    """One door of a gate with first-person unlock, on a virtual-clock loop."""

    state: Path
    clocks: Clocks
    loop: VirtualClockLoop = field(default_factory=VirtualClockLoop)
    factory: MockFactory = field(default_factory=MockFactory)
    events: list[Event] = field(default_factory=list)
    policy: DoorPolicy = field(default_factory=lambda: DoorPolicy("front"))

    def __post_init__(self) -> None:
        self.state.mkdir(exist_ok=True)
        self.journal = Journal(self.state / "journal.db", gate="g1")
        self.time = TrustedTime(emit=self.emit, clock=self.clocks.wall,
                                monotonic=self.clocks.monotonic,
                                synchronised=self.clocks.synchronised, release_floor_ms=0)
        self.journal.stamp = self.time.stamp
        self.access = AccessController(index(), {"front": self.policy}, time=self.time.view)
        self.doors = Doors(pins=self.factory, board=None, emit=self.emit, zone=lambda: SHANGHAI,
                           holidays=lambda: self.access.index.holidays,
                           workdays=lambda: self.access.index.workdays, time=self.time.view,
                           modes=ModeBook(self.state / MODES_FILE), groups_of=self.groups_of)
        self.passage = Passage(access=lambda: self.access, doors=self.doors,
                               lockout=Lockout(), emit=self.emit, clock=self.clocks.now,
                               passed=self.doors.passed)
        self.task: asyncio.Task[None] | None = None

    def emit(self, event: Event) -> None:
        self.journal.record(event)
        self.events.append(event)

    def groups_of(self, person: str) -> tuple[str, ...]:
        found = self.access.index.person(person)
        return found.groups if found is not None else ()

    # ------------------------------------------------------------------ driving
    def on_loop(self, action: Callable[[], object]) -> None:
        """Run ``action`` on the gate's loop, then wait for the mode file writes it started."""
        async def step() -> None:
            action()
            await asyncio.gather(*self.doors._saves)

        self.loop.run_until_complete(step())
        self.loop.settle()

    def start(self, section: DoorSection) -> Gate:
        self.task = self.loop.create_task(self.doors.run("front", section))
        self.loop.settle()
        self.on_loop(lambda: None)
        assert "front" in self.doors
        return self

    def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        self.loop.settle()
        self.doors.release_pins()

    def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.stop()
        self.journal.close()
        self.loop.close()
        self.factory.close()

    def card(self, value: int, reader: str = "front-in") -> None:
        read = CardRead(credential=card_credential(value), format="em4100", bits=40, value=value)
        self.on_loop(lambda: self.passage.card(reader, "front", read))

    def face(self, person: str) -> None:
        self.on_loop(lambda: self.passage.face("front", FACE_RECOGNISED, person, None))

    def advance_to(self, moment: datetime) -> None:
        """Move both clocks; the door's timers and its mode keeper fire on the way."""
        seconds = (ms(moment) - self.clocks.wall_ms) / 1000
        self.clocks.wall_ms = ms(moment)
        self.clocks.mono += seconds
        self.loop.advance(seconds)

    def change_mode(self, mode: str, source: str = "station") -> None:
        self.loop.run_until_complete(
            self.doors.change_mode("front", mode, source=source, actor=source))
        self.loop.settle()

    # ------------------------------------------------------------------ looking
    @property
    def mode(self) -> tuple[str, str]:
        status = self.doors.status("front")
        return status["mode"], status["mode_source"]

    @property
    def lock(self) -> str:
        return str(self.doors.status("front")["lock"])

    def first_person(self) -> dict[str, Any]:
        result: dict[str, Any] = self.doors.status("front")["first_person"]
        return result

    def mode_events(self) -> list[tuple[str | None, str, str | None]]:
        """(reason, mode, person) of each door.mode event."""
        return [(e.reason, e.data["mode"], e.person) for e in self.events
                if e.type == "door.mode"]

    def types(self) -> list[str]:
        return [e.type for e in self.events]


@pytest.fixture
def make_gate(tmp_path: Path) -> Iterator[Callable[..., Gate]]:
    made: list[Gate] = []

    def make(moment: datetime, *, synced: bool = True, **policy: Any) -> Gate:
        gate = Gate(tmp_path / "state", Clocks(moment, synced=synced),
                    policy=DoorPolicy("front", **policy))
        made.append(gate)
        return gate

    yield make
    for gate in made:
        gate.close()


def test_the_first_card_of_the_group_holds_the_door_open_until_the_window_ends(
        make_gate: Callable[..., Gate]) -> None:
    gate = make_gate(TUESDAY_0730).start(door_section(RULE))
    assert gate.first_person() == {"group": "managers", "schedule": WINDOW, "faces": False,
                                   "state": "waiting", "until_ms": ms(TUESDAY_0900),
                                   "person": None}
    gate.card(STAFF_CARD)  # not in the group: a normal passage
    assert gate.types() == ["access.granted", "door.unlocked"]
    assert gate.mode == ("normal", "default")
    gate.advance_to(at("2026-12-01", "07:31"))
    assert gate.lock == "locked"

    gate.events.clear()
    gate.card(MANAGER_CARD)
    assert gate.types() == ["access.granted", "door.unlocked", "door.mode"]
    mode_event = gate.events[-1]
    assert (mode_event.reason, mode_event.person) == ("first_person", "m1")
    assert mode_event.data == {"mode": "hold_open", "previous": "normal",
                               "previous_source": "default", "until_ms": ms(TUESDAY_0900),
                               "group": "managers"}
    assert gate.mode == ("hold_open", "first_person")
    assert gate.doors.status("front")["mode_until_ms"] == ms(TUESDAY_0900)
    assert gate.first_person()["state"] == "active"
    assert gate.first_person()["person"] == "m1"
    gate.advance_to(at("2026-12-01", "08:00"))  # the unlock pulse is long over: still open
    assert gate.lock == "unlocked"

    gate.card(DEPUTY_CARD)  # a later card of the group changes nothing
    assert [e.type for e in gate.events].count("door.mode") == 1

    gate.journal.flush()  # journalled and queued for the station like every event
    journalled = [e for e in read_events(gate.state / "journal.db", None)
                  if e["type"] == "door.mode"]
    assert [(e["reason"], e["person"], e["time_trusted"]) for e in journalled] == [
        ("first_person", "m1", True)]
    assert journalled[0]["id"] in {p.id for p in gate.journal.pending(100)}

    gate.events.clear()
    gate.advance_to(at("2026-12-01", "08:59:59"))
    assert gate.lock == "unlocked"
    gate.advance_to(TUESDAY_0900)  # the window's end: locked, and said so
    assert gate.mode == ("normal", "default")
    assert gate.lock == "locked"
    assert gate.types() == ["door.locked", "door.mode"]
    assert gate.events[-1].data["previous_source"] == "first_person"
    assert gate.first_person()["state"] == "outside_window"


@pytest.mark.parametrize(("moment", "present", "why"), [
    (at("2026-12-01", "06:59"), MANAGER_CARD, "before the window"),
    (TUESDAY_0900, MANAGER_CARD, "after the window (ends are exclusive)"),
    (at("2026-12-05", "07:30"), MANAGER_CARD, "a Saturday"),
    (at("2026-10-01", "07:30"), MANAGER_CARD, "a holiday of the gate's calendar"),
    (TUESDAY_0730, MANAGER_DURESS_CARD, "a duress card: granted, silent alarm, no hold-open"),
    (TUESDAY_0730, EXPIRED_CARD, "a group member's card refused (expired)"),
    (TUESDAY_0730, 0x0A0000FFFF, "an unknown card"),
])
def test_passages_that_do_not_count_leave_the_door_in_its_normal_mode(
        make_gate: Callable[..., Gate], moment: datetime, present: int, why: str) -> None:
    gate = make_gate(moment).start(door_section(RULE))
    gate.card(present)
    assert gate.mode == ("normal", "default"), why
    assert "door.mode" not in gate.types(), why
    gate.advance_to(datetime.fromtimestamp(gate.clocks.wall_ms / 1000 + 60, SHANGHAI))
    assert gate.lock == "locked", why


def test_an_anti_passback_refusal_and_an_exit_do_not_count(
        make_gate: Callable[..., Gate]) -> None:
    gate = make_gate(at("2026-12-01", "06:50"), entry_reader="front-in",
                     exit_reader="front-out").start(door_section(RULE))
    gate.card(MANAGER_CARD)  # in before the window: an ordinary passage
    gate.advance_to(TUESDAY_0730)
    gate.card(MANAGER_CARD)  # in again without going out
    assert (gate.events[-1].type, gate.events[-1].reason) == ("access.denied", "anti_passback")
    gate.card(MANAGER_CARD, reader="front-out")  # going out
    assert gate.types()[-2:] == ["access.granted", "door.unlocked"]
    assert gate.mode == ("normal", "default")
    gate.advance_to(at("2026-12-01", "07:40"))
    gate.card(MANAGER_CARD)  # back in: the first entry of the window
    assert gate.mode == ("hold_open", "first_person")


def test_a_face_counts_only_where_the_installer_allows_it(make_gate: Callable[..., Gate],
                                                            tmp_path: Path) -> None:
    gate = make_gate(TUESDAY_0730).start(door_section(RULE))
    gate.face("m1")
    assert gate.types() == ["access.granted", "door.unlocked"]
    assert gate.mode == ("normal", "default")
    gate.stop()
    gate.start(door_section({**RULE, "faces": True}))
    gate.face("m1")
    assert gate.mode == ("hold_open", "first_person")


def test_a_restart_inside_the_window_keeps_the_door_open_and_one_after_it_does_not(
        make_gate: Callable[..., Gate]) -> None:
    first = make_gate(TUESDAY_0730).start(door_section(RULE))
    first.card(MANAGER_CARD)
    assert first.mode == ("hold_open", "first_person")
    first.close()  # the daemon stops (or the board loses power) inside the window

    again = make_gate(at("2026-12-01", "08:15")).start(door_section(RULE))
    assert again.mode == ("hold_open", "first_person")
    assert again.lock == "unlocked"
    assert again.mode_events() == [("first_person", "hold_open", "m1")]
    again.card(DEPUTY_CARD)  # not the first card of this window
    assert len(again.mode_events()) == 1
    again.close()

    later = make_gate(at("2026-12-01", "09:10")).start(door_section(RULE))
    assert later.mode == ("normal", "default") and later.lock == "locked"
    assert later.mode_events() == []
    later.close()
    tomorrow = make_gate(at("2026-12-02", "07:05")).start(door_section(RULE))
    assert tomorrow.first_person()["state"] == "waiting"  # a new window, a new first card
    tomorrow.card(DEPUTY_CARD)
    assert tomorrow.mode == ("hold_open", "first_person")
    assert tomorrow.first_person()["person"] == "m2"


def test_lockdown_wins_and_a_set_mode_ends_the_unlock_for_the_rest_of_the_window(
        make_gate: Callable[..., Gate]) -> None:
    gate = make_gate(TUESDAY_0730).start(door_section(RULE))
    gate.card(MANAGER_CARD)
    assert gate.mode == ("hold_open", "first_person")
    gate.change_mode("lockdown")
    assert gate.mode == ("lockdown", "station") and gate.lock == "locked"
    gate.card(DEPUTY_CARD)
    assert gate.events[-1].type == "access.denied" and gate.events[-1].reason == "lockdown"
    gate.change_mode("schedule")  # the lockdown lifted: the door does not spring open again
    assert gate.mode == ("normal", "default") and gate.lock == "locked"
    assert gate.first_person()["state"] == "cancelled"
    gate.card(DEPUTY_CARD)  # an ordinary passage now
    assert gate.mode == ("normal", "default")
    gate.close()
    restarted = make_gate(at("2026-12-01", "08:00")).start(door_section(RULE))
    assert restarted.mode == ("normal", "default")  # the cancellation is durable too
    assert restarted.first_person()["state"] == "cancelled"


def test_a_card_under_a_lockdown_or_a_set_mode_does_not_count(
        make_gate: Callable[..., Gate]) -> None:
    gate = make_gate(TUESDAY_0730).start(door_section(RULE))
    gate.change_mode("lockdown", "admin")
    gate.card(MANAGER_CARD)
    assert gate.mode == ("lockdown", "admin")
    gate.change_mode("normal", "admin")  # the door under an admin's control: no first card
    gate.card(MANAGER_CARD)
    assert gate.mode == ("normal", "admin") and gate.first_person()["state"] == "waiting"
    gate.change_mode("schedule", "admin")  # back to automatic: now the first card counts
    gate.card(MANAGER_CARD)
    assert gate.mode == ("hold_open", "first_person")


def test_an_untrusted_clock_never_starts_or_holds_a_first_person_unlock(
        make_gate: Callable[..., Gate]) -> None:
    gate = make_gate(TUESDAY_0730, synced=False).start(door_section(RULE))
    assert gate.first_person()["state"] == "clock_untrusted"
    gate.card(MANAGER_CARD)  # the group's 'always' schedule still lets the manager in
    assert gate.types() == ["access.granted", "door.unlocked"]
    assert gate.mode == ("normal", "default")

    gate.clocks.synced = True  # NTP answered
    gate.advance_to(at("2026-12-01", "07:35"))
    gate.card(MANAGER_CARD)
    assert gate.mode == ("hold_open", "first_person")

    gate.clocks.synced = False  # trust lost inside the window: suspended, the door locked
    gate.advance_to(at("2026-12-01", "07:40"))
    assert gate.mode == ("normal", "default") and gate.lock == "locked"
    assert gate.first_person()["state"] == "clock_untrusted"
    gate.clocks.synced = True
    gate.advance_to(at("2026-12-01", "07:45"))
    assert gate.mode == ("hold_open", "first_person") and gate.lock == "unlocked"


def test_a_reload_that_removes_or_changes_the_rule_ends_the_unlock(
        make_gate: Callable[..., Gate]) -> None:
    gate = make_gate(TUESDAY_0730).start(door_section(RULE))
    gate.card(MANAGER_CARD)
    gate.stop()
    gate.start(door_section({"group": "managers", "schedule": "mon-fri 07:00-08:00"}))
    assert gate.mode == ("normal", "default")  # its window is not the one the card opened
    assert gate.first_person()["state"] == "waiting"
    gate.stop()
    gate.start(door_section(RULE))  # back as before: the card's window again
    assert gate.mode == ("hold_open", "first_person")
    gate.stop()
    gate.start(door_section())
    assert gate.mode == ("normal", "default") and gate.lock == "locked"
    assert "first_person" not in gate.doors.status("front")
    saved = json.loads((gate.state / MODES_FILE).read_text())
    assert saved["@first_person"] == {}


def test_the_hold_open_schedule_is_overtaken_and_outlived(make_gate: Callable[..., Gate]) -> None:
    gate = make_gate(TUESDAY_0730).start(
        door_section(RULE, hold_open_schedule="mon-fri 07:00-08:00"))
    assert gate.mode == ("hold_open", "schedule")
    gate.card(MANAGER_CARD)  # the mode stays, its source changes: an event says so
    assert gate.mode == ("hold_open", "first_person")
    assert gate.mode_events() == [("schedule", "hold_open", None),
                                  ("first_person", "hold_open", "m1")]
    gate.advance_to(at("2026-12-01", "08:30"))  # the schedule closed, the window is still open
    assert gate.mode == ("hold_open", "first_person") and gate.lock == "unlocked"


def test_a_menjin_without_first_person_unlock_still_reads_every_set_mode(tmp_path: Path) -> None:
    """After a downgrade: the older reader took every object with a known mode as a door's set
    mode. The runs' key is no door id and holds no mode, so it reads the lockdown and no run."""
    book = ModeBook(tmp_path / MODES_FILE)
    book.set("front", "lockdown", source="station", actor="duty", now_ms=1)
    book.start_first_person("back", FirstPersonRun(
        person="m1", group="managers", set_ms=1, until_ms=10**13))
    book.write(book.snapshot(now_ms=2))
    raw = json.loads((tmp_path / MODES_FILE).read_text())
    older = {door: entry for door, entry in raw.items()
             if isinstance(entry, dict) and entry.get("mode") in MODES}
    assert list(older) == ["front"] and older["front"]["mode"] == "lockdown"
    again = ModeBook(tmp_path / MODES_FILE)
    assert again.effective("front", scheduled_open=None, now_ms=3).mode == "lockdown"
    assert again.first_person("back") is not None


def test_a_mode_file_of_the_first_format_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / MODES_FILE
    path.write_text(json.dumps({"front": {"mode": "lockdown", "source": "station",
                                          "actor": "station", "set_ms": 1, "until_ms": None}}))
    book = ModeBook(path)
    assert book.effective("front", scheduled_open=None, now_ms=2).mode == "lockdown"
    assert book.first_person("front") is None


CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: fp-gate, site: test}}
hardware: {{gpio_backend: mock}}
doors:
  front:
    lock: {{pin: 17}}
    access: {access}
    first_person: {first_person}
"""


def load(tmp_path: Path, first_person: str, access: str = "card_or_face") -> Any:
    path = tmp_path / "gate.yaml"
    path.write_text(CONFIG.format(state=tmp_path, first_person=first_person, access=access))
    return load_config(path, check_files=False)


def test_first_person_config_errors_say_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '{group: managers, schedule: "always"}')
    assert "doors.front.first_person.schedule: 'always' has no end: give the windows in which " \
        "the first card opens the door, e.g. 'mon-fri 07:00-09:00'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '{group: managers, schedule: "mon-fri 7-9"}')
    assert "doors.front.first_person.schedule: bad time window '7-9'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "{group: managers, windows: mon-fri}")
    assert "doors.front.first_person.windows" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '{group: managers, schedule: "mon-fri 07:00-09:00", faces: true}', "card")
    assert "doors.front.first_person.faces: this door takes no face (access: card), so no face " \
        "passage can count" in str(err.value)
    config = load(tmp_path, '{group: managers, schedule: "mon-fri 07:00-09:00"}')
    assert config.doors["front"].first_person.group == "managers"
