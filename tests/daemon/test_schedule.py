"""Weekly windows, windows across midnight and the holiday calendar, in the gate's timezone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.schedule import ScheduleError, holiday_set, local_time, parse_schedule

SHANGHAI = ZoneInfo("Asia/Shanghai")
NATIONAL_DAY = date(2026, 10, 1)  # a Thursday
HOLIDAYS = frozenset({NATIONAL_DAY})


def at(day: str, hhmmss: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), time.fromisoformat(hhmmss), SHANGHAI)


# 2026-11-30 is a Monday, 2026-12-04 a Friday, 2026-12-05 a Saturday, 2026-12-06 a Sunday.
CASES = [
    ("always", at("2026-12-06", "03:00:00"), True),
    ("always", at("2026-10-01", "03:00:00"), True),
    ("mon-fri 07:00-22:00", at("2026-11-30", "07:00:00"), True),
    ("mon-fri 07:00-22:00", at("2026-11-30", "06:59:59"), False),
    ("mon-fri 07:00-22:00", at("2026-11-30", "21:59:59"), True),
    ("mon-fri 07:00-22:00", at("2026-11-30", "22:00:00"), False),  # ends are exclusive
    ("mon-fri 07:00-22:00", at("2026-12-05", "12:00:00"), False),
    ("mon-fri 07:00-22:00; sat,sun 08:00-20:00", at("2026-12-05", "12:00:00"), True),
    ("daily 06:00-09:00,17:00-23:30", at("2026-12-02", "12:00:00"), False),
    ("daily 06:00-09:00,17:00-23:30", at("2026-12-02", "17:30:00"), True),
    ("daily 06:00-09:00 17:00-23:30", at("2026-12-02", "08:59:59"), True),
    ("daily 00:00-24:00", at("2026-12-02", "23:59:59"), True),
    # across midnight: the window belongs to the day it starts on
    ("mon-fri 22:00-06:00", at("2026-11-30", "23:30:00"), True),
    ("mon-fri 22:00-06:00", at("2026-12-01", "05:59:59"), True),  # Monday's night, on Tuesday
    ("mon-fri 22:00-06:00", at("2026-12-01", "06:00:00"), False),
    ("mon-fri 22:00-06:00", at("2026-11-30", "05:00:00"), False),  # Sunday night is not included
    ("mon-fri 22:00-06:00", at("2026-12-05", "05:00:00"), True),  # Friday's night, on Saturday
    ("mon-fri 22:00-06:00", at("2026-12-05", "23:00:00"), False),
    ("sun 22:00-06:00", at("2026-11-30", "01:00:00"), True),  # wraps from Sunday to Monday
    # holidays: only hol windows apply, a night started the day before still runs out
    ("mon-fri 08:00-18:00", at("2026-10-01", "10:00:00"), False),
    ("mon-fri 08:00-18:00", at("2026-10-02", "10:00:00"), True),
    ("mon-fri 08:00-18:00; hol 09:00-12:00", at("2026-10-01", "10:00:00"), True),
    ("mon-fri 08:00-18:00; hol 09:00-12:00", at("2026-10-01", "12:00:00"), False),
    ("mon-fri 08:00-18:00; hol closed", at("2026-10-01", "10:00:00"), False),
    ("daily 22:00-06:00", at("2026-10-01", "05:00:00"), True),  # Sept 30's night
    ("daily 22:00-06:00", at("2026-10-01", "23:00:00"), False),  # holiday: no night starts
    ("daily 22:00-06:00", at("2026-10-02", "05:00:00"), False),  # ... so none spills over
    ("daily 22:00-06:00; hol 22:00-06:00", at("2026-10-02", "05:00:00"), True),
]


@pytest.mark.parametrize(("text", "local", "expected"), CASES)
def test_schedule_table(text: str, local: datetime, expected: bool) -> None:
    assert parse_schedule(text).is_open(local, HOLIDAYS) is expected


def test_decisions_use_gate_time_not_utc() -> None:
    office = parse_schedule("mon-fri 08:00-18:00")
    utc_evening = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # Tuesday 07:30 in Shanghai
    assert not office.is_open(local_time(utc_evening, SHANGHAI), HOLIDAYS)
    utc_morning = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # Tuesday 08:00 in Shanghai
    assert office.is_open(local_time(utc_morning, SHANGHAI), HOLIDAYS)
    assert office.is_open(local_time(utc_evening, ZoneInfo("Europe/Berlin")), HOLIDAYS) is False


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        local_time(datetime(2026, 12, 1, 8, 0), SHANGHAI)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty schedule (write 'always' or e.g. 'mon-fri 07:00-22:00')"),
        ("mon-fri", "clause 'mon-fri' needs days and windows, e.g. 'mon-fri 07:00-22:00'"),
        ("monday 07:00-22:00",
         "unknown day 'monday' (use mon..sun, ranges like mon-fri, daily, hol)"),
        ("fri-mon 07:00-22:00", "day range 'fri-mon' runs backwards (write e.g. fri,sat,sun)"),
        ("mon 7:00-22:00", "bad time window '7:00-22:00' (write HH:MM-HH:MM, e.g. 07:00-22:00)"),
        ("mon 07:00-24:30", "bad time in '07:00-24:30' (00:00 to 24:00)"),
        ("mon 07:60-08:00", "bad time in '07:60-08:00' (00:00 to 24:00)"),
        ("mon 07:00-07:00", "empty time window '07:00-07:00'"),
    ],
)
def test_schedule_errors(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(text)
    assert str(err.value) == message


def test_holiday_set_accepts_strings_and_dates() -> None:
    assert holiday_set(["2026-10-01", date(2026, 10, 2)]) == {NATIONAL_DAY, date(2026, 10, 2)}


@given(
    start=st.integers(0, 24 * 60 - 1),
    end=st.integers(1, 24 * 60),
    probe=st.integers(0, 24 * 60 * 60 - 1),
)
def test_single_daily_window_matches_its_definition(start: int, end: int, probe: int) -> None:
    if start == end:
        return
    text = f"daily {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    schedule = parse_schedule(text)
    local = datetime(2026, 12, 2, tzinfo=SHANGHAI).replace(
        hour=probe // 3600, minute=probe // 60 % 60, second=probe % 60)
    s, e = start * 60, end * 60
    expected = s <= probe < e if s < e else (probe >= s or probe < e)
    assert schedule.is_open(local, frozenset()) is expected


# The end of the window a time falls in (first-person unlock holds a door open until then).
END_CASES = [
    ("mon-fri 07:00-09:00", at("2026-11-30", "07:00:00"), at("2026-11-30", "09:00:00")),
    ("mon-fri 07:00-09:00", at("2026-11-30", "08:59:59"), at("2026-11-30", "09:00:00")),
    ("mon-fri 07:00-09:00", at("2026-11-30", "09:00:00"), None),  # ends are exclusive
    ("mon-fri 07:00-09:00", at("2026-11-30", "06:59:59"), None),
    ("mon-fri 07:00-09:00", at("2026-12-05", "08:00:00"), None),  # a Saturday
    ("mon-fri 07:00-09:00", at("2026-10-01", "08:00:00"), None),  # a holiday: hol windows only
    ("mon-fri 07:00-09:00; hol 10:00-11:00", at("2026-10-01", "10:30:00"),
     at("2026-10-01", "11:00:00")),
    ("daily 07:00-09:00,08:00-12:00", at("2026-12-02", "08:30:00"), at("2026-12-02", "12:00:00")),
    ("daily 20:00-24:00", at("2026-12-02", "23:00:00"), at("2026-12-03", "00:00:00")),
    ("mon 22:00-06:00", at("2026-11-30", "23:00:00"), at("2026-12-01", "06:00:00")),
    ("mon 22:00-06:00", at("2026-12-01", "05:00:00"), at("2026-12-01", "06:00:00")),
    ("always", at("2026-12-02", "08:00:00"), None),  # no end
]


@pytest.mark.parametrize(("text", "local", "expected"), END_CASES)
def test_window_end_table(text: str, local: datetime, expected: datetime | None) -> None:
    assert parse_schedule(text).window_end(local, HOLIDAYS) == expected


def test_a_make_up_working_day_has_the_windows_of_a_monday() -> None:
    makeup = date(2026, 12, 5)  # a Saturday declared a working day
    end = parse_schedule("mon-fri 07:00-09:00").window_end(
        at("2026-12-05", "08:00:00"), HOLIDAYS, frozenset({makeup}))
    assert end == at("2026-12-05", "09:00:00")


@given(
    start=st.integers(0, 24 * 60 - 1),
    end=st.integers(1, 24 * 60),
    probe=st.integers(0, 24 * 60 * 60 - 1),
)
def test_a_window_end_exists_exactly_when_the_schedule_is_open(start: int, end: int,
                                                                probe: int) -> None:
    if start == end:
        return
    schedule = parse_schedule(
        f"daily {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}")
    local = datetime(2026, 12, 2, tzinfo=SHANGHAI).replace(
        hour=probe // 3600, minute=probe // 60 % 60, second=probe % 60)
    window_end = schedule.window_end(local, frozenset())
    assert (window_end is not None) is schedule.is_open(local, frozenset())
    if window_end is not None:
        length = timedelta(minutes=(end - start) % (24 * 60) or 24 * 60)
        assert local < window_end <= local + length
        # the window is over then, unless the next day's window starts at once (00:00-24:00)
        assert schedule.is_open(window_end, frozenset()) is (start == 0 and end == 24 * 60)
