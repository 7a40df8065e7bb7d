"""The gate's resident store: persons, cards, PIN hashes, groups, holidays, revoked cards (SQLite).

The station keeps it in sync with signed ``sync`` commands; installers edit it with
``menjin residents``.  Every change is one SQLite transaction (WAL, ``synchronous=FULL``), so a
crash, a SIGKILL or a power cut in the middle leaves the previous version whole; the daemon then
builds a new :class:`~daemon.access.AccessIndex` from the committed rows and swaps it in.

Sync payloads (the ``args`` of the ``sync`` command; validated by the pydantic models of
:mod:`protocol.sync`, JSON Schema in ``docs/schemas/sync.json``)::

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
     "cards": ["0004567890"],         any form protocol.cards reads; kept canonical ("4567890")
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
import itertools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from daemon.access import AccessIndex, Group, Kind, Person
from daemon.files import private_file
from daemon.keys import seal, unseal
from daemon.schedule import DEFAULT_TIMEZONE, ScheduleError, parse_schedule
from drivers.card import mask
from protocol.cards import CardNumberError, canonical_card
from protocol.sync import (
    Delta,
    GroupRecord,
    Holiday,
    HolidayRecord,
    PersonRecord,
    Snapshot,
    SyncPayloadError,
    describe,
    parse_sync,
    validity_bound,
    validity_problem,
)

log = logging.getLogger(__name__)

PSEUDONYM_HEX_CHARS = 24
PERSON_REF_HEX_CHARS = 32
SEALED_PREFIX = "sealed:"
_ROW_CONTEXT = b"menjin person row"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS persons (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cards (card TEXT PRIMARY KEY,
                                  person TEXT NOT NULL REFERENCES persons(id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS cards_person ON cards(person);
CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS holidays (day TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '');
-- make-up working days (调休): weekend days that are working days
CREATE TABLE IF NOT EXISTS workdays (day TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '');
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
    """A function card (any form :func:`protocol.cards.canonical_card` takes) → stored key: the
    canonical card string, or its HMAC-SHA256 hex under ``key``.  PersonError for no card number.
    """
    if key is None:
        return _same

    def keyed(card: str) -> str:
        return hmac.new(key, _same(card).encode(), hashlib.sha256).hexdigest()
    return keyed


def _as_stored(card: str) -> str:
    return card


def _same(card: str) -> str:
    try:
        return canonical_card(card)
    except CardNumberError as exc:
        raise PersonError(f"cards: {exc}") from None


def pseudonym(key: bytes, person_id: str) -> str:
    """The stable keyed pseudonym that replaces ``person_id`` after an erasure."""
    digest = hmac.new(key, person_id.encode(), hashlib.sha256).hexdigest()
    return "anon-" + digest[:PSEUDONYM_HEX_CHARS]


# --------------------------------------------------------------------------- JSON shape
def parse_person(obj: Any, *, zone: ZoneInfo, card_key: CardKey = _same) -> Person:
    """A :class:`Person` from its JSON shape (:class:`protocol.sync.PersonRecord`); PersonError
    (``field: message``) when bad."""
    try:
        record = PersonRecord.model_validate(obj)
    except ValidationError as exc:
        raise PersonError(describe(exc)) from None
    return person_from_record(record, zone=zone, card_key=card_key)


def person_from_record(record: PersonRecord, *, zone: ZoneInfo,
                       card_key: CardKey = _same) -> Person:
    """A :class:`Person` from a validated record: validity bounds in the gate's ``zone``."""
    # The record's model checked both bounds' text: only the order needs the gate's zone.
    valid_from = validity_bound(record.valid_from, zone, end_of_day=False)
    valid_until = validity_bound(record.valid_until, zone, end_of_day=True)
    problem = validity_problem(record.valid_from, record.valid_until, zone)
    if problem:
        raise PersonError(problem)
    cards = tuple(card_key(c) for c in record.cards)  # 0012345678 and 12345678 are one card
    duress_cards = tuple(card_key(c) for c in record.duress_cards)
    if len(set(cards) | set(duress_cards)) != len(cards) + len(duress_cards):
        raise PersonError("cards: a card is listed twice")
    face, guardian = record.face_consent, record.guardian_consent
    return Person(
        id=record.id, name=record.name, kind=Kind(record.kind), enabled=record.enabled,
        valid_from=valid_from, valid_until=valid_until, groups=tuple(record.groups),
        cards=cards, duress_cards=duress_cards,
        pin_hash=record.pin_hash, duress_pin_hash=record.duress_pin_hash,
        face_consent=face is not None, face_consent_date=face.date if face else None,
        face_consent_source=face.source if face else None, under_14=record.under_14,
        guardian_consent_date=guardian.date if guardian else None,
        guardian_consent_source=guardian.source if guardian else None,
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
    """A :class:`Group` from its JSON shape (:class:`protocol.sync.GroupRecord`); PersonError
    (naming the field) when bad."""
    try:
        record = GroupRecord.model_validate(obj)
    except ValidationError as exc:
        raise PersonError(describe(exc)) from None
    return group_from_record(record)


def group_from_record(record: GroupRecord) -> Group:
    """A :class:`Group` from a validated record; PersonError for a bad schedule text."""
    try:
        schedule = parse_schedule(record.schedule)
    except ScheduleError as exc:
        raise PersonError(f"schedule: {exc}") from None
    return Group(record.id, tuple(record.doors), schedule, record.name)


def group_json(group: Group) -> dict[str, Any]:
    return {"id": group.id, "name": group.name, "doors": list(group.doors),
            "schedule": group.schedule.text}


def parse_holidays(items: Any) -> dict[date, str]:
    """Holiday dates: ISO strings or {"date": ..., "name": ...} objects."""
    try:
        holidays = _HOLIDAYS.validate_python(items)
    except ValidationError as exc:
        raise PersonError(f"holidays{describe(exc)}") from None
    return holidays_from_records(holidays)


def holidays_from_records(items: list[Holiday]) -> dict[date, str]:
    """Day → name (empty when the holiday was given as a bare date); make-up working days
    are left out (:func:`workdays_from_records`)."""
    return dict(_holiday(item) for item in items
                if not (isinstance(item, HolidayRecord) and item.workday))


def workdays_from_records(items: list[Holiday]) -> dict[date, str]:
    """Day → name of the make-up working days (调休) among calendar records."""
    return dict(_holiday(item) for item in items
                if isinstance(item, HolidayRecord) and item.workday)


def _holiday(item: Holiday) -> tuple[date, str]:
    return (item.date, item.name) if isinstance(item, HolidayRecord) else (item, "")


_HOLIDAYS: TypeAdapter[list[Holiday]] = TypeAdapter(list[Holiday])


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
        #: Cards in stored person records: card numbers (canonicalised again) or keyed hashes.
        self._stored_card: CardKey = _same if card_key is None else _as_stored
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
            if card_key is None:
                self._canonical_plain_cards()

    def _canonical_plain_cards(self) -> None:
        """Rewrite card numbers stored before they were canonical (``0012345678``), once."""
        for table in ("cards", "revoked"):
            rows = self._conn.execute(f"SELECT card FROM {table}").fetchall()  # noqa: S608
            for (card,) in rows:
                try:
                    canonical = canonical_card(card)
                except CardNumberError:
                    log.warning("store: card %s in %s is no card number; left as it is",
                                mask(card), table)
                    continue
                if canonical == card:
                    continue
                try:
                    self._conn.execute(f"UPDATE {table} SET card = ? WHERE card = ?",  # noqa: S608
                                       (canonical, card))
                except sqlite3.IntegrityError:
                    raise StoreError(
                        f"{self.path}: card {mask(card)} is stored twice in {table} in two forms "
                        "(with and without leading zeros); remove one with menjin residents"
                    ) from None

    def close(self) -> None:
        self._conn.close()

    def snapshot(self, target: Path) -> None:
        """Copy the committed store to ``target`` (SQLite online backup, then an atomic rename):
        the last good copy a corrupt store falls back to at start-up."""
        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)
        private_file(tmp)  # 0600 before the first page is copied (rows are sealed there too)
        copy = sqlite3.connect(tmp)
        try:
            self._conn.backup(copy)
        finally:
            copy.close()
        tmp.chmod(0o600)
        tmp.replace(target)

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
            person = parse_person(json.loads(data), zone=self.zone, card_key=self._stored_card)
            return person, {c: mask(c) for c in (*person.cards, *person.duress_cards)}
        if self._data_key is None:
            raise StoreError(f"{self.path}: the records are sealed; no store key given")
        doc = json.loads(unseal(self._data_key, base64.b64decode(data[len(SEALED_PREFIX):]),
                                _ROW_CONTEXT))
        return (parse_person(doc["person"], zone=self.zone, card_key=self._stored_card),
                dict(doc["masks"]))

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

    def workdays(self) -> dict[date, str]:
        rows = self._conn.execute("SELECT day, name FROM workdays ORDER BY day").fetchall()
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
            workdays = self.workdays()
        finally:
            self._conn.execute("COMMIT")
        return AccessIndex.build(persons, groups, holidays=holidays, workdays=workdays,
                                 revoked=revoked,
                                 version=version, zone=self.zone)

    # ------------------------------------------------------------------ local edits
    def upsert(self, persons: Iterable[Person], *, groups: Iterable[Group] = (),
               holidays: Mapping[date, str] | None = None,
               workdays: Mapping[date, str] | None = None) -> int:
        """Add or replace persons (and groups, holidays, make-up working days) in one
        transaction; returns the count.

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
            if workdays is not None:
                self._conn.executemany("INSERT OR REPLACE INTO workdays (day, name) VALUES (?, ?)",
                                       [(d.isoformat(), n) for d, n in workdays.items()])
            self._conn.executemany("DELETE FROM cards WHERE person = ?",
                                   [(self._ref(p.id),) for p, _masks in batch])
            for person, masks in batch:  # cards may move between persons of one batch
                self._put_person(person, masks)
        return len(batch)

    def remove_group(self, group_id: str) -> tuple[bool, list[str]]:
        """Remove a group no person belongs to: ``(removed, ids of its members)``.

        A group with members is kept (its members would silently lose their doors); the ids say
        whom to move first.
        """
        members = [p.id for p in self.persons() if group_id in p.groups]
        if members:
            return False, members
        with self._transaction():
            gone = self._conn.execute("DELETE FROM groups WHERE id = ?", (group_id,)).rowcount
        return gone > 0, []

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
        """Apply a station snapshot or delta in one transaction, or refuse it and change nothing.

        The payload is validated by :func:`protocol.sync.parse_sync` first.
        """
        return self.apply_sync_parts([payload])

    def apply_sync_parts(self, payloads: Iterable[Mapping[str, Any]]) -> SyncResult:
        """Apply the pieces of one sync (:mod:`protocol.sync_pieces`: same mode and version, each
        a slice of the lists) in order, in ONE transaction: all of it or, when any piece is
        refused, nothing.  Pieces are parsed one at a time, so memory holds one piece.
        """
        current = self.version

        def parsed() -> Iterator[Snapshot | Delta]:
            for payload in payloads:
                try:
                    yield parse_sync(dict(payload))
                except SyncPayloadError as exc:
                    raise SyncRefusedError("bad_payload", str(exc), current) from None

        pieces = parsed()
        sync = next(pieces, None)
        if sync is None:
            raise SyncRefusedError("bad_payload", "no sync payload", current)
        if isinstance(sync, Delta):
            if sync.base_version != current:
                raise SyncRefusedError(
                    "snapshot_required", f"delta is based on version {sync.base_version}, the "
                    f"gate has {current}: send a snapshot", current)
            if sync.version <= current:
                raise SyncRefusedError("bad_payload", "delta version must exceed its base", current)
        elif sync.version < current:
            raise SyncRefusedError(
                "stale_version", f"snapshot version {sync.version} is older than {current}",
                current)
        try:
            return self._apply(sync, pieces)
        except (PersonError, sqlite3.IntegrityError) as exc:
            raise SyncRefusedError("bad_payload", str(exc), current) from exc

    def _apply(self, first: Snapshot | Delta, rest: Iterator[Snapshot | Delta]) -> SyncResult:
        conn = self._conn
        upserted = deleted = 0
        with self._transaction():
            if isinstance(first, Snapshot):
                for table in ("cards", "persons", "groups", "revoked"):
                    conn.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed table names)
            for index, sync in enumerate(itertools.chain([first], rest)):
                if (sync.mode, sync.version) != (first.mode, first.version) or (
                        isinstance(sync, Delta) and isinstance(first, Delta)
                        and sync.base_version != first.base_version):
                    raise PersonError(f"piece {index} belongs to another sync")
                upserted += self._apply_piece(sync)
                deleted += len(sync.delete) if isinstance(sync, Delta) else 0
            self._set_meta("version", str(first.version))
            total = conn.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
        log.info("store: %s applied, version %d, %d person(s)", first.mode, first.version, total)
        return SyncResult(first.version, int(total), upserted, deleted)

    def _apply_piece(self, sync: Snapshot | Delta) -> int:
        """One piece inside :meth:`_apply`'s transaction; returns the persons written."""
        records, people_key = (sync.persons, "persons") if isinstance(sync, Snapshot) else (
            sync.upsert, "upsert")
        persons = []
        for i, record in enumerate(records):
            try:
                persons.append(person_from_record(record, zone=self.zone))
            except PersonError as exc:
                raise PersonError(f"{people_key}[{i}].{exc}") from None
        groups = [group_from_record(g) for g in sync.groups]
        holidays = holidays_from_records(sync.holidays) if sync.holidays is not None else None
        workdays = workdays_from_records(sync.holidays) if sync.holidays is not None else {}
        conn = self._conn
        if isinstance(sync, Snapshot):
            self._revoke(sync.revoked, None)
        else:
            for person_id in sync.delete:
                self._delete_person(person_id)
            conn.executemany("DELETE FROM groups WHERE id = ?",
                             [(g,) for g in sync.delete_groups])
            self._revoke(sync.revoke, None)
            conn.executemany("DELETE FROM revoked WHERE card = ?",
                             [(self.card_ref(c),) for c in sync.unrevoke])
        if holidays is not None:
            conn.execute("DELETE FROM holidays")
            conn.executemany("INSERT INTO holidays (day, name) VALUES (?, ?)",
                             [(d.isoformat(), n) for d, n in holidays.items()])
            conn.execute("DELETE FROM workdays")
            conn.executemany("INSERT INTO workdays (day, name) VALUES (?, ?)",
                             [(d.isoformat(), n) for d, n in workdays.items()])
        self._put_groups(groups)
        conn.executemany("DELETE FROM cards WHERE person = ?",
                         [(self._ref(p.id),) for p in persons])
        for person in persons:
            self._put_person(self.keyed(person), self._masks(person))
        return len(persons)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
