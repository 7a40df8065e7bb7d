"""Durable door modes and their precedence: which mode a door is in, and why.

A door's mode comes from the first of these that applies (documented in docs/doors.md):

1. **lockdown**, set by the station or a local admin: only a remote open and (unless the door
   refuses egress) the exit button open it.  A lockdown is lifted only explicitly (a new
   ``normal`` or ``schedule`` from the station or an admin, or its end time); a ``hold_open``
   while in lockdown is refused.
2. **a mode set by the station or a local admin** (``normal`` or ``hold_open``), until it is
   cancelled (mode ``schedule``) or its optional end time passes;
3. **the door's hold-open schedule** (``hold_open`` inside it, ``normal`` outside);
4. **normal**.

The modes set by the station or an admin are kept in one small JSON file in the state directory
(written atomically), so they survive a restart of the door's part, of the daemon and of the
board, and a reload.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from daemon.door import HOLD_OPEN, LOCKDOWN, MODES, NORMAL

log = logging.getLogger(__name__)

MODES_FILE: Final = "door_modes.json"
#: The command value that cancels a set mode (the door returns to its schedule or to normal).
SCHEDULE: Final = "schedule"
SOURCES: Final = ("station", "admin")


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
class Effective:
    """The mode a door should be in and where it comes from (``lockdown`` is a mode, the
    source says who set it: station, admin, schedule or default)."""

    mode: str
    source: str
    until_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "mode_source": self.source, "mode_until_ms": self.until_ms}


class ModeBook:
    """The modes set by the station or an admin, door by door, kept in ``MODES_FILE``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._set: dict[str, SetMode] = self._load()

    def _load(self) -> dict[str, SetMode]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(door): SetMode(**entry) for door, entry in raw.items()
                    if isinstance(entry, dict) and entry.get("mode") in MODES}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:  # a damaged file never stops a door
            log.error("door modes %s unreadable (%s): doors start in their schedule or normal",
                      self.path, exc)
            return {}

    def get(self, door_id: str) -> SetMode | None:
        return self._set.get(door_id)

    def effective(self, door_id: str, *, scheduled_open: bool | None, now_ms: int) -> Effective:
        """The mode ``door_id`` should be in now (``scheduled_open`` None: no schedule)."""
        chosen = self._set.get(door_id)
        if chosen is not None and chosen.active(now_ms):
            return Effective(chosen.mode, chosen.source, chosen.until_ms)
        if scheduled_open is not None:
            return Effective(HOLD_OPEN if scheduled_open else NORMAL, "schedule")
        return Effective(NORMAL, "default")

    def set(self, door_id: str, mode: str, *, source: str, actor: str, now_ms: int,
            until_ms: int | None = None) -> SetMode | None:
        """Set (or with ``mode == "schedule"`` cancel) the door's mode; returns the entry.

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
        if mode == SCHEDULE:
            self._set.pop(door_id, None)
            return None
        entry = SetMode(mode, source, actor, now_ms, until_ms)
        self._set[door_id] = entry
        return entry

    def save(self, now_ms: int) -> None:
        """Write the active entries atomically (tmp file, fsync, rename); expired ones go."""
        self._set = {d: e for d, e in self._set.items() if e.active(now_ms)}
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = json.dumps({d: asdict(e) for d, e in sorted(self._set.items())}, indent=1)
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
