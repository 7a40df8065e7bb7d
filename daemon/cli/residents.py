"""`menjin residents`: the installer's tools for the resident store.

``import`` reads a CSV or YAML file and imports it all or nothing: every bad row is reported with
its line number first, and only ``--skip-bad`` imports the good rows of a file that has bad ones.
PINs in an import file are hashed (salted scrypt) on the way in; the store never holds a PIN.
Local edits keep the store's sync version, so the next snapshot from the station replaces them.

The file dialect (CSV or YAML, plain PINs, ``;`` between list items) is the one the station's
``sync`` reads too: see :mod:`protocol.residents` and docs/residents.md.
"""

from __future__ import annotations

import asyncio
import difflib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from daemon.access import Group, Person, face_only_warnings
from daemon.audit import local_actor
from daemon.cli import auditing
from daemon.config import GateConfig
from daemon.configfile import EX_CONFIG, ConfigError, load_config
from daemon.keyring import Keyring
from daemon.keys import KeyProviderError, load_local, provider
from daemon.privacy import forget_offline
from daemon.schedule import DEFAULT_TIMEZONE
from daemon.statelock import StateDirBusyError, offline
from daemon.store import (
    PersonError,
    Store,
    StoreError,
    group_from_record,
    holidays_from_records,
    parse_group,
    person_from_record,
    pseudonym,
    workdays_from_records,
)
from drivers.card import mask
from protocol.pins import hash_pin
from protocol.residents import (
    ResidentFile,
    ResidentFileError,
    Row,
    check,
    parse_resident_file,
    with_pins,
)
from protocol.sync import GroupRecord

EX_DATAERR = 65  # sysexits.h: the input file was bad; nothing was imported
EX_NOTFOUND = 1
#: With --db (a store file away from a board), development keys beside it.
DB_KEYS_DIR = "keys"

residents_app = typer.Typer(
    help="Residents, visitors and staff in the gate's store: import, list, add, disable, forget.",
    no_args_is_help=True,
)

ConfigOpt = Annotated[Path | None, typer.Option(
    "-c", "--config", envvar="MENJIN_CONFIG", help="Gate config (finds the store and its keys).")]
DbOpt = Annotated[Path | None, typer.Option(
    "--db", help="Resident store file, instead of -c (no card hashing unless --card-key).")]
CardKeyOpt = Annotated[Path | None, typer.Option(
    "--card-key", help="With --db: the card hash key file the store was written with.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]


def _done(text: str, result: Mapping[str, Any], as_json: bool) -> None:
    """The outcome of an edit: a sentence, or with --json the same as one JSON object."""
    typer.echo(json.dumps(result, ensure_ascii=False) if as_json else text)


# --------------------------------------------------------------------------- opening the store
@dataclass
class Target:
    """The store a command works on, and what goes with it."""

    store: Store
    config: GateConfig | None  # None with --db: nothing is audited
    pseudonym_key: bytes


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


@contextmanager
def open_target(config: Path | None, db: Path | None, card_key: Path | None, *,
                create: bool = False) -> Iterator[Target]:
    """The store named by ``-c CONFIG`` or ``--db FILE`` (exit 78 when neither works).

    Only commands that add persons (``create``) make a new store; the others refuse a missing
    one, so a mistyped path never looks like an empty compound.
    """
    if (config is None) == (db is None):
        raise _fail("give either -c CONFIG or --db FILE", EX_CONFIG)
    try:
        if config is not None:
            cfg = load_config(config, check_files=False)
            _require(cfg.access.db, create)
            keyring = Keyring(cfg)
            store = keyring.open_store(cfg)
            target = Target(store, cfg, keyring.local().pseudonyms)
        else:
            assert db is not None
            _require(db, create)
            store = Store(db, card_key=_card_key_file(card_key) if card_key else None,
                          zone=ZoneInfo(DEFAULT_TIMEZONE))
            keys_dir = db.parent / DB_KEYS_DIR
            target = Target(store, None,
                            load_local(provider("file", keys_dir), keys_dir).pseudonyms)
    except ConfigError as exc:
        raise _fail(str(exc), EX_CONFIG) from exc
    except (KeyProviderError, OSError, ValueError) as exc:
        raise _fail(f"keys: {exc}", EX_CONFIG) from exc
    except StoreError as exc:
        raise _fail(str(exc), EX_CONFIG) from exc
    try:
        yield target
    finally:
        target.store.close()


def _require(db: Path, create: bool) -> None:
    if not create and not db.exists():
        raise _fail(f"no resident store at {db} (import or add residents first)", EX_NOTFOUND)


def _card_key_file(path: Path) -> bytes:
    """A card hash key file of --card-key: 64 hex characters."""
    key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    if len(key) != 32:
        raise ValueError(f"{path}: expected 64 hex characters")
    return key


def _audit(target: Target, action: str, person: str | None, details: Mapping[str, Any]) -> None:
    """Audit through the daemon (or the locked file); the target is the person's pseudonym."""
    if target.config is not None:
        auditing.record(target.config, action,
                        target=pseudonym(target.pseudonym_key, person) if person else None,
                        details=details)


# --------------------------------------------------------------------------- checking files
@dataclass
class Checked:
    persons: list[Person]
    groups: list[Group]
    holidays: dict[date, str] | None
    revoked: list[str]
    errors: list[str]
    workdays: dict[date, str] | None = None
    bad: int = 0  # rows and items left out


def check_import(data: ResidentFile, store: Store, file: str,
                 group_hint: Callable[[str], str]) -> Checked:
    """Validate every row against the file and the store; errors as ``FILE:LINE: message``.

    The rows are checked by :func:`protocol.residents.check` in the gate's time zone, with the
    cards its store holds; here the gate adds what needs its own code: schedule texts.  PINs are
    hashed last, once every row passed.  ``group_hint(group)`` says how to create a group a row
    names and nobody defined.

    A person in a group the file defines badly (a schedule the gate cannot read, a group defined
    twice) is refused too, with its own line, and so left out by ``--skip-bad``: imported
    without that group they would silently lose its doors, and with the definition the store
    may still hold they would keep doors or hours the file meant to change.  An installer who
    skips bad rows expects each imported person to have exactly the access the file gives them;
    the report lists who is missing, and a second import after fixing the group brings them in.
    """
    checked = check(data, known_groups=[g.id for g in store.groups()],
                    card_owner=store.card_owner, mask=mask, zone=store.zone,
                    group_hint=group_hint, group_problem=_schedule_problem)
    problems = list(checked.problems)
    bad = checked.bad
    groups = [group_from_record(group) for group in checked.groups]
    persons: list[Person] = []
    for item in checked.persons:
        try:  # the file's checks are the gate's: this refuses only what they missed
            person_from_record(item.record, zone=store.zone)
        except PersonError as exc:
            problems.append((item.line, str(exc)))
            bad += 1
            continue
        persons.append(person_from_record(with_pins(item, hash_pin), zone=store.zone))
    holidays = holidays_from_records(checked.holidays) if checked.holidays is not None else None
    workdays = workdays_from_records(checked.holidays) if checked.holidays is not None else None
    problems.sort(key=lambda p: p[0])
    return Checked(persons, groups, holidays, checked.revoked,
                   [f"{file}:{line}: {msg}" for line, msg in problems], workdays, bad)


def _schedule_problem(group: GroupRecord) -> str | None:
    """What the gate's schedule parser finds wrong with a group of the file, or None."""
    try:
        group_from_record(group)
    except PersonError as exc:
        return str(exc)
    return None


def _group_hint(store: Store, config: Path | None, db: Path | None, *,
                yaml_file: bool) -> Callable[[str], str]:
    """How to create a group a row names and nobody defined: the command that does it (a YAML
    import file may also define it under 'groups:'; a CSV or ``add`` cannot)."""
    stored = ", ".join(g.id for g in store.groups()) or "none"
    way = "define it under 'groups:' or create it first" if yaml_file else "create it first"

    def hint(group: str) -> str:
        return (f"groups in the store: {stored}; {way}: menjin residents group add "
                f"{group}{_door_arg(config)} {_target_args(config, db)}")
    return hint


# --------------------------------------------------------------------------- commands
@residents_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV or YAML file of persons.", exists=True,
                                         dir_okay=False)],
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Import the good rows even when some are bad.")] = False,
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import persons from CSV or YAML: all rows valid, or nothing (unless --skip-bad).

    CSV: a header row, then one person a line. Columns (id and name required; lists separated
    by ";"): id, name, kind (resident, visitor, staff), enabled (yes/no), valid_from,
    valid_until, groups, cards, duress_cards, pin, duress_pin, face_consent_date,
    face_consent_source, under_14, guardian_consent_date, guardian_consent_source. A CSV names
    groups but cannot define them: create them with "menjin residents group add" or a YAML file.

    YAML: "persons:" a list of the same fields; optional "groups:" a list of {id, name, doors,
    schedule} and "holidays:" a list of dates. Quote card numbers and PINs in YAML, or leading
    zeros are lost.

    Samples: config/residents.example.csv and config/residents.example.yaml; docs/residents.md.

    \b
    Example:
      menjin residents import residents.csv -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key, create=True) as target:
        try:
            data = parse_resident_file(file.read_text(encoding="utf-8-sig"), str(file))
        except UnicodeDecodeError:
            raise _fail(f"{file}: not UTF-8 text", EX_DATAERR) from None
        except ResidentFileError as exc:
            raise _fail(str(exc), EX_DATAERR) from exc
        hint = _group_hint(target.store, config, db, yaml_file=file.suffix.lower() != ".csv")
        checked = check_import(data, target.store, str(file), hint)
        for error in checked.errors:
            typer.echo(error, err=True)
        if checked.errors and not skip_bad:
            raise _fail(f"nothing imported: {checked.bad} bad row(s); fix them or "
                        "use --skip-bad", EX_DATAERR)
        try:
            count = target.store.upsert(checked.persons, groups=checked.groups,
                                        holidays=checked.holidays,
                                        workdays=checked.workdays)
            for card in checked.revoked:
                target.store.revoke(card)
        except PersonError as exc:
            raise _fail(f"nothing imported: {exc}", EX_DATAERR) from exc
        _audit(target, "residents.import", None, {
            "file": file.name, "imported": count, "skipped": checked.bad,
            "groups": len(checked.groups)})
        skipped = f", {checked.bad} bad row(s) skipped" if checked.bad else ""
        _done(f"imported {count} person(s), {len(checked.groups)} group(s){skipped}",
              {"imported": count, "groups": len(checked.groups),
               "skipped": checked.bad}, as_json)


@residents_app.command("list")
def list_(
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List persons (card numbers masked) and warn about face entry without a card.

    \b
    Example:
      menjin residents list -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key) as target:
        persons = target.store.persons()
        for p in persons:
            summary = _summary(p, target.store.masked_cards(p.id))
            typer.echo(json.dumps(summary, ensure_ascii=False) if as_json else _line(summary))
        for warning in face_only_warnings(persons):
            typer.echo(f"warning: {warning}", err=True)
        if not as_json:
            typer.echo(f"{len(persons)} person(s), store version {target.store.version}")


def _summary(p: Person, cards: list[str]) -> dict[str, Any]:
    """The listing of a person; ``cards`` already masked (the store keeps only hashes)."""
    return {
        "id": p.id, "name": p.name, "kind": p.kind.value, "enabled": p.enabled,
        "valid_from": p.valid_from.isoformat() if p.valid_from else None,
        "valid_until": p.valid_until.isoformat() if p.valid_until else None,
        "groups": list(p.groups), "cards": cards,
        "pin": p.pin_hash is not None,
        "face_consent": p.face_consent_date.isoformat() if p.face_consent_date else None,
    }


def _line(s: Mapping[str, Any]) -> str:
    validity = f"{s['valid_from'] or '…'} → {s['valid_until'] or '…'}"
    return (f"{s['id']}\t{s['name']}\t{s['kind']}\t{'enabled' if s['enabled'] else 'DISABLED'}\t"
            f"{validity}\tgroups={','.join(s['groups']) or '-'}\t"
            f"cards={','.join(s['cards']) or '-'}\tpin={'yes' if s['pin'] else 'no'}\t"
            f"face={s['face_consent'] or 'no'}")


@residents_app.command("add")
def add(
    person_id: Annotated[str, typer.Argument(help="Person id.")],
    name: Annotated[str, typer.Option("--name", help="Full name.")],
    kind: Annotated[str, typer.Option("--kind", help="resident, visitor or staff.")] = "resident",
    card: Annotated[list[str] | None, typer.Option("--card", help="Card number (repeat).")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Group (repeat).")] = None,
    valid_from: Annotated[str | None, typer.Option(help="First valid day or time.")] = None,
    valid_until: Annotated[str | None, typer.Option(help="Last valid day, or end time.")] = None,
    face_consent_date: Annotated[str | None, typer.Option(help="Date of face consent.")] = None,
    face_consent_source: Annotated[str | None, typer.Option(help="Form or record.")] = None,
    under_14: Annotated[bool, typer.Option("--under-14", help="A child under 14.")] = False,
    guardian_consent_date: Annotated[str | None, typer.Option(help="Guardian's consent.")] = None,
    guardian_consent_source: Annotated[str | None, typer.Option(help="Form or record.")] = None,
    set_pin: Annotated[bool, typer.Option("--set-pin", help="Ask for a PIN (hidden).")] = False,
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add one person.

    \b
    Example:
      menjin residents add p12 --name Wang --card 0004567890 --group residents
    """
    fields = {k: v for k, v in {
        "id": person_id, "name": name, "kind": kind, "cards": card or [], "groups": group or [],
        "valid_from": valid_from, "valid_until": valid_until,
        "face_consent_date": face_consent_date, "face_consent_source": face_consent_source,
        "under_14": under_14, "guardian_consent_date": guardian_consent_date,
        "guardian_consent_source": guardian_consent_source,
    }.items() if v is not None}
    if set_pin:
        fields["pin"] = typer.prompt("PIN", hide_input=True, confirmation_prompt=True)
    with open_target(config, db, card_key, create=True) as target:
        if target.store.person(person_id) is not None:
            raise _fail(f"{person_id} already exists (change it with an import file)", EX_DATAERR)
        checked = check_import(ResidentFile([Row(0, fields)]), target.store, "add",
                               _group_hint(target.store, config, db, yaml_file=False))
        if checked.errors:
            raise _fail("\n".join(e.removeprefix("add:0: ") for e in checked.errors),
                        EX_DATAERR)
        try:
            target.store.upsert(checked.persons)
        except PersonError as exc:  # a card given to someone else since the check
            raise _fail(str(exc), EX_DATAERR) from exc
        _audit(target, "residents.add", person_id, {"cards": len(card or [])})
        for warning in face_only_warnings(checked.persons):
            typer.echo(f"warning: {warning}", err=True)
        _done(f"added {person_id}", {"added": person_id}, as_json)


def _target_args(config: Path | None, db: Path | None) -> str:
    return f"-c {config}" if config is not None else f"--db {db}"


def _door_arg(config: Path | None) -> str:
    """``group add`` takes every door of the config; with --db it must be told."""
    return "" if config is not None else " --door DOOR"


def _set_enabled(person_id: str, enabled: bool, target: Target, as_json: bool) -> None:
    if not target.store.set_enabled(person_id, enabled):
        raise _fail(f"no person {person_id!r} in {target.store.path}", EX_NOTFOUND)
    _audit(target, "residents.enable" if enabled else "residents.disable", person_id, {})
    _done(f"{'enabled' if enabled else 'disabled'} {person_id}",
          {"person": person_id, "enabled": enabled}, as_json)


@residents_app.command("disable")
def disable(
    person_id: Annotated[str, typer.Argument(help="Person id.")],
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Disable a person at once (their cards and face stop opening; the record is kept).

    \b
    Example:
      menjin residents disable p12 -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key) as target:
        _set_enabled(person_id, False, target, as_json)


@residents_app.command("enable")
def enable(
    person_id: Annotated[str, typer.Argument(help="Person id.")],
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enable a disabled person again.

    \b
    Example:
      menjin residents enable p12 -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key) as target:
        _set_enabled(person_id, True, target, as_json)


@residents_app.command("remove")
def remove(
    person_id: Annotated[str, typer.Argument(help="Person id.")],
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a person and their cards (use `forget` for an erasure request).

    \b
    Example:
      menjin residents remove p12 -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key) as target:
        person = target.store.remove(person_id)
        if person is None:
            raise _fail(f"no person {person_id!r} in {target.store.path}", EX_NOTFOUND)
        _audit(target, "residents.remove", person_id, {"cards": len(person.cards)})
        cards = len(person.cards) + len(person.duress_cards)
        _done(f"removed {person_id} ({cards} card(s))", {"removed": person_id, "cards": cards},
              as_json)


@residents_app.command("forget")
def forget(
    person_id: Annotated[str, typer.Argument(help="Person id.")],
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
) -> None:
    """Erasure request: remove a person's record, cards, PIN, face templates and portraits, and
    replace their id in stored events by a keyed pseudonym; prints what was removed.

    With -c, a running daemon does it (so its memory forgets too) and tells the station; when
    the daemon is stopped it is done on the files and the station is told at the next start.
    With --db only the resident store is touched.

    \b
    Example:
      menjin residents forget p12 -c /etc/menjin/gate.yaml
    """
    if config is not None:
        result = _forget_everywhere(person_id, config)
    else:
        with open_target(config, db, card_key) as target:
            result = target.store.forget(person_id, target.pseudonym_key).as_dict()
    typer.echo(json.dumps(result))
    if not result["found"]:
        raise _fail(f"no person {person_id!r} in the store (pseudonym recorded anyway)",
                    EX_NOTFOUND)


def _forget_everywhere(person_id: str, config: Path) -> dict[str, Any]:
    """The full erasure through the running daemon, or on the files when it is not running."""
    from daemon import control

    try:
        cfg = load_config(config, check_files=False)
    except ConfigError as exc:
        raise _fail(str(exc), EX_CONFIG) from exc
    try:  # the daemon takes the actor from the socket's peer credentials
        result: dict[str, Any] = asyncio.run(
            control.call(cfg.control.socket, "forget", {"person": person_id})
        )
        return result
    except control.ControlUnavailableError:
        pass  # the daemon is stopped (or its socket is not ours): erase on the files
    except control.ControlError as exc:
        raise _fail(f"the daemon refused: {exc}", EX_CONFIG) from exc
    try:
        with offline(cfg.state_dir):
            return forget_offline(cfg, person_id, actor=local_actor()).as_dict()
    except StateDirBusyError as exc:
        raise _fail(f"erasure not done: {exc} (the control socket {cfg.control.socket} did not "
                    "answer: run this as the menjin user or a member of control.group)",
                    EX_CONFIG) from exc
    except (KeyProviderError, OSError, StoreError) as exc:
        raise _fail(f"erasure failed: {exc}", EX_CONFIG) from exc



# --------------------------------------------------------------------------- groups
group_app = typer.Typer(
    help="Access groups: the doors their members may open, and when.", no_args_is_help=True)
residents_app.add_typer(group_app, name="group")


def _config_doors(config: Path | None) -> list[str] | None:
    """The door ids of the gate config, or None with --db."""
    if config is None:
        return None
    try:
        return list(load_config(config, check_files=False).doors)
    except ConfigError as exc:
        raise _fail(str(exc), EX_CONFIG) from exc


@group_app.command("add")
def group_add(
    group_id: Annotated[str, typer.Argument(help="Group id (letters, digits, - and _).")],
    door: Annotated[list[str] | None, typer.Option(
        "--door", help="Door its members may open (repeat); default with -c: every door.")] = None,
    schedule: Annotated[str, typer.Option(
        help='When: "always" or e.g. "mon-fri 07:00-19:00; sat 08:00-12:00".')] = "always",
    name: Annotated[str, typer.Option(help="Readable name.")] = "",
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add or change an access group.

    \b
    Examples:
      menjin residents group add residents -c /etc/menjin/gate.yaml
      menjin residents group add office --schedule "mon-fri 08:00-18:00"
    """
    doors = _config_doors(config)
    chosen = door or doors
    if not chosen:
        raise _fail("name the doors: --door DOOR (repeat), or give -c CONFIG for every door",
                    EX_DATAERR)
    if doors is not None:
        for d in chosen:
            if d not in doors:
                raise _fail(_unknown("door", d, doors), EX_DATAERR)
    try:
        group = parse_group({"id": group_id, "doors": chosen, "schedule": schedule, "name": name})
    except PersonError as exc:
        raise _fail(f"group {exc}", EX_DATAERR) from exc
    with open_target(config, db, card_key, create=True) as target:
        existed = any(g.id == group_id for g in target.store.groups())
        target.store.upsert([], groups=[group])
        _audit(target, "residents.group_add", None, {"group": group_id, "doors": list(chosen)})
    _done(f"{'changed' if existed else 'added'} group {group_id}: doors "
          f"{', '.join(chosen)}; {group.schedule.text}",
          {"group": group_id, "changed": existed, "doors": list(chosen),
           "schedule": group.schedule.text}, as_json)


def _unknown(what: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (doors: {', '.join(known)})"
    return f"unknown {what} {name!r}{hint}"


@group_app.command("list")
def group_list(
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List the access groups with their doors, schedule and member count.

    \b
    Example:
      menjin residents group list -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key) as target:
        persons = target.store.persons()
        groups = target.store.groups()
        for g in groups:
            members = sum(1 for p in persons if g.id in p.groups)
            row = {"id": g.id, "name": g.name, "doors": list(g.doors),
                   "schedule": g.schedule.text, "members": members}
            typer.echo(json.dumps(row, ensure_ascii=False) if as_json else
                       f"{g.id}\t{g.name or '-'}\tdoors={','.join(g.doors)}\t"
                       f"schedule={g.schedule.text}\tmembers={members}")
        if not as_json:
            typer.echo(f"{len(groups)} group(s)")


@group_app.command("remove")
def group_remove(
    group_id: Annotated[str, typer.Argument(help="Group id.")],
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove an access group that has no members.

    \b
    Example:
      menjin residents group remove office -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key) as target:
        removed, members = target.store.remove_group(group_id)
        if members:
            shown = ", ".join(members[:5]) + (", …" if len(members) > 5 else "")
            raise _fail(f"group {group_id!r} still has {len(members)} member(s) ({shown}); "
                        "move them to another group first", EX_DATAERR)
        if not removed:
            raise _fail(f"no group {group_id!r} in {target.store.path}", EX_NOTFOUND)
        _audit(target, "residents.group_remove", None, {"group": group_id})
    _done(f"removed group {group_id}", {"removed_group": group_id}, as_json)
