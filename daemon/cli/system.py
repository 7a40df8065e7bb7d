"""`menjin system install`: the service user, folders, unit, udev rules and `menjin` on PATH.

Everything it writes comes from the package (``daemon/data/``); users, groups and folder modes are
declared in systemd's own formats (``sysusers.d``, ``tmpfiles.d``) and applied by
``systemd-sysusers`` and ``systemd-tmpfiles``, which are idempotent by design.  ``--root DIR``
installs into a folder instead of ``/`` (an SD-card image, or a test); ``--dry-run`` only lists.
A file an installer edited (the gate config, the reader udev rules) is never overwritten.

Example: sudo menjin system install
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from io import StringIO
from pathlib import Path
from typing import Annotated

import typer
from ruamel.yaml import YAML

EX_NOPERM = 77  # sysexits.h
EX_SOFTWARE = 70
DATA = resources.files("daemon") / "data"
CONFIG_FILE = Path("/etc/menjin/gate.yaml")
STATE_DIR = "${STATE_DIRECTORY:-/var/lib/menjin}"
CONTROL_SOCKET = "/run/menjin/control.sock"
UNIT_EXEC = "ExecStart=/opt/menjin/.venv/bin/menjin run -c /etc/menjin/gate.yaml"
#: The account files systemd-sysusers edits; an empty --root folder gets empty ones.
ACCOUNT_FILES = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")

system_app = typer.Typer(
    help="Install menjin as a system service on the board (user, folders, unit, udev rules).",
    no_args_is_help=True,
)


@dataclass(frozen=True)
class Target:
    """Where to install (``root``), whether to only list (``dry_run``), which menjin to run."""

    root: Path
    dry_run: bool
    menjin: Path

    def path(self, absolute: str | Path) -> Path:
        return self.root / str(absolute).lstrip("/")


def menjin_executable() -> Path:
    """The `menjin` script of the environment this code runs in."""
    beside = Path(sys.executable).with_name("menjin")
    if beside.exists():
        return beside
    found = shutil.which("menjin")
    return Path(found) if found else beside


def unit_text(menjin: Path) -> str:
    """The shipped systemd unit, its ExecStart pointed at ``menjin``."""
    text = (DATA / "systemd" / "menjin.service").read_text(encoding="utf-8")
    return text.replace(UNIT_EXEC, f"ExecStart={menjin} run -c {CONFIG_FILE}")


def config_text() -> str:
    """The example config with the installed state folder and control socket."""
    yaml = YAML(typ="rt")
    data = yaml.load((DATA / "config" / "example.yaml").read_text(encoding="utf-8"))
    data["state_dir"] = STATE_DIR
    data["control"]["socket"] = CONTROL_SOCKET
    data.yaml_set_start_comment(
        "Installed by `menjin system install`: edit it for this board (docs/install.md), then\n"
        "check it with: menjin check-config /etc/menjin/gate.yaml")
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _gid(target: Target, group: str) -> int | None:
    """The id of ``group`` in the target's /etc/group (None when absent)."""
    if target.root == Path("/"):
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            return None
    groups = target.path("/etc/group")
    if not groups.exists():
        return None
    for line in groups.read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == group:
            return int(fields[2])
    return None


def install_file(target: Target, dest: str, text: str, mode: int, *, keep_edited: bool = False,
                 group: str | None = None) -> str:
    """Write ``text`` to ``dest`` (under the root) unless it is already there; one report line.

    ``keep_edited``: an existing file with other content is the installer's own and stays.
    """
    path = target.path(dest)
    if path.exists():
        if path.read_text(encoding="utf-8") == text:
            return f"unchanged {dest}"
        if keep_edited:
            return f"kept {dest} (changed on this board; not overwritten)"
        verb = "updated"
    else:
        verb = "created"
    if target.dry_run:
        return f"would have {verb} {dest}"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    gid = _gid(target, group) if group else None
    if gid is not None:
        os.chown(tmp, 0, gid)
    tmp.replace(path)
    return f"{verb} {dest}"


def link_on_path(target: Target) -> str:
    """/usr/local/bin/menjin → the menjin of this environment."""
    dest = "/usr/local/bin/menjin"
    link = target.path(dest)
    if link.is_symlink() and link.readlink() == target.menjin:
        return f"unchanged {dest} -> {target.menjin}"
    if link.exists() and not link.is_symlink():
        return f"kept {dest} (a file that is not menjin's link; remove it to link menjin)"
    if target.dry_run:
        return f"would have linked {dest} -> {target.menjin}"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(target.menjin)
    return f"linked {dest} -> {target.menjin}"


def _run(target: Target, args: list[str]) -> str:
    """Run one systemd tool (with ``--root`` when installing into a folder)."""
    shown = " ".join(args)
    if target.dry_run:
        return f"would have run {shown}"
    tool = shutil.which(args[0])
    if tool is None:
        raise RuntimeError(f"{args[0]} not found: install systemd (apt-get install systemd)")
    if target.root != Path("/"):
        args = [args[0], f"--root={target.root}", *[
            str(target.path(a)) if a.startswith("/") else a for a in args[1:]]]
    result = subprocess.run([tool, *args[1:]], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{shown} failed: {result.stderr.strip() or result.returncode}")
    return f"ran {shown}"


def accounts(target: Target) -> list[str]:
    """The service user and groups (systemd-sysusers)."""
    if target.root != Path("/") and not target.dry_run:
        for name in ACCOUNT_FILES:
            account_file = target.path("/" + name)
            account_file.parent.mkdir(parents=True, exist_ok=True)
            account_file.touch(exist_ok=True)
    sysusers = "/usr/lib/sysusers.d/menjin.conf"
    text = (DATA / "systemd" / "menjin.sysusers").read_text(encoding="utf-8")
    return [install_file(target, sysusers, text, 0o644),
            _run(target, ["systemd-sysusers", sysusers])]


def folders(target: Target) -> list[str]:
    """/etc/menjin, /var/lib/menjin, /usr/share/menjin/models with their owners and modes."""
    tmpfiles = "/usr/lib/tmpfiles.d/menjin.conf"
    text = (DATA / "systemd" / "menjin.tmpfiles").read_text(encoding="utf-8")
    return [install_file(target, tmpfiles, text, 0o644),
            _run(target, ["systemd-tmpfiles", "--create", tmpfiles])]


def service(target: Target) -> list[str]:
    """The unit and the udev rules."""
    rules: Traversable = DATA / "systemd" / "99-menjin-readers.rules"
    gpio: Traversable = DATA / "systemd" / "60-menjin-gpio.rules"
    return [
        install_file(target, "/etc/systemd/system/menjin.service", unit_text(target.menjin),
                     0o644),
        install_file(target, "/etc/udev/rules.d/99-menjin-readers.rules",
                     rules.read_text(encoding="utf-8"), 0o644, keep_edited=True),
        install_file(target, "/etc/udev/rules.d/60-menjin-gpio.rules",
                     gpio.read_text(encoding="utf-8"), 0o644),
    ]


def config(target: Target) -> list[str]:
    """/etc/menjin/gate.yaml from the example, only when there is none."""
    return [install_file(target, str(CONFIG_FILE), config_text(), 0o640, keep_edited=True,
                         group="menjin")]


def reload_system(target: Target) -> list[str]:
    """Tell systemd and udev about the new files (only on the running system)."""
    if target.root != Path("/"):
        return ["skipped systemctl daemon-reload and udevadm reload (installing into --root)"]
    lines = [_run(target, ["systemctl", "daemon-reload"])]
    if shutil.which("udevadm"):
        lines += [_run(target, ["udevadm", "control", "--reload-rules"]),
                  _run(target, ["udevadm", "trigger"])]
    return lines


STEPS: tuple[Callable[[Target], list[str]], ...] = (
    accounts, folders, service, config, lambda t: [link_on_path(t)], reload_system)


def install_system(target: Target) -> list[str]:
    """Every step in order; returns the report lines.  Raises RuntimeError when a tool fails."""
    lines: list[str] = []
    for step in STEPS:
        lines += step(target)
    return lines


@system_app.command("install")
def install(
    root: Annotated[Path, typer.Option(
        "--root", help="Install into this folder instead of / (an image, or a test).")] = Path("/"),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only list what would be done.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the steps as a JSON list.")] = False,
) -> None:
    """Create the menjin user and groups, /etc/menjin and /var/lib/menjin with their modes,
    install the systemd unit and udev rules, and put `menjin` on PATH. Safe to run again.

    \b
    Example:
      sudo menjin system install
    """
    root = root.resolve()
    if root == Path("/") and not dry_run and os.geteuid() != 0:
        typer.echo("menjin system install: run it as root: sudo menjin system install", err=True)
        raise typer.Exit(EX_NOPERM)
    target = Target(root, dry_run, menjin_executable())
    try:
        lines = install_system(target)
    except RuntimeError as exc:
        typer.echo(f"menjin system install: {exc}", err=True)
        raise typer.Exit(EX_SOFTWARE) from exc
    if as_json:
        typer.echo(json.dumps({"root": str(root), "dry_run": dry_run, "steps": lines}))
        return
    for line in lines:
        typer.echo(line)
    if not dry_run:
        typer.echo(f"next: edit {CONFIG_FILE}, then menjin check-config {CONFIG_FILE}, "
                   f"menjin doctor -c {CONFIG_FILE}, systemctl enable --now menjin")
