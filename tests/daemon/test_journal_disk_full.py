"""Disk full: the journal evicts what it may (portraits first, never alarms) and keeps writing
alarms (issue 14, finding 2).  A real full file system: a small tmpfs mounted by the test."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.events import Event
from daemon.journal import RESERVE_BYTES, Journal

TMPFS_BYTES = 6 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system to the last byte with a file of someone else's."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(bytes(512))
    return filler


def test_a_full_disk_gives_up_portraits_and_keeps_writing_alarms(small_disk: Path) -> None:
    journal = Journal(small_disk / "journal.db", gate="g1", portraits="local")
    try:
        assert (small_disk / "journal.db.reserve").stat().st_size == RESERVE_BYTES
        for i in range(20):
            journal.record(Event("capture", door="front", data={"n": i}),
                           portrait=os.urandom(20_000))
        assert journal.flush(durable=True)
        fill(small_disk)
        alarms = [journal.record(Event("door.forced", door="front")) for _ in range(50)]
        granted = journal.record(Event("access.granted", door="front", person="p1"))
        assert journal.flush(durable=True)  # written, after the reserve went
        stored = journal.all_ids()
        assert {a["id"] for a in alarms} | {granted["id"]} <= stored
        assert not (small_disk / "journal.db.reserve").exists()
        journal.record(Event("tamper", door="front"))
        assert journal.flush(durable=True)
        assert journal.stats.write_failures >= 1
    finally:
        journal.close()


def test_after_the_reserve_portraits_go_before_any_alarm(small_disk: Path) -> None:
    journal = Journal(small_disk / "journal.db", gate="g1", portraits="local")
    try:
        for i in range(20):
            journal.record(Event("capture", door="front", data={"n": i}),
                           portrait=os.urandom(20_000))
        journal.flush(durable=True)
        (small_disk / "journal.db.reserve").unlink()  # already spent
        fill(small_disk)
        alarm = journal.record(Event("door.forced", door="front", data={"pad": "x" * 3000}))
        for _ in range(5):
            if journal.flush(durable=True):
                break
        assert alarm["id"] in journal.all_ids()
        assert journal.stats.evicted_portraits > 0
        assert journal.flush(durable=True)  # the journal.dropped event that tells the station
        dropped = [e for e in journal.pending(1000) if e.type == "journal.dropped"]
        assert dropped and json.loads(dropped[0].payload)["reason"] == "disk_full"
    finally:
        journal.close()
