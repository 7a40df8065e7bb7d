"""`menjin system install --root DIR`: user, groups, folder modes, unit, udev, PATH; idempotent."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daemon.cli.system import menjin_executable
from menjin.cli import app

runner = CliRunner()
pytestmark = pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="systemd-sysusers / systemd-tmpfiles not installed")


def install(root: Path, *extra: str) -> tuple[int, list[str], str]:
    result = runner.invoke(app, ["system", "install", "--root", str(root), *extra])
    return result.exit_code, result.stdout.splitlines(), result.stderr


def ids(root: Path, file: str, name: str) -> list[str]:
    for line in (root / "etc" / file).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    raise AssertionError(f"{name} not in {file}")


def test_dry_run_lists_and_changes_nothing(tmp_path: Path) -> None:
    code, lines, _ = install(tmp_path, "--dry-run")
    assert code == 0
    assert lines == [
        "would have created /usr/lib/sysusers.d/menjin.conf",
        "would have run systemd-sysusers /usr/lib/sysusers.d/menjin.conf",
        "would have created /usr/lib/tmpfiles.d/menjin.conf",
        "would have run systemd-tmpfiles --create /usr/lib/tmpfiles.d/menjin.conf",
        "would have created /etc/systemd/system/menjin.service",
        "would have created /etc/udev/rules.d/99-menjin-readers.rules",
        "would have created /etc/udev/rules.d/60-menjin-gpio.rules",
        "would have created /etc/menjin/gate.yaml",
        f"would have linked /usr/local/bin/menjin -> {menjin_executable()}",
        "skipped systemctl daemon-reload and udevadm reload (installing into --root)",
    ]
    assert list(tmp_path.iterdir()) == []


def test_install_creates_user_folders_unit_and_is_idempotent(tmp_path: Path) -> None:
    code, lines, err = install(tmp_path)
    assert code == 0, err
    assert lines[0] == "created /usr/lib/sysusers.d/menjin.conf"
    user = ids(tmp_path, "passwd", "menjin")
    assert user[5:] == ["/var/lib/menjin", "/usr/sbin/nologin"]
    for group in ("gpio", "dialout", "video"):
        assert ids(tmp_path, "group", group)[3] == "menjin"
    uid, gid = int(user[2]), int(user[3])
    state = (tmp_path / "var/lib/menjin").stat()
    assert (stat.S_IMODE(state.st_mode), state.st_uid, state.st_gid) == (0o700, uid, gid)
    etc = (tmp_path / "etc/menjin").stat()
    assert (stat.S_IMODE(etc.st_mode), etc.st_uid, etc.st_gid) == (0o750, 0, gid)
    gate = (tmp_path / "etc/menjin/gate.yaml").stat()
    assert (stat.S_IMODE(gate.st_mode), gate.st_gid) == (0o640, gid)
    text = (tmp_path / "etc/menjin/gate.yaml").read_text()
    assert "state_dir: ${STATE_DIRECTORY:-/var/lib/menjin}" in text
    assert "socket: /run/menjin/control.sock" in text
    unit = (tmp_path / "etc/systemd/system/menjin.service").read_text()
    assert f"ExecStart={menjin_executable()} run -c /etc/menjin/gate.yaml\n" in unit
    assert (tmp_path / "usr/local/bin/menjin").readlink() == menjin_executable()
    assert (tmp_path / "etc/udev/rules.d/99-menjin-readers.rules").is_file()

    # Run again after the installer edited the config and the reader rules: nothing is lost.
    (tmp_path / "etc/menjin/gate.yaml").write_text(text.replace("gpio_backend: mock",
                                                                "gpio_backend: lgpio"))
    rules = tmp_path / "etc/udev/rules.d/99-menjin-readers.rules"
    rules.write_text(rules.read_text() + "# my reader\n")
    code, lines, _ = install(tmp_path)
    assert code == 0
    assert lines[4:9] == [
        "unchanged /etc/systemd/system/menjin.service",
        "kept /etc/udev/rules.d/99-menjin-readers.rules (changed on this board; not overwritten)",
        "unchanged /etc/udev/rules.d/60-menjin-gpio.rules",
        "kept /etc/menjin/gate.yaml (changed on this board; not overwritten)",
        f"unchanged /usr/local/bin/menjin -> {menjin_executable()}",
    ]
    assert "gpio_backend: lgpio" in (tmp_path / "etc/menjin/gate.yaml").read_text()
    assert ids(tmp_path, "passwd", "menjin")[2] == str(uid)
    assert sum(1 for line in (tmp_path / "etc/passwd").read_text().splitlines()
               if line.startswith("menjin:")) == 1


def test_installed_config_checks_clean(tmp_path: Path) -> None:
    assert install(tmp_path)[0] == 0
    result = runner.invoke(app, ["check-config", "--no-file-checks",
                                 str(tmp_path / "etc/menjin/gate.yaml")])
    assert result.exit_code == 0, result.stderr


def test_json_lists_the_steps(tmp_path: Path) -> None:
    import json

    result = runner.invoke(app, ["system", "install", "--root", str(tmp_path), "--dry-run",
                                 "--json"])
    out = json.loads(result.stdout)
    assert out["dry_run"] is True
    assert out["steps"][0] == "would have created /usr/lib/sysusers.d/menjin.conf"
