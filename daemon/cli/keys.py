"""`menjin keys card-key`: share the site's card hash key with the station and the other gates.

Every gate of a compound and its station must hash a card number the same way (HMAC-SHA256 under
one site key), or a card enrolled at the station would not open the second gate and the station
could not search by card.  The first gate makes the key (sealed under its key provider); export it
once over a trusted channel and import it on the other gates; the station keeps it in its own
configuration.  Both actions are audited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from daemon.cli import auditing
from daemon.configfile import EX_CONFIG, ConfigError, load_config
from daemon.files import write_private
from daemon.keyring import Keyring
from daemon.keys import KEY_BYTES, KeyProviderError, import_card_key

keys_app = typer.Typer(help="The gate's keys (see docs/privacy.md).", no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("-c", "--config", help="Gate config file (YAML).")]


@keys_app.command("card-key")
def card_key(
    config: ConfigOpt,
    export: Annotated[Path | None, typer.Option(
        "--export", help="Write the site card key (hex, mode 0600) to this file.")] = None,
    import_: Annotated[Path | None, typer.Option(
        "--import", help="Replace this gate's card key by the one in this file (hex).")] = None,
) -> None:
    """Export or import the site's card hash key (before residents are imported on this gate).

    \b
    Example:
      menjin keys card-key --export /root/site-card.key -c /etc/menjin/gate.yaml
    """
    if (export is None) == (import_ is None):
        typer.echo("give either --export FILE or --import FILE", err=True)
        raise typer.Exit(EX_CONFIG)
    try:
        cfg = load_config(config, check_files=False)
        keyring = Keyring(cfg)
        if export is not None:
            write_private(export, keyring.local().card.hex().encode() + b"\n")
            auditing.record(cfg, "keys.card_key.export", target=str(export), details={})
            typer.echo(f"{export}: site card key (keep it secret; import it on the other gates)")
            return
        assert import_ is not None
        key = bytes.fromhex(import_.read_text(encoding="ascii").strip())
        if len(key) != KEY_BYTES:
            raise ValueError(f"{import_}: expected {2 * KEY_BYTES} hex characters")
        if cfg.access.db.exists():
            raise ValueError(f"{cfg.access.db} exists: its cards are hashed with the old key; "
                             "import the card key before the residents")
        import_card_key(keyring.local_provider, keyring.dir, key)
        auditing.record(cfg, "keys.card_key.import", target=str(import_), details={})
        typer.echo("site card key imported")
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EX_CONFIG) from exc
    except (KeyProviderError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EX_CONFIG) from exc
