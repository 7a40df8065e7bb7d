"""The resident list the station pushes to a gate, and the snapshot or delta that carries it.

The payload's shapes are :mod:`protocol.sync` (the gate validates with the same models).  A
snapshot replaces everything on the gate, groups included, so the station always sends its groups
with it: a list of persons alone would leave every door closed to them.

Operators keep residents in the one file dialect of :mod:`protocol.residents` (the gate's
``menjin residents import`` reads the same): a CSV with one person per line plus a small
YAML/JSON file for groups, holidays and revoked cards, or one YAML/JSON file with all four.  PINs
in the file are hashed here; only their hashes are sent.  Every bad line is reported with its
number and nothing is sent unless the whole list is valid (a half list would revoke everyone
missing from it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from protocol.pins import hash_pin, verify_pin
from protocol.residents import (
    Checked,
    ResidentFile,
    ResidentFileError,
    check,
    parse_resident_file,
)
from protocol.sync import Holiday, SyncPayloadError, parse_sync

_HOLIDAYS: TypeAdapter[list[Holiday]] = TypeAdapter(list[Holiday])


class ResidentsError(ValueError):
    """A resident list that cannot be sent; one line per problem, with file and line."""


@dataclass(frozen=True)
class ResidentList:
    """Everything a snapshot carries, keyed for comparison with the previous sync."""

    persons: dict[str, dict[str, Any]]
    groups: dict[str, dict[str, Any]]
    holidays: list[Any] | None = None
    revoked: tuple[str, ...] = ()
    #: Plain PINs read from the file and not hashed yet: person id → {"pin_hash": "1234", ...}.
    #: Kept in memory only (never in :meth:`to_json`); :func:`hash_pins` turns them into hashes.
    pins: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"persons": self.persons, "groups": self.groups, "holidays": self.holidays,
                "revoked": list(self.revoked)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ResidentList:
        return cls(dict(obj["persons"]), dict(obj["groups"]), obj.get("holidays"),
                   tuple(obj.get("revoked", ())))


def _read(path: Path) -> ResidentFile:
    try:
        return parse_resident_file(path.read_text(encoding="utf-8-sig"), str(path))
    except OSError as exc:
        raise ResidentsError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ResidentsError(f"{path}: not UTF-8 text") from None
    except ResidentFileError as exc:
        raise ResidentsError(str(exc)) from None


def load_residents(path: Path, groups_path: Path | None = None) -> ResidentList:
    """A CSV of persons (+ ``groups_path`` for groups, holidays, revoked cards), or one YAML/JSON
    file with everything; raises :class:`ResidentsError` listing every problem as
    ``FILE:LINE: field: message``.

    A YAML/JSON ``path`` with its own sections and ``groups_path`` beside it are merged: each
    group is defined in one of the two files (a group in both is refused, naming both lines,
    rather than one definition silently winning), holidays come from one of them (refused in
    both: a calendar is replaced whole), and revoked cards are those of both.
    """
    data = _read(path)
    problems: list[str] = []
    clashes: list[tuple[int, str]] = []
    if groups_path is not None:
        extra = _read(groups_path)
        if extra.rows:
            raise ResidentsError(f"{groups_path}: persons belong in {path}")
        side = check(extra)
        problems += [f"{groups_path}:{line}: {msg}" for line, msg in side.problems]
        checked = check(data, known_groups=[g.id for g in side.groups],
                        group_hint=lambda group: f"define it under 'groups:' in {groups_path}")
        clashes = _both(data, checked, groups_path, extra, side)
        groups = side.groups + checked.groups
        holidays = side.holidays if data.holidays is None else checked.holidays
        revoked = list(dict.fromkeys(side.revoked + checked.revoked))
    else:
        checked = check(data, group_hint=_group_hint(path))
        groups, holidays, revoked = checked.groups, checked.holidays, checked.revoked
    problems += [f"{path}:{line}: {msg}"
                 for line, msg in sorted(checked.problems + clashes, key=lambda p: p[0])]
    if problems:
        raise ResidentsError("\n".join(problems))
    return ResidentList(
        {item.record.id: item.record.model_dump(mode="json", exclude_unset=True)
         for item in checked.persons},
        {g.id: g.model_dump(mode="json", exclude_unset=True) for g in groups},
        _HOLIDAYS.dump_python(holidays, mode="json") if holidays is not None else None,
        tuple(revoked),
        {item.record.id: dict(item.pins) for item in checked.persons if item.pins})


def _both(data: ResidentFile, checked: Checked, groups_path: Path, extra: ResidentFile,
          side: Checked) -> list[tuple[int, str]]:
    """What the residents file and the ``--groups`` file both define, as problems of the
    residents file's lines."""
    problems = [(line, f"group {group!r} is also defined in {groups_path}:"
                       f"{side.group_lines[group]}: define each group in one file")
                for group, line in checked.group_lines.items() if group in side.group_lines]
    if data.holidays is not None and extra.holidays is not None:
        problems.append((data.section_lines.get("holidays", 1),
                         f"holidays: also given in {groups_path}:"
                         f"{extra.section_lines.get('holidays', 1)}: give the holidays in one "
                         "file"))
    return problems


def _group_hint(path: Path) -> Callable[[str], str]:
    """Where a group named in ``path`` is defined: a CSV holds persons only."""
    if path.suffix.lower() == ".csv":
        return lambda group: "a CSV cannot define groups: give them with --groups FILE"
    return lambda group: "define it under 'groups:'"


def hash_pins(current: ResidentList, previous: ResidentList | None) -> ResidentList:
    """``current`` with its plain PINs hashed, reusing the hash the gate already holds when the
    PIN did not change (each hash has a fresh salt: a new one would put the person in every
    delta).  Either way it costs one scrypt per PIN, the price of hashing it anyway."""
    persons = dict(current.persons)
    for person_id, pins in current.pins.items():
        before = previous.persons.get(person_id, {}) if previous is not None else {}
        person = dict(persons[person_id])
        for key, pin in pins.items():
            known = before.get(key)
            person[key] = known if verify_pin(pin, known) else hash_pin(pin)
        persons[person_id] = person
    return replace(current, persons=persons, pins={})


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
    if current.pins:
        raise ResidentsError("the list still holds plain PINs: hash them first (hash_pins)")
    args = _sync_args(current, previous, snapshot=snapshot, clock_s=clock_s)
    try:
        parse_sync(args)  # what the gate will check, checked before it leaves
    except SyncPayloadError as exc:
        raise ResidentsError(f"the resident list does not make a valid sync: {exc}") from None
    return args


def _sync_args(
    current: ResidentList,
    previous: tuple[int, ResidentList] | None,
    *,
    snapshot: bool,
    clock_s: Callable[[], float],
) -> dict[str, Any]:
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
