"""`menjin door mode` and `menjin status` on a running daemon: the mode, its source, and that
it survives a restart of the daemon (issue 14, finding 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.audit import AuditLog
from tests.daemon.gate_rig import Gate, count, menjin


@pytest.mark.timeout(180)
def test_an_admin_lockdown_is_shown_with_its_source_and_survives_a_restart(
        tmp_path: Path) -> None:
    gate = Gate(tmp_path).start()
    try:
        done = menjin("door", "mode", "front", "lockdown", "-c", str(gate.config))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "door front: lockdown (admin)"
        refused = menjin("door", "mode", "front", "hold_open", "-c", str(gate.config))
        assert refused.returncode == 1
        assert "door front is in lockdown; lift it first (mode normal or schedule)" in \
            refused.stderr
        shown = menjin("status", "-c", str(gate.config))
        assert "lockdown (admin)" in shown.stdout
    finally:
        assert gate.stop() == 0
    gate.start()
    try:
        status = gate.call("status")["doors"]["front"]
        assert (status["mode"], status["mode_source"]) == ("lockdown", "admin")
        gate.swipe()
        gate.wait_for("the refusal", lambda: count(gate.events(), "access.denied", "lockdown"))
        assert menjin("door", "mode", "front", "schedule", "-c", str(gate.config)).returncode == 0
        gate.swipe_opens()
        entries = [e["action"] for e in AuditLog(gate.state / "audit.log").entries()]
        assert entries.count("door.mode") == 2
    finally:
        assert gate.stop() == 0
