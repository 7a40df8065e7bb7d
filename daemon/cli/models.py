"""`menjin models`: list, verify and install the face models a gate config names.

Example: menjin models install /media/usb/menjin-models.tar.gz -c /etc/menjin/gate.yaml
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from daemon.config import GateConfig, VisionSection
from daemon.configfile import EX_CONFIG, ConfigError, load_config
from daemon.modelfiles import (
    ModelCheck,
    ModelInstallError,
    check_models,
    configured_models,
    install_models,
)

EX_MODELS = 1

models_app = typer.Typer(
    help="Face models: list them with their licences, verify them against menjin's checksum "
    "manifest, install them from a folder or archive you have (never from the internet).",
    no_args_is_help=True,
)

ConfigOpt = Annotated[Path, typer.Option(
    "-c", "--config", envvar="MENJIN_CONFIG", help="Gate config naming the model files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _vision(config: Path) -> VisionSection | None:
    """The vision section of a config (file checks off: the models may not be there yet)."""
    try:
        cfg: GateConfig = load_config(config, check_files=False)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(EX_CONFIG) from exc
    if cfg.vision is None or not cfg.vision.enabled:
        return None
    return cfg.vision


def _report(checks: list[ModelCheck], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([c.as_json() for c in checks], indent=2, ensure_ascii=False))
        return
    for c in checks:
        typer.echo(f"{c.status:<8} {c.model.role:<9} {c.model.kind:<22} {c.model.path}")
        typer.echo(f"{'':<9}licence: {c.licence}; {c.detail}")


def _no_vision(config: Path, as_json: bool) -> None:
    if as_json:
        typer.echo("[]")
    else:
        typer.echo(f"{config}: vision is disabled (no vision section or vision.enabled: false): "
                   "a card-only gate needs no models")


@models_app.command("list")
def list_(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """List the configured models with their licences and whether each is in place and intact.

    \b
    Example:
      menjin models list -c /etc/menjin/gate.yaml
    """
    vision = _vision(config)
    if vision is None:
        _no_vision(config, as_json)
        return
    _report(check_models(vision), as_json)


@models_app.command("verify")
def verify(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Check every configured model against the manifest; exit 1 if any is missing or damaged.

    \b
    Example:
      menjin models verify -c /etc/menjin/gate.yaml
    """
    vision = _vision(config)
    if vision is None:
        _no_vision(config, as_json)
        return
    checks = check_models(vision)
    _report(checks, as_json)
    bad = [c for c in checks if c.status != "ok"]
    if bad:
        if not as_json:
            typer.echo(f"{len(bad)} model(s) not usable; install them with: menjin models install "
                       f"FOLDER_OR_ARCHIVE -c {config}", err=True)
        raise typer.Exit(EX_MODELS)


@models_app.command("install")
def install(
    source: Annotated[Path, typer.Argument(
        help="Folder, .tar, .tar.gz or .zip holding the .onnx files (searched by file name).")],
    config: ConfigOpt,
    as_json: JsonOpt = False,
) -> None:
    """Copy the configured models from SOURCE to the paths the config names, verified first.

    Only files whose SHA-256 matches menjin's manifest are installed; a damaged copy is refused
    and the file in place is kept.  Nothing is downloaded.

    \b
    Example:
      menjin models install /media/usb/menjin-models -c /etc/menjin/gate.yaml
    """
    vision = _vision(config)
    if vision is None:
        _no_vision(config, as_json)
        return
    try:
        checks = install_models(source, configured_models(vision))
    except ModelInstallError as exc:
        typer.echo(f"menjin models install: {exc}", err=True)
        raise typer.Exit(EX_MODELS) from exc
    _report(checks, as_json)
    if not as_json:
        typer.echo(f"{len(checks)} model(s) installed and verified")
