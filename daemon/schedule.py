"""Weekly access windows and the holiday calendar, in the gate's own timezone.

A group's schedule is written as short text an installer can read and a station can send::

    always                                   every day and holiday, all day
    mon-fri 07:00-22:00; sat,sun 08:00-20:00 several clauses, ranges and lists of days
    daily 06:00-09:00,17:00-23:30            several windows on one day
    mon-fri 22:00-06:00                      a night shift: across midnight
    mon-fri 08:00-18:00; hol 09:00-12:00     ``hol`` windows apply on holidays

On a date of the holiday calendar only the ``hol`` windows apply (no ``hol`` clause: closed all
day), except for ``always``.  A make-up working day (调休: a Saturday or Sunday the State Council
declares a working day, to bridge a holiday) has the windows of a Monday, so ``mon-fri`` windows
open on it; a date that is both is a holiday.  A window that starts the evening before a
holiday still runs to its end, because a window belongs to the day it starts on.  Ends are
exclusive and ``24:00`` closes a day.  Everything is evaluated in local time of the gate
(default Asia/Shanghai, which has no daylight saving; in zones that have it, local wall-clock
times are what count).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Asia/Shanghai"
SECONDS_PER_DAY = 86_400
MINUTES_PER_HOUR = 60
MINUTES_PER_DAY = 24 * MINUTES_PER_HOUR
HOLIDAY = 7  # the day type of a holiday date; 0..6 are Monday..Sunday
#: The day type of a make-up working day (调休): an ordinary working day, Monday's windows.
MAKEUP_WORKDAY = 0
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS = "always"
_DAY = "(mon|tue|wed|thu|fri|sat|sun)"
_DAY_TOKEN = re.compile(rf"^(?:daily|hol|{_DAY}(?:-{_DAY})?)$")
_WINDOW = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


class ScheduleError(ValueError):
    """Schedule text that cannot be understood; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """Windows per day type as (start, end) seconds of the local day; end < start spills over.

    ``days[d]`` holds the windows that start on day type ``d`` (0 Monday … 6 Sunday, 7 holiday).
    """

    text: str
    days: tuple[tuple[tuple[int, int], ...], ...]
    always: bool = False

    def is_open(self, local: datetime, holidays: frozenset[date],
                workdays: frozenset[date] = frozenset()) -> bool:
        """True when ``local`` (a datetime in the gate's timezone) falls in a window;
        ``holidays`` and make-up ``workdays`` are the gate's calendar."""
        if self.always:
            return True
        today = local.date()
        second = local.hour * 3600 + local.minute * 60 + local.second
        for start, end in self.days[_day_type(today, holidays, workdays)]:
            if start <= second and (second < end or end < start):
                return True
        for start, end in self.days[_day_type(today - timedelta(days=1), holidays, workdays)]:
            if end < start and second < end:
                return True
        return False

    def window_end(self, local: datetime, holidays: frozenset[date],
                   workdays: frozenset[date] = frozenset()) -> datetime | None:
        """The end (wall-clock time of ``local``'s zone) of the window ``local`` falls in, the
        latest one when windows overlap; None outside every window and for ``always``, which
        has no end.  A window across midnight ends on the next day."""
        if self.always:
            return None
        today = local.date()
        yesterday = today - timedelta(days=1)
        second = local.hour * 3600 + local.minute * 60 + local.second
        ends = [_at(today, end if start < end else end + SECONDS_PER_DAY, local)
                for start, end in self.days[_day_type(today, holidays, workdays)]
                if start <= second and (second < end or end < start)]
        ends += [_at(yesterday, end + SECONDS_PER_DAY, local)
                 for start, end in self.days[_day_type(yesterday, holidays, workdays)]
                 if end < start and second < end]
        return max(ends, default=None)


def _at(day: date, second: int, like: datetime) -> datetime:
    """``second`` seconds after midnight starting ``day``, wall-clock time in ``like``'s zone."""
    return datetime.combine(day, time(), like.tzinfo) + timedelta(seconds=second)


def _day_type(day: date, holidays: frozenset[date], workdays: frozenset[date]) -> int:
    if day in holidays:
        return HOLIDAY
    return MAKEUP_WORKDAY if day in workdays else day.weekday()


def _days(word: str) -> list[int]:
    match = _DAY_TOKEN.match(word)
    if match is None:
        raise ScheduleError(f"unknown day {word!r} (use mon..sun, ranges like mon-fri, daily, hol)")
    if word == "daily":
        return list(range(7))
    if word == "hol":
        return [HOLIDAY]
    first = DAY_NAMES.index(match.group(1))
    last = DAY_NAMES.index(match.group(2)) if match.group(2) else first
    if last < first:
        raise ScheduleError(f"day range {word!r} runs backwards (write e.g. fri,sat,sun)")
    return list(range(first, last + 1))


def _window(token: str) -> tuple[int, int]:
    match = _WINDOW.match(token)
    if match is None:
        raise ScheduleError(f"bad time window {token!r} (write HH:MM-HH:MM, e.g. 07:00-22:00)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    for hours, minutes in ((h1, m1), (h2, m2)):
        if minutes >= MINUTES_PER_HOUR or hours * MINUTES_PER_HOUR + minutes > MINUTES_PER_DAY:
            raise ScheduleError(f"bad time in {token!r} (00:00 to 24:00)")
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if start in (end, SECONDS_PER_DAY):
        raise ScheduleError(f"empty time window {token!r}")
    return start, end


def parse_schedule(text: str) -> Schedule:
    """Parse schedule text (see the module docstring); raises ScheduleError with the reason."""
    clean = " ".join(text.lower().split())
    if clean == ALWAYS:
        return Schedule(ALWAYS, tuple(((0, SECONDS_PER_DAY),) for _ in range(HOLIDAY + 1)), True)
    if not clean:
        raise ScheduleError("empty schedule (write 'always' or e.g. 'mon-fri 07:00-22:00')")
    days: list[list[tuple[int, int]]] = [[] for _ in range(HOLIDAY + 1)]
    for clause in clean.split(";"):
        parts = clause.strip().split(" ", 1)
        if len(parts) != 2 or not parts[1].strip():
            raise ScheduleError(
                f"clause {clause.strip()!r} needs days and windows, e.g. 'mon-fri 07:00-22:00'"
            )
        day_types = [d for token in parts[0].split(",") for d in _days(token)]
        if parts[1].strip() == "closed":
            continue
        windows = [_window(w) for w in re.split(r"[,\s]+", parts[1].strip())]
        for day in day_types:
            days[day].extend(windows)
    return Schedule(" ".join(clean.split()), tuple(tuple(sorted(d)) for d in days))


def local_time(now: datetime, zone: ZoneInfo) -> datetime:
    """``now`` (timezone-aware) as wall-clock time of the gate."""
    if now.tzinfo is None:
        raise ValueError("decisions need a timezone-aware time (use datetime.now(UTC))")
    return now.astimezone(zone)


def holiday_set(days: Iterable[date | str]) -> frozenset[date]:
    """Holiday dates from dates or ISO strings (``2026-10-01``)."""
    return frozenset(d if isinstance(d, date) else date.fromisoformat(d) for d in days)
