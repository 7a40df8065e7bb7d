"""Erasure from the station: ``menjin station forget|remove GATE|--all PERSON`` reaches each gate,
shows each gate's answer, and records which gates confirmed."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from menjin.cli import app
from station.commands import keygen
from station.store import Quarantined, Store
from tests.broker import Broker
from tests.station.test_commands import PREFIX, REPO, gates

MENJIN = [sys.executable, "-c", "from menjin.cli import main; main()"]


def write_config(tmp_path: Path, port: int, *, timeout_s: float = 5) -> Path:
    """A station.yaml with absolute paths (relative ones are read from the working directory)."""
    config_file = tmp_path / "station.yaml"
    config_file.write_text(
        f"version: 1\nmqtt: {{port: {port}, prefix: {PREFIX}}}\n"
        f"database: {{url: 'sqlite:///{tmp_path / 'station.db'}'}}\n"
        f"signing_key: {tmp_path / 'station_key.pem'}\n"
        f"command_timeout_seconds: {timeout_s}\n")
    return config_file


@pytest.mark.timeout(90)
async def test_forget_all_shows_each_gate_and_records_which_confirmed(
    broker: Broker, tmp_path: Path
) -> None:
    public = keygen(tmp_path / "station_key.pem")
    config_file = write_config(tmp_path, broker.port, timeout_s=3)
    store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")
    for gate in ("g1", "g2", "g3"):  # g3 reported once and is gone now
        store.set_status(gate, {"gate": gate, "state": "online"})
    async with gates(broker, public, "g1", "g2") as logs:
        proc = await asyncio.create_subprocess_exec(
            *MENJIN, "station", "forget", "--all", "p-0042", "-c", str(config_file),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
        out, err = await proc.communicate()
    assert proc.returncode == 1, err.decode()  # not every gate confirmed
    printed = json.loads(out)
    assert (printed["confirmed"], printed["not_confirmed"]) == (["g1", "g2"], ["g3"])
    assert printed["gates"]["g1"]["result"] == {"person": "p-0042", "cards_removed": 1}
    assert printed["gates"]["g3"]["reason"] == "no_answer"
    assert logs["g1"].calls == [("erase", {"person": "p-0042"})]
    assert logs["g2"].calls == [("erase", {"person": "p-0042"})]
    recorded = {(r["gate"], r["name"], r["ok"]) for r in store.erasures("p-0042")}
    assert recorded == {("g1", "forget", True), ("g2", "forget", True), ("g3", "forget", None)}


@pytest.mark.timeout(90)
async def test_remove_at_one_gate_and_a_wrong_usage(broker: Broker, tmp_path: Path) -> None:
    public = keygen(tmp_path / "station_key.pem")
    config_file = write_config(tmp_path, broker.port)
    async with gates(broker, public, "g1", "g2") as logs:
        proc = await asyncio.create_subprocess_exec(
            *MENJIN, "station", "remove", "g1", "p-7", "-c", str(config_file),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["confirmed"] == ["g1"]
    assert logs["g1"].calls == [("erase", {"person": "p-7"})] and logs["g2"].calls == []
    wrong = CliRunner().invoke(app, ["station", "remove", "p-7", "-c", str(config_file)])
    assert wrong.exit_code == 2
    assert "usage: menjin station remove GATE PERSON  or  menjin station remove --all PERSON" \
        in wrong.output


def test_quarantine_lists_what_was_set_aside(tmp_path: Path) -> None:
    config_file = write_config(tmp_path, 1883)
    store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")
    store.add_quarantined([
        Quarantined(topic="menjin/g1/events", reason="number with more than 20 digits",
                    payload=b'{"seq": ' + b"9" * 5000 + b"}", gate="g1"),
        Quarantined(topic="menjin/g2/status", reason="not JSON", payload=b"\xff", gate="g2"),
    ])
    result = CliRunner().invoke(app, ["station", "quarantine", "--gate", "g1", "--payload",
                                      "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "1 message(s) in quarantine from gate g1"
    assert lines[1].endswith("gate g1 menjin/g1/events (5009 bytes): number with more than 20 "
                             "digits")
    assert lines[2] == "    " + '{"seq": ' + "9" * 504


def test_a_command_leaves_no_log_handler_bound_to_its_closed_stream(tmp_path: Path) -> None:
    """The cause of a flaky receiver test: a CLI test's captured stderr, closed after the
    command, kept receiving every later test's log records."""
    keygen(tmp_path / "station_key.pem")
    config_file = write_config(tmp_path, 1)  # nothing listens on port 1: the send fails fast
    store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")
    store.set_status("g1", {"gate": "g1", "state": "online"})  # a gate the station knows
    root = logging.getLogger()
    before = list(root.handlers)
    result = CliRunner().invoke(app, ["station", "forget", "g1", "p-0042", "-c", str(config_file)])
    assert result.exit_code == 1 and "broker 127.0.0.1:1" in result.output
    assert root.handlers == before
