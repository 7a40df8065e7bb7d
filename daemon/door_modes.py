"""Durable door modes and their precedence: which mode a door is in, and why.

A door's mode comes from the first of these that applies (documented in docs/doors.md):

1. **lockdown**, set by the station or a local admin: only a remote open and (unless the door
   refuses egress) the exit button open it.  A lockdown is lifted only explicitly (a new
   ``normal`` or ``schedule`` from the station or an admin, or its end time); a ``hold_open``
   while in lockdown is refused.
2. **a mode set by the station or a local admin** (``normal`` or ``hold_open``), until it is
   cancelled (mode ``schedule``) or its optional end time passes;
3. **first-person unlock** (:mod:`daemon.first_person`): ``hold_open`` from the first card of
   the door's group in a window until the window ends.  Any mode the station or an admin sets
   on the door (``schedule`` included) ends it for the rest of that window;
4. **the door's hold-open schedule** (``hold_open`` inside it, ``normal`` outside);
5. **normal**.

The modes set by the station or an admin and the first-person runs are kept in one small JSON
file in the state directory (written atomically), so they survive a restart of the door's part,
of the daemon and of the board, and a reload::

    {DOOR: SET_MODE, ..., "@first_person": {DOOR: RUN, ...}}

The set modes stay where the first format kept them and the runs sit under a key no door id can
take (ids start with a letter or digit), which a menjin without first-person unlock skips: after
a downgrade the gate still knows every lockdown and set mode and only forgets the runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from daemon.door import HOLD_OPEN, LOCKDOWN, MODES, NORMAL

log = logging.getLogger(__name__)

MODES_FILE: Final = "door_modes.json"
#: The command value that cancels a set mode (the door returns to its schedule or to normal).
SCHEDULE: Final = "schedule"
SOURCES: Final = ("station", "admin")
#: The source of a mode held by a first-person unlock.
FIRST_PERSON: Final = "first_person"
#: The file's key for the first-person runs: not a door id (see the module docstring).
RUNS_KEY: Final = "@first_person"


class ModeError(ValueError):
    """A mode change that is refused (unknown mode, hold_open during a lockdown ...)."""


@dataclass(frozen=True)
class SetMode:
    """A mode set by the station or a local admin (``until_ms``: UTC ms, or None)."""

    mode: str
    source: str
    actor: str
    set_ms: int
    until_ms: int | None = None

    def active(self, now_ms: int) -> bool:
        return self.until_ms is None or now_ms < self.until_ms


@dataclass(frozen=True)
class FirstPersonRun:
    """The first card of a first-person window: ``person`` of ``group`` put the door in
    ``hold_open`` at ``set_ms`` until the window's end ``until_ms`` (UTC ms, which also names
    the window: a later card of the same window is not a first).  ``cancelled_ms``: when a mode
    set by the station or an admin ended it (it stays ended for the rest of the window)."""

    person: str
    group: str
    set_ms: int
    until_ms: int
    cancelled_ms: int | None = None

    def holds(self, now_ms: int) -> bool:
        return self.cancelled_ms is None and now_ms < self.until_ms


@dataclass(frozen=True)
class Effective:
    """The mode a door should be in and where it comes from (``lockdown`` is a mode, the
    source says who set it: station, admin, first_person, schedule or default)."""

    mode: str
    source: str
    until_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "mode_source": self.source, "mode_until_ms": self.until_ms}


class ModeBook:
    """The modes set by the station or an admin and the first-person runs, door by door, kept in
    ``MODES_FILE``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._set: dict[str, SetMode] = {}
        self._first: dict[str, FirstPersonRun] = {}
        self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            runs = raw.get(RUNS_KEY, {})
            self._set = {str(door): SetMode(**entry) for door, entry in raw.items()
                         if door != RUNS_KEY and isinstance(entry, dict)
                         and entry.get("mode") in MODES}
            self._first = {str(door): FirstPersonRun(**run) for door, run in runs.items()
                           if isinstance(run, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # a damaged file never stops a door
            log.error("door modes %s unreadable (%s): doors start in their schedule or normal",
                      self.path, exc)
            self._set, self._first = {}, {}

    def get(self, door_id: str) -> SetMode | None:
        return self._set.get(door_id)

    def first_person(self, door_id: str) -> FirstPersonRun | None:
        return self._first.get(door_id)

    def effective(self, door_id: str, *, scheduled_open: bool | None, now_ms: int,
                  first_person: bool = False) -> Effective:
        """The mode ``door_id`` should be in now (``scheduled_open`` None: no schedule;
        ``first_person``: whether the door's first-person run, if any, may hold it now)."""
        chosen = self._set.get(door_id)
        if chosen is not None and chosen.active(now_ms):
            return Effective(chosen.mode, chosen.source, chosen.until_ms)
        run = self._first.get(door_id)
        if first_person and run is not None and run.holds(now_ms):
            return Effective(HOLD_OPEN, FIRST_PERSON, run.until_ms)
        if scheduled_open is not None:
            return Effective(HOLD_OPEN if scheduled_open else NORMAL, "schedule")
        return Effective(NORMAL, "default")

    def set(self, door_id: str, mode: str, *, source: str, actor: str, now_ms: int,
            until_ms: int | None = None) -> SetMode | None:
        """Set (or with ``mode == "schedule"`` cancel) the door's mode; returns the entry.  A
        first-person unlock holding the door ends (for the rest of its window).

        Raises :class:`ModeError` for an unknown mode or source, an end time in the past, or a
        ``hold_open`` while a lockdown is in force (lift it first).
        """
        if source not in SOURCES:
            raise ModeError(f"mode source must be one of {', '.join(SOURCES)}, not {source!r}")
        if mode not in (*MODES, SCHEDULE):
            raise ModeError(f"door mode must be one of {', '.join((*MODES, SCHEDULE))}, "
                            f"not {mode!r}")
        if until_ms is not None and until_ms <= now_ms:
            raise ModeError("the end time of a mode must be in the future")
        current = self._set.get(door_id)
        if (mode == HOLD_OPEN and current is not None and current.mode == LOCKDOWN
                and current.active(now_ms)):
            raise ModeError(f"door {door_id} is in lockdown; lift it first "
                            f"(mode {NORMAL} or {SCHEDULE})")
        run = self._first.get(door_id)
        if run is not None and run.holds(now_ms):
            self._first[door_id] = replace(run, cancelled_ms=now_ms)
        if mode == SCHEDULE:
            self._set.pop(door_id, None)
            return None
        entry = SetMode(mode, source, actor, now_ms, until_ms)
        self._set[door_id] = entry
        return entry

    def start_first_person(self, door_id: str, run: FirstPersonRun) -> None:
        """The first card of a window: ``run`` holds the door until it ends."""
        self._first[door_id] = run

    def end_first_person(self, door_id: str) -> FirstPersonRun | None:
        """Forget the door's run (its rule was removed); returns it."""
        return self._first.pop(door_id, None)

    def snapshot(self, now_ms: int) -> str:
        """The file's text, expired modes and the runs of windows that ended left out (and
        forgotten).  On the event loop: the book is only changed there."""
        self._set = {d: e for d, e in self._set.items() if e.active(now_ms)}
        self._first = {d: r for d, r in self._first.items() if now_ms < r.until_ms}
        data: dict[str, Any] = {d: asdict(e) for d, e in sorted(self._set.items())}
        data[RUNS_KEY] = {d: asdict(r) for d, r in sorted(self._first.items())}
        return json.dumps(data, indent=1)

    def write(self, data: str) -> None:
        """Write a :meth:`snapshot` atomically (tmp file, fsync, rename); a blocking call."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
