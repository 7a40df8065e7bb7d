"""`menjin residents`: the installer's tools for the resident store.

``import`` reads a CSV or YAML file and imports it all or nothing: every bad row is reported with
its line number first, and only ``--skip-bad`` imports the good rows of a file that has bad ones.
PINs in an import file are hashed (salted scrypt) on the way in; the store never holds a PIN.
Local edits keep the store's sync version, so the next snapshot from the station replaces them.

CSV columns (header row required; ``id`` and ``name`` required, lists separated by ``;``)::

    id,name,kind,enabled,valid_from,valid_until,groups,cards,duress_cards,pin,duress_pin,
    face_consent_date,face_consent_source,under_14,guardian_consent_date,guardian_consent_source

YAML: ``persons:`` (a list of the same fields; ``face_consent``/``guardian_consent`` may also be
``{date, source}`` mappings), optional ``groups:`` (``{id, name, doors, schedule}``) and
``holidays:`` (dates).  Card numbers and PINs must be quoted in YAML, or leading zeros are lost.
"""

from __future__ import annotations

import asyncio
import csv
import difflib
import io
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from daemon.access import Group, Person, face_only_warnings, hash_pin
from daemon.audit import local_actor
from daemon.cli import auditing
from daemon.config import GateConfig
from daemon.configfile import EX_CONFIG, ConfigError, load_config, parse_yaml
from daemon.gatelock import GateBusyError, offline
from daemon.keyring import Keyring
from daemon.keys import KeyProviderError, load_local, provider
from daemon.privacy import forget_offline
from daemon.schedule import DEFAULT_TIMEZONE
from daemon.store import (
    PersonError,
    Store,
    StoreError,
    parse_group,
    parse_holidays,
    parse_person,
    pseudonym,
)
from drivers.card import mask

EX_DATAERR = 65  # sysexits.h: the input file was bad; nothing was imported
EX_NOTFOUND = 1
PIN_PATTERN = re.compile(r"^\d{4,8}$")
LIST_SEPARATOR = re.compile(r"[;\s]+")
CSV_COLUMNS = (
    "id", "name", "kind", "enabled", "valid_from", "valid_until", "groups", "cards",
    "duress_cards", "pin", "duress_pin", "face_consent_date", "face_consent_source", "under_14",
    "guardian_consent_date", "guardian_consent_source",
)
YAML_FIELDS = frozenset(CSV_COLUMNS) | {"face_consent", "guardian_consent"}
TRUE_WORDS = frozenset({"yes", "y", "true", "1"})
FALSE_WORDS = frozenset({"no", "n", "false", "0", ""})
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


# --------------------------------------------------------------------------- reading files
@dataclass(frozen=True)
class Row:
    """One person of an import file: its line, its fields, and the line of each field if known."""

    line: int
    fields: dict[str, Any]
    field_lines: Mapping[str, int]


@dataclass
class ImportFile:
    rows: list[Row]
    groups: list[tuple[int, Any]]
    holidays: Any


class ImportFileError(Exception):
    """The file as a whole cannot be read (syntax, header); nothing is imported."""


def read_import_file(path: Path) -> ImportFile:
    """Rows of a CSV or YAML import file (chosen by the extension)."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".yaml", ".yml"):
        return _read_yaml(text, str(path))
    if path.suffix.lower() == ".csv":
        return _read_csv(text, str(path))
    raise ImportFileError(f"{path}: use a .csv or .yaml file")


def _read_csv(text: str, file: str) -> ImportFile:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], CSV_COLUMNS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ImportFileError(f"{file}:1: unknown column {unknown[0]!r}{hint}")
    missing = [c for c in ("id", "name") if c not in header]
    if missing:
        raise ImportFileError(f"{file}:1: the header needs a {missing[0]!r} column")
    rows = []
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ImportFileError(f"{file}:{line}: {exc}") from exc
        if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
            continue
        if None in record:
            raise ImportFileError(f"{file}:{line}: more values than columns")
        rows.append(Row(line, _csv_person(record), {}))
    return ImportFile(rows, [], None)


def _csv_person(record: Mapping[str, str | None]) -> dict[str, Any]:
    """CSV cells in the import vocabulary (strings; lists split; consents grouped)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        text = (value or "").strip()
        if key in ("groups", "cards", "duress_cards"):
            out[key] = [v for v in LIST_SEPARATOR.split(text) if v]
        elif text:
            out[key] = text
    return out


def _read_yaml(text: str, file: str) -> ImportFile:
    try:
        root = parse_yaml(text, file)
    except ConfigError as exc:
        raise ImportFileError(str(exc)) from exc
    if isinstance(root, list):
        root = {"persons": root}
    if not isinstance(root, Mapping):
        raise ImportFileError(f"{file}:1: expected 'persons:' with a list of persons")
    extra = sorted(set(root) - {"persons", "groups", "holidays"})
    if extra:
        raise ImportFileError(f"{file}:{_key_line(root, extra[0])}: unknown section {extra[0]!r} "
                              "(persons, groups, holidays)")
    persons = root.get("persons") or []
    if not isinstance(persons, list):
        raise ImportFileError(f"{file}:{_key_line(root, 'persons')}: 'persons' must be a list")
    rows = []
    for i, item in enumerate(persons):
        line = _item_line(persons, i)
        if not isinstance(item, Mapping):
            rows.append(Row(line, {"__error__": "expected a mapping of person fields"}, {}))
            continue
        fields = {str(k): _plain(v) for k, v in item.items()}
        rows.append(Row(line, fields, {str(k): _key_line(item, k) for k in item}))
    groups = root.get("groups") or []
    group_rows = [(_item_line(groups, i), _plain(g)) for i, g in enumerate(groups)]
    return ImportFile(rows, group_rows, _plain(root["holidays"]) if "holidays" in root else None)


def _plain(value: Any) -> Any:
    """ruamel nodes as plain values; YAML dates back to the ISO text the parser expects."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _item_line(seq: Any, index: int) -> int:
    try:
        return int(seq.lc.item(index)[0]) + 1
    except (AttributeError, KeyError, TypeError):
        return 1


def _key_line(mapping: Any, key: Any) -> int:
    try:
        return int(mapping.lc.key(key)[0]) + 1
    except (AttributeError, KeyError, TypeError):
        return 1


# --------------------------------------------------------------------------- validation
def _flag(fields: Mapping[str, Any], key: str) -> bool | None:
    value = fields.get(key)
    if value is None or isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise PersonError(f"{key}: {value!r} is not yes or no")


def _consent(fields: Mapping[str, Any], name: str) -> Any:
    if name in fields:
        return fields[name]
    day, source = fields.get(f"{name}_date"), fields.get(f"{name}_source")
    if day is None and source is None:
        return None
    return {"date": day, "source": source or ""} if day is not None else {"source": source}


def _pin(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PersonError(f"{key}: write the PIN in quotes (YAML reads {value!r} as a number)")
    if not PIN_PATTERN.match(value):
        raise PersonError(f"{key}: a PIN is 4 to 8 digits")
    return hash_pin(value)


def _card_list(fields: Mapping[str, Any], key: str) -> list[str]:
    value = fields.get(key) or []
    if isinstance(value, str):
        return [v for v in LIST_SEPARATOR.split(value) if v]
    if not isinstance(value, list):
        raise PersonError(f"{key}: expected a list")
    for item in value:
        if not isinstance(item, str):
            raise PersonError(f"{key}: write card numbers in quotes (YAML reads {item!r} as a "
                              "number and drops leading zeros)")
    return value


def person_from_fields(fields: Mapping[str, Any], zone: ZoneInfo) -> Person:
    """A person from import-file vocabulary (plain PINs, flat consent columns, yes/no flags)."""
    if "__error__" in fields:
        raise PersonError(str(fields["__error__"]))
    unknown = sorted(set(fields) - YAML_FIELDS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(YAML_FIELDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PersonError(f"{unknown[0]}: unknown field{hint}")
    groups = fields.get("groups") or []
    obj: dict[str, Any] = {
        "id": str(fields.get("id", "")), "name": str(fields.get("name", "")),
        "kind": fields.get("kind", "resident"),
        "valid_from": fields.get("valid_from"), "valid_until": fields.get("valid_until"),
        "groups": [v for v in LIST_SEPARATOR.split(groups) if v] if isinstance(groups, str)
        else groups,
        "cards": _card_list(fields, "cards"), "duress_cards": _card_list(fields, "duress_cards"),
        "pin_hash": None, "duress_pin_hash": None,
        "face_consent": _consent(fields, "face_consent"),
        "guardian_consent": _consent(fields, "guardian_consent"),
    }
    for key in ("enabled", "under_14"):
        flag = _flag(fields, key)
        if flag is not None:
            obj[key] = flag
    person = parse_person(obj, zone=zone)  # every check before the slow PIN hashing
    return replace(person, pin_hash=_pin(fields, "pin"),
                   duress_pin_hash=_pin(fields, "duress_pin"))


@dataclass
class Checked:
    persons: list[Person]
    groups: list[Group]
    holidays: dict[date, str] | None
    errors: list[str]


def check_import(data: ImportFile, store: Store, file: str) -> Checked:
    """Validate every row against the file and the store; errors as ``FILE:LINE: message``."""
    problems: list[tuple[int, str]] = []
    groups: list[Group] = []
    for line, obj in data.groups:
        try:
            groups.append(parse_group(obj))
        except PersonError as exc:
            problems.append((line, f"group {exc}"))
    holidays = None
    if data.holidays is not None:
        try:
            holidays = parse_holidays(data.holidays)
        except PersonError as exc:
            problems.append((1, str(exc)))
    known_groups = {g.id for g in store.groups()} | {g.id for g in groups}
    parsed: list[tuple[Row, Person]] = []
    for row in data.rows:
        try:
            parsed.append((row, person_from_fields(row.fields, store.zone)))
        except PersonError as exc:
            field = str(exc).split(":", 1)[0].split(".", 1)[0]
            problems.append((row.field_lines.get(field, row.line), str(exc)))
    in_file = {person.id for _, person in parsed}  # cards may move between them
    ids: dict[str, int] = {}
    cards: dict[str, tuple[int, str]] = {}
    persons: list[Person] = []
    for row, person in parsed:
        problem = _cross_check(person, ids, cards, known_groups, in_file, store)
        if problem:
            problems.append((row.line, problem))
            continue
        ids[person.id] = row.line
        for card in (*person.cards, *person.duress_cards):
            cards[card] = (row.line, person.id)
        persons.append(person)
    problems.sort(key=lambda p: p[0])
    return Checked(persons, groups, holidays, [f"{file}:{line}: {msg}" for line, msg in problems])


def _cross_check(person: Person, ids: Mapping[str, int], cards: Mapping[str, tuple[int, str]],
                 known_groups: set[str], in_file: set[str], store: Store) -> str | None:
    if person.id in ids:
        return f"id {person.id!r} is already used on line {ids[person.id]}"
    for group in person.groups:
        if group not in known_groups:
            close = difflib.get_close_matches(group, sorted(known_groups), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (define it under 'groups:')"
            return f"groups: unknown group {group!r}{hint}"
    for card in (*person.cards, *person.duress_cards):
        if card in cards:
            first_line, holder = cards[card]
            return f"card {mask(card)} is already given to {holder} on line {first_line}"
        owner = store.card_owner(card)
        if owner is not None and owner not in in_file:
            return f"card {mask(card)} already belongs to {owner} in the store"
    return None


# --------------------------------------------------------------------------- commands
@residents_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV or YAML file of persons.", exists=True,
                                         dir_okay=False)],
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Import the good rows even when some are bad.")] = False,
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
) -> None:
    """Import persons from CSV or YAML: all rows valid, or nothing (unless --skip-bad).

    Example: menjin residents import residents.csv -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key, create=True) as target:
        try:
            data = read_import_file(file)
        except (ImportFileError, UnicodeDecodeError) as exc:
            raise _fail(str(exc), EX_DATAERR) from exc
        checked = check_import(data, target.store, str(file))
        for error in checked.errors:
            typer.echo(error, err=True)
        if checked.errors and not skip_bad:
            raise _fail(f"nothing imported: {len(checked.errors)} bad row(s); fix them or "
                        "use --skip-bad", EX_DATAERR)
        try:
            count = target.store.upsert(checked.persons, groups=checked.groups,
                                        holidays=checked.holidays)
        except PersonError as exc:
            raise _fail(f"nothing imported: {exc}", EX_DATAERR) from exc
        _audit(target, "residents.import", None, {
            "file": file.name, "imported": count, "skipped": len(checked.errors),
            "groups": len(checked.groups)})
        skipped = f", {len(checked.errors)} bad row(s) skipped" if checked.errors else ""
        typer.echo(f"imported {count} person(s), {len(checked.groups)} group(s){skipped}")


@residents_app.command("list")
def list_(
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List persons (card numbers masked) and warn about face entry without a card or PIN.

    Example: menjin residents list -c /etc/menjin/gate.yaml
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
) -> None:
    """Add one person.

    Example: menjin residents add p12 --name Wang --card 0004567890 --group residents -c gate.yaml
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
        checked = check_import(ImportFile([Row(0, fields, {})], [], None), target.store, "add")
        if checked.errors:
            raise _fail(checked.errors[0].removeprefix("add:0: "), EX_DATAERR)
        target.store.upsert(checked.persons)
        _audit(target, "residents.add", person_id, {"cards": len(card or [])})
        for warning in face_only_warnings(checked.persons):
            typer.echo(f"warning: {warning}", err=True)
        typer.echo(f"added {person_id}")


def _set_enabled(person_id: str, enabled: bool, target: Target) -> None:
    if not target.store.set_enabled(person_id, enabled):
        raise _fail(f"no person {person_id!r} in {target.store.path}", EX_NOTFOUND)
    _audit(target, "residents.enable" if enabled else "residents.disable", person_id, {})
    typer.echo(f"{'enabled' if enabled else 'disabled'} {person_id}")


@residents_app.command("disable")
def disable(
    person_id: Annotated[str, typer.Argument(help="Person id.")],
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
) -> None:
    """Disable a person at once (their cards and face stop opening; the record is kept).

    Example: menjin residents disable p12 -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key) as target:
        _set_enabled(person_id, False, target)


@residents_app.command("enable")
def enable(
    person_id: Annotated[str, typer.Argument(help="Person id.")],
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
) -> None:
    """Enable a disabled person again.

    Example: menjin residents enable p12 -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key) as target:
        _set_enabled(person_id, True, target)


@residents_app.command("remove")
def remove(
    person_id: Annotated[str, typer.Argument(help="Person id.")],
    config: ConfigOpt = None, db: DbOpt = None, card_key: CardKeyOpt = None,
) -> None:
    """Remove a person and their cards (use `forget` for an erasure request).

    Example: menjin residents remove p12 -c /etc/menjin/gate.yaml
    """
    with open_target(config, db, card_key) as target:
        person = target.store.remove(person_id)
        if person is None:
            raise _fail(f"no person {person_id!r} in {target.store.path}", EX_NOTFOUND)
        _audit(target, "residents.remove", person_id, {"cards": len(person.cards)})
        typer.echo(f"removed {person_id} ({len(person.cards) + len(person.duress_cards)} card(s))")


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
    Example: menjin residents forget p12 -c /etc/menjin/gate.yaml
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
    except GateBusyError as exc:
        raise _fail(f"erasure not done: {exc} (the control socket {cfg.control.socket} did not "
                    "answer: run this as the menjin user or a member of control.group)",
                    EX_CONFIG) from exc
    except (KeyProviderError, OSError, StoreError) as exc:
        raise _fail(f"erasure failed: {exc}", EX_CONFIG) from exc

