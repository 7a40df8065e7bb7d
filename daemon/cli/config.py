"""`menjin check-config` and `menjin config schema`: the installer's view of configuration."""

from __future__ import annotations

from pathlib import Path

import typer

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
from daemon.liveness import liveness_warnings
from daemon.startcheck import start_problems

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
        help="Open no file but the config: no model, key, certificate or resident store, "
        "no GPIO library or state folder (when checking a config away from its board).",
    ),
) -> None:
    """Validate gate configuration(s): every problem at once, as FILE:LINE:COL: key: message.

    \b
    Example:
      menjin check-config /etc/menjin/gate.yaml
    """
    problems: list[Problem] = []
    loaded: list[LoadedConfig] = []
    for file in files:
        try:
            loaded.append(load_config_file(file, check_files=not no_files))
        except ConfigError as exc:
            problems += exc.problems
    problems += cross_gate_problems(loaded)
    residents: dict[str, list[str]] = {}
    for item in [] if no_files else loaded:  # what `menjin run` opens before the doors start
        found, residents[item.file] = start_problems(item)
        problems += found
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
        for warning in [*key_warnings(cfg), *command_warnings(cfg), *liveness_warnings(cfg),
                        *residents.get(item.file, [])]:
            typer.echo(f"{item.file}: warning: {warning}", err=True)
        typer.echo(
            f"{item.file}: OK: gate {cfg.gate.id}, {len(cfg.doors)} door(s), {len(cfg.readers)} "
            f"reader(s), camera {'yes' if cfg.camera else 'no'}, "
            f"{'simulate' if cfg.hardware.simulate else cfg.hardware.gpio_backend} mode, "
            f"portraits {cfg.privacy.portraits}, "
            f"vision {'on' if cfg.vision is not None and cfg.vision.enabled else 'off'}"
            + (" (files not checked)" if no_files else "")
        )


def command_warnings(cfg: GateConfig) -> list[str]:
    """An uplink without the station's public key: the gate refuses every station command."""
    uplink = cfg.uplink
    if uplink is not None and uplink.enabled and uplink.station_public_key_file is None:
        return ["uplink: no station_public_key_file: every station command (open, mode, sync, "
                "enrol, resend) is refused; copy station_key.pub.pem from the station "
                "(menjin station keygen) and name it there"]
    return []


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

    \b
    Example:
      menjin config schema -o config/schema.json
    """
    output.write_text(schema_text(), encoding="utf-8")
    typer.echo(f"wrote {output}")
