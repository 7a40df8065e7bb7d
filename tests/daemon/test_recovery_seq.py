"""A journal moved aside at start-up: the new one numbers on after the highest seq known
(the run marker's last seq, or the damaged file's, whichever is higher)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from daemon import recovery, runmark
from daemon.events import Event
from daemon.journal import Journal


def _opener(path: Path):  # type: ignore[no-untyped-def]
    return lambda floor: Journal(path, gate="g1", seq_floor=floor)


def test_an_unreadable_journal_continues_after_the_run_markers_last_seq(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    journal, data = recovery.open_journal(path, _opener(path), seq_floor=29)
    try:
        assert data is not None
        assert data["last_seq"] is None and data["continues_after"] == 29
        assert journal.record(Event("door.opened", door="front"))["seq"] == 30
    finally:
        journal.close()


def test_a_damaged_but_readable_journal_gives_its_own_higher_last_seq(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    # a journal whose events table lost a column: the journal cannot open it, a reader can count
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('gate', 'g1'), ('last_seq', '45')")
        db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, delivered INTEGER)")
        db.executemany("INSERT INTO events VALUES (?, 0)", [(s,) for s in range(30, 42)])
        db.commit()
    journal, data = recovery.open_journal(path, _opener(path), seq_floor=29)
    try:
        assert data is not None
        assert (data["events_lost"], data["undelivered_lost"]) == (12, 12)
        assert data["last_seq"] == 45 and data["continues_after"] == 45
        assert journal.record(Event("door.opened", door="front"))["seq"] == 46
    finally:
        journal.close()


def test_the_run_marker_keeps_the_last_seq_across_an_unclean_run(tmp_path: Path) -> None:
    runmark.end(tmp_path, started_ms=1, stopped_ms=2, last_seq=29)
    previous = runmark.begin(tmp_path, started_ms=3, last_seq=29)
    assert previous is not None and previous.clean and previous.last_seq == 29
    again = runmark.read(tmp_path)  # this run was killed: the marker still knows seq 29
    assert again is not None and not again.clean and again.last_seq == 29
