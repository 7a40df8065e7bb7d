"""`menjin doctor`: everything a gate needs, checked on the board, with what to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from daemon.doctor import load, run_checks

EX_PROBLEMS = 1
MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def doctor(
    config: Annotated[Path, typer.Option(
        "-c", "--config", envvar="MENJIN_CONFIG", help="Gate config.")] = Path(
            "/etc/menjin/gate.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
    root: Annotated[Path, typer.Option(
        "--root", help="Look for the unit and udev rules under this folder (as installed by "
        "menjin system install --root).")] = Path("/"),
) -> None:
    """Check config, models, keys, file modes, GPIO, serial readers, camera, broker (TLS),
    station key, clock, disk, systemd unit and udev rules, and the running daemon; say what to
    fix. Exit 1 when something fails.

    \b
    Example:
      sudo -u menjin menjin doctor -c /etc/menjin/gate.yaml
    """
    findings = run_checks(load(config, root=root))
    failed = sum(1 for f in findings if f.status == "fail")
    if as_json:
        typer.echo(json.dumps([f.as_json() for f in findings], indent=2, ensure_ascii=False))
    else:
        for f in findings:
            typer.echo(f"{MARKS[f.status]}  {f.check}: {f.message}")
            if f.fix:
                typer.echo(f"      fix: {f.fix}")
        warned = sum(1 for f in findings if f.status == "warn")
        typer.echo(f"{failed} problem(s), {warned} warning(s)")
    if failed:
        raise typer.Exit(EX_PROBLEMS)
