"""The gate's resident store: persons, cards, PIN hashes, groups, holidays, revoked cards (SQLite).

The station keeps it in sync with signed ``sync`` commands; installers edit it with
``menjin residents``.  Every change is one SQLite transaction (WAL, ``synchronous=FULL``), so a
crash, a SIGKILL or a power cut in the middle leaves the previous version whole; the daemon then
builds a new :class:`~daemon.access.AccessIndex` from the committed rows and swaps it in.

Sync payloads (the ``args`` of the ``sync`` command)::

    {"mode": "snapshot", "version": 8, "persons": [PERSON, ...], "groups": [GROUP, ...],
     "holidays": ["2026-10-01", {"date": "2026-10-02", "name": "National Day"}, ...],
     "revoked": ["0004567890", ...]}
    {"mode": "delta", "base_version": 8, "version": 9, "upsert": [PERSON, ...],
     "delete": ["p17", ...], "groups": [GROUP, ...], "delete_groups": ["old"],
     "holidays": [...], "revoke": ["card", ...], "unrevoke": ["card", ...]}

A snapshot replaces everything (local additions too); its version must not be lower than the
store's.  A delta applies only on top of exactly ``base_version``; otherwise it is refused with
reason ``snapshot_required`` and the store's version, and the station sends a snapshot.  In a delta
``groups`` are upserted and ``holidays``, when present, replace the calendar.

PERSON (only ``id`` and ``name`` are required)::

    {"id": "p1",                      letters, digits, "_", "-", "."; at most 64
     "name": "Wang Fang",
     "kind": "resident",              resident | visitor | staff
     "enabled": true,
     "valid_from": "2026-12-01",      inclusive; a date is the start of that day, gate time;
     "valid_until": "2026-12-01T18:00:00+08:00",  exclusive; a date alone is the end of that day;
                                      times without an offset are gate time; null = unbounded
     "groups": ["residents"],
     "cards": ["0004567890"],         canonical card strings as the readers produce them
     "duress_cards": [],              cards that open and raise a silent access.duress alarm
     "pin_hash": "scrypt$16384$8$1$<salt hex>$<hash hex>",   never a plain PIN; or null
     "duress_pin_hash": null,
     "face_consent": {"date": "2026-11-02", "source": "signed form 118"},  null = no consent
     "under_14": false,
     "guardian_consent": {"date": "2026-11-02", "source": "parent's form 118"}}

GROUP: ``{"id": "residents", "name": "...", "doors": ["front", "vehicle"], "schedule": "always"}``
with the schedule text of :mod:`daemon.schedule`.

At rest (a copied SD card) the store yields no card number, person id or name: cards are kept
as HMAC-SHA256 keyed hashes under the site's card key (the gate hashes each read the same way
before the lookup), person ids as keyed references, and each person's record sealed with
AES-256-GCM under the store key (both keys from :mod:`daemon.keys`, never on the card).  Erased
rows are overwritten (``secure_delete``) and the WAL truncated after an erasure
(:meth:`Store.forget`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from daemon.access import AccessIndex, Group, Kind, Person
from daemon.files import private_file
from daemon.keys import seal, unseal
from daemon.schedule import DEFAULT_TIMEZONE, ScheduleError, parse_schedule
from drivers.card import mask

log = logging.getLogger(__name__)

PERSON_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
GROUP_ID_PATTERN = PERSON_ID_PATTERN
DOOR_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PIN_HASH_PATTERN = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[0-9a-f]+\$[0-9a-f]+$")
MAX_CARD_CHARS = 64
PSEUDONYM_HEX_CHARS = 24
PERSON_REF_HEX_CHARS = 32
SEALED_PREFIX = "sealed:"
_ROW_CONTEXT = b"menjin person row"
PERSON_FIELDS = frozenset({
    "id", "name", "kind", "enabled", "valid_from", "valid_until", "groups", "cards",
    "duress_cards", "pin_hash", "duress_pin_hash", "face_consent", "under_14", "guardian_consent",
})
GROUP_FIELDS = frozenset({"id", "name", "doors", "schedule"})
SNAPSHOT_FIELDS = frozenset({"mode", "version", "persons", "groups", "holidays", "revoked"})
DELTA_FIELDS = frozenset({"mode", "base_version", "version", "upsert", "delete", "groups",
                          "delete_groups", "holidays", "revoke", "unrevoke"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS persons (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards (card TEXT PRIMARY KEY,
                                  person TEXT NOT NULL REFERENCES persons(id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS cards_person ON cards(person);
CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS holidays (day TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS revoked (card TEXT PRIMARY KEY, revoked_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS forgotten (pseudonym TEXT PRIMARY KEY, forgotten_ms INTEGER NOT NULL);
"""


class StoreError(Exception):
    """The store cannot be used as configured (e.g. opened with a different card hash key)."""


class PersonError(ValueError):
    """One person record is invalid; the message starts with the field at fault."""


class SyncRefusedError(Exception):
    """A sync that was not applied (nothing changed); ``reason`` is a short code for the station."""

    def __init__(self, reason: str, detail: str, version: int) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.version = version


@dataclass(frozen=True)
class SyncResult:
    version: int
    persons: int
    upserted: int
    deleted: int

    def as_dict(self) -> dict[str, int]:
        return {"version": self.version, "persons": self.persons, "upserted": self.upserted,
                "deleted": self.deleted}


@dataclass(frozen=True)
class Forgotten:
    """The store's part of an erasure; the app purges templates, portraits and journal ids too."""

    person: str
    pseudonym: str
    found: bool
    cards_removed: int
    pin_removed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"person": self.person, "pseudonym": self.pseudonym, "found": self.found,
                "cards_removed": self.cards_removed, "pin_removed": self.pin_removed}


# --------------------------------------------------------------------------- keys and pseudonyms
CardKey = Callable[[str], str]


def card_hasher(key: bytes | None) -> CardKey:
    """A function canonical card → stored key: identity, or HMAC-SHA256 hex under ``key``."""
    if key is None:
        return _same

    def keyed(card: str) -> str:
        return hmac.new(key, card.encode(), hashlib.sha256).hexdigest()
    return keyed


def _same(card: str) -> str:
    return card


def pseudonym(key: bytes, person_id: str) -> str:
    """The stable keyed pseudonym that replaces ``person_id`` after an erasure."""
    digest = hmac.new(key, person_id.encode(), hashlib.sha256).hexdigest()
    return "anon-" + digest[:PSEUDONYM_HEX_CHARS]


# --------------------------------------------------------------------------- JSON shape
def parse_time(value: Any, zone: ZoneInfo, *, end_of_day: bool) -> datetime | None:
    """A validity bound: ISO date (start or end of that day) or date-time (naive = gate time)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a date or time: {value!r}")
    text = value.strip()
    try:
        if len(text) == len("2026-12-01"):
            day = date.fromisoformat(text)
            if end_of_day:
                day += timedelta(days=1)
            return datetime.combine(day, dtime(), zone)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a date or time: {value!r} (use 2026-12-01 or 2026-12-01T18:00:00)"
        ) from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _consent(obj: Mapping[str, Any], key: str) -> tuple[date | None, str | None]:
    value = obj.get(key)
    if value is None:
        return None, None
    if not isinstance(value, Mapping) or set(value) != {"date", "source"}:
        raise PersonError(f'{key}: expected {{"date": "YYYY-MM-DD", "source": "..."}} or null')
    try:
        day = date.fromisoformat(str(value["date"]))
    except ValueError:
        raise PersonError(f"{key}: bad date {value['date']!r} (use YYYY-MM-DD)") from None
    source = value["source"]
    if not isinstance(source, str) or not source.strip():
        raise PersonError(f"{key}: the source (form, record or witness) must be given")
    return day, source.strip()


def _strings(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PersonError(f"{key}: expected a list of non-empty strings")
    return tuple(value)


def _flag(obj: Mapping[str, Any], key: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise PersonError(f"{key}: expected true or false, not {value!r}")
    return value


def _pin_hash(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and (not isinstance(value, str) or not PIN_HASH_PATTERN.match(value)):
        raise PersonError(f"{key}: expected an scrypt hash (scrypt$N$r$p$salt$hash), never a PIN")
    return value


def parse_person(obj: Any, *, zone: ZoneInfo, card_key: CardKey = _same) -> Person:
    """A :class:`Person` from its JSON shape (see the module docstring); PersonError when bad."""
    if not isinstance(obj, Mapping):
        raise PersonError(f"person: expected an object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - PERSON_FIELDS)
    if unknown:
        known = ", ".join(sorted(PERSON_FIELDS))
        raise PersonError(f"{unknown[0]}: unknown field (known: {known})")
    person_id = obj.get("id")
    if not isinstance(person_id, str) or not PERSON_ID_PATTERN.match(person_id):
        raise PersonError(f"id: {person_id!r} is not a person id (letters, digits, _ - .; max 64)")
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PersonError("name: must not be empty")
    try:
        kind = Kind(obj.get("kind", "resident"))
    except ValueError:
        raise PersonError(f"kind: {obj.get('kind')!r} is not resident, visitor or staff") from None
    try:
        valid_from = parse_time(obj.get("valid_from"), zone, end_of_day=False)
    except ValueError as exc:
        raise PersonError(f"valid_from: {exc}") from None
    try:
        valid_until = parse_time(obj.get("valid_until"), zone, end_of_day=True)
    except ValueError as exc:
        raise PersonError(f"valid_until: {exc}") from None
    if valid_from and valid_until and valid_until <= valid_from:
        raise PersonError("valid_until: must be later than valid_from")
    cards = _strings(obj, "cards")
    duress_cards = _strings(obj, "duress_cards")
    for card in (*cards, *duress_cards):
        if len(card) > MAX_CARD_CHARS or not card.isprintable():
            raise PersonError(f"cards: {card[-4:]!r}... is not a card number")
    if len(set(cards) | set(duress_cards)) != len(cards) + len(duress_cards):
        raise PersonError("cards: a card is listed twice")
    face_date, face_source = _consent(obj, "face_consent")
    guardian_date, guardian_source = _consent(obj, "guardian_consent")
    under_14 = _flag(obj, "under_14", False)
    if under_14 and face_date is not None and guardian_date is None:
        raise PersonError("guardian_consent: face consent of a child under 14 needs a guardian's")
    for group in _strings(obj, "groups"):
        if not GROUP_ID_PATTERN.match(group):
            raise PersonError(f"groups: {group!r} is not a group id")
    return Person(
        id=person_id, name=name.strip(), kind=kind, enabled=_flag(obj, "enabled", True),
        valid_from=valid_from, valid_until=valid_until, groups=_strings(obj, "groups"),
        cards=tuple(card_key(c) for c in cards),
        duress_cards=tuple(card_key(c) for c in duress_cards),
        pin_hash=_pin_hash(obj, "pin_hash"), duress_pin_hash=_pin_hash(obj, "duress_pin_hash"),
        face_consent=face_date is not None, face_consent_date=face_date,
        face_consent_source=face_source, under_14=under_14,
        guardian_consent_date=guardian_date, guardian_consent_source=guardian_source,
    )


def person_json(person: Person) -> dict[str, Any]:
    """The JSON shape of ``person`` (cards as stored: keyed hashes when the gate hashes cards)."""
    def consent(day: date | None, source: str | None) -> dict[str, str] | None:
        return {"date": day.isoformat(), "source": source or ""} if day else None

    return {
        "id": person.id, "name": person.name, "kind": person.kind.value, "enabled": person.enabled,
        "valid_from": person.valid_from.isoformat() if person.valid_from else None,
        "valid_until": person.valid_until.isoformat() if person.valid_until else None,
        "groups": list(person.groups), "cards": list(person.cards),
        "duress_cards": list(person.duress_cards), "pin_hash": person.pin_hash,
        "duress_pin_hash": person.duress_pin_hash,
        "face_consent": consent(person.face_consent_date, person.face_consent_source),
        "under_14": person.under_14,
        "guardian_consent": consent(person.guardian_consent_date, person.guardian_consent_source),
    }


def parse_group(obj: Any) -> Group:
    """A :class:`Group` from its JSON shape; PersonError (naming the field) when bad."""
    if not isinstance(obj, Mapping):
        raise PersonError("group: expected an object")
    unknown = sorted(set(obj) - GROUP_FIELDS)
    if unknown:
        known = ", ".join(sorted(GROUP_FIELDS))
        raise PersonError(f"{unknown[0]}: unknown group field (known: {known})")
    group_id = obj.get("id")
    if not isinstance(group_id, str) or not GROUP_ID_PATTERN.match(group_id):
        raise PersonError(f"id: {group_id!r} is not a group id")
    doors = _strings(obj, "doors")
    for door in doors:
        if not DOOR_ID_PATTERN.match(door):
            raise PersonError(f"doors: {door!r} is not a door id")
    try:
        schedule = parse_schedule(str(obj.get("schedule", "always")))
    except ScheduleError as exc:
        raise PersonError(f"schedule: {exc}") from None
    return Group(group_id, doors, schedule, str(obj.get("name", "")))


def group_json(group: Group) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "doors": list(group.doors),
            "schedule": group.schedule.text}


def parse_holidays(items: Any) -> dict[date, str]:
    """Holiday dates: ISO strings or {"date": ..., "name": ...} objects."""
    if not isinstance(items, list):
        raise PersonError("holidays: expected a list")
    days: dict[date, str] = {}
    for item in items:
        text, name = (item.get("date"), item.get("name", "")) if isinstance(item, Mapping) else (
            item, "")
        try:
            days[date.fromisoformat(str(text))] = str(name)
        except ValueError:
            raise PersonError(f"holidays: bad date {text!r} (use YYYY-MM-DD)") from None
    return days


# --------------------------------------------------------------------------- the store
class Store:
    """The SQLite resident store of one gate (one connection, used from one thread at a time)."""

    def __init__(self, path: Path, *, card_key: bytes | None = None,
                 data_key: bytes | None = None, zone: ZoneInfo | None = None) -> None:
        """``card_key`` hashes card numbers, ``data_key`` seals person rows and keys their ids
        (both from :class:`daemon.keyring.Keyring` in the gate; None keeps them in clear, for
        tests of the store's logic only)."""
        self.path = Path(path)
        self.zone = zone or ZoneInfo(DEFAULT_TIMEZONE)
        self.card_ref = card_hasher(card_key)
        self._data_key = data_key
        private_file(self.path)  # names and PIN hashes: the -wal and -shm inherit its 0600
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA secure_delete=ON")  # an erased person is zeroed, not freed
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)
        keying = "plain" if card_key is None else (
            "hmac-sha256:" + hashlib.sha256(b"menjin card key id" + card_key).hexdigest()[:16])
        with self._transaction():
            stored = self._meta("card_keying")
            has_cards = self._conn.execute("SELECT 1 FROM cards LIMIT 1").fetchone() is not None
            if stored is not None and stored != keying and has_cards:
                raise StoreError(
                    f"{self.path}: cards were stored with card hashing {stored.split(':')[0]}, "
                    f"the config now asks for {keying.split(':')[0]} (or another key): "
                    "restore the key file or re-import the residents into a new store"
                )
            if stored != keying:  # opening a store writes nothing otherwise
                self._set_meta("card_keying", keying)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything in it commits together or not at all."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ rows at rest
    def _ref(self, person_id: str) -> str:
        """The key of ``person_id``'s rows: a keyed hash, so the file names nobody."""
        if self._data_key is None:
            return person_id
        digest = hmac.new(self._data_key, b"person:" + person_id.encode(), hashlib.sha256)
        return digest.hexdigest()[:PERSON_REF_HEX_CHARS]

    def _seal(self, person: Person, masks: Mapping[str, str]) -> str:
        """A person's row; sealed, it also keeps each card's masked digits (``****5678``) for
        the tools, since the card column holds only keyed hashes."""
        if self._data_key is None:
            return json.dumps(person_json(person), ensure_ascii=False)
        text = json.dumps({"person": person_json(person), "masks": dict(masks)},
                          ensure_ascii=False)
        blob = seal(self._data_key, text.encode(), _ROW_CONTEXT)
        return SEALED_PREFIX + base64.b64encode(blob).decode()

    def _unseal(self, data: str) -> Person:
        return self._row(data)[0]

    def _row(self, data: str) -> tuple[Person, dict[str, str]]:
        if not data.startswith(SEALED_PREFIX):
            person = parse_person(json.loads(data), zone=self.zone)
            return person, {c: mask(c) for c in (*person.cards, *person.duress_cards)}
        if self._data_key is None:
            raise StoreError(f"{self.path}: the records are sealed; no store key given")
        doc = json.loads(unseal(self._data_key, base64.b64decode(data[len(SEALED_PREFIX):]),
                                _ROW_CONTEXT))
        return parse_person(doc["person"], zone=self.zone), dict(doc["masks"])

    def masked_cards(self, person_id: str) -> list[str]:
        """``person_id``'s cards as people may see them: ``****5678`` (empty when unknown)."""
        row = self._conn.execute("SELECT data FROM persons WHERE id = ?",
                                 (self._ref(person_id),)).fetchone()
        if row is None:
            return []
        person, masks = self._row(row[0])
        return [masks.get(c, "****") for c in person.cards]

    def _masks(self, person: Person) -> dict[str, str]:
        """Stored card key → masked digits, for a person with canonical card strings."""
        return {self.card_ref(c): mask(c) for c in (*person.cards, *person.duress_cards)}

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ reading
    @property
    def version(self) -> int:
        """The sync version of the committed data (0 before the first sync)."""
        return int(self._meta("version") or 0)

    def persons(self) -> list[Person]:
        rows = self._conn.execute("SELECT data FROM persons").fetchall()
        return sorted((self._unseal(r[0]) for r in rows), key=lambda p: p.id)

    def person(self, person_id: str) -> Person | None:
        row = self._conn.execute("SELECT data FROM persons WHERE id = ?",
                                 (self._ref(person_id),)).fetchone()
        return None if row is None else self._unseal(row[0])

    def groups(self) -> list[Group]:
        rows = self._conn.execute("SELECT data FROM groups ORDER BY id").fetchall()
        return [parse_group(json.loads(r[0])) for r in rows]

    def holidays(self) -> dict[date, str]:
        rows = self._conn.execute("SELECT day, name FROM holidays ORDER BY day").fetchall()
        return {date.fromisoformat(day): name for day, name in rows}

    def revoked(self) -> frozenset[str]:
        return frozenset(r[0] for r in self._conn.execute("SELECT card FROM revoked"))

    def card_owner(self, card: str) -> str | None:
        """The person holding ``card`` (canonical string), if any."""
        return self._holder(self.card_ref(card))

    def _holder(self, stored_card: str) -> str | None:
        row = self._conn.execute(
            "SELECT p.data FROM cards c JOIN persons p ON p.id = c.person WHERE c.card = ?",
            (stored_card,)).fetchone()
        return None if row is None else self._unseal(row[0]).id

    def keyed(self, person: Person) -> Person:
        """``person`` with canonical card strings turned into this store's card keys."""
        return replace(person, cards=tuple(self.card_ref(c) for c in person.cards),
                       duress_cards=tuple(self.card_ref(c) for c in person.duress_cards))

    def forgotten(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT pseudonym FROM forgotten ORDER BY 1")]

    def load_index(self) -> AccessIndex:
        """A fresh decision index of the committed data, read in one consistent snapshot."""
        self._conn.execute("BEGIN")
        try:
            version = self.version
            persons, groups = self.persons(), self.groups()
            holidays, revoked = self.holidays(), self.revoked()
        finally:
            self._conn.execute("COMMIT")
        return AccessIndex.build(persons, groups, holidays=holidays, revoked=revoked,
                                 version=version, zone=self.zone)

    # ------------------------------------------------------------------ local edits
    def upsert(self, persons: Iterable[Person], *, groups: Iterable[Group] = (),
               holidays: Mapping[date, str] | None = None) -> int:
        """Add or replace persons (and groups, holidays) in one transaction; returns the count.

        ``persons`` carry canonical card strings (as :func:`parse_person` gives them without a
        ``card_key``); the store keys them.  Local edits keep the sync version: the next
        snapshot from the station replaces them.
        """
        batch = [(self.keyed(p), self._masks(p)) for p in persons]
        with self._transaction():
            self._put_groups(groups)
            if holidays is not None:
                self._conn.executemany("INSERT OR REPLACE INTO holidays (day, name) VALUES (?, ?)",
                                       [(d.isoformat(), n) for d, n in holidays.items()])
            self._conn.executemany("DELETE FROM cards WHERE person = ?",
                                   [(self._ref(p.id),) for p, _masks in batch])
            for person, masks in batch:  # cards may move between persons of one batch
                self._put_person(person, masks)
        return len(batch)

    def set_enabled(self, person_id: str, enabled: bool) -> bool:
        """Enable or disable a person; False when there is no such person."""
        row = self._conn.execute("SELECT data FROM persons WHERE id = ?",
                                 (self._ref(person_id),)).fetchone()
        if row is None:
            return False
        person, masks = self._row(row[0])
        with self._transaction():
            self._conn.execute("UPDATE persons SET data = ? WHERE id = ?",
                               (self._seal(replace(person, enabled=enabled), masks),
                                self._ref(person_id)))
        return True

    def remove(self, person_id: str) -> Person | None:
        """Delete a person and their cards; returns what was removed."""
        person = self.person(person_id)
        if person is not None:
            with self._transaction():
                self._delete_person(person_id)
        return person

    def revoke(self, card: str, *, now_ms: int | None = None) -> None:
        """Block ``card`` at once, whoever holds it."""
        with self._transaction():
            self._revoke([card], now_ms)

    def forget(self, person_id: str, pseudonym_key: bytes, *,
               now_ms: int | None = None) -> Forgotten:
        """Erase a person's record and credentials, keeping only their keyed pseudonym."""
        person = self.person(person_id)
        alias = pseudonym(pseudonym_key, person_id)
        with self._transaction():
            if person is not None:
                self._delete_person(person_id)
            self._conn.execute("INSERT OR REPLACE INTO forgotten (pseudonym, forgotten_ms) "
                               "VALUES (?, ?)", (alias, now_ms or _now_ms()))
        self.scrub()
        return Forgotten(
            person_id, alias, person is not None,
            len(person.cards) + len(person.duress_cards) if person else 0,
            bool(person and (person.pin_hash or person.duress_pin_hash)),
        )

    def scrub(self) -> None:
        """Move every committed page into the database file and truncate the ``-wal`` to zero
        bytes, so a deleted row survives in no old WAL frame (``secure_delete`` already zeroes
        it in the database file itself)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _put_person(self, person: Person, masks: Mapping[str, str]) -> None:
        ref = self._ref(person.id)
        self._conn.execute("INSERT OR REPLACE INTO persons (id, data) VALUES (?, ?)",
                           (ref, self._seal(person, masks)))
        self._conn.execute("DELETE FROM cards WHERE person = ?", (ref,))
        for card in (*person.cards, *person.duress_cards):
            owner = self._holder(card)
            if owner is not None:
                raise PersonError(f"cards: a card of {person.id} already belongs to {owner}")
            self._conn.execute("INSERT INTO cards (card, person) VALUES (?, ?)", (card, ref))

    def _delete_person(self, person_id: str) -> None:
        ref = self._ref(person_id)
        self._conn.execute("DELETE FROM cards WHERE person = ?", (ref,))
        self._conn.execute("DELETE FROM persons WHERE id = ?", (ref,))

    def _put_groups(self, groups: Iterable[Group]) -> None:
        self._conn.executemany("INSERT OR REPLACE INTO groups (id, data) VALUES (?, ?)",
                               [(g.id, json.dumps(group_json(g))) for g in groups])

    def _revoke(self, cards: Iterable[str], now_ms: int | None) -> None:
        stamp = now_ms or _now_ms()
        self._conn.executemany("INSERT OR REPLACE INTO revoked (card, revoked_ms) VALUES (?, ?)",
                               [(self.card_ref(c), stamp) for c in cards])

    # ------------------------------------------------------------------ sync
    def apply_sync(self, payload: Mapping[str, Any]) -> SyncResult:
        """Apply a station snapshot or delta in one transaction, or refuse it and change nothing."""
        current = self.version
        mode = payload.get("mode")
        if mode not in ("snapshot", "delta"):
            raise SyncRefusedError("bad_payload", f"mode must be snapshot or delta, not {mode!r}",
                                   current)
        allowed = SNAPSHOT_FIELDS if mode == "snapshot" else DELTA_FIELDS
        extra = sorted(set(payload) - allowed)
        if extra:
            raise SyncRefusedError("bad_payload", f"unknown field {extra[0]!r} in a {mode}",
                                   current)
        version = payload.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SyncRefusedError("bad_payload", "version must be a positive integer", current)
        if mode == "delta":
            base = payload.get("base_version")
            if base != current:
                raise SyncRefusedError(
                    "snapshot_required",
                    f"delta is based on version {base}, the gate has {current}: send a snapshot",
                    current)
            if version <= current:
                raise SyncRefusedError("bad_payload", "delta version must exceed its base", current)
        elif version < current:
            raise SyncRefusedError(
                "stale_version", f"snapshot version {version} is older than {current}", current)
        try:
            return self._apply(payload, mode, version)
        except (PersonError, sqlite3.IntegrityError) as exc:
            raise SyncRefusedError("bad_payload", str(exc), current) from exc

    def _parse_list(self, payload: Mapping[str, Any], key: str) -> list[Any]:
        value = payload.get(key, [])
        if not isinstance(value, list):
            raise PersonError(f"{key}: expected a list")
        return value

    def _apply(self, payload: Mapping[str, Any], mode: str, version: int) -> SyncResult:
        people_key = "persons" if mode == "snapshot" else "upsert"
        persons = []
        for i, obj in enumerate(self._parse_list(payload, people_key)):
            try:
                persons.append(parse_person(obj, zone=self.zone))
            except PersonError as exc:
                raise PersonError(f"{people_key}[{i}].{exc}") from None
        groups = [parse_group(g) for g in self._parse_list(payload, "groups")]
        holidays = parse_holidays(payload["holidays"]) if "holidays" in payload else None
        deleted = [str(p) for p in self._parse_list(payload, "delete")]
        conn = self._conn
        with self._transaction():
            if mode == "snapshot":
                for table in ("cards", "persons", "groups", "revoked"):
                    conn.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed table names)
                self._revoke(self._parse_list(payload, "revoked"), None)
            else:
                for person_id in deleted:
                    self._delete_person(person_id)
                conn.executemany("DELETE FROM groups WHERE id = ?",
                                 [(str(g),) for g in self._parse_list(payload, "delete_groups")])
                self._revoke(self._parse_list(payload, "revoke"), None)
                unrevoke = self._parse_list(payload, "unrevoke")
                conn.executemany("DELETE FROM revoked WHERE card = ?",
                                 [(self.card_ref(c),) for c in unrevoke])
            if holidays is not None:
                conn.execute("DELETE FROM holidays")
                conn.executemany("INSERT INTO holidays (day, name) VALUES (?, ?)",
                                 [(d.isoformat(), n) for d, n in holidays.items()])
            self._put_groups(groups)
            conn.executemany("DELETE FROM cards WHERE person = ?",
                             [(self._ref(p.id),) for p in persons])
            for person in persons:
                self._put_person(self.keyed(person), self._masks(person))
            self._set_meta("version", str(version))
            total = conn.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
        log.info("store: %s applied, version %d, %d person(s)", mode, version, total)
        return SyncResult(version, int(total), len(persons), len(deleted))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
