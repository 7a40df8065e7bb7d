"""The station's record of what its gates uploaded: events, portraits, gate state, commands.

Delivery from the gates is at-least-once, so every write is idempotent: events are keyed by their
id and inserted with ``ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL), portraits likewise by
their event id.  Several receivers may write to one database at the same time (shared
subscriptions split a gate's messages between them), which is why gaps in a gate's ``seq`` are
computed from the database, never from what one receiver saw.

SQLAlchemy Core, no ORM: the hot path is one INSERT per batch (per thousand rows on SQLite), its
values handed to the database driver as they are.  All methods block; the
receiver and the web page call them from worker threads.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    case,
    create_engine,
    delete,
    event,
    func,
    inspect,
    literal_column,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from station.messages import SAFE_NAME, EventRow

log = logging.getLogger(__name__)

ID_CHARS = 64
NAME_CHARS = 256
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: The columns :meth:`Store.add_events` fills, in the order it passes them.
EVENT_COLUMNS = ("id", "gate", "seq", "ts_ms", "type", "door", "reader", "credential_kind",
                 "credential_ref", "person", "reason", "alarm", "data", "received_ms",
                 "time_trusted", "gate_ts_ms")
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: Rows per SQLite INSERT, 16 parameters each: within SQLite's 32,766 bound parameters.
SQLITE_ROWS_PER_INSERT = 1000
#: The partial index of the erasure notices by the id they erase (Store._add_erasure_index).
ERASURE_INDEX = "events_erased"
FORGOTTEN = "person.forgotten"
#: ``data.erase`` in each database's SQL: the index and the queries that use it must say it the
#: same way, so both take it from here.
ERASED_ID_SQL = {"postgresql": "(data ->> 'erase')", "sqlite": "json_extract(data, '$.erase')"}

Range = tuple[int, int]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _tables(metadata: MetaData) -> dict[str, Table]:
    events = Table(
        "events", metadata,
        Column("id", String(ID_CHARS), primary_key=True),
        Column("gate", String(ID_CHARS), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("ts_ms", BigInteger, nullable=False),
        Column("type", String(NAME_CHARS), nullable=False),
        Column("door", String(NAME_CHARS)),
        Column("reader", String(NAME_CHARS)),
        Column("credential_kind", String(NAME_CHARS)),
        Column("credential_ref", String(NAME_CHARS)),
        Column("person", String(NAME_CHARS)),
        Column("reason", String(NAME_CHARS)),
        Column("alarm", Boolean, nullable=False),
        Column("data", JSON, nullable=False),
        Column("received_ms", BigInteger, nullable=False),
        # ts_ms is the gate's time, corrected by the gate's clock.corrected events when it was
        # recorded on an untrusted clock; gate_ts_ms keeps what the gate sent
        Column("time_trusted", Boolean, nullable=False, server_default=true()),
        Column("gate_ts_ms", BigInteger),
        Index("events_gate_seq", "gate", "seq"),
        Index("events_ts", "ts_ms"),
        Index("events_person", "person"),
        Index("events_ts_id", "ts_ms", "id"),  # keyset pagination of the page
        Index("events_received", "received_ms"),  # the page's live feed
    )
    portraits = Table(
        "portraits", metadata,
        Column("event_id", String(ID_CHARS), primary_key=True),
        Column("gate", String(ID_CHARS), nullable=False),
        Column("path", Text, nullable=False),
        Column("bytes", Integer, nullable=False),
        Column("ts_ms", BigInteger, nullable=False),
        Column("received_ms", BigInteger, nullable=False),
    )
    gates = Table(
        "gates", metadata,
        Column("gate", String(ID_CHARS), primary_key=True),
        Column("state", String(16), nullable=False, default="unknown"),
        Column("status", JSON),
        Column("status_ms", BigInteger),
        Column("health", JSON),
        Column("health_ms", BigInteger),
        Column("contiguous_seq", BigInteger, nullable=False, default=0),
    )
    commands = Table(
        "commands", metadata,
        Column("id", String(ID_CHARS), primary_key=True),
        Column("gate", String(ID_CHARS), nullable=False),
        Column("name", String(32), nullable=False),
        Column("person", String(NAME_CHARS)),
        Column("issued_ms", BigInteger, nullable=False),
        Column("ok", Boolean),
        Column("reason", String(NAME_CHARS)),
        Column("result", JSON),
        Column("result_ms", BigInteger),
    )
    face_persons = Table(
        "face_persons", metadata,
        Column("gate", String(ID_CHARS), primary_key=True),
        Column("person", String(NAME_CHARS), primary_key=True),
        Column("enrolled_ms", BigInteger, nullable=False),
    )
    sync_state = Table(
        "sync_state", metadata,
        Column("gate", String(ID_CHARS), primary_key=True),
        Column("version", BigInteger, nullable=False),
        Column("residents", JSON, nullable=False),
    )
    clock_corrections = Table(
        "clock_corrections", metadata,
        Column("gate", String(ID_CHARS), primary_key=True),
        Column("seq", BigInteger, primary_key=True),
        Column("offset_ms", BigInteger, nullable=False),
        Column("from_ms", BigInteger, nullable=False),
        Column("to_ms", BigInteger, nullable=False),
    )
    command_counter = Table(
        "command_counter", metadata,
        Column("station", String(ID_CHARS), primary_key=True),
        Column("value", BigInteger, nullable=False),
    )
    tables = (events, portraits, gates, commands, face_persons, sync_state, clock_corrections,
              command_counter)
    return {t.name: t for t in (*tables, *_web_tables(metadata))}


def _web_tables(metadata: MetaData) -> tuple[Table, ...]:
    """The web page's own records: accounts, sessions, alarms, names, operator actions."""
    users = Table(
        "users", metadata,
        Column("name", String(ID_CHARS), primary_key=True),
        Column("role", String(16), nullable=False),
        Column("password_hash", Text, nullable=False),
        Column("created_ms", BigInteger, nullable=False),
    )
    sessions = Table(
        "sessions", metadata,
        Column("token_hash", String(ID_CHARS), primary_key=True),
        Column("user", String(ID_CHARS), nullable=False),
        Column("created_ms", BigInteger, nullable=False),
        Column("expires_ms", BigInteger, nullable=False),
    )
    alarms = Table(
        "alarms", metadata,
        Column("id", String(NAME_CHARS), primary_key=True),
        Column("gate", String(ID_CHARS), nullable=False),
        Column("door", String(NAME_CHARS)),
        Column("kind", String(NAME_CHARS), nullable=False),
        Column("event_id", String(ID_CHARS)),
        Column("ts_ms", BigInteger, nullable=False),
        Column("detail", String(NAME_CHARS)),
        Column("ack_by", String(ID_CHARS)),
        Column("ack_ms", BigInteger),
        Index("alarms_ts", "ts_ms"),
    )
    person_names = Table(
        "person_names", metadata,
        Column("gate", String(ID_CHARS), primary_key=True),
        Column("person", String(NAME_CHARS), primary_key=True),
        Column("name", String(NAME_CHARS), nullable=False),
        Index("person_names_name", "name"),
    )
    operator_actions = Table(
        "operator_actions", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("ts_ms", BigInteger, nullable=False),
        Column("operator", String(ID_CHARS), nullable=False),
        Column("action", String(64), nullable=False),
        Column("target", String(NAME_CHARS)),
        Column("detail", Text),
        Index("operator_actions_target", "action", "target"),
    )
    return users, sessions, alarms, person_names, operator_actions


#: Bytes of a quarantined payload kept for the operator to inspect.
QUARANTINE_PAYLOAD_BYTES = 16 * 1024


def _repair_tables(metadata: MetaData) -> dict[str, Table]:
    """What keeps the record whole against broken or hostile gates (issue 17)."""
    quarantine = Table(
        "quarantine", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("gate", String(ID_CHARS)),
        Column("seq", BigInteger),
        Column("topic", String(NAME_CHARS), nullable=False),
        Column("reason", String(NAME_CHARS), nullable=False),
        Column("bytes", Integer, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("received_ms", BigInteger, nullable=False),
        Index("quarantine_gate_seq", "gate", "seq"),
    )
    lost = Table(
        "lost_ranges", metadata,
        Column("gate", String(ID_CHARS), primary_key=True),
        Column("low", BigInteger, primary_key=True),
        Column("high", BigInteger, nullable=False),
        Column("recorded_ms", BigInteger, nullable=False),
    )
    return {t.name: t for t in (quarantine, lost)}


@dataclass(frozen=True)
class Quarantined:
    """A message set aside: what an operator sees in ``menjin station quarantine``."""

    topic: str
    reason: str
    payload: bytes
    gate: str | None = None
    seq: int | None = None


def subtract_ranges(ranges: list[Range], covered: list[Range]) -> list[Range]:
    """``ranges`` minus the (sorted, inclusive) ``covered`` ranges."""
    out: list[Range] = []
    for low, high in ranges:
        for c_low, c_high in covered:
            if c_high < low or c_low > high:
                continue
            if c_low > low:
                out.append((low, c_low - 1))
            low = c_high + 1
            if low > high:
                break
        if low <= high:
            out.append((low, high))
    return out


def missing_ranges(start: int, seqs: Iterable[int]) -> tuple[list[Range], int]:
    """Missing ranges above ``start`` given the sorted seqs present, and the new contiguous end.

    ``start`` is the highest seq up to which nothing is missing.
    """
    gaps: list[Range] = []
    expected = start + 1
    for seq in seqs:
        if seq > expected:
            gaps.append((expected, seq - 1))
        expected = max(expected, seq + 1)
    contiguous = gaps[0][0] - 1 if gaps else expected - 1
    return gaps, contiguous


@dataclass(frozen=True)
class GateView:
    """A gate as the page shows it."""

    gate: str
    state: str
    status: dict[str, Any]
    status_ms: int | None
    health: dict[str, Any]
    health_ms: int | None
    contiguous_seq: int

    @property
    def backlog(self) -> int | None:
        """Events the gate still has to upload, from its last health report."""
        depth = self.health.get("queue_depth")
        return depth if isinstance(depth, int) else None


class Store:
    """Events, portraits and gate state in one SQL database plus a portrait folder.

    ``schema`` (PostgreSQL only) keeps the tables in their own schema, e.g. one per test run.
    """

    def __init__(self, url: str, *, portraits_dir: Path, schema: str | None = None) -> None:
        self.url = url
        self.portraits_dir = portraits_dir
        self.metadata = MetaData(schema=schema)
        self.t = {**_tables(self.metadata), **_repair_tables(self.metadata)}
        self.engine: Engine = self._engine(url)
        self._insert = sqlite.insert if self.engine.dialect.name == "sqlite" else postgresql.insert
        self.metadata.create_all(self.engine)
        self._add_time_columns()
        self._add_erasure_index()

    def _add_time_columns(self) -> None:
        """Stations created before events carried ``time_trusted``: add the two time columns
        (create_all makes missing tables, never missing columns)."""
        events = self.t["events"]
        have = {c["name"] for c in inspect(self.engine).get_columns(
            events.name, schema=self.metadata.schema)}
        name = f"{self.metadata.schema}.{events.name}" if self.metadata.schema else events.name
        with self.engine.begin() as conn:
            if "time_trusted" not in have:
                conn.execute(text(f"ALTER TABLE {name} ADD COLUMN time_trusted BOOLEAN "
                                  "NOT NULL DEFAULT TRUE"))
            if "gate_ts_ms" not in have:
                conn.execute(text(f"ALTER TABLE {name} ADD COLUMN gate_ts_ms BIGINT"))

    def _add_erasure_index(self) -> None:
        """The index of the erasure notices by the id they erase (``data.erase`` of the
        ``person.forgotten`` events, :meth:`_notices_naming`): an expression on a JSON field,
        which each database writes its own way, so not in the table's metadata.  Created on
        every start if missing (a station made before it existed builds it once)."""
        events = self.t["events"]
        name = f"{self.metadata.schema}.{events.name}" if self.metadata.schema else events.name
        erased = ERASED_ID_SQL[self.engine.dialect.name]
        with self.engine.begin() as conn:
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {ERASURE_INDEX} ON {name} ({erased}) "
                              f"WHERE type = '{FORGOTTEN}'"))

    @staticmethod
    def _engine(url: str) -> Engine:
        if not url.startswith("sqlite"):
            return create_engine(url, pool_pre_ping=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the web page read while a receiver writes; NORMAL is durable across
            # process crashes, and the gates re-send anything not acknowledged anyway.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA secure_delete=ON")  # an erased person is zeroed, not freed
            cursor.close()

        return engine

    def close(self) -> None:
        self.engine.dispose()

    def insert_new(self, table: str, rows: Sequence[Mapping[str, Any]], key: str) -> None:
        """Insert rows whose ``key`` is not stored yet; the others are left as they are."""
        if rows:
            statement = self._insert(self.t[table]).on_conflict_do_nothing(index_elements=[key])
            with self.engine.begin() as conn:
                conn.execute(statement, [dict(r) for r in rows])

    # -- events ---------------------------------------------------------------------------------

    def add_events(self, rows: Sequence[EventRow]) -> list[EventRow]:
        """Store a batch in one transaction; returns the rows that were new (not duplicates,
        neither of stored events nor of an earlier row of the batch)."""
        if not rows:
            return []
        received = now_ms()
        # in the order of EVENT_COLUMNS; data as its JSON text, as stored
        values = [(r.id, r.gate, r.seq, r.ts_ms, r.type, r.door, r.reader, r.credential_kind,
                   r.credential_ref, r.person, r.reason, r.alarm, _ENCODE(r.data), received,
                   r.time_trusted, r.ts_ms) for r in rows]
        with self.engine.begin() as conn:
            self._ensure_gates(conn, {r.gate for r in rows})
            inserted = self._insert_events(conn, values)
            new = []
            for r in rows:
                if r.id in inserted:
                    new.append(r)
                    inserted.discard(r.id)  # a second copy in the batch is a duplicate
            self._correct_clocks(conn, new)
        return new

    def _insert_events(self, conn: Connection, values: list[tuple[Any, ...]]) -> set[str]:
        """``INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id`` of rows of EVENT_COLUMNS;
        the ids inserted.

        The values go to the driver as they are, not through SQLAlchemy's per-value processing:
        SQLite gets multi-row ``VALUES`` with positional parameters, PostgreSQL one array per
        column, unnested (a multi-row ``VALUES`` there makes psycopg parse a statement of
        thousands of placeholders, which cost more than the database's work).
        """
        events = self.t["events"]
        name = self.engine.dialect.identifier_preparer.format_table(events)
        head = f"INSERT INTO {name} ({', '.join(EVENT_COLUMNS)}) "
        tail = " ON CONFLICT (id) DO NOTHING RETURNING id"
        if self.engine.dialect.name != "sqlite":
            arrays = ", ".join(
                f"%({column})s::{events.c[column].type.compile(self.engine.dialect)}[]"
                for column in EVENT_COLUMNS)
            columns = zip(*values, strict=True)
            return set(conn.exec_driver_sql(
                f"{head}SELECT * FROM unnest({arrays}){tail}",  # noqa: S608 (our own names)
                dict(zip(EVENT_COLUMNS, map(list, columns), strict=True))).scalars())
        inserted: set[str] = set()
        row = f"({', '.join('?' * len(EVENT_COLUMNS))})"
        for start in range(0, len(values), SQLITE_ROWS_PER_INSERT):
            chunk = values[start:start + SQLITE_ROWS_PER_INSERT]
            inserted.update(conn.exec_driver_sql(
                f"{head}VALUES {', '.join([row] * len(chunk))}{tail}",
                tuple(value for row_values in chunk for value in row_values)).scalars())
        return inserted

    def _correct_clocks(self, conn: Connection, new: Sequence[EventRow]) -> None:
        """Apply the gates' ``clock.corrected`` offsets to events recorded on an untrusted clock.

        A correction (seq S, offset, from_ms..to_ms of the gate's untrusted timeline) applies to
        the same gate's untrusted events with a lower seq whose sent time lies in that range;
        either may arrive first (alarms overtake, re-sends come late), so both orders are
        handled here, and a duplicate never applies twice (only new rows get here).
        """
        events, corrections = self.t["events"], self.t["clock_corrections"]
        for r in new:
            if r.type != "clock.corrected":
                continue
            try:
                offset, lo, hi = (int(r.data[k]) for k in ("offset_ms", "from_ms", "to_ms"))
            except (KeyError, TypeError, ValueError):
                log.warning("gate %s: clock.corrected #%d without its range; ignored", r.gate,
                            r.seq)
                continue
            conn.execute(self._insert(corrections).on_conflict_do_nothing(), [
                {"gate": r.gate, "seq": r.seq, "offset_ms": offset, "from_ms": lo, "to_ms": hi}])
            conn.execute(
                update(events)
                .where(events.c.gate == r.gate, events.c.seq < r.seq,
                       events.c.time_trusted.is_(False), events.c.gate_ts_ms.between(lo, hi))
                .values(ts_ms=events.c.gate_ts_ms + offset))
        for r in new:
            if r.time_trusted:
                continue
            found = conn.execute(
                select(corrections.c.offset_ms)
                .where(corrections.c.gate == r.gate, corrections.c.seq > r.seq,
                       corrections.c.from_ms <= r.ts_ms, corrections.c.to_ms >= r.ts_ms)
                .order_by(corrections.c.seq).limit(1)).scalar()
            if found is not None:
                conn.execute(update(events).where(events.c.id == r.id)
                             .values(ts_ms=r.ts_ms + int(found)))

    def next_command_counter(self, station: str = "station") -> int:
        """The next command counter of this station's key, kept here: above every counter it
        issued before and at least the time in microseconds
        (:func:`protocol.envelope.counter_after`), so it keeps increasing when the station's
        clock goes back."""
        table = self.t["command_counter"]
        seed = now_ms() * 1000
        with self.engine.begin() as conn:
            conn.execute(self._insert(table).on_conflict_do_nothing(),
                         [{"station": station, "value": 0}])
            bumped = case((table.c.value + 1 > seed, table.c.value + 1), else_=seed)
            return int(conn.execute(
                update(table).where(table.c.station == station).values(value=bumped)
                .returning(table.c.value)).scalar_one())

    def count_events(self, gate: str | None = None) -> int:
        query = select(func.count()).select_from(self.t["events"])
        if gate is not None:
            query = query.where(self.t["events"].c.gate == gate)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def event_ids(self, gate: str | None = None) -> list[str]:
        query = select(self.t["events"].c.id)
        if gate is not None:
            query = query.where(self.t["events"].c.gate == gate)
        with self.engine.connect() as conn:
            return list(conn.scalars(query))

    def recent_events(
        self,
        *,
        gate: str | None = None,
        door: str | None = None,
        person: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        alarms_only: bool = False,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Newest first, each with ``portrait`` True when a portrait file is stored."""
        events, portraits = self.t["events"], self.t["portraits"]
        query = (
            select(events, portraits.c.event_id.is_not(None).label("portrait"))
            .select_from(events.outerjoin(portraits, portraits.c.event_id == events.c.id))
            # within one gate, seq is the order (a clock may have stepped between two events)
            .order_by(*((events.c.seq.desc(),) if gate else
                        (events.c.ts_ms.desc(), events.c.seq.desc())))
            .limit(limit)
        )
        filters = {events.c.gate: gate, events.c.door: door, events.c.person: person}
        for column, value in filters.items():
            if value:
                query = query.where(column == value)
        if since_ms is not None:
            query = query.where(events.c.ts_ms >= since_ms)
        if until_ms is not None:
            query = query.where(events.c.ts_ms <= until_ms)
        if alarms_only:
            query = query.where(events.c.alarm.is_(True))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # -- gaps -----------------------------------------------------------------------------------

    def gaps(
        self, gate: str, *, settled_before_ms: int | None = None, remember: bool = True
    ) -> list[Range]:
        """Missing ``seq`` ranges of ``gate`` (inclusive), lowest first.

        Only events received before ``settled_before_ms`` count, so a batch still in another
        receiver's hands is not reported as missing.  The contiguous prefix is remembered
        (unless ``remember`` is False, for read-only callers such as the web page) so the query
        only reads the tail above the first gap.
        """
        events, gates = self.t["events"], self.t["gates"]
        quarantine, lost = self.t["quarantine"], self.t["lost_ranges"]
        with self.engine.connect() as conn:
            start = conn.scalar(select(gates.c.contiguous_seq).where(gates.c.gate == gate)) or 0
            query = select(events.c.seq).where(events.c.gate == gate, events.c.seq > start)
            # a quarantined event is here, only set aside: not missing
            held = select(quarantine.c.seq).where(quarantine.c.gate == gate,
                                                  quarantine.c.seq > start)
            if settled_before_ms is not None:
                query = query.where(events.c.received_ms <= settled_before_ms)
                held = held.where(quarantine.c.received_ms <= settled_before_ms)
            seqs = list(heapq.merge(conn.scalars(query.order_by(events.c.seq)),
                                    conn.scalars(held.order_by(quarantine.c.seq))))
            ranges, contiguous = missing_ranges(start, seqs)
            tail = self._tail_gap(conn, gate, seqs[-1] if seqs else start, settled_before_ms)
            gone = [(r.low, r.high) for r in conn.execute(
                select(lost.c.low, lost.c.high).where(lost.c.gate == gate, lost.c.high > start)
                .order_by(lost.c.low))]
        if tail is not None:
            ranges.append(tail)
        if gone:  # the gate no longer holds them: nothing to wait for
            ranges = subtract_ranges(ranges, gone)
            top = max(seqs[-1] if seqs else start, max(high for _, high in gone))
            contiguous = ranges[0][0] - 1 if ranges else top
        if remember and contiguous > start:
            # its own write transaction: a read transaction upgraded to a write fails at once
            # under SQLite when another receiver wrote meanwhile; the condition keeps it monotonic
            with self.engine.begin() as conn:
                conn.execute(
                    update(gates)
                    .where(gates.c.gate == gate, gates.c.contiguous_seq < contiguous)
                    .values(contiguous_seq=contiguous)
                )
        return ranges

    def _tail_gap(self, conn: Connection, gate: str, highest: int,
                  settled_before_ms: int | None) -> Range | None:
        """Events lost after the newest one stored: the gate's settled health report says it
        recorded up to ``last_seq`` and has nothing left to send (``queue_depth`` 0)."""
        gates = self.t["gates"]
        row = conn.execute(select(gates.c.health, gates.c.health_ms)
                           .where(gates.c.gate == gate)).first()
        if row is None or not isinstance(row.health, dict):
            return None
        last, depth = row.health.get("last_seq"), row.health.get("queue_depth")
        if (not isinstance(last, int) or isinstance(last, bool) or depth != 0
                or not highest < last <= 2**53):
            return None
        if settled_before_ms is not None and (row.health_ms or 0) > settled_before_ms:
            return None
        return (highest + 1, last)

    # -- portraits ------------------------------------------------------------------------------

    def add_portrait(self, *, event_id: str, gate: str, ts_ms: int, jpeg: bytes) -> bool:
        """Save a portrait file and its row; False when it was already stored."""
        if not SAFE_NAME.match(event_id) or not SAFE_NAME.match(gate):
            raise ValueError(f"unsafe portrait name {gate!r}/{event_id!r}")
        portraits = self.t["portraits"]
        with self.engine.connect() as conn:
            if conn.scalar(select(portraits.c.path).where(portraits.c.event_id == event_id)):
                return False
        day = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d")
        relative = Path(gate) / day / f"{event_id}.jpg"
        target = self.portraits_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".part{os.getpid()}")
        partial.write_bytes(jpeg)
        partial.replace(target)  # atomic: a reader never sees half a JPEG
        statement = self._insert(portraits).on_conflict_do_nothing(index_elements=["event_id"])
        with self.engine.begin() as conn:
            result = conn.execute(statement, {
                "event_id": event_id, "gate": gate, "path": relative.as_posix(),
                "bytes": len(jpeg), "ts_ms": ts_ms, "received_ms": now_ms(),
            })
        return bool(result.rowcount)

    def portrait_file(self, event_id: str) -> Path | None:
        portraits = self.t["portraits"]
        with self.engine.connect() as conn:
            relative = conn.scalar(select(portraits.c.path).where(portraits.c.event_id == event_id))
        if relative is None:
            return None
        path = self.portraits_dir / relative
        return path if path.is_file() else None

    # -- gates ----------------------------------------------------------------------------------

    def _ensure_gates(self, conn: Connection, gates: Iterable[str]) -> None:
        table = self.t["gates"]
        conn.execute(
            self._insert(table).on_conflict_do_nothing(index_elements=["gate"]),
            [{"gate": g, "state": "unknown", "contiguous_seq": 0} for g in sorted(gates)],
        )

    def set_status(self, gate: str, status: Mapping[str, Any]) -> str | None:
        """Record a status message; returns the gate's previous state."""
        state = status.get("state")
        state = state if state in ("online", "offline") else "unknown"
        table = self.t["gates"]
        with self.engine.begin() as conn:
            self._ensure_gates(conn, [gate])
            previous = conn.scalar(select(table.c.state).where(table.c.gate == gate))
            conn.execute(
                update(table).where(table.c.gate == gate)
                .values(state=state, status=dict(status), status_ms=now_ms())
            )
        return previous

    def set_health(self, gate: str, health: Mapping[str, Any]) -> None:
        table = self.t["gates"]
        with self.engine.begin() as conn:
            self._ensure_gates(conn, [gate])
            conn.execute(
                update(table).where(table.c.gate == gate)
                .values(health=dict(health), health_ms=now_ms())
            )

    def gates(self) -> list[GateView]:
        table = self.t["gates"]
        with self.engine.connect() as conn:
            rows = conn.execute(select(table).order_by(table.c.gate)).all()
        return [
            GateView(
                gate=r.gate, state=r.state, status=r.status or {}, status_ms=r.status_ms,
                health=r.health or {}, health_ms=r.health_ms, contiguous_seq=r.contiguous_seq,
            )
            for r in rows
        ]

    # -- commands, face enrolments, sync versions -----------------------------------------------

    def record_command(self, envelope: Mapping[str, Any]) -> None:
        """Remember a command the station sent, so its result can be matched to a person."""
        person = envelope["args"].get("person")
        with self.engine.begin() as conn:
            conn.execute(self.t["commands"].insert().values(
                id=envelope["id"], gate=envelope["gate"], name=envelope["name"],
                person=person if isinstance(person, str) else None,
                issued_ms=envelope["issued_at_ms"],
            ))

    def record_result(self, gate: str, result: Mapping[str, Any]) -> None:
        """Store a gate's command result; an accepted enrol/remove/forget updates face counts."""
        commands, faces = self.t["commands"], self.t["face_persons"]
        command_id = result.get("id")
        name = result.get("name")
        ok = result.get("ok") is True
        with self.engine.begin() as conn:
            person = None
            if isinstance(command_id, str):
                conn.execute(
                    update(commands).where(commands.c.id == command_id, commands.c.gate == gate)
                    .values(ok=ok, reason=str(result.get("reason", "")),
                            result=result.get("result"), result_ms=now_ms())
                )
                person = conn.scalar(select(commands.c.person).where(commands.c.id == command_id))
            if not ok or person is None:
                return
            if name == "enrol":
                conn.execute(
                    self._insert(faces).on_conflict_do_nothing(index_elements=["gate", "person"]),
                    {"gate": gate, "person": person, "enrolled_ms": now_ms()},
                )
            elif name in ("remove", "forget"):
                conn.execute(delete(faces).where(faces.c.gate == gate, faces.c.person == person))
            if name == "forget":  # this gate's confirmation may be the last one outstanding
                self._drop_pair_when_confirmed(conn, person)

    def command_result(self, command_id: str) -> dict[str, Any] | None:
        commands = self.t["commands"]
        with self.engine.connect() as conn:
            row = conn.execute(select(commands).where(commands.c.id == command_id)).first()
        return dict(row._mapping) if row is not None else None

    def face_person_count(self) -> int:
        """Distinct persons enrolled for face entry across all gates (the filing threshold)."""
        faces = self.t["face_persons"]
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count(func.distinct(faces.c.person)))) or 0)

    def forget_person(self, gate: str, person: str, pseudonym: str | None) -> int:
        """Erase ``gate``'s records of a forgotten person; returns the events rewritten.

        Their events keep their place in the history under the gate's pseudonym, without the
        credential reference that could re-identify them; their portraits are deleted.  Only
        that gate's events and portraits: a gate's ``person.forgotten`` never touches another
        gate's history (an erasure across gates is the station's own ``menjin station forget
        --all``, carried out by each gate).
        """
        events, portraits, faces = self.t["events"], self.t["portraits"], self.t["face_persons"]
        mine = (events.c.gate == gate) & (events.c.person == person)
        theirs = select(events.c.id).where(mine)
        with self.engine.begin() as conn:  # writes first: SQLite then waits for its lock
            paths = list(conn.scalars(
                delete(portraits).where(portraits.c.event_id.in_(theirs),
                                        portraits.c.gate == gate)
                .returning(portraits.c.path)
            ))
            rewritten = conn.execute(
                update(events).where(mine)
                .values(person=pseudonym, credential_ref=None)
            ).rowcount
            conn.execute(delete(faces).where(faces.c.gate == gate, faces.c.person == person))
            names = self.t["person_names"]
            conn.execute(delete(names).where(names.c.person == person))
            self._drop_pair_when_confirmed(conn, person, late=(gate, pseudonym))
        if self.engine.dialect.name == "sqlite":  # the old rows must not live on in the -wal
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        for relative in paths:
            (self.portraits_dir / relative).unlink(missing_ok=True)
        return int(rewritten)

    def _confirmed_gates(self, conn: Connection, person: str) -> set[str]:
        """The ONE record of erasure confirmations: a gate has confirmed when it answered a
        ``forget`` for ``person`` with ok (the ``commands`` rows :meth:`erasures` lists, from
        ``menjin station forget``) or sent its ``person.forgotten`` notice naming the id (an
        erasure made at the gate itself).  Both are dropped together by
        :meth:`_drop_pair_when_confirmed`."""
        events, commands = self.t["events"], self.t["commands"]
        answered = set(conn.scalars(select(commands.c.gate).where(
            commands.c.name == "forget", commands.c.person == person, commands.c.ok.is_(True))))
        noticed = {r.gate for r in conn.execute(
            select(events.c.gate, events.c.data).where(*self._notices_naming(person)))
            if r.data.get("erase") == person}
        return answered | noticed

    def _notices_naming(self, person: str) -> tuple[ColumnElement[bool], ...]:
        """The ``person.forgotten`` notices whose ``data.erase`` may be ``person``, found by
        :meth:`_add_erasure_index`'s index (both terms written as the index is, the type a
        literal: a partial index serves only a query that states its condition).  Every notice
        a gate sends runs this; reading and parsing every notice ever stored, as before, made
        a flood of notices cost the station quadratic time.  Callers still check
        ``data["erase"] == person`` on the rows (a number in the JSON reads as text in SQL)."""
        erased: ColumnElement[Any] = literal_column(ERASED_ID_SQL[self.engine.dialect.name])
        return (self.t["events"].c.type == literal_column(f"'{FORGOTTEN}'"), erased == person)

    def _drop_pair_when_confirmed(self, conn: Connection, person: str, *,
                                  late: tuple[str, str | None] | None = None) -> None:
        """Once every gate has confirmed erasing ``person`` (:meth:`_confirmed_gates`), nothing
        here keeps the id beside its pseudonyms: the notices lose ``data.erase`` and the commands
        that named the person (the erasure confirmations included) lose the id, their results
        too.  Until then the id stays, so the station can still tell the other gates whom.

        ``late`` = (gate, pseudonym) of a notice just stored: when that gate's ``forget`` answer
        with this pseudonym was already counted and the pair dropped, the notice loses the id
        at once (it arrived after its own command's answer)."""
        events, gates, commands = self.t["events"], self.t["gates"], self.t["commands"]
        everyone = set(conn.scalars(select(gates.c.gate))) <= self._confirmed_gates(conn, person)
        if not everyone and not (late is not None and self._dropped_before(conn, *late)):
            return  # a gate still has to erase: the station must be able to tell it whom
        notices = [r for r in conn.execute(
            select(events.c.id, events.c.data).where(*self._notices_naming(person)))
            if r.data.get("erase") == person]
        for notice in notices:
            data = {k: v for k, v in notice.data.items() if k != "erase"}
            conn.execute(update(events).where(events.c.id == notice.id).values(data=data))
        for command in conn.execute(select(commands.c.id, commands.c.result)
                                    .where(commands.c.person == person)):
            conn.execute(update(commands).where(commands.c.id == command.id)
                         .values(person=None, result=_without(command.result, person)))

    def _dropped_before(self, conn: Connection, gate: str, pseudonym: str | None) -> bool:
        """Whether ``gate``'s ``forget`` answer naming ``pseudonym`` was counted in a pair
        already dropped (its row no longer names the person)."""
        commands = self.t["commands"]
        return pseudonym is not None and any(
            isinstance(r, dict) and r.get("pseudonym") == pseudonym
            for r in conn.scalars(select(commands.c.result).where(
                commands.c.gate == gate, commands.c.name == "forget", commands.c.ok.is_(True),
                commands.c.person.is_(None))))

    def sync_state(self, gate: str) -> tuple[int, dict[str, Any]] | None:
        """The last resident list a gate acknowledged: (version, its JSON form)."""
        table = self.t["sync_state"]
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.gate == gate)).first()
        return (int(row.version), dict(row.residents)) if row is not None else None

    def set_sync_state(self, gate: str, version: int, residents: Mapping[str, Any]) -> None:
        """Remember the list a gate acknowledged, and the names the page shows and searches."""
        table, names = self.t["sync_state"], self.t["person_names"]
        persons = residents.get("persons") or {}
        rows = [
            {"gate": gate, "person": pid, "name": str(p["name"])[:NAME_CHARS]}
            for pid, p in persons.items() if isinstance(p, Mapping) and p.get("name")
        ]
        with self.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.gate == gate))
            conn.execute(
                table.insert().values(gate=gate, version=version, residents=dict(residents))
            )
            conn.execute(delete(names).where(names.c.gate == gate))
            if rows:
                conn.execute(names.insert(), rows)

    # -- quarantine, lost ranges, erasure confirmations -----------------------------------------

    def add_quarantined(self, items: Sequence[Quarantined]) -> None:
        """Set bad messages aside (their first :data:`QUARANTINE_PAYLOAD_BYTES` bytes)."""
        if not items:
            return
        received = now_ms()
        with self.engine.begin() as conn:
            conn.execute(self.t["quarantine"].insert(), [
                {"gate": q.gate, "seq": q.seq, "topic": q.topic[:NAME_CHARS],
                 "reason": q.reason[:NAME_CHARS], "bytes": len(q.payload),
                 "payload": q.payload[:QUARANTINE_PAYLOAD_BYTES], "received_ms": received}
                for q in items
            ])

    def quarantined(self, *, gate: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first: id, gate, seq, topic, reason, bytes, payload (a prefix), received_ms."""
        table = self.t["quarantine"]
        query = select(table).order_by(table.c.id.desc()).limit(limit)
        if gate is not None:
            query = query.where(table.c.gate == gate)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def count_quarantined(self, gate: str | None = None) -> int:
        table = self.t["quarantine"]
        query = select(func.count()).select_from(table)
        if gate is not None:
            query = query.where(table.c.gate == gate)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def record_lost(self, gate: str, ranges: Iterable[Range]) -> None:
        """Ranges of ``seq`` the gate no longer holds: gaps that will never be filled."""
        rows = [{"gate": gate, "low": low, "high": high, "recorded_ms": now_ms()}
                for low, high in ranges if 1 <= low <= high]
        if not rows:
            return
        table = self.t["lost_ranges"]
        with self.engine.begin() as conn:
            conn.execute(self._insert(table).on_conflict_do_nothing(
                index_elements=["gate", "low"]), rows)

    def lost_ranges(self, gate: str) -> list[Range]:
        table = self.t["lost_ranges"]
        with self.engine.connect() as conn:
            return [(r.low, r.high) for r in conn.execute(
                select(table.c.low, table.c.high).where(table.c.gate == gate)
                .order_by(table.c.low))]

    def erasures(self, person: str | None = None) -> list[dict[str, Any]]:
        """Erasure commands (``forget``, ``remove``) sent to the gates, newest first: id, gate,
        name, person, issued_ms, ok (None while the gate has not answered), reason, result_ms.

        Once every gate has confirmed a ``forget`` (:meth:`_confirmed_gates`), its rows no longer
        name the person (``person`` is null): the station keeps that the erasure was confirmed,
        not whom it concerned.

        A result that arrives after the sender gave up is still recorded by the receiver.
        """
        table = self.t["commands"]
        query = (select(table.c.id, table.c.gate, table.c.name, table.c.person,
                        table.c.issued_ms, table.c.ok, table.c.reason, table.c.result_ms)
                 .where(table.c.name.in_(("forget", "remove")))
                 .order_by(table.c.issued_ms.desc(), table.c.gate))
        if person is not None:
            query = query.where(table.c.person == person)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

def _without(value: Any, person: str) -> Any:
    """``value`` (a stored JSON result) with every occurrence of the id ``person`` removed."""
    if isinstance(value, dict):
        return {k: _without(v, person) for k, v in value.items() if v != person}
    if isinstance(value, list):
        return [_without(v, person) for v in value if v != person]
    return value
