"""The `menjin` command line: one typer app composing the gate's and the station's commands.

Each feature area registers its own sub-commands (:mod:`daemon.cli` for the gate,
:mod:`station.cli` for the station); this module is the only place where both meet.
"""

from __future__ import annotations

import os

import typer

from daemon import __version__
from daemon.cli.audit import audit_app
from daemon.cli.camera import camera_app
from daemon.cli.config import check_config, config_app
from daemon.cli.doctor import doctor
from daemon.cli.faces import enrol, faces_app
from daemon.cli.keys import keys_app
from daemon.cli.models import models_app
from daemon.cli.residents import residents_app
from daemon.cli.run import register as register_run_commands
from daemon.cli.system import system_app
from daemon.files import PRIVATE_UMASK
from station.cli import station_app

app = typer.Typer(
    name="menjin",
    help="menjin: edge daemon for residential-compound gates: cards, faces, doors, uplink.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: paragraphs rewrapped to the terminal, no type label after a flag.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"menjin {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """menjin: edge daemon for residential-compound gates."""


app.command("check-config")(check_config)
app.add_typer(config_app, name="config")
app.add_typer(audit_app, name="audit")
register_run_commands(app)
app.command("enrol")(enrol)
app.add_typer(faces_app, name="faces")
app.add_typer(models_app, name="models")
app.command("doctor")(doctor)
app.add_typer(camera_app, name="camera")
app.add_typer(residents_app, name="residents")
app.add_typer(keys_app, name="keys")
app.add_typer(station_app, name="station")
app.add_typer(system_app, name="system")


def main() -> None:
    """Console-script entry point.

    Every file the gate or the station writes holds personal data or a secret: whatever umask
    the caller has (an installer's shell, a cron job), new files are 0600 and directories 0700.
    """
    os.umask(PRIVATE_UMASK)
    app()
