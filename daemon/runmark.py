"""Was the last stop clean?  A small marker file in the state directory says.

Written (fsynced, atomically) as ``{"clean": false, "pid": ..., "started_ms": ...}`` when the
gate starts and rewritten with ``clean: true`` and the last ``seq`` at the end of a clean stop.
The ``last_seq`` is kept across the unclean marker too, so that a journal lost or damaged after a
stop still lets the next run continue the gate's numbering after it (the station dedups and
gap-checks by gate and seq: a seq must never be given out twice).
A SIGKILL, an OOM kill, a watchdog abort or a power loss leaves ``clean: false`` behind, so the
next start knows it must tell the station (``gate.restarted`` with ``clean: false``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


@dataclass(frozen=True)
class PreviousRun:
    """What the marker says of the run before this one (None fields: not known)."""

    clean: bool
    pid: int | None
    started_ms: int | None
    stopped_ms: int | None
    #: the highest seq the marker knows of (the last clean stop's, or carried over by a start)
    last_seq: int | None = None


def _write(path: Path, body: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(body))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read(state_dir: Path) -> PreviousRun | None:
    """What the marker says of the previous run, without changing it (None on the very first
    start).  A damaged marker counts as an unclean stop of unknown last seq."""
    path = state_dir / RUN_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return PreviousRun(clean=raw.get("clean") is True, pid=_int(raw.get("pid")),
                           started_ms=_int(raw.get("started_ms")),
                           stopped_ms=_int(raw.get("stopped_ms")),
                           last_seq=_int(raw.get("last_seq")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        return PreviousRun(clean=False, pid=None, started_ms=None, stopped_ms=None)


def begin(state_dir: Path, *, started_ms: int, last_seq: int = 0) -> PreviousRun | None:
    """Read the previous run's marker (:func:`read`), then mark this run as not (yet) cleanly
    stopped, keeping ``last_seq`` (the highest seq known at this start) so that it outlives a
    lost journal even when this run ends uncleanly.  A marker that cannot be written is logged
    and never stops the gate."""
    path = state_dir / RUN_FILE
    previous = read(state_dir)
    try:
        _write(path, {"clean": False, "pid": os.getpid(), "started_ms": started_ms,
                      "last_seq": last_seq})
    except OSError as exc:
        log.warning("run marker %s not written (%s): an unclean stop will go unnoticed", path, exc)
    return previous


def end(state_dir: Path, *, started_ms: int, stopped_ms: int, last_seq: int) -> None:
    """Mark this run as cleanly stopped (the last thing of a clean stop)."""
    path = state_dir / RUN_FILE
    try:
        _write(path, {"clean": True, "pid": os.getpid(), "started_ms": started_ms,
                      "stopped_ms": stopped_ms, "last_seq": last_seq})
    except OSError as exc:
        log.warning("run marker %s not written (%s)", path, exc)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
