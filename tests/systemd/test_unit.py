"""systemd/menjin.service: the directives the gate relies on, and systemd's own verdict."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "menjin.service"


def directives() -> dict[str, list[str]]:
    """KEY -> every value it is given (DeviceAllow= appears several times)."""
    out: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Type", "notify"),
        ("Restart", "always"),
        ("RestartPreventExitStatus", "78"),
        ("User", "menjin"),
        ("SupplementaryGroups", "gpio dialout video"),
        ("StateDirectory", "menjin"),
        ("ConfigurationDirectory", "menjin"),
        ("RuntimeDirectory", "menjin"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("PrivateDevices", "no"),
        ("DevicePolicy", "closed"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ],
)
def test_required_directive(key: str, value: str) -> None:
    assert directives().get(key) == [value]


def test_watchdog_is_set() -> None:
    (value,) = directives()["WatchdogSec"]
    assert value.endswith("s") and int(value[:-1]) > 0


@pytest.mark.parametrize(
    "device", ["char-gpiochip", "char-ttyUSB", "char-ttyACM", "char-video4linux"]
)
def test_gpio_serial_and_video_devices_are_allowed(device: str) -> None:
    assert f"{device} rw" in directives()["DeviceAllow"]


def test_exec_start_runs_the_daemon_with_the_configuration_directory() -> None:
    (exec_start,) = directives()["ExecStart"]
    assert exec_start.split()[1:] == ["run", "-c", "/etc/menjin/gate.yaml"]


@pytest.mark.timeout(60)
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (it is on Raspberry Pi OS)")
    # The daemon is not installed at /opt/menjin here; point ExecStart at a binary that exists so
    # systemd checks everything else.  Unknown keys only warn, so the output must be empty too.
    unit = tmp_path / "menjin.service"
    (exec_start,) = directives()["ExecStart"]
    unit.write_text(UNIT.read_text().replace(exec_start.split()[0], "/bin/true"))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=50, cwd=tmp_path
    )
    output = [line for line in (result.stdout + result.stderr).splitlines() if "menjin" in line]
    assert result.returncode == 0, result.stdout + result.stderr
    assert output == []


def test_the_door_daemon_is_the_oom_killers_last_choice_and_vision_its_first() -> None:
    from daemon.vision_process import VISION_OOM_SCORE_ADJ

    (value,) = directives()["OOMScoreAdjust"]
    assert int(value) < 0 < VISION_OOM_SCORE_ADJ


@pytest.mark.timeout(60)
def test_the_unit_lets_the_vision_process_put_itself_below_the_daemon() -> None:
    # `menjin vision` calls sched_setscheduler (SCHED_IDLE) and sched_setaffinity (off CPU 0);
    # a filtered call fails with EPERM, vision only logs it, and cards would wait behind it.
    assert directives()["RestrictRealtime"] == ["yes"]  # forbids only the real-time policies
    (allowed,) = directives()["SystemCallFilter"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (it is on Raspberry Pi OS)")
    listed: set[str] = set()
    groups = [g for g in allowed.split() if g.startswith("@")]
    while groups:
        result = subprocess.run([analyze, "syscall-filter", groups.pop()], capture_output=True,
                                text=True, timeout=50, check=True)
        for line in result.stdout.splitlines()[1:]:
            name = line.strip()
            if name.startswith("@"):
                groups.append(name)
            elif name and not name.startswith("#"):
                listed.add(name)
    assert {"sched_setscheduler", "sched_setaffinity", "setpriority"} <= listed
