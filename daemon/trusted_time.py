"""Time the gate can trust: which clock readings count, a floor that never goes back, and the
events that say when the clock was wrong.

A Raspberry Pi has no battery-backed clock: after a power cut it boots with the time
fake-hwclock saved, or 1970, until NTP answers.  So the system clock is *trusted* only when

- the kernel reports it synchronised (``adjtimex(2)`` without ``STA_UNSYNC``: its return value is
  not ``TIME_ERROR``; systemd-timesyncd sets this after its first answer), or
- a configured hardware RTC (``/sys/class/rtc/rtc0``) is present, at or after the floor and agrees
  with the system clock within :data:`AGREE_MS`, or
- the station sent a signed time (the ``issued_at_ms`` of a verified command) that agrees with the
  system clock within :data:`AGREE_MS`; that trust lasts while the clock keeps pace with the
  monotonic clock (a step of the clock ends it).

Whatever the clock says, the gate's time is never earlier than the **floor**: the latest of the
newest journal timestamp, the last trusted time seen (persisted in ``state_dir``) and the
release date of this package (:data:`RELEASE_FLOOR_MS`).  The floor plus the monotonic time since
start is a lower bound of the true time.  A clock more than :data:`SLACK_MS` below it is a
detected fault: one ``clock.behind`` event with the difference per episode.

While time is untrusted, events are stamped on a continuous timeline that starts at
max(clock, floor) when the gate starts and runs with the monotonic clock, so a clock stepping
back and forth cannot reorder them.  When the clock becomes trusted the gate emits
``clock.corrected`` with ``offset_ms`` (trusted clock minus that timeline) and the range of the
timeline it stamped (``from_ms``, ``to_ms``): the station adds the offset to the untrusted events
of this gate in that range recorded before it (``docs/mqtt.md``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.events import Emit, Event

log = logging.getLogger(__name__)

#: 2026-11-01T00:00:00Z, no earlier than this release was built: a gate booting in 1970 knows
#: at least that much.  Raise it with every release.
RELEASE_FLOOR_MS = 1_793_491_200_000
#: How far the clock, the RTC or the station's time may disagree and still count as agreeing
#: (an MQTT round trip and a second of RTC resolution fit easily).
AGREE_MS = 5_000
#: How far below the floor the clock may read before it is a fault (NTP slews the monotonic
#: clock too, so the floor's own pace is not exact).
SLACK_MS = 2_000
#: The last trusted time is written to disk at most this often (it is a floor, not a log).
PERSIST_EVERY_MS = 600_000
#: ``adjtimex(2)`` returns TIME_ERROR while STA_UNSYNC is set: the clock is not synchronised.
TIME_ERROR = 5
#: ``struct timex`` is 208 bytes on 64-bit Linux; the buffer is larger and zeroed (modes = 0:
#: read only, nothing is changed).
_TIMEX_BYTES = 512
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
#: The file in ``state_dir`` that keeps the last trusted time across restarts.
CLOCK_FLOOR_FILE = "clock_floor.json"
#: How often the clock is looked at when nothing else happens (for ``clock.corrected``).
WATCH_SECONDS = 10.0


@functools.cache
def _adjtimex() -> Callable[[ctypes.Array[ctypes.c_char]], int] | None:
    """The C library's ``adjtimex`` (looked up once: ``find_library`` runs ``ldconfig``)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function: Callable[[ctypes.Array[ctypes.c_char]], int] = ctypes.CDLL(name).adjtimex
    except (OSError, AttributeError):
        return None
    return function


def kernel_synchronised() -> bool:
    """True when the kernel says the system clock is synchronised (NTP, chrony, timesyncd).

    Reads only: ``adjtimex`` with ``modes = 0``.  Falls back to timesyncd's flag file where the
    C library is not reachable.
    """
    adjtimex = _adjtimex()
    if adjtimex is not None:
        state = adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))
        if state >= 0:
            return state != TIME_ERROR
    return TIMESYNCD_FLAG.exists()


def read_rtc(device: Path) -> int | None:
    """Seconds since the epoch of an RTC under ``/sys/class/rtc/<name>`` (None when absent or
    unreadable: a board without a battery-backed clock)."""
    try:
        return int((device / "since_epoch").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TimeView:
    """One reading of the gate's time, in UTC milliseconds.

    ``clock_ms``: what the system clock says; ``floor_ms``: a lower bound of the true time (the
    floor plus monotonic time since start); ``trusted``: whether ``clock_ms`` can be believed;
    ``source``: ``kernel``, ``rtc``, ``station`` or ``""``.
    """

    clock_ms: int
    floor_ms: int
    trusted: bool
    source: str = ""

    @property
    def clock(self) -> datetime:
        return datetime.fromtimestamp(self.clock_ms / 1000, UTC)

    @property
    def floor(self) -> datetime:
        return datetime.fromtimestamp(self.floor_ms / 1000, UTC)


ALWAYS_TRUSTED = TimeView(0, 0, True, "assumed")


class TrustedTime:
    """The gate's notion of time (see the module docstring).

    ``floor_file``: where the last trusted time is kept (JSON ``{"last_trusted_ms": N}``);
    ``journal_newest_ms``: the newest timestamp already in the journal; ``rtc``: the RTC's sysfs
    directory, if one is fitted; ``clock``/``monotonic``/``synchronised`` (default
    :func:`kernel_synchronised`)/``rtc_reader`` are injectable for tests.  Methods run on the
    event loop.
    """

    def __init__(
        self,
        *,
        emit: Emit,
        floor_file: Path | None = None,
        journal_newest_ms: int | None = None,
        rtc: Path | None = None,
        clock: Callable[[], int] = wall_ms,
        monotonic: Callable[[], float] = time.monotonic,
        synchronised: Callable[[], bool] | None = None,
        rtc_reader: Callable[[Path], int | None] = read_rtc,
        release_floor_ms: int = RELEASE_FLOOR_MS,
    ) -> None:
        self._emit = emit
        self._floor_file = floor_file
        self._rtc = rtc
        self._clock = clock
        self._monotonic = monotonic
        self._synchronised = synchronised
        self._read_rtc = rtc_reader
        persisted = _read_floor(floor_file)
        self.floor_ms = max(release_floor_ms, journal_newest_ms or 0, persisted or 0)
        self._floor_mono = monotonic()
        # the untrusted timeline: starts after everything already stamped, runs with monotonic
        self._timeline_base = max(clock(), self.floor_ms + 1)
        self._timeline_mono = self._floor_mono
        self._untrusted_from: int | None = None  # first and last stamp of the current
        self._untrusted_to = 0  # untrusted run
        self._behind = False
        self._station_offset: int | None = None  # clock − monotonic when the station agreed
        self._persisted_ms = persisted or 0
        self._trusted_before = False

    # ------------------------------------------------------------------ readings
    def _elapsed_ms(self, since: float) -> int:
        return max(0, int((self._monotonic() - since) * 1000))

    def lower_bound_ms(self) -> int:
        """The floor plus the monotonic time since it was set: the true time is not earlier."""
        return self.floor_ms + self._elapsed_ms(self._floor_mono)

    def _timeline_ms(self) -> int:
        return self._timeline_base + self._elapsed_ms(self._timeline_mono)

    def _source(self, clock: int) -> str:
        # looked up on each call: tests of the whole gate stand in for the kernel's answer
        if (self._synchronised or kernel_synchronised)():
            return "kernel"
        if self._rtc is not None:
            seconds = self._read_rtc(self._rtc)
            if seconds is not None and seconds * 1000 >= self.floor_ms - SLACK_MS \
                    and abs(seconds * 1000 - clock) <= AGREE_MS:
                return "rtc"
        if self._station_offset is not None:
            offset = clock - int(self._monotonic() * 1000)
            if abs(offset - self._station_offset) <= AGREE_MS:
                return "station"
            self._station_offset = None  # the clock was stepped since: that trust is gone
        return ""

    def view(self) -> TimeView:
        """Read the clock, decide whether it is trusted, emit ``clock.behind`` /
        ``clock.corrected`` on a change, raise the floor while trusted."""
        clock = self._clock()
        lower = self.lower_bound_ms()
        source = self._source(clock)
        if clock < lower - SLACK_MS:
            if not self._behind:
                self._behind = True
                log.warning("clock: %d s behind the floor (the gate knows it is later); time "
                            "untrusted", (lower - clock) // 1000)
                self._emit(Event("clock.behind", data={
                    "behind_ms": lower - clock, "clock_ms": clock, "floor_ms": lower}))
            source = ""  # a clock before what the gate has seen is wrong, whoever set it
        else:
            self._behind = False
        if source:
            self._now_trusted(clock, source)
        elif self._trusted_before:
            self._trusted_before = False
            self._restart_timeline(clock, lower)
        return TimeView(clock, lower, bool(source), source)

    def _now_trusted(self, clock: int, source: str) -> None:
        if not self._trusted_before:
            self._trusted_before = True
            if self._untrusted_from is not None:
                offset = clock - self._timeline_ms()
                log.info("clock: trusted (%s); untrusted events were %+.1f s off", source,
                         offset / 1000)
                self._emit(Event("clock.corrected", reason=source, data={
                    "offset_ms": offset, "from_ms": self._untrusted_from,
                    "to_ms": self._untrusted_to, "source": source}))
                self._untrusted_from = None
            else:
                log.info("clock: trusted (%s)", source)
        if clock > self.floor_ms:
            self.floor_ms, self._floor_mono = clock, self._monotonic()
        if clock - self._persisted_ms >= PERSIST_EVERY_MS:
            self.persist(clock)

    def _restart_timeline(self, clock: int, lower: int) -> None:
        """Trust lost: the untrusted timeline continues from the last trusted reading."""
        log.warning("clock: no longer trusted")
        self._timeline_base = max(clock, lower)
        self._timeline_mono = self._monotonic()

    def stamp(self) -> tuple[int, bool]:
        """(UTC ms, trusted) for an event recorded now: the clock when trusted, else the
        untrusted timeline (never below the floor, never stepping back)."""
        view = self.view()
        if view.trusted:
            return view.clock_ms, True
        ts = max(self._timeline_ms(), view.floor_ms)
        if self._untrusted_from is None:
            self._untrusted_from = ts
        self._untrusted_to = max(self._untrusted_to, ts)
        return ts, False

    def raise_floor(self, ms: int | None) -> None:
        """Raise the floor to ``ms`` (the journal's newest timestamp, once it is open)."""
        if ms is None or ms <= self.lower_bound_ms():
            return
        self.floor_ms, self._floor_mono = ms, self._monotonic()
        if not self._trusted_before and self._untrusted_from is None:
            self._timeline_base = max(self._timeline_ms(), ms + 1)
            self._timeline_mono = self._floor_mono

    async def watch(self, interval: float = WATCH_SECONDS) -> None:
        """Look at the clock every ``interval`` s (a part of the gate); keeps the floor on exit."""
        try:
            while True:
                self.view()
                await asyncio.sleep(interval)
        finally:
            self.persist()

    def station_time(self, station_ms: int) -> bool:
        """A time the station signed (a verified command's ``issued_at_ms``); True when it agrees
        with the clock, which makes the clock trusted until it is stepped."""
        clock = self._clock()
        if abs(station_ms - clock) > AGREE_MS or clock < self.lower_bound_ms() - SLACK_MS:
            log.info("clock: the station's time differs by %+.1f s; not trusted",
                     (station_ms - clock) / 1000)
            return False
        self._station_offset = clock - int(self._monotonic() * 1000)
        self.view()
        return True

    def persist(self, now_ms: int | None = None) -> None:
        """Write the last trusted time (the floor for the next start); errors are logged."""
        if self._floor_file is None:
            return
        value = self.floor_ms if now_ms is None else now_ms
        tmp = self._floor_file.with_name(self._floor_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"last_trusted_ms": value}), encoding="utf-8")
            tmp.replace(self._floor_file)
        except OSError as exc:
            log.warning("clock: cannot keep the floor in %s: %s", self._floor_file, exc)
            return
        self._persisted_ms = value


def _read_floor(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["last_trusted_ms"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("clock: %s unreadable; the floor comes from the journal", path)
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
