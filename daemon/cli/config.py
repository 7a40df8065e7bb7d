"""`menjin check-config` and `menjin config schema`: the installer's view of configuration."""

from __future__ import annotations

from pathlib import Path

import typer

from daemon.access import face_only_warnings
from daemon.config import GateConfig
from daemon.configfile import (
    EX_CONFIG,
    ConfigError,
    LoadedConfig,
    Problem,
    cross_gate_problems,
    load_config_file,
)
from daemon.configschema import SCHEMA_FILE, schema_text
from daemon.keyring import Keyring
from daemon.keys import KeyProviderError
from daemon.liveness import liveness_warnings
from daemon.store import StoreError

config_app = typer.Typer(help="Configuration tools.", no_args_is_help=True)


def check_config(
    files: list[Path] = typer.Argument(
        ...,
        help="Gate config file(s); several boards at once are "
        "also checked against each other (gate ids, MQTT client ids).",
    ),
    no_files: bool = typer.Option(
        False,
        "--no-file-checks",
        help="Open no file but the config: no model, key, certificate or resident store "
        "(when checking a config away from its board).",
    ),
) -> None:
    """Validate gate configuration(s): every problem at once, as FILE:LINE:COL: key: message.

    Example: menjin check-config /etc/menjin/gate.yaml
    """
    problems: list[Problem] = []
    loaded: list[LoadedConfig] = []
    for file in files:
        try:
            loaded.append(load_config_file(file, check_files=not no_files))
        except ConfigError as exc:
            problems += exc.problems
    problems += cross_gate_problems(loaded)
    for problem in problems:
        typer.echo(str(problem), err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) found", err=True)
        raise typer.Exit(EX_CONFIG)
    for item in loaded:
        cfg = item.config
        for problem in item.warnings:
            typer.echo(f"{problem.file}:{problem.line}:{problem.column}: warning: "
                       f"{problem.path}: {problem.message}", err=True)
        residents = [] if no_files else _resident_warnings(cfg)
        for warning in [*key_warnings(cfg), *liveness_warnings(cfg), *residents]:
            typer.echo(f"{item.file}: warning: {warning}", err=True)
        typer.echo(
            f"{item.file}: OK: gate {cfg.gate.id}, {len(cfg.doors)} door(s), {len(cfg.readers)} "
            f"reader(s), camera {'yes' if cfg.camera else 'no'}, "
            f"{'simulate' if cfg.hardware.simulate else cfg.hardware.gpio_backend} mode, "
            f"portraits {cfg.privacy.portraits}, "
            f"vision {'on' if cfg.vision is not None and cfg.vision.enabled else 'off'}"
            + (" (files not checked)" if no_files else "")
        )


def _resident_warnings(cfg: GateConfig) -> list[str]:
    """Persons set up for face entry without a card, when the board's store is here.

    A warning, not an error: the config is fine, the resident data needs fixing.
    """
    if not cfg.access.db.exists():
        return []
    try:
        with Keyring(cfg).open_store(cfg) as store:
            return face_only_warnings(store.persons())
    except (StoreError, KeyProviderError, OSError) as exc:
        return [f"resident store {cfg.access.db} not readable: {exc}"]


def key_warnings(cfg: GateConfig) -> list[str]:
    """Key providers that leave the keys on the SD card (fine on a laptop, not at a gate)."""
    keys = cfg.keys
    if "file" in (keys.provider, keys.card_provider or keys.provider):
        return [f"keys: provider 'file' keeps the keys in {keys.dir} beside the data they "
                "protect: a copied SD card yields names, card numbers and face templates; use "
                "tpm2 or rpi-otp on a gate (docs/privacy.md)"]
    return []


@config_app.command("schema")
def write_schema(
    output: Path = typer.Option(SCHEMA_FILE, "-o", "--output", help="Where to write the schema."),
) -> None:
    """Regenerate the JSON Schema editors use to complete and check the YAML.

    Example: menjin config schema -o config/schema.json
    """
    output.write_text(schema_text(), encoding="utf-8")
    typer.echo(f"wrote {output}")
