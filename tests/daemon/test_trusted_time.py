"""Trusted time with an injected clock: a gate booting days behind or in 1970, clock jumps while a
door is held open, hold-open hours while untrusted, the floor across restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from gpiozero.pins.mock import MockFactory

from daemon.access import AccessController, AccessIndex, DoorPolicy, Group, Kind, Person, Reason
from daemon.door import DoorController
from daemon.door_modes import ModeBook
from daemon.doors import Doors
from daemon.events import Event
from daemon.journal import Journal
from daemon.schedule import Schedule, parse_schedule
from daemon.trusted_time import (
    AGREE_MS,
    RELEASE_FLOOR_MS,
    TrustedTime,
    kernel_synchronised,
    read_rtc,
)
from protocol.uuid7 import uuid7_parts
from tests.daemon.door_rig import make_rig

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: The true time of these tests: Tuesday 2026-12-01 10:00 in Shanghai.
TRUE_NOW = datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI)
TRUE_MS = int(TRUE_NOW.timestamp() * 1000)
DAY_MS = 86_400_000


class Clocks:
    """The system clock (wall ms), the monotonic clock (s) and the kernel's sync flag."""

    def __init__(self, wall_ms: int, *, synced: bool = False) -> None:
        self.wall_ms = wall_ms
        self.mono = 500.0
        self.synced = synced

    def wall(self) -> int:
        return self.wall_ms

    def monotonic(self) -> float:
        return self.mono

    def synchronised(self) -> bool:
        return self.synced

    def advance(self, seconds: float) -> None:
        self.wall_ms += int(seconds * 1000)
        self.mono += seconds

    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.wall_ms / 1000, UTC)


def trusted_time(clocks: Clocks, events: list[Event], **kwargs: object) -> TrustedTime:
    return TrustedTime(emit=events.append, clock=clocks.wall, monotonic=clocks.monotonic,
                       synchronised=clocks.synchronised, **kwargs)  # type: ignore[arg-type]


def journal_with_events_until(path: Path, newest_ms: int) -> None:
    """A journal whose newest event was recorded at ``newest_ms`` (a trusted clock back then)."""
    journal = Journal(path, gate="g1")
    journal.stamp = lambda: (newest_ms, True)
    journal.record(Event("door.locked", door="front"))
    journal.close()


VISITOR_GROUP = Group("residents", ("front",), parse_schedule("always"))
OFFICE_GROUP = Group("office", ("front",), parse_schedule("mon-fri 08:00-18:00"))


def visitor_index() -> AccessIndex:
    persons = [
        Person("vis", "Zhao Min", kind=Kind.VISITOR, groups=("residents",), cards=("1003",),
               valid_from=TRUE_NOW - timedelta(days=7),
               valid_until=TRUE_NOW - timedelta(days=2)),
        Person("res", "Wang Fang", groups=("residents",), cards=("1001",)),
        Person("staff", "Chen Jie", kind=Kind.STAFF, groups=("office",), cards=("1004",)),
    ]
    return AccessIndex.build(persons, [VISITOR_GROUP, OFFICE_GROUP], zone=SHANGHAI)


def test_boot_three_days_behind_denies_the_expired_visitor_and_reports_clock_behind(
        tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.db"
    journal_with_events_until(journal_path, TRUE_MS - 60_000)  # the gate ran a minute ago
    clocks = Clocks(TRUE_MS - 3 * DAY_MS)  # power cut; fake-hwclock restored a stale time
    events: list[Event] = []
    journal = Journal(journal_path, gate="g1")
    tt = trusted_time(clocks, events, journal_newest_ms=journal.newest_ts_ms())
    journal.stamp = tt.stamp
    access = AccessController(visitor_index(), {"front": DoorPolicy("front")}, time=tt.view)

    decision = access.decide_card("front", "1003", clocks.dt())
    assert (decision.granted, decision.reason) == (False, Reason.EXPIRED)
    behind = [e for e in events if e.type == "clock.behind"]
    assert len(behind) == 1
    assert behind[0].data["behind_ms"] == 3 * DAY_MS - 60_000
    # an 'always' resident still gets in; a time-restricted one is refused, not guessed
    assert access.decide_card("front", "1001", clocks.dt()).granted
    staff = access.decide_card("front", "1004", clocks.dt())
    assert (staff.granted, staff.reason) == (False, Reason.TIME_UNTRUSTED)
    # the new event is stamped after the previous one, untrusted, with a later id
    old = journal.pending(10)[0]
    record = journal.record(Event("access.denied", door="front"))
    assert record["ts_ms"] > TRUE_MS - 60_000 and record["time_trusted"] is False
    assert record["id"] > old.id
    journal.close()


def test_boot_in_1970_keeps_ids_and_stamps_after_the_floor(tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.db"
    journal_with_events_until(journal_path, TRUE_MS)
    clocks = Clocks(0)  # no RTC, no saved time
    events: list[Event] = []
    journal = Journal(journal_path, gate="g1")
    newest_id = journal.pending(10)[0].id
    tt = trusted_time(clocks, events, journal_newest_ms=journal.newest_ts_ms())
    journal.stamp = tt.stamp
    first = journal.record(Event("part.restored"))
    clocks.advance(5)
    second = journal.record(Event("part.restored"))
    assert [e.type for e in events] == ["clock.behind"]
    assert events[0].data["clock_ms"] == 0
    assert TRUE_MS < first["ts_ms"] < second["ts_ms"]
    assert second["ts_ms"] - first["ts_ms"] == 5000  # the monotonic clock, not the wall clock
    assert newest_id < first["id"] < second["id"]
    assert uuid7_parts(first["id"])[0] >= TRUE_MS
    journal.close()


def test_without_any_history_the_release_date_is_the_floor() -> None:
    clocks = Clocks(0)
    events: list[Event] = []
    view = trusted_time(clocks, events).view()
    assert view.floor_ms == RELEASE_FLOOR_MS and not view.trusted
    assert events[0].data["behind_ms"] == RELEASE_FLOOR_MS
    assert int(datetime.now(UTC).timestamp() * 1000) >= RELEASE_FLOOR_MS


def test_ntp_sync_emits_clock_corrected_with_the_offset_of_the_untrusted_run() -> None:
    clocks = Clocks(TRUE_MS - 3 * DAY_MS)
    events: list[Event] = []
    tt = trusted_time(clocks, events, journal_newest_ms=TRUE_MS - 60_000)
    first, trusted = tt.stamp()
    assert not trusted
    clocks.advance(30)
    last, _ = tt.stamp()
    clocks.advance(10)
    clocks.wall_ms = TRUE_MS + 40_000  # NTP steps the clock to the true time
    clocks.synced = True
    ts, trusted = tt.stamp()
    assert (ts, trusted) == (TRUE_MS + 40_000, True)
    corrected = [e for e in events if e.type == "clock.corrected"]
    assert len(corrected) == 1
    data = corrected[0].data
    assert (data["from_ms"], data["to_ms"], data["source"]) == (first, last, "kernel")
    # the timeline started just after the floor; the true time is 40 s after start
    assert data["offset_ms"] == TRUE_MS + 40_000 - (first + 40_000)
    assert first + data["offset_ms"] == TRUE_MS  # the first event corrected to the true time


def test_a_trusted_clock_persists_the_floor_across_a_restart(tmp_path: Path) -> None:
    floor_file = tmp_path / "clock_floor.json"
    clocks = Clocks(TRUE_MS, synced=True)
    tt = trusted_time(clocks, [], floor_file=floor_file)
    assert tt.view().trusted
    assert json.loads(floor_file.read_text()) == {"last_trusted_ms": TRUE_MS}
    restarted = Clocks(TRUE_MS - DAY_MS)  # next boot, a day behind, no NTP
    events: list[Event] = []
    view = trusted_time(restarted, events, floor_file=floor_file).view()
    assert not view.trusted and view.floor_ms == TRUE_MS
    assert events[0].type == "clock.behind"


def test_a_kernel_synchronised_clock_behind_the_floor_is_still_a_fault() -> None:
    clocks = Clocks(TRUE_MS - DAY_MS, synced=True)
    events: list[Event] = []
    view = trusted_time(clocks, events, journal_newest_ms=TRUE_MS).view()
    assert not view.trusted
    assert [e.type for e in events] == ["clock.behind"]


def test_a_sane_rtc_makes_the_clock_trusted_and_a_wrong_one_does_not(tmp_path: Path) -> None:
    rtc = tmp_path / "rtc0"
    rtc.mkdir()
    (rtc / "since_epoch").write_text(f"{TRUE_MS // 1000}\n")
    clocks = Clocks(TRUE_MS)
    assert trusted_time(clocks, [], rtc=rtc).view().source == "rtc"
    (rtc / "since_epoch").write_text(f"{(TRUE_MS - DAY_MS) // 1000}\n")  # RTC lost its battery
    assert not trusted_time(clocks, [], rtc=rtc).view().trusted
    assert not trusted_time(clocks, [], rtc=tmp_path / "absent").view().trusted
    assert read_rtc(tmp_path / "absent") is None


def test_a_signed_station_time_that_agrees_trusts_the_clock_until_it_is_stepped() -> None:
    clocks = Clocks(TRUE_MS)
    tt = trusted_time(clocks, [])
    assert not tt.view().trusted
    assert not tt.station_time(TRUE_MS + AGREE_MS + 1)
    assert tt.station_time(TRUE_MS + 1500)
    clocks.advance(3600)
    assert tt.view().source == "station"
    clocks.wall_ms -= 3_600_000  # somebody runs `date -s`
    assert not tt.view().trusted


def test_kernel_synchronised_answers_without_changing_the_clock() -> None:
    assert kernel_synchronised() in (True, False)


# ----------------------------------------------------------------------------- doors
def doors(tmp_path: Path, tt: TrustedTime, door: DoorController,
          schedule: Schedule | None) -> Doors:
    """Gate doors whose door ``front`` is the rig's controller with hold-open ``schedule``
    (what :meth:`Doors.run` sets up before it applies the mode)."""
    gate_doors = Doors(pins=MockFactory(), board=None, emit=lambda e: None,
                       zone=lambda: SHANGHAI, holidays=frozenset, time=tt.view,
                       modes=ModeBook(tmp_path / "modes.json"))
    gate_doors._running["front"] = door
    gate_doors._schedules["front"] = schedule
    return gate_doors


def test_hold_open_hours_never_unlock_while_time_is_untrusted(tmp_path: Path) -> None:
    rig = make_rig()
    try:
        clocks = Clocks(TRUE_MS)  # inside the hours, but nothing vouches for the clock
        tt = trusted_time(clocks, [], journal_newest_ms=TRUE_MS - 60_000)
        schedule = parse_schedule("daily 08:00-18:00")
        gate_doors = doors(tmp_path, tt, rig.door, schedule)
        assert gate_doors._apply_mode("front").mode == "normal"
        rig.loop.settle()
        assert rig.door.mode == "normal" and rig.door.status()["lock"] == "locked"
        clocks.synced = True
        assert gate_doors._apply_mode("front").mode == "hold_open"
        rig.loop.settle()
        assert rig.door.mode == "hold_open" and rig.door.status()["lock"] == "unlocked"
    finally:
        rig.close()


def test_a_clock_jump_forward_and_back_while_held_open_leaves_the_door_locked(
        tmp_path: Path) -> None:
    rig = make_rig()
    try:
        clocks = Clocks(TRUE_MS, synced=True)
        events: list[Event] = []
        tt = trusted_time(clocks, events)
        schedule = parse_schedule("daily 08:00-18:00")
        gate_doors = doors(tmp_path, tt, rig.door, schedule)
        gate_doors._apply_mode("front")
        rig.loop.settle()
        assert rig.door.status()["lock"] == "unlocked"
        clocks.wall_ms += 12 * 3_600_000  # forward to 22:00: outside the hours
        gate_doors._apply_mode("front")
        rig.loop.settle()
        assert rig.door.mode == "normal" and rig.door.status()["lock"] == "locked"
        clocks.wall_ms -= 12 * 3_600_000  # back to 10:00: behind what the gate has seen
        gate_doors._apply_mode("front")
        rig.loop.settle()
        assert rig.door.mode == "normal" and rig.door.status()["lock"] == "locked"
        assert [e.type for e in events] == ["clock.behind"]
        assert events[0].data["behind_ms"] == pytest.approx(12 * 3_600_000, abs=1000)
    finally:
        rig.close()


def test_a_clock_running_ahead_cannot_end_a_timed_lockdown_early(tmp_path: Path) -> None:
    rig = make_rig()
    try:
        clocks = Clocks(TRUE_MS + 2 * DAY_MS)  # untrusted and two days ahead
        tt = trusted_time(clocks, [], journal_newest_ms=TRUE_MS)
        gate_doors = doors(tmp_path, tt, rig.door, None)
        gate_doors.set_mode("front", "lockdown", source="station", actor="station",
                            until_ms=TRUE_MS + 3_600_000)
        rig.loop.settle()
        assert rig.door.mode == "lockdown"
        clocks.advance(60)  # the floor has not reached the end time: the lockdown holds
        assert gate_doors._apply_mode("front").mode == "lockdown"
        clocks.advance(3_600)  # past the end time by the floor too
        assert gate_doors._apply_mode("front").mode == "normal"
    finally:
        rig.close()


def test_a_clock_running_ahead_cannot_start_a_pass_early() -> None:
    clocks = Clocks(TRUE_MS + 2 * DAY_MS)  # untrusted and two days ahead
    tt = trusted_time(clocks, [], journal_newest_ms=TRUE_MS)
    future = Person("new", "Sun Li", kind=Kind.VISITOR, groups=("residents",), cards=("2001",),
                    valid_from=TRUE_NOW + timedelta(days=1))
    index = AccessIndex.build([future], [VISITOR_GROUP], zone=SHANGHAI)
    access = AccessController(index, {"front": DoorPolicy("front")}, time=tt.view)
    decision = access.decide_card("front", "2001", clocks.dt())
    assert (decision.granted, decision.reason) == (False, Reason.NOT_YET_VALID)


def test_policy_clock_evaluates_schedules_on_an_untrusted_clock() -> None:
    clocks = Clocks(TRUE_MS)  # Tuesday 10:00, untrusted
    tt = trusted_time(clocks, [], journal_newest_ms=TRUE_MS - 60_000)
    access = AccessController(visitor_index(), {"front": DoorPolicy("front")}, time=tt.view,
                              untrusted_policy="clock")
    assert access.decide_card("front", "1004", clocks.dt()).granted
    access.untrusted_policy = "always_only"
    assert access.decide_card("front", "1004", clocks.dt()).reason is Reason.TIME_UNTRUSTED
