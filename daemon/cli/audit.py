"""`menjin audit verify|show`: check the hash chain of the security audit log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer

from daemon.audit import AuditLog
from daemon.configfile import EX_CONFIG, ConfigError, load_config

audit_app = typer.Typer(help="Security audit log of administrative actions.", no_args_is_help=True)

ConfigOpt = typer.Option(None, "-c", "--config", help="Gate config (to find the audit log).")
LogOpt = typer.Option(None, "--log", help="Audit log file (instead of -c).")


def _log(config: Path | None, log: Path | None) -> AuditLog:
    if log is not None:
        return AuditLog(log)
    if config is None:
        raise typer.BadParameter("give -c CONFIG or --log FILE")
    try:
        return AuditLog(load_config(config, check_files=False).privacy.audit_path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EX_CONFIG) from exc


@audit_app.command("verify")
def verify(
    config: Path | None = ConfigOpt, log: Path | None = LogOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Check that no audit entry was edited, inserted or removed (exit 1 when one was).

    \b
    Example:
      menjin audit verify -c /etc/menjin/gate.yaml
    """
    audit = _log(config, log)
    result = audit.verify()
    if as_json:
        typer.echo(json.dumps({"file": str(audit.path), "ok": result.ok,
                               "entries": result.entries, "line": result.line,
                               "reason": result.reason}, ensure_ascii=False))
        if not result.ok:
            raise typer.Exit(1)
        return
    if result.ok:
        typer.echo(f"{audit.path}: OK: {result.entries} entries, chain intact")
        return
    typer.echo(f"{audit.path}:{result.line}: audit chain broken: {result.reason}", err=True)
    raise typer.Exit(1)


@audit_app.command("show")
def show(
    config: Path | None = ConfigOpt, log: Path | None = LogOpt,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Print the audit entries, one a line: when, who, what, on whom, details.

    \b
    Example:
      menjin audit show --log /var/lib/menjin/audit.log
    """
    for entry in _log(config, log).entries():
        typer.echo(json.dumps(entry, ensure_ascii=False) if as_json else audit_line(entry))


def audit_line(entry: dict[str, Any]) -> str:
    """``#3 2026-11-30 12:01:02 cli:root residents.add on p12: cards=1`` (UTC)."""
    when = dt.datetime.fromtimestamp(entry.get("ts_ms", 0) / 1000, dt.UTC)
    target = f" on {entry['target']}" if entry.get("target") else ""
    details = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
                        for k, v in (entry.get("details") or {}).items())
    return (f"#{entry.get('seq')} {when:%Y-%m-%d %H:%M:%S} {entry.get('actor')} "
            f"{entry.get('action')}{target}{': ' + details if details else ''}")
