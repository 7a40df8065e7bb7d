"""What the page asks of the event store: filtered, keyset-paginated passages, totals, CSV rows.

Pages are anchored on the last row shown, ``(ts_ms, id)`` (event ids are unique), never on an
offset, so "older" keeps showing the next rows while new events arrive, and a page costs an index
range scan however deep it is.  A person filter matches a person id exactly or any part of a name
the station synced to a gate (``王芳``); a card filter matches the card's keyed hash (with the
site's card-hash key) or, for gates that do not hash, the card number itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Select, exists, func, or_, select, tuple_

from protocol.cards import CardNumberError, canonical_card
from station.store import Store

View = Literal["passages", "admin"]
#: Event types shown in the administration view, not among passages.
ADMIN_TYPE_PREFIXES = ("audit", "command.", "person.forgotten", "config.")
CURSOR = re.compile(r"^(\d{1,16})\.([A-Za-z0-9_.-]{1,64})$")
MASK_VISIBLE_DIGITS = 4
HASH_REF = re.compile(r"^[0-9a-f]{64}$")
CSV_MAX_ROWS = 100_000


class QueryError(ValueError):
    """A filter or cursor the page cannot use; the text names the field."""


@dataclass(frozen=True)
class Filter:
    """The filters of one view; empty strings and None mean "any"."""

    view: View = "passages"
    gate: str = ""
    door: str = ""
    person: str = ""
    card: str = ""
    type: str = ""
    since_ms: int | None = None
    until_ms: int | None = None
    alarms_only: bool = False


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    newer: str | None  # cursor for the page of newer rows, None on the newest page
    older: str | None  # cursor for the page of older rows, None on the oldest page


def cursor_of(row: dict[str, Any]) -> str:
    return f"{row['ts_ms']}.{row['id']}"


def parse_cursor(text: str) -> tuple[int, str]:
    match = CURSOR.match(text)
    if match is None:
        raise QueryError(f"not a page position: {text!r}")
    return int(match[1]), match[2]


def mask_card(ref: str | None) -> str:
    """How a credential reference is shown: ``****5678``, or the start of a keyed hash."""
    if not ref:
        return ""
    if HASH_REF.match(ref):
        return f"#{ref[:8]}"
    return "****" + ref[-MASK_VISIBLE_DIGITS:]


def card_refs(card: str, key: bytes | None) -> list[str]:
    """The ``credential_ref`` values a card number may be stored as: in any printed form the
    operator types (leading zeros, hex, ``facility,number``) it is found by its canonical form
    (:func:`protocol.cards.canonical_card`), the form the gate hashes."""
    card = card.strip()
    with contextlib.suppress(CardNumberError):
        card = canonical_card(card)
    refs = [card]
    if key is not None:
        refs.append(hmac.new(key, card.encode(), hashlib.sha256).hexdigest())
    return refs


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Passages:
    """Queries over the events table for the passages and administration views."""

    def __init__(self, store: Store, *, card_key: bytes | None = None) -> None:
        self.store = store
        self.card_key = card_key
        self.events = store.t["events"]
        self.names = store.t["person_names"]
        self.portraits = store.t["portraits"]

    def _where(self, query: Select[Any], f: Filter) -> Select[Any]:
        e, n = self.events, self.names
        admin = or_(*(e.c.type.startswith(p) for p in ADMIN_TYPE_PREFIXES))
        query = query.where(admin if f.view == "admin" else ~admin)
        for column, value in ((e.c.gate, f.gate), (e.c.door, f.door), (e.c.type, f.type)):
            if value:
                query = query.where(column == value)
        if f.person:
            named = exists().where(n.c.gate == e.c.gate, n.c.person == e.c.person,
                                   n.c.name.like(_like(f.person), escape="\\"))
            query = query.where(or_(e.c.person == f.person, named))
        if f.card:
            query = query.where(e.c.credential_ref.in_(card_refs(f.card, self.card_key)))
        if f.since_ms is not None:
            query = query.where(e.c.ts_ms >= f.since_ms)
        if f.until_ms is not None:
            query = query.where(e.c.ts_ms <= f.until_ms)
        if f.alarms_only:
            query = query.where(e.c.alarm.is_(True))
        return query

    def _select(self) -> Select[Any]:
        e, n, p = self.events, self.names, self.portraits
        name = (select(n.c.name).where(n.c.gate == e.c.gate, n.c.person == e.c.person)
                .limit(1).scalar_subquery())
        return (select(e, name.label("name"), p.c.event_id.is_not(None).label("portrait"))
                .select_from(e.outerjoin(p, p.c.event_id == e.c.id)))

    def total(self, f: Filter) -> int:
        query = self._where(select(func.count()).select_from(self.events), f)
        with self.store.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def page(self, f: Filter, *, limit: int, before: str = "", after: str = "") -> Page:
        """Newest first: the newest page, or the page older than ``before`` / newer than
        ``after`` (cursors from a previous :class:`Page`)."""
        e = self.events
        key = tuple_(e.c.ts_ms, e.c.id)
        query = self._where(self._select(), f)
        if after:
            query = query.where(key > tuple_(*parse_cursor(after)))
            query = query.order_by(e.c.ts_ms.asc(), e.c.id.asc())
        else:
            if before:
                query = query.where(key < tuple_(*parse_cursor(before)))
            query = query.order_by(e.c.ts_ms.desc(), e.c.id.desc())
        with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query.limit(limit + 1))]
        more = len(rows) > limit
        rows = rows[:limit]
        if after:
            rows.reverse()
        if not rows:
            return Page(rows, self.total(f), None, None)
        has_newer = more if after else bool(before) or self._exists_beyond(f, rows[0], newer=True)
        has_older = more if not after else self._exists_beyond(f, rows[-1], newer=False)
        return Page(rows, self.total(f), cursor_of(rows[0]) if has_newer else None,
                    cursor_of(rows[-1]) if has_older else None)

    def _exists_beyond(self, f: Filter, row: dict[str, Any], *, newer: bool) -> bool:
        e = self.events
        key, anchor = tuple_(e.c.ts_ms, e.c.id), tuple_(row["ts_ms"], row["id"])
        query = self._where(select(e.c.id), f).where(key > anchor if newer else key < anchor)
        with self.store.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def one(self, event_id: str) -> dict[str, Any] | None:
        query = self._select().where(self.events.c.id == event_id)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row else None

    def since(self, received_ms: int, *, limit: int = 500) -> list[dict[str, Any]]:
        """The newest ``limit`` events received at or after ``received_ms``, oldest first (the
        live feed: a burst larger than a page shows its end, the page shows the rest)."""
        e = self.events
        query = (self._select().where(e.c.received_ms >= received_ms)
                 .order_by(e.c.received_ms.desc(), e.c.ts_ms.desc(), e.c.id.desc()).limit(limit))
        with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        rows.reverse()
        return rows

    def export(self, f: Filter, *, chunk: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """Every row of the filter, oldest first, in chunks (for CSV; at most CSV_MAX_ROWS)."""
        e = self.events
        after: tuple[int, str] | None = None
        sent = 0
        while sent < CSV_MAX_ROWS:
            query = self._where(self._select(), f).order_by(e.c.ts_ms.asc(), e.c.id.asc())
            if after is not None:
                query = query.where(tuple_(e.c.ts_ms, e.c.id) > tuple_(*after))
            with self.store.engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(query.limit(chunk))]
            if not rows:
                return
            yield rows[:CSV_MAX_ROWS - sent]
            sent += len(rows)
            after = (rows[-1]["ts_ms"], rows[-1]["id"])

    def known_doors(self, gate: str) -> set[str]:
        """Doors the station has seen events from at ``gate``."""
        e = self.events
        query = select(e.c.door).where(e.c.gate == gate, e.c.door.is_not(None)).distinct()
        with self.store.engine.connect() as conn:
            return set(conn.scalars(query))


CARD_KEY_BYTES = 32


def read_card_key(path: Path) -> bytes:
    """The site's card-hash key file as the gates keep it: 32 raw bytes or 64 hex characters."""
    data = path.read_bytes()
    text = data.strip()
    if len(text) == 2 * CARD_KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) == CARD_KEY_BYTES:
        return data
    raise QueryError(f"{path}: expected {CARD_KEY_BYTES} raw bytes or {2 * CARD_KEY_BYTES} hex "
                     "characters")
