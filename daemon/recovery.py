"""Damaged files at start-up: the door never waits for a file it does not need.

A power cut on an SD card tears files.  The journal and the resident store are SQLite files; when
one of them cannot be opened it is moved aside (kept, never deleted: it is evidence and may be
salvaged by hand) and the gate starts with a fresh journal, or with the resident store's last good
snapshot, and says so loudly (``journal.recovered``, ``store.recovered`` events once the journal is
open).  The audit log's torn tail is handled by :class:`daemon.audit.AuditLog` itself.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Suffix of the resident store's last good copy, written after every successful load.
SNAPSHOT_SUFFIX = ".last-good"
SQLITE_SIDE_FILES = ("-wal", "-shm")


def snapshot_path(db: Path) -> Path:
    return db.with_name(db.name + SNAPSHOT_SUFFIX)


def move_aside(db: Path) -> Path:
    """Rename ``db`` and its WAL/SHM files to ``<name>.corrupt-<unix time>``; returns the new
    path of the main file."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = db.with_name(f"{db.name}.corrupt-{stamp}")
    for suffix in ("", *SQLITE_SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            db.with_name(db.name + suffix).rename(target.with_name(target.name + suffix))
    return target


def _count_events(db: Path) -> dict[str, int | None]:
    """What a moved-aside journal still lets us read (None where it does not)."""
    out: dict[str, int | None] = {"events": None, "undelivered": None, "last_seq": None}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            out["events"] = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            out["undelivered"] = conn.execute(
                "SELECT count(*) FROM events WHERE delivered = 0").fetchone()[0]
            out["last_seq"] = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
    except sqlite3.Error:
        pass
    try:  # the meta row outlives purged events: the higher of the two is the numbering
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        meta = int(row[0]) if row is not None else None
    except (sqlite3.Error, ValueError, TypeError):
        meta = None
    if meta is not None and (out["last_seq"] is None or meta > out["last_seq"]):
        out["last_seq"] = meta
    return out


def open_journal(path: Path, opener: Callable[[int], T], *,
                 seq_floor: int = 0) -> tuple[T, dict[str, Any] | None]:
    """Open the journal with ``opener(seq_floor)``; if the file is corrupt, move it aside and
    open a new one whose numbering continues after the highest seq known: ``seq_floor`` (the
    run marker's) or the damaged file's, if it can still be read.

    Returns the journal and, after a recovery, the ``journal.recovered`` event data:
    ``moved_to`` (file name), ``events_kept`` (0: the new journal starts empty; the old file
    is kept beside it), ``events_lost`` and ``undelivered_lost`` (None when not even a count
    could be read), ``last_seq`` (the damaged file's, None when unreadable), ``continues_after``
    (the seq the new journal numbers on from) and ``error``.
    """
    try:
        return opener(seq_floor), None
    except sqlite3.DatabaseError as exc:
        error = f"{type(exc).__name__}: {exc}"
    moved = move_aside(path)
    counts = _count_events(moved)
    floor = max(seq_floor, counts["last_seq"] or 0)
    log.error("journal %s is damaged (%s): moved aside to %s, starting a new journal numbered "
              "after seq %d; the station may miss %s undelivered event(s)", path, error,
              moved.name, floor,
              counts["undelivered"] if counts["undelivered"] is not None else "an unknown "
              "number of")
    journal = opener(floor)
    return journal, {"moved_to": moved.name, "events_kept": 0,
                     "events_lost": counts["events"], "undelivered_lost": counts["undelivered"],
                     "last_seq": counts["last_seq"], "continues_after": floor, "error": error}


def open_store(path: Path, opener: Callable[[], T]) -> tuple[T, dict[str, Any] | None]:
    """Open the resident store with ``opener``; if the file is corrupt, move it aside and put
    its last good snapshot (:func:`snapshot_path`) in its place, or an empty store if there is
    none.  Returns the store and, after a recovery, the ``store.recovered`` event data."""
    try:
        return opener(), None
    except sqlite3.DatabaseError as exc:
        error = f"{type(exc).__name__}: {exc}"
    moved = move_aside(path)
    snapshot = snapshot_path(path)
    source = "snapshot" if snapshot.exists() else "empty"
    if snapshot.exists():
        shutil.copyfile(snapshot, path)
        path.chmod(0o600)
    try:
        store = opener()
    except sqlite3.DatabaseError:  # the snapshot is damaged too: cards wait for a sync
        move_aside(path)
        source = "empty"
        store = opener()
    log.error("RESIDENT STORE %s IS DAMAGED (%s): moved aside to %s; running on %s; sync the "
              "residents from the station or re-import them", path, error, moved.name,
              "its last good snapshot" if source == "snapshot" else "an EMPTY store")
    return store, {"moved_to": moved.name, "source": source, "error": error}
