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
1/0.  Card numbers come out canonical (:func:`protocol.cards.canonical_card`), so one card in two
forms is one card everywhere after the reader.

Every problem is a ``(line, "field: message")``: all the problems of a row at once, not the
first.  A CSV row whose values cannot be matched to the header (too few, too many, a broken
quote) is one problem of its line and is not read further: its values may sit in the wrong
columns.  Every check here is pure; callers read the file and hash the PINs (:func:`with_pins`)
after every row passed, since hashing is slow on purpose.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from pydantic import TypeAdapter, ValidationError

from protocol.cards import CardNumberError, canonical_card
from protocol.pins import PIN_PATTERN
from protocol.sync import (
    GROUP_ID_PATTERN,
    GroupRecord,
    Holiday,
    PersonRecord,
    describe,
    person_rules,
    validity_problem,
)
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


@dataclass(frozen=True)
class Row:
    """One person of a file: its line, its fields, and the line of each field where known.

    ``problems`` are what the reader found wrong with the row as a whole (a broken quote, too
    few or too many values); its fields are then unknown and not checked.
    """

    line: int
    fields: dict[str, Any]
    field_lines: Mapping[str, int] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def line_of(self, message: str) -> int:
        """The line of the field a ``field: message`` problem starts with."""
        return self.field_lines.get(_field_of(message), self.line)


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
    # strict: a stray quote is an error, never a silently different value
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [column.strip() for column in next(reader, [])]
    except csv.Error as exc:
        raise ResidentFileError(f"{file}:1: {_csv_problem(exc, 1, reader.line_num)}") from None
    problems = [f"{file}:1: unknown column {c!r}{_hint(c, CSV_COLUMNS)}"
                for c in header if c not in CSV_COLUMNS]
    problems += [f"{file}:1: column {c!r} appears twice" for c in sorted(set(header))
                 if header.count(c) > 1]
    problems += [f"{file}:1: the header needs a {c!r} column" for c in ("id", "name")
                 if c not in header]
    if problems:
        raise ResidentFileError("\n".join(problems))
    rows = []
    while True:
        line = reader.line_num + 1  # where the next record starts (a quoted value may span lines)
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rows.append(Row(line, {}, problems=(_csv_problem(exc, line, reader.line_num),)))
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            rows.append(Row(line, {}, problems=(_width_problem(len(values), header),)))
            continue
        rows.append(Row(line, _csv_fields(dict(zip(header, values, strict=True)))))
    return ResidentFile(rows)


def _csv_problem(error: csv.Error, line: int, last_line: int) -> str:
    """A CSV syntax error of the record starting on ``line`` in an installer's words."""
    if str(error) == "unexpected end of data":
        to = f" (lines {line}-{last_line} were read into it)" if last_line > line else ""
        return (f"unterminated quote: a value opened with '\"' on this line is never closed"
                f"{to}; add the closing '\"'")
    if "expected after" in str(error):
        return ("text after a closing '\"': a quoted value must be the whole cell (write a '\"' "
                "inside a quoted value as '\"\"')")
    return f"not readable as CSV: {error}"


def _width_problem(count: int, header: Sequence[str]) -> str:
    """Too few or too many values: the row's fields cannot be matched to their columns."""
    if count < len(header):
        return (f"missing columns {', '.join(header[count:])}: the row has {count} values for "
                f"{len(header)} columns (leave a cell empty, but keep its comma)")
    return (f"too many values: {count} for {len(header)} columns (quote a value that holds a "
            'comma: "Wang, Fang")')


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
            rows.append(Row(line, {}, problems=("expected a mapping of person fields",)))
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
def _field_of(message: str) -> str:
    """The field a ``field: message`` problem starts with (``cards[0]``, ``face_consent.date``
    name their field too)."""
    return message.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]


def _column_order(message: str) -> int:
    """Problems of a row in the order of the columns; unknown fields first (a misspelt column
    explains what seems missing)."""
    name = _field_of(message)
    name = {"face_consent": "face_consent_date",
            "guardian_consent": "guardian_consent_date"}.get(name, name)
    return CSV_COLUMNS.index(name) if name in CSV_COLUMNS else -1


def _flag(fields: Mapping[str, Any], key: str, problems: list[str]) -> bool | None:
    value = fields.get(key)
    if value is None or isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    problems.append(f"{key}: {value!r} is not yes or no")
    return None


def _consent(fields: Mapping[str, Any], name: str) -> Any:
    if name in fields:
        return fields[name]
    day, source = fields.get(f"{name}_date"), fields.get(f"{name}_source")
    if day is None and source is None:
        return None
    return {"date": day, "source": source or ""} if day is not None else {"source": source}


def _pin(fields: Mapping[str, Any], key: str, problems: list[str]) -> str | None:
    """The plain PIN, never quoted in a message (it is a secret even when malformed)."""
    value = fields.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{key}: write the PIN in quotes (YAML reads it as a number)")
    elif not value.isascii():
        problems.append(f"{key}: a PIN is typed with the keypad's digits 0-9 (this one has other "
                        "characters)")
    elif not PIN_PATTERN.fullmatch(value):
        problems.append(f"{key}: a PIN is 4 to 8 digits")
    else:
        return value
    return None


def _list(fields: Mapping[str, Any], key: str, problems: list[str]) -> list[Any] | None:
    """A list cell or YAML list; card numbers in their canonical form, each bad one a problem."""
    value = fields[key]
    if isinstance(value, str):
        value = [v.strip() for v in value.split(LIST_SEPARATOR) if v.strip()]
    if not isinstance(value, list):
        problems.append(f"{key}: expected a list")
        return None
    if key == "groups":
        return value  # the record's model names a bad group id
    cards = []
    for item in value:
        if isinstance(item, int | float) and not isinstance(item, bool):
            problems.append(f"{key}: write card numbers in quotes (YAML reads {item!r} as a "
                            "number and drops leading zeros)")
        elif not isinstance(item, str):
            problems.append(f"{key}: {item!r} is not a card number")
        else:
            try:  # 0012345678 and 12345678 are one card: compared below as one
                cards.append(canonical_card(item))
            except CardNumberError as exc:
                problems.append(f"{key}: {exc}")
    return cards


@dataclass(frozen=True)
class FileRecord:
    """A validated person of a file: the record (``pin_hash`` still unset) and its plain PINs."""

    line: int
    record: PersonRecord
    pins: Mapping[str, str]


@dataclass
class _Person:
    """One row in the record's vocabulary: ``values`` passed the file's own checks, ``invalid``
    names the fields the record's model refused; ``record`` is set when nothing is wrong."""

    values: dict[str, Any]
    invalid: set[str]
    pins: dict[str, str]
    problems: list[str]
    record: PersonRecord | None

    @property
    def id(self) -> str | None:
        person_id = self.values.get("id")
        return person_id if "id" not in self.invalid and isinstance(person_id, str) else None

    def group_ids(self) -> list[str]:
        return [g for g in self.values.get("groups", [])
                if isinstance(g, str) and GROUP_ID_PATTERN.match(g)]

    def cards(self) -> Iterator[tuple[str, str]]:
        """``(field, canonical card)`` of every valid card."""
        for key in ("cards", "duress_cards"):
            for card in self.values.get(key, []):
                yield key, card


def _read_person(fields: Mapping[str, Any], zone: tzinfo | None) -> _Person:
    """Every problem of one row (not just the first): each field on its own, then the rules
    between fields whose own values are valid."""
    problems = [f"{name}: unknown field{_hint(name, sorted(FILE_FIELDS))}"
                for name in sorted(set(fields) - FILE_FIELDS)]
    fields = {k: v for k, v in fields.items() if v is not None}  # YAML's empty value: not given
    values: dict[str, Any] = {}
    for key in ("id", "name"):
        if key in fields:
            values[key] = fields[key] if isinstance(fields[key], str) else str(fields[key])
    for key in ("kind", "valid_from", "valid_until"):
        if key in fields:
            values[key] = fields[key]
    for key in LIST_FIELDS:
        if key in fields and (items := _list(fields, key, problems)) is not None:
            values[key] = items
    for key in ("face_consent", "guardian_consent"):
        if (consent := _consent(fields, key)) is not None:
            values[key] = consent
    for key in ("enabled", "under_14"):
        if (flag := _flag(fields, key, problems)) is not None:
            values[key] = flag
    pins = {PIN_FIELDS[key]: pin for key in PIN_FIELDS if (pin := _pin(fields, key, problems))}
    invalid: set[str] = set()
    record: PersonRecord | None = None
    try:
        record = PersonRecord.model_validate(values)
    except ValidationError as exc:  # every field's own error; the rules between fields follow
        problems += describe(exc, model_rules=False).splitlines()
        invalid = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
    problems += person_rules(
        values.get("cards", []), values.get("duress_cards", []),
        under_14=values.get("under_14") is True, face_consent="face_consent" in values,
        guardian_consent="guardian_consent" in values)
    if not invalid & {"valid_from", "valid_until"} and (
            problem := validity_problem(values.get("valid_from"), values.get("valid_until"),
                                        zone)):
        problems.append(problem)
    return _Person(values, invalid, pins, problems, None if problems else record)


@dataclass
class Checked:
    """The valid part of a file and one ``(line, message)`` per problem, in line order;
    ``bad`` counts the rows and items left out (a row may have several problems)."""

    persons: list[FileRecord]
    groups: list[GroupRecord]
    holidays: list[Holiday] | None
    revoked: list[str]
    problems: list[tuple[int, str]]
    bad: int = 0
    group_lines: dict[str, int] = field(default_factory=dict)


def check(
    data: ResidentFile,
    *,
    known_groups: Iterable[str] = (),
    card_owner: Callable[[str], str | None] = lambda card: None,
    mask: Callable[[str], str] = lambda card: f"****{card[-4:]}",
    zone: tzinfo | None = None,
    group_hint: Callable[[str], str] = lambda group: "define it under 'groups:'",
    group_problem: Callable[[GroupRecord], str | None] = lambda group: None,
) -> Checked:
    """Validate every row and item and the rules between rows: unique ids, each card given to one
    person, groups defined (in the file or in ``known_groups``), a card not held by someone
    outside the import (``card_owner``: the holder of a canonical card already stored, if any).

    Every problem of a row is reported, each as ``field: message``.  ``zone`` is the gate's:
    validity bounds without an offset are its time (without it, only an order no zone can change
    is checked).  ``group_hint(group)`` tells how to define a group the file names but nobody
    defined; ``group_problem(group)`` is what the caller's own checks find wrong with a group the
    file defines (the gate parses its schedule), or None.  Cards and revoked cards come out
    canonical (:func:`protocol.cards.canonical_card`).

    A group the file defines badly is left out, and so is every person in it, with a problem on
    their line: importing them without the group, or with the definition the store still holds,
    would give them other doors or hours than the file says (see :func:`_groups`).
    """
    problems: list[tuple[int, str]] = []
    groups, group_lines, refused = _groups(data, problems, group_problem)
    holidays = None
    if data.holidays is not None:
        try:
            holidays = _HOLIDAYS.validate_python(data.holidays)
        except ValidationError as exc:
            problems += [(data.section_lines.get("holidays", 1), f"holidays{line}")
                         for line in describe(exc).splitlines()]
    before = len(problems)
    revoked = _revoked(data, problems)
    bad = (len(data.groups) - len(groups) + (data.holidays is not None and holidays is None)
           + len(problems) - before)  # a problem of revoked: one card (or the whole list)
    rows: list[tuple[Row, _Person]] = []
    for row in data.rows:
        if row.problems:
            problems += [(row.line, problem) for problem in row.problems]
        else:
            rows.append((row, _read_person(row.fields, zone)))
    ids: dict[str, int] = {}
    cards: dict[str, tuple[int, str]] = {}
    known = set(known_groups) | set(group_lines) | set(refused)  # refused: said below
    for row, person in rows:
        person.problems += _between_rows(person, row.line, ids, cards, known, mask, group_hint)
        person.problems += [f"groups: group {group!r} is not imported: its definition on line "
                            f"{refused[group]} is bad" for group in person.group_ids()
                            if group in refused]
    good = _settle_store_cards([(row, p) for row, p in rows if not p.problems], ids, card_owner,
                               mask)
    for row, person in rows:
        problems += [(row.line_of(problem), problem)
                     for problem in sorted(person.problems, key=_column_order)]
    problems.sort(key=lambda p: p[0])  # stable: a row's problems stay in column order
    persons = [FileRecord(row.line, person.record, person.pins)
               for row, person in good if person.record is not None]
    bad += len(data.rows) - len(persons)
    return Checked(persons, groups, holidays, revoked, problems, bad, group_lines)


def _groups(data: ResidentFile, problems: list[tuple[int, str]],
            group_problem: Callable[[GroupRecord], str | None],
            ) -> tuple[list[GroupRecord], dict[str, int], dict[str, int]]:
    """The good groups, the line of each, and the line of each refused group whose id is known.

    A group defined twice is refused both times: which of the two its members were meant to
    get cannot be told, and the first one's doors may not be the intended ones.
    """
    groups: dict[str, GroupRecord] = {}
    lines: dict[str, int] = {}
    refused: dict[str, int] = {}
    for line, obj in data.groups:
        given = obj.get("id") if isinstance(obj, Mapping) else None
        try:
            group = GroupRecord.model_validate(obj)
        except ValidationError as exc:
            problems += [(line, f"group {problem}") for problem in describe(exc).splitlines()]
            if isinstance(given, str):
                refused.setdefault(given, line)
            continue
        if group.id in lines or group.id in refused:
            first = lines.get(group.id) or refused[group.id]
            problems.append((line, f"group {group.id!r} is already defined on line {first}"))
            refused.setdefault(group.id, line)
            groups.pop(group.id, None)
            continue
        if (problem := group_problem(group)) is not None:
            problems.append((line, f"group {group.id}: {problem}"))
            refused[group.id] = line
            continue
        lines[group.id] = line
        groups[group.id] = group
    return list(groups.values()), {g: lines[g] for g in groups}, refused


def _revoked(data: ResidentFile, problems: list[tuple[int, str]]) -> list[str]:
    """The revoked cards, canonical; each bad one a problem on the line of ``revoked:``."""
    if data.revoked is None:
        return []
    line = data.section_lines.get("revoked", 1)
    try:
        given = _CARDS.validate_python(data.revoked, strict=True)
    except ValidationError:
        problems.append((line, "revoked: expected a list of card numbers in quotes"))
        return []
    revoked = []
    for index, card in enumerate(given):
        try:
            revoked.append(canonical_card(card))
        except CardNumberError as exc:
            problems.append((line, f"revoked[{index}]: {exc}"))
    return revoked


def _between_rows(person: _Person, line: int, ids: dict[str, int],
                  cards: dict[str, tuple[int, str]], group_ids: set[str],
                  mask: Callable[[str], str], group_hint: Callable[[str], str]) -> list[str]:
    """Problems with earlier rows (``ids``, ``cards``: first line and holder; both grow) and
    with the groups; checked on the valid values of a row even when its other fields are bad."""
    problems = []
    person_id = person.id
    if person_id is not None:
        if person_id in ids:
            problems.append(f"id: {person_id!r} is already used on line {ids[person_id]}")
        else:
            ids[person_id] = line
    for group in person.group_ids():
        if group not in group_ids:
            close = difflib.get_close_matches(group, sorted(group_ids), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" ({group_hint(group)})"
            problems.append(f"groups: unknown group {group!r}{hint}")
    for key, card in dict.fromkeys(person.cards()):  # a card listed twice: one rule's problem
        first_line, holder = cards.setdefault(card, (line, person_id or "the person"))
        if first_line != line:
            problems.append(f"{key}: card {mask(card)} is already given to {holder} on line "
                            f"{first_line}")
    return problems


def _settle_store_cards(good: list[tuple[Row, _Person]], ids: Mapping[str, int],
                        card_owner: Callable[[str], str | None],
                        mask: Callable[[str], str]) -> list[tuple[Row, _Person]]:
    """The rows to import: a card may move to a row from a person the import rewrites, never
    from anyone else.  A row that loses its card this way leaves the import, and so keeps
    its own cards where they are: repeated until no row leaves."""
    while True:
        importing = {person.id for _, person in good}
        kept = []
        for row, person in good:
            for key, card in person.cards():
                owner = card_owner(card)
                if owner is None or owner in importing:
                    continue
                why = (f" (its row on line {ids[owner]} is not imported)" if owner in ids
                       else "")
                person.problems.append(f"{key}: card {mask(card)} already belongs to {owner} in "
                                       f"the store{why}")
            if not person.problems:
                kept.append((row, person))
        if len(kept) == len(good):
            return kept
        good = kept


def with_pins(person: FileRecord, hash_pin: Callable[[str], str]) -> PersonRecord:
    """The record with its plain PINs replaced by their hashes (slow: scrypt per PIN)."""
    if not person.pins:
        return person.record
    return person.record.model_copy(
        update={key: hash_pin(pin) for key, pin in person.pins.items()})
