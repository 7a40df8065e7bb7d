"""`menjin audit verify|show`: check the hash chain of the security audit log."""

from __future__ import annotations

import json
from pathlib import Path

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
def verify(config: Path | None = ConfigOpt, log: Path | None = LogOpt) -> None:
    """Check that no audit entry was edited, inserted or removed (exit 1 when one was).

    Example: menjin audit verify -c /etc/menjin/gate.yaml
    """
    audit = _log(config, log)
    result = audit.verify()
    if result.ok:
        typer.echo(f"{audit.path}: OK: {result.entries} entries, chain intact")
        return
    typer.echo(f"{audit.path}:{result.line}: audit chain broken: {result.reason}", err=True)
    raise typer.Exit(1)


@audit_app.command("show")
def show(config: Path | None = ConfigOpt, log: Path | None = LogOpt) -> None:
    """Print the audit entries as JSON lines.

    Example: menjin audit show --log /var/lib/menjin/audit.log
    """
    for entry in _log(config, log).entries():
        typer.echo(json.dumps(entry, ensure_ascii=False))
