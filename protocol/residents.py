"""Resident files: the one spreadsheet dialect read by the gate's ``menjin residents import`` and
the station's ``sync``.

**CSV** (UTF-8, a BOM is fine; header row required; ``id`` and ``name`` required; list cells
separated by ``;``)::

    id,name,kind,enabled,valid_from,valid_until,groups,cards,duress_cards,pin,duress_pin,
    face_consent_date,face_consent_source,under_14,guardian_consent_date,guardian_consent_source

**YAML** (or JSON): ``persons:`` (a list of the same fields; lists as lists;
``face_consent``/``guardian_consent`` may also be ``{date, source}`` mappings), and optionally
``groups:`` (``{id, name, doors, schedule}``), ``holidays:`` (dates, or ``{date, name}``) and
``revoked:`` (card numbers).  A CSV carries persons only; groups, holidays and revoked cards come
in a YAML file beside it.  Card numbers and PINs must be quoted in YAML, or leading zeros are lost.

PINs are written as people type them (``pin``, ``duress_pin``: 4 to 8 digits) and hashed (salted
scrypt, :mod:`protocol.pins`) by whoever reads the file; what a gate stores and what the network
carries is only ``pin_hash``.  Flags (``enabled``, ``under_14``) are yes/no, true/false, y/n or
1/0.  Every check here is pure; callers read the file and hash the PINs (:func:`with_pins`) after
every row passed, since hashing is slow on purpose.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from protocol.pins import PIN_PATTERN
from protocol.sync import GroupRecord, Holiday, PersonRecord, describe
from yamlconfig.parse import parse_yaml
from yamlconfig.problem import ProblemError

LIST_SEPARATOR = ";"
LIST_FIELDS = ("groups", "cards", "duress_cards")
CSV_COLUMNS = (
    "id", "name", "kind", "enabled", "valid_from", "valid_until", "groups", "cards",
    "duress_cards", "pin", "duress_pin", "face_consent_date", "face_consent_source", "under_14",
    "guardian_consent_date", "guardian_consent_source",
)
FILE_FIELDS = frozenset(CSV_COLUMNS) | {"face_consent", "guardian_consent"}
SECTIONS = ("persons", "groups", "holidays", "revoked")
TRUE_WORDS = frozenset({"yes", "y", "true", "1"})
FALSE_WORDS = frozenset({"no", "n", "false", "0", ""})
PIN_FIELDS = {"pin": "pin_hash", "duress_pin": "duress_pin_hash"}
#: Columns of the station's former dialect, with the hint that replaces them.
FORMER_COLUMNS = {
    "pin_hash": "write plain PINs in 'pin'; they are hashed on the way in",
    "duress_pin_hash": "write plain PINs in 'duress_pin'; they are hashed on the way in",
}
_HOLIDAYS: TypeAdapter[list[Holiday]] = TypeAdapter(list[Holiday])
_CARDS: TypeAdapter[list[str]] = TypeAdapter(list[str])


class ResidentFileError(ValueError):
    """The file as a whole cannot be read (syntax, header, sections); ``FILE:LINE: message``."""


class RowError(ValueError):
    """One row or item is bad; the message starts with the field at fault."""


@dataclass(frozen=True)
class Row:
    """One person of a file: its line, its fields, and the line of each field where known."""

    line: int
    fields: dict[str, Any]
    field_lines: Mapping[str, int] = field(default_factory=dict)

    def line_of(self, message: str) -> int:
        """The line of the field a :class:`RowError` message starts with."""
        name = message.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]
        return self.field_lines.get(name, self.line)


@dataclass
class ResidentFile:
    """What a file holds, unvalidated except for its syntax and sections."""

    rows: list[Row]
    groups: list[tuple[int, Any]] = field(default_factory=list)
    holidays: Any = None
    revoked: Any = None
    section_lines: Mapping[str, int] = field(default_factory=dict)


def parse_resident_file(text: str, name: str) -> ResidentFile:
    """Parse ``text``, the content of the file called ``name`` (``.csv``, ``.yaml``/``.yml`` or
    ``.json`` decides the format); raises :class:`ResidentFileError`."""
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    text = text.removeprefix("\ufeff")
    if suffix in ("yaml", "yml", "json"):
        return _read_structured(text, name)
    if suffix == "csv":
        return _read_csv(text, name)
    raise ResidentFileError(f"{name}: use a .csv, .yaml or .json file")


def _read_csv(text: str, file: str) -> ResidentFile:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        raise ResidentFileError(f"{file}:1: unknown column {unknown[0]!r}"
                                f"{_hint(unknown[0], CSV_COLUMNS)}")
    missing = [c for c in ("id", "name") if c not in header]
    if missing:
        raise ResidentFileError(f"{file}:1: the header needs a {missing[0]!r} column")
    rows = []
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ResidentFileError(f"{file}:{line}: {exc}") from None
        if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
            continue
        if None in record:
            rows.append(Row(line, {"__error__": "more values than columns"}))
            continue
        rows.append(Row(line, _csv_fields(record)))
    return ResidentFile(rows)


def _hint(name: str, known: Iterable[str]) -> str:
    if name in FORMER_COLUMNS:
        return f"; {FORMER_COLUMNS[name]}"
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _csv_fields(record: Mapping[str, str | None]) -> dict[str, Any]:
    """CSV cells in the file vocabulary: strings, lists split, empty cells left out."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        text = (value or "").strip()
        if key in LIST_FIELDS and text:
            out[key] = [v.strip() for v in text.split(LIST_SEPARATOR) if v.strip()]
        elif text:
            out[key] = text
    return out


def _load_structured(text: str, file: str) -> Any:
    if file.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResidentFileError(f"{file}:{exc.lineno}:{exc.colno}: JSON syntax error: "
                                    f"{exc.msg}") from None
    try:  # the gate config's YAML reader: bounded, and its errors in plain words
        return parse_yaml(text, file)
    except ProblemError as exc:
        raise ResidentFileError(str(exc)) from None


def _read_structured(text: str, file: str) -> ResidentFile:
    root = _load_structured(text, file)
    if root is None:
        root = {}
    if isinstance(root, list):
        root = {"persons": root}
    if not isinstance(root, Mapping):
        raise ResidentFileError(f"{file}:1: expected 'persons:' with a list of persons")
    extra = sorted(str(k) for k in set(root) - set(SECTIONS))
    if extra:
        raise ResidentFileError(f"{file}:{_key_line(root, extra[0])}: unknown section "
                                f"{extra[0]!r} ({', '.join(SECTIONS)})")
    persons = root.get("persons") or []
    if not isinstance(persons, list):
        raise ResidentFileError(f"{file}:{_key_line(root, 'persons')}: 'persons' must be a list")
    rows = []
    for i, item in enumerate(persons):
        line = _item_line(persons, i)
        if not isinstance(item, Mapping):
            rows.append(Row(line, {"__error__": "expected a mapping of person fields"}))
            continue
        fields = {str(k): _plain(v) for k, v in item.items()}
        rows.append(Row(line, fields, {str(k): _key_line(item, k) for k in item}))
    groups = root.get("groups") or []
    if not isinstance(groups, list):
        raise ResidentFileError(f"{file}:{_key_line(root, 'groups')}: 'groups' must be a list")
    return ResidentFile(
        rows, [(_item_line(groups, i), _plain(g)) for i, g in enumerate(groups)],
        _plain(root["holidays"]) if "holidays" in root else None,
        _plain(root["revoked"]) if "revoked" in root else None,
        {str(k): _key_line(root, k) for k in root})


def _plain(value: Any) -> Any:
    """ruamel nodes as plain values; YAML dates back to ISO text (as a CSV cell would be)."""
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


# --------------------------------------------------------------------------- rows → records
def _flag(fields: Mapping[str, Any], key: str) -> bool | None:
    value = fields.get(key)
    if value is None or isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise RowError(f"{key}: {value!r} is not yes or no")


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
        raise RowError(f"{key}: write the PIN in quotes (YAML reads {value!r} as a number)")
    if not PIN_PATTERN.match(value):
        raise RowError(f"{key}: a PIN is 4 to 8 digits")
    return value


def _list(fields: Mapping[str, Any], key: str) -> list[Any]:
    value = fields.get(key) or []
    if isinstance(value, str):
        return [v.strip() for v in value.split(LIST_SEPARATOR) if v.strip()]
    if not isinstance(value, list):
        raise RowError(f"{key}: expected a list")
    if key != "groups":
        for item in value:
            if not isinstance(item, str):
                raise RowError(f"{key}: write card numbers in quotes (YAML reads {item!r} as a "
                               "number and drops leading zeros)")
    return value


@dataclass(frozen=True)
class FileRecord:
    """A validated person of a file: the record (``pin_hash`` still unset) and its plain PINs."""

    line: int
    record: PersonRecord
    pins: Mapping[str, str]


def person_record(fields: Mapping[str, Any]) -> tuple[PersonRecord, dict[str, str]]:
    """The :class:`~protocol.sync.PersonRecord` of one row and its plain PINs (by field name of
    the record: ``pin_hash``/``duress_pin_hash``); raises :class:`RowError`."""
    if "__error__" in fields:
        raise RowError(str(fields["__error__"]))
    unknown = sorted(set(fields) - FILE_FIELDS)
    if unknown:
        raise RowError(f"{unknown[0]}: unknown field{_hint(unknown[0], sorted(FILE_FIELDS))}")
    obj: dict[str, Any] = {k: v for k, v in fields.items()
                           if k in ("id", "name", "kind", "valid_from", "valid_until")}
    for key in ("id", "name"):
        if key in obj and not isinstance(obj[key], str):
            obj[key] = str(obj[key])
    for key in LIST_FIELDS:
        if key in fields:
            obj[key] = _list(fields, key)
    for key in ("face_consent", "guardian_consent"):
        consent = _consent(fields, key)
        if consent is not None:
            obj[key] = consent
    for key in ("enabled", "under_14"):
        flag = _flag(fields, key)
        if flag is not None:
            obj[key] = flag
    try:
        record = PersonRecord.model_validate(obj)
    except ValidationError as exc:
        raise RowError(describe(exc).split("\n", 1)[0]) from None
    pins = {PIN_FIELDS[key]: pin for key in PIN_FIELDS if (pin := _pin(fields, key))}
    return record, pins


@dataclass
class Checked:
    """The valid part of a file and one ``(line, message)`` per problem, in line order."""

    persons: list[FileRecord]
    groups: list[GroupRecord]
    holidays: list[Holiday] | None
    revoked: list[str]
    problems: list[tuple[int, str]]


def check(
    data: ResidentFile,
    *,
    known_groups: Iterable[str] = (),
    card_owner: Callable[[str], str | None] = lambda card: None,
    mask: Callable[[str], str] = lambda card: f"****{card[-4:]}",
) -> Checked:
    """Validate every row and item and the rules between rows: unique ids, each card given to one
    person, groups defined (in the file or in ``known_groups``), a card not held by someone
    outside the file (``card_owner``: the holder of a card already stored, if any)."""
    problems: list[tuple[int, str]] = []
    groups: list[GroupRecord] = []
    for line, obj in data.groups:
        try:
            groups.append(GroupRecord.model_validate(obj))
        except ValidationError as exc:
            problems.append((line, f"group {describe(exc).splitlines()[0]}"))
    holidays = None
    if data.holidays is not None:
        try:
            holidays = _HOLIDAYS.validate_python(data.holidays)
        except ValidationError as exc:
            problems.append((data.section_lines.get("holidays", 1),
                             f"holidays{describe(exc).splitlines()[0]}"))
    revoked: list[str] = []
    if data.revoked is not None:
        try:
            revoked = _CARDS.validate_python(data.revoked, strict=True)
        except ValidationError:
            problems.append((data.section_lines.get("revoked", 1),
                             "revoked: expected a list of card numbers in quotes"))
    group_ids = set(known_groups) | {g.id for g in groups}
    parsed: list[tuple[Row, PersonRecord, dict[str, str]]] = []
    for row in data.rows:
        try:
            record, pins = person_record(row.fields)
        except RowError as exc:
            problems.append((row.line_of(str(exc)), str(exc)))
            continue
        parsed.append((row, record, pins))
    in_file = {record.id for _, record, _ in parsed}  # cards may move between them
    ids: dict[str, int] = {}
    cards: dict[str, tuple[int, str]] = {}
    persons: list[FileRecord] = []
    for row, record, pins in parsed:
        problem = _cross_check(record, ids, cards, group_ids, in_file, card_owner, mask)
        if problem:
            problems.append((row.line, problem))
            continue
        ids[record.id] = row.line
        for card in (*record.cards, *record.duress_cards):
            cards[card] = (row.line, record.id)
        persons.append(FileRecord(row.line, record, pins))
    problems.sort(key=lambda p: p[0])
    return Checked(persons, groups, holidays, revoked, problems)


def _cross_check(record: PersonRecord, ids: Mapping[str, int],
                 cards: Mapping[str, tuple[int, str]], group_ids: set[str], in_file: set[str],
                 card_owner: Callable[[str], str | None], mask: Callable[[str], str]) -> str | None:
    if record.id in ids:
        return f"id {record.id!r} is already used on line {ids[record.id]}"
    for group in record.groups:
        if group not in group_ids:
            close = difflib.get_close_matches(group, sorted(group_ids), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (define it under 'groups:')"
            return f"groups: unknown group {group!r}{hint}"
    for card in (*record.cards, *record.duress_cards):
        if card in cards:
            first_line, holder = cards[card]
            return f"card {mask(card)} is already given to {holder} on line {first_line}"
        owner = card_owner(card)
        if owner is not None and owner not in in_file:
            return f"card {mask(card)} already belongs to {owner} in the store"
    return None


def with_pins(person: FileRecord, hash_pin: Callable[[str], str]) -> PersonRecord:
    """The record with its plain PINs replaced by their hashes (slow: scrypt per PIN)."""
    if not person.pins:
        return person.record
    return person.record.model_copy(
        update={key: hash_pin(pin) for key, pin in person.pins.items()})
