"""The resident list the station pushes to a gate, and the snapshot or delta that carries it.

The gate's store (``daemon/store.py``) defines the shapes: PERSON ``{"id", "name", "groups",
"cards", ...}``, GROUP ``{"id", "name", "doors", "schedule"}``, holidays and revoked cards.  A
snapshot replaces everything on the gate, groups included, so the station always sends its groups
with it: a list of persons alone would leave every door closed to them.

Operators keep residents in a spreadsheet: a CSV with one person per line (list cells separated by
``;``), plus a small YAML/JSON file for groups, holidays and revoked cards; or one YAML/JSON file
with all four.  Every bad line is reported with its number and nothing is sent unless the whole
list is valid (a half list would revoke everyone missing from it).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from protocol.cards import CardNumberError, canonical_card

LIST_SEPARATOR = ";"
LIST_COLUMNS = frozenset({"groups", "cards", "duress_cards"})
BOOL_COLUMNS = frozenset({"enabled", "under_14"})
TEXT_COLUMNS = frozenset(
    {"id", "name", "kind", "valid_from", "valid_until", "pin_hash", "duress_pin_hash"})
#: Consent columns become the gate's {"date", "source"} objects.
CONSENT_COLUMNS = {
    "face_consent_date": ("face_consent", "date"),
    "face_consent_source": ("face_consent", "source"),
    "guardian_consent_date": ("guardian_consent", "date"),
    "guardian_consent_source": ("guardian_consent", "source"),
}
CSV_COLUMNS = LIST_COLUMNS | BOOL_COLUMNS | TEXT_COLUMNS | frozenset(CONSENT_COLUMNS)
TRUE_WORDS = frozenset({"true", "yes", "1", "y"})
FALSE_WORDS = frozenset({"false", "no", "0", "n"})
STRUCTURED_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
STRUCTURED_KEYS = frozenset({"persons", "groups", "holidays", "revoked"})


class ResidentsError(ValueError):
    """A resident list that cannot be sent; one line per problem, with file and line."""


@dataclass(frozen=True)
class ResidentList:
    """Everything a snapshot carries, keyed for comparison with the previous sync."""

    persons: dict[str, dict[str, Any]]
    groups: dict[str, dict[str, Any]]
    holidays: list[Any] | None = None
    revoked: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"persons": self.persons, "groups": self.groups, "holidays": self.holidays,
                "revoked": list(self.revoked)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ResidentList:
        return cls(dict(obj["persons"]), dict(obj["groups"]), obj.get("holidays"),
                   tuple(obj.get("revoked", ())))


def _csv_person(row: dict[str, str], where: str) -> dict[str, Any]:
    person: dict[str, Any] = {}
    for column, raw in row.items():
        value = raw.strip()
        if not value:
            continue
        if column in LIST_COLUMNS:
            person[column] = [v.strip() for v in value.split(LIST_SEPARATOR) if v.strip()]
        elif column in BOOL_COLUMNS:
            if value.lower() not in TRUE_WORDS | FALSE_WORDS:
                raise ResidentsError(f"{where}: {column}: {value!r} is not yes or no")
            person[column] = value.lower() in TRUE_WORDS
        elif column in CONSENT_COLUMNS:
            key, part = CONSENT_COLUMNS[column]
            person.setdefault(key, {})[part] = value
        else:
            person[column] = value
    for key in ("id", "name"):
        if key not in person:
            raise ResidentsError(f"{where}: {key!r} is empty")
    return person


def _read_csv(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            unknown = sorted(set(header) - CSV_COLUMNS)
            if unknown or "id" not in header or "name" not in header:
                raise ResidentsError(
                    f"{path}:1: the header needs 'id' and 'name'"
                    + (f"; unknown column(s) {', '.join(unknown)}" if unknown else "")
                    + f" (known: {', '.join(sorted(CSV_COLUMNS))})")
            persons: dict[str, dict[str, Any]] = {}
            problems: list[str] = []
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:
                    problems.append(f"{where}: more cells than header columns")
                    continue
                try:
                    person = _csv_person({k: v or "" for k, v in row.items()}, where)
                except ResidentsError as exc:
                    problems.append(str(exc))
                    continue
                if person["id"] in persons:
                    problems.append(f"{where}: person {person['id']!r} appears twice")
                persons[person["id"]] = person
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResidentsError(f"{path}: cannot read: {exc}") from None
    if problems:
        raise ResidentsError("\n".join(problems))
    return persons


def _read_structured(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else YAML(typ="safe").load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, YAMLError) as exc:
        raise ResidentsError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict) or not set(data) <= STRUCTURED_KEYS:
        raise ResidentsError(
            f"{path}: expected a mapping with {', '.join(sorted(STRUCTURED_KEYS))}")
    return data


def _by_id(items: Any, what: str, path: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(items, list):
        raise ResidentsError(f"{path}: {what} must be a list")
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ResidentsError(f"{path}: {what}[{i}] needs an 'id'")
        if item["id"] in out:
            raise ResidentsError(f"{path}: {what}[{i}]: {item['id']!r} appears twice")
        out[item["id"]] = dict(item)
    return out


def load_residents(path: Path, groups_path: Path | None = None) -> ResidentList:
    """A CSV of persons (+ ``groups_path``), or one YAML/JSON file with everything."""
    if path.suffix.lower() in STRUCTURED_SUFFIXES:
        data = _read_structured(path)
        persons = _by_id(data.get("persons", []), "persons", path)
    else:
        data = {}
        persons = _read_csv(path)
    if groups_path is not None:
        extra = _read_structured(groups_path)
        data = {**data, **{k: v for k, v in extra.items() if k != "persons"}}
    groups = _by_id(data.get("groups", []), "groups", groups_path or path)
    holidays = data.get("holidays")
    revoked = data.get("revoked", [])
    if not isinstance(revoked, list) or not all(isinstance(c, str) for c in revoked):
        raise ResidentsError(f"{groups_path or path}: revoked must be a list of card numbers")
    known = set(groups)
    problems = [
        f"{path}: person {pid!r} is in unknown group {group!r} (define it in the groups file)"
        for pid, person in persons.items() for group in person.get("groups", [])
        if group not in known
    ]
    problems += _canonical_cards(persons, revoked, path)
    if problems:
        raise ResidentsError("\n".join(problems))
    return ResidentList(persons, groups, holidays,
                        tuple(canonical_card(c) for c in revoked))


def _canonical_cards(persons: Mapping[str, dict[str, Any]], revoked: list[str],
                     path: Path) -> list[str]:
    """Card numbers in their one canonical form (in place); problems for bad or shared cards."""
    problems: list[str] = []
    owners: dict[str, str] = {}
    for card in revoked:
        try:
            canonical_card(card)
        except CardNumberError as exc:
            problems.append(f"{path}: revoked {card!r}: {exc}")
    for pid, person in persons.items():
        for key in ("cards", "duress_cards"):
            cards = person.get(key)
            if not isinstance(cards, list):
                continue  # the gate's person parser names the wrong shape
            try:
                person[key] = [canonical_card(c) for c in cards]
            except CardNumberError as exc:
                problems.append(f"{path}: person {pid!r}: {key}: {exc}")
                continue
            for card in person[key]:
                if owners.setdefault(card, pid) != pid:
                    problems.append(f"{path}: person {pid!r}: card ****{card[-4:]} already "
                                    f"belongs to {owners[card]!r}")
    return problems


def _changed(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[Any]:
    return [new[k] for k in sorted(new) if old.get(k) != new[k]]


def sync_args(
    current: ResidentList,
    previous: tuple[int, ResidentList] | None,
    *,
    snapshot: bool = False,
    clock_s: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """A snapshot, or a delta against the list the gate last acknowledged.

    Versions grow with the clock as well as by one, so a station whose database was restored from
    an old backup still sends a version newer than the gate's.
    """
    base = previous[0] if previous is not None else 0
    version = max(base + 1, int(clock_s()))
    if previous is None or snapshot:
        args: dict[str, Any] = {
            "mode": "snapshot", "version": version,
            "persons": [current.persons[p] for p in sorted(current.persons)],
            "groups": [current.groups[g] for g in sorted(current.groups)],
            "revoked": sorted(current.revoked),
        }
        if current.holidays is not None:
            args["holidays"] = current.holidays
        return args
    old = previous[1]
    args = {
        "mode": "delta", "base_version": base, "version": version,
        "upsert": _changed(current.persons, old.persons),
        "delete": sorted(set(old.persons) - set(current.persons)),
        "groups": _changed(current.groups, old.groups),
        "delete_groups": sorted(set(old.groups) - set(current.groups)),
        "revoke": sorted(set(current.revoked) - set(old.revoked)),
        "unrevoke": sorted(set(old.revoked) - set(current.revoked)),
    }
    if current.holidays is not None and current.holidays != old.holidays:
        args["holidays"] = current.holidays
    return args
