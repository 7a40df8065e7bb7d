"""`menjin check-config` and `menjin config schema`: the installer's view of configuration."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from daemon.access import face_only_warnings
from daemon.config import GateConfig
from daemon.configcheck import client_id
from daemon.configfile import EX_CONFIG, ConfigError, Problem, load_config
from daemon.keyring import Keyring
from daemon.keys import KeyProviderError
from daemon.store import StoreError

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "config" / "schema.json"

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
        help="Skip checks that model, key and certificate files exist "
        "(when checking a config away from its board).",
    ),
) -> None:
    """Validate gate configuration(s): every problem at once, as FILE:LINE:COL: key: message.

    Example: menjin check-config /etc/menjin/gate.yaml
    """
    problems: list[Problem] = []
    loaded: list[tuple[Path, GateConfig]] = []
    for file in files:
        try:
            loaded.append((file, load_config(file, check_files=not no_files)))
        except ConfigError as exc:
            problems += exc.problems
    problems += _cross_gate_problems(loaded)
    for problem in problems:
        typer.echo(str(problem), err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) found", err=True)
        raise typer.Exit(EX_CONFIG)
    for file, cfg in loaded:
        for warning in [*key_warnings(cfg), *_resident_warnings(cfg)]:
            typer.echo(f"{file}: warning: {warning}", err=True)
        typer.echo(
            f"{file}: OK: gate {cfg.gate.id}, {len(cfg.doors)} door(s), {len(cfg.readers)} "
            f"reader(s), camera {'yes' if cfg.camera else 'no'}, "
            f"{'simulate' if cfg.hardware.simulate else cfg.hardware.gpio_backend} mode, "
            f"portraits {cfg.privacy.portraits}"
        )


def _resident_warnings(cfg: GateConfig) -> list[str]:
    """Persons set up for face entry without a card or PIN, when the board's store is here.

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


def _cross_gate_problems(loaded: list[tuple[Path, GateConfig]]) -> list[Problem]:
    """Two boards with the same gate id or MQTT client id would knock each other off the broker."""
    problems: list[Problem] = []
    seen_ids: dict[str, Path] = {}
    seen_clients: dict[str, Path] = {}
    for file, cfg in loaded:
        if cfg.gate.id in seen_ids:
            problems.append(
                Problem(
                    str(file),
                    1,
                    1,
                    "gate.id",
                    f"gate id {cfg.gate.id!r} is also used by {seen_ids[cfg.gate.id]}",
                )
            )
        seen_ids.setdefault(cfg.gate.id, file)
        cid = client_id(cfg)
        if cid in seen_clients:
            problems.append(
                Problem(
                    str(file),
                    1,
                    1,
                    "uplink.client_id",
                    f"MQTT client id {cid!r} is also used by {seen_clients[cid]} "
                    "(the broker would disconnect one of them)",
                )
            )
        seen_clients.setdefault(cid, file)
    return problems


def schema_text() -> str:
    """The JSON Schema of the gate config, as committed in config/schema.json."""
    schema = GateConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "menjin gate configuration"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


@config_app.command("schema")
def write_schema(
    output: Path = typer.Option(SCHEMA_FILE, "-o", "--output", help="Where to write the schema."),
) -> None:
    """Regenerate the JSON Schema editors use to complete and check the YAML.

    Example: menjin config schema -o config/schema.json
    """
    output.write_text(schema_text(), encoding="utf-8")
    typer.echo(f"wrote {output}")
