"""`menjin audit show/verify`: readable lines by default, JSON with --json."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from daemon.audit import AuditLog
from menjin.cli import app

runner = CliRunner()


def test_show_and_verify_text_and_json(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", clock=lambda: 1_795_000_000_000)
    log.append("residents.add", actor="cli:root", target="p12", details={"cards": 1})
    log.append("door.test", actor="cli:ops", details={"door": "front"})
    result = runner.invoke(app, ["audit", "show", "--log", str(tmp_path / "audit.log")])
    assert result.stdout.splitlines() == [
        "#1 2026-11-18 11:06:40 cli:root residents.add on p12: cards=1",
        "#2 2026-11-18 11:06:40 cli:ops door.test: door=front"]
    result = runner.invoke(app, ["audit", "show", "--json", "--log", str(tmp_path / "audit.log")])
    assert json.loads(result.stdout.splitlines()[0])["action"] == "residents.add"
    result = runner.invoke(app, ["audit", "verify", "--json", "--log",
                                 str(tmp_path / "audit.log")])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"file": str(tmp_path / "audit.log"), "ok": True,
                                         "entries": 2, "line": None, "reason": ""}
