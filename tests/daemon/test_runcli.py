"""The installer's client commands: finding the daemon, readable event lines, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from daemon.cli.run import EX_UNAVAILABLE, format_event, render_status, socket_path
from menjin.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_socket_from_the_config_file() -> None:
    path = socket_path(REPO / "config" / "example.yaml", None)
    assert path.name == "control.sock"
    assert path.is_absolute()


def test_explicit_socket_wins(tmp_path: Path) -> None:
    assert socket_path(REPO / "config" / "example.yaml", tmp_path / "x.sock") == tmp_path / "x.sock"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"type": "access.granted", "seq": 7, "door": "front", "person": "p1", "ts_ms": 0},
         "#7 access.granted door=front person=p1"),
        ({"type": "access.denied", "door": "front", "reason": "expired", "ts_ms": 0},
         "access.denied door=front reason=expired"),
        ({"type": "part.fault", "data": {"part": "camera"}, "ts_ms": 0},
         "part.fault part=camera"),
        ({"type": "audit", "seq": 9, "reason": "residents.add", "ts_ms": 0,
          "data": {"seq": 3, "ts_ms": 0, "action": "residents.add", "actor": "cli:root",
                   "target": "p12", "details": {"cards": 1, "groups": ["a", "b"]},
                   "prev": "ab" * 32, "hash": "cd" * 32}},
         "#9 audit residents.add by cli:root on p12: cards=1, groups=a,b"),
        ({"type": "audit", "ts_ms": 0,
          "data": {"action": "door.test", "actor": "cli:ops", "target": None, "details": {}}},
         "audit door.test by cli:ops"),
        ({"type": "config.rejected", "ts_ms": 0,
          "data": {"error": "bad pin", "ok": False, "counts": {"doors": 2}}},
         'config.rejected error="bad pin" ok=no counts.doors=2'),
    ],
)
def test_format_event(event: dict[str, object], expected: str) -> None:
    line = format_event(event)
    assert line.split(" ", 1)[1] == expected


@pytest.mark.parametrize(
    "args",
    [["status"], ["events"], ["door", "test", "front"], ["sim", "swipe", "front-card", "1"],
     ["sim", "press", "front"], ["sim", "tamper", "front"], ["sim", "door", "front", "open"]],
)
def test_no_daemon_is_one_clear_line_and_exit_69(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*args, "--socket", str(tmp_path / "none.sock")])
    assert result.exit_code == EX_UNAVAILABLE
    assert "no menjin daemon at" in result.output


def test_run_with_a_bad_config_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "gate.yaml"
    bad.write_text("version: 1\ngate: {id: BAD ID, site: x}\ndoors: {}\n")
    result = CliRunner().invoke(app, ["run", "-c", str(bad)])
    assert result.exit_code == 78


def test_run_without_the_gpio_library_exits_78_with_the_install_hint(tmp_path: Path) -> None:
    try:
        import lgpio  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("lgpio is installed here: the board backend would really start")
    config = tmp_path / "gate.yaml"
    config.write_text(
        f"version: 1\nstate_dir: {tmp_path / 'state'}\ngate: {{id: g1, site: s}}\n"
        "hardware: {gpio_backend: lgpio}\ndoors: {front: {lock: {pin: 17}}}\n"
        f"control: {{socket: {tmp_path / 'c.sock'}}}\n"
    )
    result = CliRunner().invoke(app, ["run", "-c", str(config)])
    assert result.exit_code == 78
    assert "apt install python3-lgpio" in result.output


def test_status_shows_each_doors_mode_with_its_source_and_the_parts_not_running() -> None:
    console = Console(record=True, width=200)
    render_status({"gate": "g", "doors": {"front": {
        "state": "locked", "mode": "lockdown", "mode_source": "station", "relay": "released",
        "contact": "closed", "alarms": []}},
        "parts": {"door:front": {"state": "running", "restarts": 0},
                  "uplink": {"state": "failed", "restarts": 7,
                             "last_error": "OSError: no route to host"}}}, console)
    text = console.export_text()
    assert "lockdown (station)" in text
    assert "parts not running: uplink failed (7 restart(s), OSError: no route to host)" in text
    assert "door:front" not in text.split("parts not running:")[1]
