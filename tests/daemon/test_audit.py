"""The audit log: chain verification catches edits, insertions and deletions; retention prunes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daemon.audit import MS_PER_DAY, AuditLog
from menjin.cli import app


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


def filled(tmp_path: Path, clock: Clock | None = None) -> AuditLog:
    log = AuditLog(tmp_path / "audit.log", clock=clock or Clock())
    log.append("enrol", actor="cli:root", target="p1", details={"photos": 2})
    log.append("remote_open", actor="station", target="front", details={"command": "c1"})
    log.append("forget", actor="cli:root", target="p2")
    return log


def test_intact_chain_verifies_and_survives_reopen(tmp_path: Path) -> None:
    log = filled(tmp_path)
    assert log.verify().ok and log.verify().entries == 3
    again = AuditLog(log.path)
    entry = again.append("config_reload", actor="sighup")
    assert entry["seq"] == 4
    assert again.verify().entries == 4


def test_edited_line_is_detected(tmp_path: Path) -> None:
    log = filled(tmp_path)
    lines = log.path.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["target"] = "vehicle"  # someone hides which door was opened
    lines[1] = json.dumps(edited, sort_keys=True)
    log.path.write_text("\n".join(lines) + "\n")
    result = log.verify()
    assert not result.ok
    assert (result.line, result.reason) == (2, "content does not match its hash")


def test_deleted_line_is_detected(tmp_path: Path) -> None:
    log = filled(tmp_path)
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    result = log.verify()
    assert (result.ok, result.line, result.reason) == (
        False,
        2,
        "does not follow the previous entry",
    )


def test_no_biometrics_or_card_numbers_are_needed(tmp_path: Path) -> None:
    entry = filled(tmp_path).entries()[0]
    assert set(entry) == {"seq", "ts_ms", "action", "actor", "target", "details", "prev", "hash"}


def test_prune_keeps_a_verifiable_chain(tmp_path: Path) -> None:
    clock = Clock()
    log = filled(tmp_path, clock)
    clock.ms += 10 * MS_PER_DAY
    log.append("key_rotation", actor="cli:root")
    assert log.prune(retention_days=5) == 3
    assert [e["action"] for e in log.entries()] == ["key_rotation"]
    assert log.verify().ok
    assert AuditLog(log.path, clock=clock).append("enrol", actor="x")["seq"] == 5
    assert log.verify().entries == 2


def test_cli_verify(tmp_path: Path) -> None:
    log = filled(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--log", str(log.path)])
    assert ok.exit_code == 0 and "OK: 3 entries" in ok.output
    log.path.write_text(log.path.read_text().replace('"p1"', '"p9"'))
    bad = runner.invoke(app, ["audit", "verify", "--log", str(log.path)])
    assert bad.exit_code == 1
    assert f"{log.path}:1: audit chain broken: content does not match its hash" in bad.output


async def test_entries_are_forwarded_once_as_audit_events(tmp_path: Path) -> None:
    from daemon.events import Event
    from daemon.upkeep import AuditTrail

    log = filled(tmp_path)
    cursor = tmp_path / "audit.cursor"
    events: list[Event] = []
    trail = AuditTrail(log, cursor, emit=events.append, forwarding=lambda: True)
    assert await trail.forward() == 3
    assert [e.reason for e in events] == ["enrol", "remote_open", "forget"]
    assert all(e.type == "audit" and e.data["hash"] for e in events)
    assert await trail.forward() == 0
    log.append("door_test", actor="cli:root", target="front")  # the CLI, meanwhile
    assert await trail.forward() == 1 and events[-1].reason == "door_test"
    await trail.record("door.mode", actor="station", target="front")
    assert events[-1].reason == "door.mode"
    assert cursor.read_text() == log.entries()[-1]["hash"]  # the cursor is a chain position


def test_writers_in_several_processes_make_one_chain(tmp_path: Path) -> None:
    """The daemon and CLI commands append at the same time: one chain, no fork."""
    import subprocess
    import sys

    path = tmp_path / "audit.log"
    script = ("import sys; from pathlib import Path; from daemon.audit import AuditLog\n"
              "log = AuditLog(Path(sys.argv[1]))\n"
              "for i in range(40): log.append('door.test', actor=sys.argv[2], target='front')\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), f"w{i}"])
             for i in range(4)]
    assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    result = AuditLog(path).verify()
    assert (result.ok, result.entries) == (True, 160), result


def test_offline_erasure_refuses_while_the_daemon_holds_the_gate(tmp_path: Path) -> None:
    from daemon.statelock import StateDirBusyError, StateLock, offline

    daemon_lock = StateLock(tmp_path)
    daemon_lock.acquire()
    try:
        busy = pytest.raises(StateDirBusyError, match=rf"another menjin \(pid {os.getpid()}\)")
        with busy, offline(tmp_path):
            pass
    finally:
        daemon_lock.release()
    with offline(tmp_path):  # stopped: the tool may work on the files
        pass
