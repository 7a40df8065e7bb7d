"""``menjin station ...``: run the receiver and web page, create the signing key, send commands.

Registered by ``menjin/cli.py`` (``app.add_typer(station_app, name="station")``).  ``open``,
``mode`` and ``resend`` print the gate's answer as a sentence (``--json`` for the raw result; the
other commands print JSON); ``user`` manages the web page's accounts.  The exit status is 0 when the
gate accepted, 1 when it refused or did not answer, 78 for a bad ``station.yaml``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.commands import (
    CommandError,
    enrol_args,
    erase,
    keygen,
    mode_args,
    open_args,
    send_command,
    signing_key,
    sync,
)
from station.config import EX_CONFIG, ConfigError, StationConfig
from station.configcheck import check_station_config
from station.display import visible
from station.residents import ResidentsError, load_residents

if TYPE_CHECKING:
    from station.store import Store

log = logging.getLogger(__name__)

EXIT_REFUSED = 1
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

station_app = typer.Typer(
    help="The station's side: receive and store what the gates upload, send signed commands.",
    no_args_is_help=True,
)

ConfigPath = Annotated[
    Path, typer.Option("--config", "-c", help="The station's config file (station.yaml).")
]
GateId = Annotated[str, typer.Argument(help="Gate id (gate.id in its gate.yaml).")]


def _checked(path: Path, *, check_files: bool = True) -> tuple[StationConfig, list[str]]:
    """The config and its warnings, as ``station run`` will use it; exit 78 when it is bad."""
    try:
        return check_station_config(path, check_files=check_files)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(problem, err=True)
        typer.echo(f"{len(exc.problems)} problem(s) found", err=True)
        raise typer.Exit(EX_CONFIG) from None


def _config(path: Path) -> StationConfig:
    return _checked(path)[0]


@station_app.command("check-config")
def check_config_command(
    config: Annotated[Path, typer.Argument(help="The station's config file (station.yaml).")],
    no_files: Annotated[bool, typer.Option(
        "--no-file-checks", help="Open no file but the config: no key, certificate, password "
        "or database folder (when checking a config away from its server).")] = False,
) -> None:
    """Validate station.yaml and the files it names, as `station run` will use them: every
    problem at once, as FILE:LINE:COL: key: message.

    \b
    Example:
      menjin station check-config /etc/menjin/station.yaml
    """
    loaded, warnings = _checked(config, check_files=not no_files)
    for warning in warnings:
        typer.echo(warning, err=True)
    typer.echo(f"{config}: OK: broker {loaded.mqtt.host}:{loaded.mqtt.port}, "
               f"signing key {loaded.signing_key}, web page "
               f"{f'{loaded.web.bind}:{loaded.web.port}' if loaded.web.enabled else 'off'}"
               + (" (files not checked)" if no_files else ""))


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Log to this command's stderr while it runs, and only while it runs.

    The handler goes when the command ends: one left on the root logger would keep writing to a
    stream that is closed by then (a test runner's captured stderr), breaking later log calls.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _store(config: StationConfig) -> Store:
    """The database; its libraries are the optional ``station`` extra, absent on most gates.

    A database that cannot be reached (a PostgreSQL server down) is one line and status 1, so
    that systemd tries again; what the config can get wrong was checked before.
    """
    try:
        from sqlalchemy.exc import SQLAlchemyError

        from station.store import Store
    except ImportError as exc:
        typer.echo(f"menjin station needs: pip install 'menjin[station]' ({exc})", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    try:
        return Store(config.database.url, portraits_dir=config.portraits_dir)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        typer.echo(f"database {_safe_url(config.database.url)}: cannot open it: {reason}",
                   err=True)
        raise typer.Exit(EXIT_REFUSED) from None


def _safe_url(url: str) -> str:
    """The URL without its password, for a message."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@station_app.command("run")
def run(
    config_path: ConfigPath = Path("station.yaml"),
    receiver: Annotated[int, typer.Option(
        "--receiver", "-r", min=0, max=999,
        help="Index of this receiver on this host (0, 1, ...): part of its broker session's "
        "id, so each receiver process needs its own.")] = 0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Receive events, portraits, status and health from all gates; serve the web page.

    \b
    Example:
      menjin station run -c /etc/menjin/station.yaml
    """
    with _logging(verbose):
        _run(config_path, receiver)


def _run(config_path: Path, index: int) -> None:
    config, warnings = _checked(config_path)  # web exposure, database, keys: before any file
    for warning in warnings:
        log.warning("%s", warning)
    store = _store(config)
    from station.receiver import Receiver
    from station.web import create_app, serve

    log.info("station: database %s, portraits in %s, broker %s:%s, group %s",
             store.engine.url.render_as_string(hide_password=True), config.portraits_dir,
             config.mqtt.host, config.mqtt.port, config.mqtt.share_group)

    async def main() -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(Receiver(config, store, index=index).run(),
                              name="station:receiver")
            if config.web.enabled:
                app = create_app(store, config)
                log.info("station: web page on http://%s:%s/", config.web.bind, config.web.port)
                tasks.create_task(serve(app, config.web), name="station:web")

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        log.info("station: stopped")
    finally:
        store.close()


@station_app.command("keygen")
def keygen_command(
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Private key file to write; the public key goes beside it.",
    )] = Path("station_key.pem"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
) -> None:
    """Create the station's Ed25519 command-signing key pair.

    Copy the .pub.pem file to every gate (station_key in gate.yaml); keep the private key here.

    \b
    Example:
      menjin station keygen -o /etc/menjin/station_key.pem
    """
    try:
        public = keygen(out, force=force)
    except CommandError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    typer.echo(f"private key: {out} (keep it secret)\npublic key:  {public} (copy to the gates)")


@station_app.command("kek")
def kek_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Key file to create.")],
) -> None:
    """Create the key-encryption key that wraps the face keys of gates with keys.provider station.

    Set key_encryption_key in station.yaml to it; it never goes to a gate.

    \b
    Example:
      menjin station kek -o /etc/menjin/station.kek
    """
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        typer.echo(f"{out} exists: the gates' wrapped keys depend on it; not replaced", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    typer.echo(f"key-encryption key: {out} (keep it on the station only)")


@station_app.command("wrap")
def wrap_command(
    gate: Annotated[str, typer.Argument(help="Gate id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The gate's station.wrapped file.")],
    config_path: ConfigPath = Path("station.yaml"),
) -> None:
    """Make a gate's face data key, wrapped for it under the station's key-encryption key.

    Copy the file to the gate as <state_dir>/keys/station.wrapped (mode 0600).

    \b
    Example:
      menjin station wrap gate-east -o gate-east.wrapped -c station.yaml
    """
    from station.keyservice import KeyServiceError, load_kek, wrap_new_key

    config = _config(config_path)
    if config.key_encryption_key is None:
        typer.echo(f"{config_path}: set key_encryption_key (menjin station kek)", err=True)
        raise typer.Exit(EX_CONFIG)
    try:
        blob = wrap_new_key(load_kek(config.key_encryption_key), gate)
    except (KeyServiceError, OSError, ValueError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)
    typer.echo(f"{out}: copy to gate {gate} as <state_dir>/keys/station.wrapped")


Sender = Callable[[StationConfig, Ed25519PrivateKey, "Store"], Coroutine[Any, Any, dict[str, Any]]]


JsonOption = Annotated[bool, typer.Option("--json", help="Print the gate's raw JSON result.")]


def _send(config_path: Path, sender: Sender, *, raw: bool = True,
          target: tuple[str, str] | None = None) -> None:
    """Load the config and key, run ``sender``, print the gate's result and exit accordingly.

    ``raw`` prints the JSON result, else one sentence (:mod:`station.results`); a ``target``
    (gate, door) the station does not know is refused before anything is sent.
    """
    with _logging(False):
        _send_logged(config_path, sender, raw=raw, target=target)


def _send_logged(config_path: Path, sender: Sender, *, raw: bool,
                 target: tuple[str, str] | None) -> None:
    config = _config(config_path)
    store = _store(config)
    try:
        if target is not None:
            from station.doorcontrol import check_target
            check_target(store, *target)
        key = signing_key(config.signing_key)
        result = asyncio.run(sender(config, key, store))
    except CommandError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    finally:
        store.close()
    if raw:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        from station.i18n import translations
        from station.results import describe
        typer.echo(visible(describe(result, translations("en").gettext)))
    if result.get("ok") is not True:
        raise typer.Exit(EXIT_REFUSED)


def _command(gate: str, name: str, args: dict[str, Any]) -> Sender:
    async def sender(config: StationConfig, key: Ed25519PrivateKey, store: Store) -> dict[str, Any]:
        return await send_command(config, gate, name, args, key=key, store=store)

    return sender


@station_app.command("open")
def open_command(
    gate: GateId,
    door: Annotated[str, typer.Argument(help="Door id at that gate.")],
    seconds: Annotated[float, typer.Option(min=0.5, max=600, help="Unlock time.")] = 5.0,
    config_path: ConfigPath = Path("station.yaml"),
    raw: JsonOption = False,
) -> None:
    """Unlock one door of one gate remotely (signed) and print the gate's answer.

    \b
    Example:
      menjin station open xingfuli-north front --seconds 5 -c station.yaml
    """
    _send(config_path, _command(gate, "open", open_args(door, seconds)), raw=raw,
          target=(gate, door))


@station_app.command("mode")
def mode_command(
    gate: GateId,
    door: Annotated[str, typer.Argument(help="Door id at that gate.")],
    mode: Annotated[str, typer.Argument(
        help="normal, hold_open (unlocked hours) or lockdown (only signed remote opens and, on "
        "egress routes, exit buttons open the door).")],
    config_path: ConfigPath = Path("station.yaml"),
    raw: JsonOption = False,
) -> None:
    """Put one door of one gate into normal, hold_open or lockdown mode (signed).

    \b
    Example:
      menjin station mode xingfuli-north front lockdown -c station.yaml
    """
    _send(config_path, _command(gate, "mode", mode_args(door, mode)), raw=raw,
          target=(gate, door))


@station_app.command("resend")
def resend_command(
    gate: GateId,
    low: Annotated[int, typer.Argument(metavar="FROM", min=1, max=2**53,
                                       help="First seq to send again.")],
    high: Annotated[int, typer.Argument(metavar="TO", min=1, max=2**53,
                                        help="Last seq to send again (inclusive).")],
    config_path: ConfigPath = Path("station.yaml"),
    raw: JsonOption = False,
) -> None:
    """Ask a gate to publish its events FROM..TO (seq) again, e.g. a gap the station misses
    (signed); at most 10,000 at once unless the range is within a missing range.

    The running receiver stores what arrives, records what the gate no longer holds as lost, and
    asks for the rest when the gate sends only part.

    \b
    Example:
      menjin station resend xingfuli-north 1201 1250 -c station.yaml
    """
    from station.gaps import resend_args

    async def sender(config: StationConfig, key: Ed25519PrivateKey, store: Store) -> dict[str, Any]:
        args = await asyncio.to_thread(resend_args, store, gate, low, high)
        return await send_command(config, gate, "resend", args, key=key, store=store)

    _send(config_path, sender, raw=raw)


@station_app.command("sync")
def sync_command(
    gate: GateId,
    residents: Annotated[Path, typer.Argument(
        help="Residents: a CSV (columns id, name, groups, cards, ...; lists separated by ';') "
        "or one YAML/JSON file with persons, groups, holidays and revoked.")],
    groups: Annotated[Path | None, typer.Option(
        "--groups", help="YAML/JSON with groups (and holidays, revoked) for a CSV; beside a "
        "YAML/JSON residents file, added to its own (a group or holidays in both is refused).",
    )] = None,
    snapshot: Annotated[bool, typer.Option(help="Send the full list, not a delta.")] = False,
    config_path: ConfigPath = Path("station.yaml"),
) -> None:
    """Send the resident list to a gate: a delta since its last sync, else a snapshot.

    With --groups, the groups, holidays and revoked cards of both files are sent; a group
    defined in both files, or holidays given in both, is refused with both lines named.

    \b
    Example:
      menjin station sync xingfuli-north residents.csv --groups groups.yaml
    """
    try:
        resident_list = load_residents(residents, groups)
    except ResidentsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_REFUSED) from None

    async def sender(config: StationConfig, key: Ed25519PrivateKey, store: Store) -> dict[str, Any]:
        return await sync(config, gate, resident_list, key=key, store=store, snapshot=snapshot)

    _send(config_path, sender)


@station_app.command("enrol")
def enrol_command(
    gate: GateId,
    person: Annotated[str, typer.Argument(help="Person id (with a recorded face consent).")],
    photos: Annotated[
        list[Path] | None, typer.Argument(help="One or more JPEG photos of the face.")
    ] = None,
    at_door: Annotated[
        str | None,
        typer.Option("--at-door", help="Enrol from a burst of this door's camera instead of "
                                       "photos (the resident stands at the door)."),
    ] = None,
    config_path: ConfigPath = Path("station.yaml"),
) -> None:
    """Enrol a person's face at a gate from photos or at a door's camera; the gate keeps only
    the template.

    \b
    Examples:
      menjin station enrol xingfuli-north p-0101 front.jpg left.jpg
      menjin station enrol xingfuli-north p-0101 --at-door front
    """
    if bool(photos) == (at_door is not None):
        typer.echo("give either photos or --at-door DOOR", err=True)
        raise typer.Exit(EXIT_REFUSED)
    if at_door is not None:
        _send(config_path, _command(gate, "enrol", {"person": person, "door": at_door}))
        return
    try:
        args = enrol_args(person, photos or [])
    except CommandError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    _send(config_path, _command(gate, "enrol", args))


user_app = typer.Typer(help="Operator accounts of the web page.", no_args_is_help=True)
station_app.add_typer(user_app, name="user")
UserName = Annotated[str, typer.Argument(help="Operator user name.")]


def _accounts(config_path: Path, action: Callable[[Any], None]) -> None:
    from station.accounts import AccountError, Accounts

    config = _config(config_path)
    store = _store(config)
    try:
        action(Accounts(store))
    except AccountError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    finally:
        store.close()


# -- erasure, quarantine ------------------------------------------------------------------------

Targets = Annotated[list[str], typer.Argument(
    help="GATE PERSON, or only PERSON with --all.", metavar="[GATE] PERSON")]
AllGates = Annotated[bool, typer.Option(
    "--all", help="Every gate the station knows (that has ever reported).")]


def _erase(name: str, targets: list[str], all_gates: bool, config_path: Path) -> None:
    if len(targets) != (1 if all_gates else 2):
        typer.echo(f"usage: menjin station {name} GATE PERSON  or  menjin station {name} --all "
                   "PERSON", err=True)
        raise typer.Exit(2)
    person = targets[-1]

    async def sender(config: StationConfig, key: Ed25519PrivateKey, store: Store) -> dict[str, Any]:
        if all_gates:
            gates = [g.gate for g in await asyncio.to_thread(store.gates)]
            if not gates:
                raise CommandError("no gate has reported to this station yet")
        else:
            gates = [targets[0]]
        results = await erase(config, gates, name, person, key=key, store=store)
        confirmed = sorted(g for g, r in results.items() if r.get("ok") is True)
        return {"ok": len(confirmed) == len(gates), "person": person, "command": name,
                "confirmed": confirmed,
                "not_confirmed": sorted(set(gates) - set(confirmed)), "gates": results}

    _send(config_path, sender)


@station_app.command("forget")
def forget_command(
    targets: Targets, all_gates: AllGates = False, config_path: ConfigPath = Path("station.yaml"),
) -> None:
    """Erase a person at one gate or at every gate (signed): cards, templates, and their id in
    the gate's records; each gate's answer is shown and recorded here.

    \b
    Example:
      menjin station forget --all p-0042 -c station.yaml
    """
    _erase("forget", targets, all_gates, config_path)


@station_app.command("remove")
def remove_command(
    targets: Targets, all_gates: AllGates = False, config_path: ConfigPath = Path("station.yaml"),
) -> None:
    """Remove a person's face templates at one gate or every gate (face-entry opt-out; cards
    stay); each gate's answer is shown and recorded here.

    \b
    Example:
      menjin station remove xingfuli-north p-0042 -c station.yaml
    """
    _erase("remove", targets, all_gates, config_path)


@station_app.command("erasures")
def erasures_command(
    person: Annotated[str | None, typer.Argument(help="Only this person.")] = None,
    config_path: ConfigPath = Path("station.yaml"),
) -> None:
    """Erasure requests sent to the gates and which gates confirmed them (JSON lines).

    \b
    Example:
      menjin station erasures p-0042 -c station.yaml
    """
    store = _store(_config(config_path))
    try:
        for row in store.erasures(person):
            typer.echo(json.dumps(row, ensure_ascii=False))
    finally:
        store.close()


def _new_password() -> str:
    """The password from stdin when piped, else asked twice on the terminal."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@user_app.command("add")
def user_add(
    name: UserName,
    role: Annotated[str, typer.Option(
        help="viewer (reads), operator (also opens doors, changes modes, acknowledges alarms) "
        "or admin (also the administration view).")] = "viewer",
    config_path: ConfigPath = Path("station.yaml"),
) -> None:
    """Create an operator account; the password is asked (or read from stdin).

    \b
    Example:
      menjin station user add wangfang --role operator -c station.yaml
    """
    password = _new_password()
    _accounts(config_path, lambda accounts: accounts.add(name, role, password))
    typer.echo(f"user {name} added ({role})")


@user_app.command("remove")
def user_remove(name: UserName, config_path: ConfigPath = Path("station.yaml")) -> None:
    """Delete an operator account and end its sessions.

    \b
    Example:
      menjin station user remove wangfang -c station.yaml
    """
    _accounts(config_path, lambda accounts: accounts.remove(name))
    typer.echo(f"user {name} removed")


@user_app.command("passwd")
def user_passwd(name: UserName, config_path: ConfigPath = Path("station.yaml")) -> None:
    """Set a new password (asked, or read from stdin); ends the user's sessions.

    \b
    Example:
      menjin station user passwd wangfang -c station.yaml
    """
    password = _new_password()
    _accounts(config_path, lambda accounts: accounts.passwd(name, password))
    typer.echo(f"password of {name} changed")


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@station_app.command("quarantine")
def quarantine_command(
    gate: Annotated[str | None, typer.Option("--gate", "-g", help="Only this gate.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest entries shown.")] = 50,
    payload: Annotated[bool, typer.Option(
        "--payload", help="Show each payload's first bytes (escaped).")] = False,
    config_path: ConfigPath = Path("station.yaml"),
) -> None:
    """Messages from gates that were set aside instead of stored (bad JSON, out-of-range values,
    wrong gate, implausible time), newest first.

    \b
    Example:
      menjin station quarantine --gate xingfuli-north -c station.yaml
    """
    store = _store(_config(config_path))
    try:
        total = store.count_quarantined(gate)
        rows = store.quarantined(gate=gate, limit=limit)
    finally:
        store.close()
    typer.echo(f"{total} message(s) in quarantine" + (f" from gate {gate}" if gate else ""))
    for row in rows:
        seq = f" seq {row['seq']}" if row["seq"] is not None else ""
        typer.echo(visible(f"#{row['id']} {_time(row['received_ms'])} gate {row['gate'] or '?'}"
                           f"{seq} {row['topic']} ({row['bytes']} bytes): {row['reason']}"))
        if payload:
            typer.echo("    " + repr(bytes(row["payload"][:512]))[2:-1])
