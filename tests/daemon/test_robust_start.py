"""Start-up is never blocked by a file the door does not need, and one daemon owns a state dir.

Issue 14, findings 2 and 3: a torn audit tail, a corrupt journal, a corrupt resident store; a
second `menjin run` on the same state directory.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from daemon.audit import AuditLog
from tests.daemon.gate_rig import Gate, count, menjin


@pytest.mark.timeout(120)
def test_a_second_daemon_on_the_same_state_dir_exits_at_once_and_touches_nothing(
        tmp_path: Path) -> None:
    first = Gate(tmp_path).start()
    try:
        sock = first.state / "control.sock"
        before = (sock.stat().st_ino, first.events())
        started = time.monotonic()
        second = menjin("run", "-c", str(first.config), timeout=60)
        assert time.monotonic() - started < 30
        assert second.returncode == 75, second.stderr
        assert (f"another menjin (pid {first.proc.pid}) runs with {first.state}"  # type: ignore[union-attr]
                in second.stderr)
        assert "ready" not in second.stderr
        assert (sock.stat().st_ino, first.events()) == before  # socket and journal untouched
        first.swipe_opens()  # the first daemon still owns its doors and its socket
        status = menjin("status", "-c", str(first.config))
        assert status.returncode == 0, status.stderr
    finally:
        assert first.stop() == 0


@pytest.mark.timeout(120)
def test_a_torn_audit_tail_is_cut_off_kept_aside_and_recorded(tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    audit = gate.state / "audit.log"
    log = AuditLog(audit)
    log.append("residents.import", actor="admin", details={"added": 1})
    log.append("door.test", actor="admin", target="front")
    whole = audit.read_bytes()
    torn = whole[: len(whole) - 40]  # power lost in the middle of the last entry
    audit.write_bytes(torn)
    gate.start()
    try:
        events = gate.wait_for("audit.repaired", lambda: [
            e for e in gate.events() if e["type"] == "audit.repaired"])
        lost = len(torn) - whole.index(b"\n") - 1
        assert events[0]["data"] == {"bytes": lost, "kept_in": "audit.log.damaged"}
        assert (gate.state / "audit.log.damaged").read_bytes() == torn[-lost:]
        assert AuditLog(audit).verify().ok and AuditLog(audit).verify().entries == 1
        gate.swipe_opens()
    finally:
        gate.stop()
    assert menjin("audit", "verify", "-c", str(gate.config)).returncode == 0


@pytest.mark.timeout(120)
def test_a_corrupt_journal_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    gate = Gate(tmp_path)
    journal = gate.state / "journal.db"
    garbage = b"SQLite format 3\x00" + os.urandom(8192)
    journal.write_bytes(garbage)
    gate.start()
    try:
        recovered = gate.wait_for("journal.recovered", lambda: [
            e for e in gate.events() if e["type"] == "journal.recovered"])[0]
        moved = recovered["data"]["moved_to"]
        assert moved.startswith("journal.db.corrupt-")
        assert (gate.state / moved).read_bytes() == garbage  # kept, never deleted
        assert recovered["data"]["events_kept"] == 0
        assert recovered["data"]["events_lost"] is None  # not even a count could be read
        gate.swipe_opens()
        assert count(gate.events(), "access.granted") == 1
    finally:
        assert gate.stop() == 0


@pytest.mark.timeout(180)
def test_after_a_journal_recovery_seq_continues_and_the_restart_is_not_clean(
        tmp_path: Path) -> None:
    gate = Gate(tmp_path).start()
    gate.swipe_opens()
    assert gate.stop() == 0
    marker = json.loads((gate.state / "run.json").read_text())
    last_seq = marker["last_seq"]
    assert marker["clean"] is True and last_seq == gate.events()[-1]["seq"] > 1
    for side in ("journal.db-wal", "journal.db-shm"):
        (gate.state / side).unlink(missing_ok=True)
    # a new inode: a reading connection of this process still open must not write into it
    torn = gate.state / "torn.db"
    torn.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    torn.replace(gate.state / "journal.db")
    gate.start()
    try:
        restarted = gate.wait_for("gate.restarted", lambda: [
            e for e in gate.events() if e["type"] == "gate.restarted"])[0]
        events = gate.events()
        assert events[0]["seq"] == last_seq + 1  # never seq 1 again: the station dedups by seq
        assert [e["seq"] for e in events] == list(range(last_seq + 1, last_seq + 1 + len(events)))
        recovered = next(e for e in events if e["type"] == "journal.recovered")
        assert recovered["data"]["continues_after"] == last_seq
        assert restarted["reason"] == "unclean"
        assert restarted["data"]["clean"] is False
        assert restarted["data"]["previous_last_seq"] == last_seq
    finally:
        assert gate.stop() == 0
    assert json.loads((gate.state / "run.json").read_text())["last_seq"] == gate.events()[-1]["seq"]


def _corrupt(db: Path) -> None:
    """Overwrite the pages after the header: SQLite opens the file and then fails to read it."""
    data = bytearray(db.read_bytes())
    data[100:] = os.urandom(len(data) - 100)
    db.write_bytes(bytes(data))


@pytest.mark.timeout(180)
def test_a_corrupt_resident_store_falls_back_to_its_last_good_snapshot(tmp_path: Path) -> None:
    gate = Gate(tmp_path).start()  # the first run leaves the last good snapshot
    gate.swipe_opens()
    assert gate.stop() == 0
    store = gate.state / "residents.db"
    snapshot = (gate.state / "residents.db.last-good").read_bytes()
    assert b"Wang Fang" not in snapshot and b"p-0101" not in snapshot  # sealed like the store
    assert (gate.state / "residents.db.last-good").stat().st_mode & 0o077 == 0
    for side in ("residents.db-wal", "residents.db-shm"):
        (gate.state / side).unlink(missing_ok=True)
    _corrupt(store)
    gate.start()
    try:
        recovered = gate.wait_for("store.recovered", lambda: [
            e for e in gate.events() if e["type"] == "store.recovered"])[0]
        assert recovered["data"]["source"] == "snapshot"
        assert (gate.state / recovered["data"]["moved_to"]).exists()
        assert "RESIDENT STORE" in gate.log_text()  # loudly
        gate.swipe_opens()  # the card still works, from the snapshot
        granted = [e for e in gate.events() if e["type"] == "access.granted"]
        assert granted[-1]["person"] == "p-0101"
    finally:
        assert gate.stop() == 0
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert json.dumps(recovered)  # the event is plain JSON
