"""China's calendar: holidays and make-up working days (调休) from config files and the station's
sync; a Saturday make-up workday is a workday for a weekday schedule."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.access import AccessController, DoorPolicy, Reason
from daemon.schedule import parse_schedule
from daemon.store import Store, SyncRefusedError
from protocol.residents import parse_resident_file

SHANGHAI = ZoneInfo("Asia/Shanghai")
REPO = Path(__file__).resolve().parents[2]
CALENDAR = REPO / "config" / "calendars" / "cn-2025.yaml"
MAKEUP_SATURDAY = date(2025, 10, 11)  # 国庆节调休: a Saturday that is a working day
WEEKDAYS = parse_schedule("mon-fri 08:00-18:00")


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


def test_a_saturday_makeup_workday_opens_a_weekday_schedule() -> None:
    assert MAKEUP_SATURDAY.weekday() == 5
    workdays = frozenset({MAKEUP_SATURDAY})
    assert WEEKDAYS.is_open(at(MAKEUP_SATURDAY, 10), frozenset(), workdays)
    assert not WEEKDAYS.is_open(at(MAKEUP_SATURDAY, 10), frozenset())  # an ordinary Saturday
    assert not WEEKDAYS.is_open(at(MAKEUP_SATURDAY, 19), frozenset(), workdays)  # after hours
    # a date in both lists is a holiday
    assert not WEEKDAYS.is_open(at(MAKEUP_SATURDAY, 10), workdays, workdays)


def test_a_night_shift_from_a_makeup_day_runs_past_midnight() -> None:
    night = parse_schedule("mon-fri 22:00-06:00")
    sunday_early = datetime(2025, 10, 12, 3, tzinfo=SHANGHAI)
    assert night.is_open(sunday_early, frozenset(), frozenset({MAKEUP_SATURDAY}))
    assert not night.is_open(sunday_early, frozenset())


SNAPSHOT = {
    "mode": "snapshot", "version": 1,
    "groups": [{"id": "office", "doors": ["front"], "schedule": "mon-fri 08:00-18:00"}],
    "persons": [{"id": "staff", "name": "Chen Jie", "groups": ["office"], "cards": ["1004"]}],
    "holidays": [{"date": "2025-10-01", "name": "国庆节"},
                 {"date": "2025-10-11", "name": "国庆节调休", "workday": True}],
}


def test_the_station_sync_sets_makeup_workdays_and_decisions_follow(tmp_path: Path) -> None:
    store = Store(tmp_path / "residents.db", zone=SHANGHAI)
    store.apply_sync(SNAPSHOT)
    assert store.workdays() == {MAKEUP_SATURDAY: "国庆节调休"}
    assert store.holidays() == {date(2025, 10, 1): "国庆节"}
    access = AccessController(store.load_index(), {"front": DoorPolicy("front")})
    saturday = access.decide_card("front", "1004", at(MAKEUP_SATURDAY, 10))
    assert (saturday.granted, saturday.reason) == (True, Reason.GRANTED)
    national_day = access.decide_card("front", "1004", at(date(2025, 10, 1), 10))  # Wednesday
    assert (national_day.granted, national_day.reason) == (False, Reason.OUTSIDE_SCHEDULE)
    # a later snapshot without the workday removes it again
    store.apply_sync({**SNAPSHOT, "version": 2, "holidays": SNAPSHOT["holidays"][:1]})
    access.replace(store.load_index())
    assert not access.decide_card("front", "1004", at(MAKEUP_SATURDAY, 10)).granted
    store.close()


def test_the_shipped_calendar_file_is_one_importable_year() -> None:
    data = parse_resident_file(CALENDAR.read_text(encoding="utf-8"), str(CALENDAR))
    records = data.holidays
    assert records is not None
    workdays = [date.fromisoformat(r["date"]) for r in records if r.get("workday")]
    holidays = [date.fromisoformat(r["date"]) for r in records if not r.get("workday")]
    assert all(d.weekday() >= 5 for d in workdays)  # make-up days fall on weekends
    assert not set(workdays) & set(holidays)
    assert {d.year for d in workdays + holidays} == {2025}
    assert len(holidays) == 28 and len(workdays) == 5


@pytest.mark.parametrize("bad", ["yes", 1])
def test_workday_must_be_a_boolean(tmp_path: Path, bad: object) -> None:
    store = Store(tmp_path / "residents.db", zone=SHANGHAI)
    with pytest.raises(SyncRefusedError, match=r"holidays\[0\]\.HolidayRecord\.workday: Input "
                       "should be a valid boolean"):
        store.apply_sync({**SNAPSHOT, "holidays": [{"date": "2025-10-11", "workday": bad}]})
    assert store.workdays() == {}
    store.close()
