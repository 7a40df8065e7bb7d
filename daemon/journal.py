"""The event journal: every event is written here before anything is published.

One SQLite file in WAL mode per gate.  :meth:`Journal.record` gives an :class:`~daemon.events.Event`
its identity (UUIDv7 ``id``, gapless per-gate ``seq``, ``gate``, schema ``v``) and stores it; the
uplink only takes events with :meth:`Journal.take` (from the store, or from memory once it has
caught up: :mod:`daemon.journal_outbox`) and calls :meth:`Journal.mark_delivered` after the
broker's PUBACK.  Durability is a policy: alarms and access decisions are committed with
``synchronous=FULL`` (the WAL is fsynced) before :meth:`record` returns, because a passage or an
alarm the station never hears of is the failure this module exists to prevent; routine events and
captures are batched (committed together a few milliseconds later), which is what makes thousands
of events per second possible on an SD card.

In the daemon the journal commits on a writer thread of its own (:meth:`Journal.start_writer`):
:meth:`record` only numbers the event and hands it over, so the door's event loop never waits for
a disk; the writer commits what arrived together in one transaction (group commit: one fsync for a
burst, durable when an alarm or access decision is among it).  Reads for the uplink and the status
use a second connection (WAL readers never wait for the writer).  Without a writer thread (tools,
tests) :meth:`record` commits inline as before.

The door path calls :meth:`record` synchronously, so it never raises for a full disk: the event
stays in an in-memory tail, the failure is logged once and counted, and the write is retried.
Retention (:meth:`purge`) and the disk quota (:meth:`enforce_quota`) delete portraits first, then
the oldest delivered events, then undelivered non-alarm events; unacknowledged alarms are never
deleted, and every eviction is itself recorded as a ``journal.dropped`` event.

At rest (a copied SD card) the journal names nobody: with a ``data_key`` (from
:mod:`daemon.keyring`, never on the card) each event body is sealed with AES-256-GCM, the
``person`` column holds a keyed reference, and portrait files are sealed too; the uplink gets the
clear payload from :meth:`Journal.take` and the portrait from :meth:`Journal.read_portrait`.
An erasure overwrites the rows it rewrites (``secure_delete``) and truncates the ``-wal``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import hashlib
import hmac
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from daemon.events import SCHEMA_VERSION, Event, Priority, now_ms
from daemon.files import private_dir, private_file, write_private
from daemon.journal_outbox import Pending, RecentOutbox
from daemon.keys import seal, unseal
from protocol.uuid7 import Uuid7

log = logging.getLogger(__name__)

FsyncPolicy = Literal["alarms_and_access", "all", "batched"]
PortraitPolicy = Literal["off", "local", "upload"]

MS_PER_DAY = 86_400_000
BYTES_PER_MB = 1024 * 1024
#: Batched events are committed at the latest this long after they were recorded.
DEFAULT_BATCH_SECONDS = 0.05
#: ... or as soon as this many are waiting.
DEFAULT_BATCH_MAX = 512
#: After a failed write (full disk) the tail is retried this often.
RETRY_SECONDS = 1.0
#: Events kept in memory while the disk refuses writes; beyond this the oldest non-alarms go.
TAIL_MAX = 50_000
#: The quota is checked after this many committed events (and on every purge).
QUOTA_CHECK_EVERY = 1000
#: Rows deleted per step while evicting for the quota.
EVICT_CHUNK = 500
#: Space set aside beside the journal and given up when the disk is full, so that the alarms
#: still find room while portraits and delivered events are evicted (a ballast file).
RESERVE_BYTES = 1024 * 1024
RESERVE_SUFFIX = ".reserve"
PORTRAIT_DIR = "portraits"
#: SQLite's errors of a row itself, not of the disk: retrying the same row can never succeed.
#: So can any error that is neither SQLite's nor the system's (see :func:`_row_error`).
UNWRITABLE_ROW = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                  sqlite3.DataError)
#: Code points UTF-8 cannot encode (a lone surrogate from a decoder with surrogate escapes).
_SURROGATES = re.compile("[\ud800-\udfff]")
#: The compact JSON of event bodies; one encoder for every event (``json.dumps`` with options
#: builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: Rows per INSERT statement, largest first: a batch goes in a few multi-row statements of
#: these sizes (each prepared once, then cached).  sqlite3 releases the GIL around every step,
#: and executemany steps once per row, so with a busy event loop each row waited a whole switch
#: interval to get the GIL back.  128 rows of 7 values stay under SQLite's oldest limit of 999
#: parameters.
_INSERT_SIZES = (128, 16, 1)
_INSERT_SQL = {
    size: "INSERT INTO events (seq, id, ts_ms, type, priority, person, body) VALUES "  # noqa: S608 (placeholders only)
    + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * size)
    for size in _INSERT_SIZES}
_INSERT_WIDTH = 7
Range = tuple[int, int]
PORTRAIT_SUFFIX = ".jpg"
SEALED_PREFIX = "sealed:"
_BODY_CONTEXT = b"menjin event"
#: Priority by its stored value (the enum's call is slow for a per-event read).
_PRIORITIES = tuple(sorted(Priority))
_PORTRAIT_CONTEXT = b"menjin portrait"
PERSON_REF_HEX_CHARS = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    ts_ms INTEGER NOT NULL,
    type TEXT NOT NULL,
    priority INTEGER NOT NULL,
    person TEXT,
    body TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);
-- alarms (priority 3) first, then by seq: the order of Journal.pending
CREATE INDEX IF NOT EXISTS events_undelivered ON events (priority = 3 DESC, seq)
    WHERE delivered = 0;
CREATE INDEX IF NOT EXISTS events_person ON events (person) WHERE person IS NOT NULL;
CREATE TABLE IF NOT EXISTS portraits (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    ts_ms INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires_at_ms INTEGER NOT NULL);
-- command counters accepted per station key: the high-water mark and the window below it;
-- never purged by time, so no clock can make a used counter look new
CREATE TABLE IF NOT EXISTS command_counters (
    station TEXT NOT NULL,
    counter INTEGER NOT NULL,
    PRIMARY KEY (station, counter)
);
"""


class JournalError(Exception):
    """The journal cannot be opened as asked (e.g. it belongs to another gate)."""


@dataclass
class JournalStats:
    """Counters for health reports and tests."""

    recorded: int = 0
    write_failures: int = 0
    portraits_dropped: int = 0
    tail_dropped: int = 0
    evicted_portraits: int = 0
    evicted_events: int = 0
    rejected: int = 0  # rows no retry could write (never expected: record() cleans its input)


@dataclass(slots=True)
class _Row:
    seq: int
    id: str
    ts_ms: int
    type: str
    priority: int
    person: str | None
    body: str
    portrait_bytes: int | None = None


def _row_error(exc: BaseException) -> bool:
    """Whether ``exc``, raised writing a row, is the row's fault (an integer beyond SQLite's 64
    bits, a value it cannot bind, a constraint): writing it again can never succeed, so it is
    left out rather than retried.  A disk, database or memory error is not the row's."""
    return isinstance(exc, UNWRITABLE_ROW) or not isinstance(
        exc, (sqlite3.Error, OSError, MemoryError))


def _forget_card(body: dict[str, Any], pseudonym: str) -> None:
    """An event body no longer about anybody: the pseudonym instead of the id, and neither the
    card's keyed hash nor its masked digits (both would lead back to the person)."""
    body["person"] = pseudonym
    body.pop("credential_ref", None)
    data = body.get("data")
    if isinstance(data, dict):
        data.pop("card", None)


def is_disk_full(exc: BaseException) -> bool:
    """True for the failures a full disk (or a journal over SQLite's page limit) produces."""
    if isinstance(exc, sqlite3.OperationalError):
        return "full" in str(exc).lower()
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


class Journal:
    """SQLite journal of one gate's events, outbox of the uplink and store of its portraits.

    Thread-safe: the event loop records and reads, the writer thread (once started) commits,
    upkeep threads purge and pseudonymise.  ``clock`` gives wall-clock milliseconds (injectable
    for retention tests).  ``seq_floor`` is the highest seq this gate is known to have given out
    elsewhere (the run marker, a damaged journal moved aside): numbering continues after it even
    when this file knows less (a new journal after a recovery), because the station dedups and
    gap-checks by gate and seq and a seq given out twice would be dropped as a duplicate.
    """

    def __init__(
        self,
        path: Path,
        *,
        gate: str,
        fsync: FsyncPolicy = "alarms_and_access",
        quota_bytes: int = 512 * BYTES_PER_MB,
        retention_days: int = 30,
        portraits: PortraitPolicy = "off",
        portrait_retention_days: int | None = None,
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        batch_max: int = DEFAULT_BATCH_MAX,
        clock: Callable[[], int] = now_ms,
        seq_floor: int = 0,
        data_key: bytes | None = None,
    ) -> None:
        """``data_key`` seals bodies and portraits at rest (None: clear, for tests of the
        journal's logic only)."""
        self.path = path
        self._data_key = data_key
        self.gate = gate
        self.fsync = fsync
        self.quota_bytes = quota_bytes
        self.retention_days = retention_days
        self.portraits = portraits
        self.portrait_retention_days = portrait_retention_days or retention_days
        self.batch_seconds = batch_seconds
        self.batch_max = batch_max
        self.stats = JournalStats()
        self._clock = clock
        self._tail: list[_Row] = []
        self._listeners: list[Callable[[], None]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._failing = False
        self._since_quota_check = 0
        self._evicting = False
        self._tail_drops_reported = 0
        self._pending_drop_report: dict[str, int] = {}  # evicted on a full disk, to be told
        self._tail_lock = threading.Lock()  # held only for list operations, never for I/O
        self._db_lock = threading.RLock()  # the write connection
        self._read_lock = threading.Lock()  # the read connection
        self._wakeup = threading.Condition(self._tail_lock)
        self._urgent_waiting = False
        self._writer: threading.Thread | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._acks: list[str] = []  # broker acknowledgements waiting for the writer thread
        self._ack_wake: asyncio.TimerHandle | None = None  # the writer's wake-up for them
        self._acked: set[str] = set()  # ... which pending() already leaves out
        self._erased_in_wal = False  # a delivered erasure's checkpoint failed: try again
        self.group_commits = 0
        self._outbox = RecentOutbox()
        self.portrait_dir = path.parent / PORTRAIT_DIR
        private_dir(self.portrait_dir)
        private_file(path)  # events name persons: the -wal and -shm inherit its 0600
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left free
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._synchronous = "FULL"
        self._db.executescript(_SCHEMA)
        #: the last seq this file had recorded when it was opened
        self.seq_at_open = self._open_meta()
        self._seq = self.seq_at_open
        if seq_floor > self._seq:
            log.warning("journal %s: numbering continues after seq %d (known from before; "
                        "this file only reached %d)", path, seq_floor, self._seq)
            self._seq = seq_floor
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (str(self._seq),))
        # ids stay monotonic across restarts: none below the newest one already recorded
        self._ids = Uuid7(floor=self._db.execute("SELECT max(id) FROM events").fetchone()[0])
        #: ``() -> (UTC ms, trusted)`` for each recorded event (the gate's
        #: :meth:`~daemon.trusted_time.TrustedTime.stamp`); None: the event's own ``ts_ms``,
        #: taken as trusted.
        self.stamp: Callable[[], tuple[int, bool]] | None = None
        self._remove_orphan_portraits()
        self.reserve = path.with_name(path.name + RESERVE_SUFFIX)
        self._make_reserve()
        self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    # ------------------------------------------------------------------ opening

    def _open_meta(self) -> int:
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        stored_gate = rows.get("gate")
        if stored_gate is None:
            self._db.execute("INSERT INTO meta VALUES ('gate', ?), ('last_seq', '0')", (self.gate,))
            return 0
        if stored_gate != self.gate:
            raise JournalError(
                f"{self.path}: journal of gate {stored_gate!r}, not {self.gate!r}; "
                "seq numbers are per gate, so give this gate its own journal file"
            )
        return int(rows.get("last_seq", "0"))

    def _remove_orphan_portraits(self) -> None:
        """Delete portrait files whose capture event never committed (killed mid-write)."""
        known = {row[0] for row in self._db.execute("SELECT id FROM portraits")}
        for file in self.portrait_dir.iterdir():
            if file.stem not in known:
                file.unlink(missing_ok=True)

    # ------------------------------------------------------------------ recording

    def add_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the recording thread) whenever events become pending."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _urgent(self, event: Event, priority: Priority) -> bool:
        if self.fsync == "all":
            return True
        if self.fsync == "batched":
            return event.is_alarm
        return priority >= Priority.ACCESS

    def record(self, event: Event, *, portrait: bytes | None = None) -> dict[str, Any]:
        """Number and store ``event``; returns its payload as published on ``/events``.

        Alarms and access decisions (per the fsync policy) are durable when this returns;
        batched events are durable after the next :meth:`flush` (at most ``batch_seconds``).
        A JPEG ``portrait`` is kept (and linked to the event) only when portraits are not
        ``off``.  Never raises for a full disk.
        """
        ts_ms, trusted = self.stamp() if self.stamp is not None else (event.ts_ms, True)
        event_id = self._ids.new(ts_ms)
        portrait_bytes = None
        if portrait is not None and self.portraits != "off":
            portrait_bytes = self._write_portrait(event_id, portrait)
        priority = event.priority
        urgent = self._urgent(event, priority)
        event_type = event.type
        with self._tail_lock:  # numbered and queued together: the tail stays in seq order
            self._seq += 1
            payload: dict[str, Any] = {"v": SCHEMA_VERSION, "id": event_id, "seq": self._seq,
                                       "gate": self.gate, **event.to_dict(),
                                       "ts_ms": ts_ms, "time_trusted": trusted}
            body = _ENCODE(payload)
            person = event.person
            # never stored as is: it would fail every write after (ASCII, the common case, is
            # told at a glance)
            if not body.isascii() and _SURROGATES.search(body):
                body = _SURROGATES.sub("\ufffd", body)
                payload = json.loads(body)
                person = _SURROGATES.sub("\ufffd", person) if person is not None else None
                event_type = _SURROGATES.sub("\ufffd", event_type)
            row = _Row(self._seq, event_id, ts_ms, event_type, int(priority), person, body,
                       portrait_bytes)
            self._tail.append(row)
            self.stats.recorded += 1
            if self._writer is not None:
                # Wake the writer only when it must act now: it may be idle (first row), a
                # decision or alarm must not wait, or the batch is full.  Waking it for every
                # routine event costs a thread switch per event and breaks the batch up.
                wake = ((len(self._tail) == 1 and not self._acks)
                        or (urgent and not self._urgent_waiting)
                        or len(self._tail) >= self.batch_max)
                self._urgent_waiting = self._urgent_waiting or urgent
                if wake:
                    self._wakeup.notify()
                return payload
            waiting = len(self._tail)
        if urgent or waiting >= self.batch_max:
            self.flush(durable=urgent)
        else:
            self._schedule_flush(self.batch_seconds)
        return payload

    # ------------------------------------------------------------------ writer thread

    def start_writer(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Commit on a thread of its own from now on; listeners are called on ``loop``."""
        if self._writer is not None:
            return
        self._writer_loop = loop if loop is not None else asyncio.get_running_loop()
        self._writer = threading.Thread(target=self._write_loop, name="journal-writer",
                                        daemon=True)
        self._writer.start()

    def _write_loop(self) -> None:
        """Group commit: everything that arrived while the last commit ran goes in the next one;
        routine events wait up to ``batch_seconds`` for company, alarms and decisions do not."""
        while True:
            with self._wakeup:
                while not self._tail and not self._acks and not self._closing:
                    self._wakeup.wait()
                if (self._tail and not self._urgent_waiting and not self._closing
                        and len(self._tail) < self.batch_max):
                    self._wakeup.wait(self.batch_seconds)
                if self._closing:
                    return  # close() commits the rest on its own thread
            # The write connection is held from taking the acknowledgements to marking them: a
            # resend (redeliver) either finds them still queued and drops them, or comes after
            # their commit and undoes it.  They are taken before the commit, which then holds
            # every event they can name (recorded before they were queued); an acknowledgement
            # taken after it could name an event recorded meanwhile, still in the tail.  So is
            # whether the commit is durable, with the rows it takes: an alarm or decision
            # recorded while the writer waited for the connection is among them.
            with self._db_lock:
                with self._wakeup:
                    acks, self._acks = self._acks, []
                    durable, self._urgent_waiting = self._urgent_waiting, False
                    rows = len(self._tail)
                committed = self._flush(durable, acks, rows)
                if committed and rows:
                    self.group_commits += 1
                if acks and committed:
                    with self._tail_lock:
                        self._acked.difference_update(acks)
                elif acks:  # the events they name may be back in the tail: keep them queued
                    with self._wakeup:
                        self._acks[:0] = acks
            if not committed:
                with self._wakeup:
                    self._urgent_waiting = self._urgent_waiting or durable
                    self._wakeup.wait(RETRY_SECONDS)

    def _notify_listeners(self) -> None:
        for callback in list(self._listeners):
            if self._writer_loop is not None and threading.current_thread() is self._writer:
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
                    self._writer_loop.call_soon_threadsafe(callback)
            else:
                callback()

    # ------------------------------------------------------------------ at rest
    def _person_ref(self, person: str | None) -> str | None:
        """What the ``person`` column holds: a keyed reference (pseudonyms stay as they are)."""
        if person is None or self._data_key is None or person.startswith("anon-"):
            return person
        digest = hmac.new(self._data_key, b"person:" + person.encode(), hashlib.sha256)
        return digest.hexdigest()[:PERSON_REF_HEX_CHARS]

    def _seal_body(self, body: str) -> str:
        if self._data_key is None:
            return body
        blob = seal(self._data_key, body.encode(), _BODY_CONTEXT)
        return SEALED_PREFIX + base64.b64encode(blob).decode()

    def _open_body(self, body: str) -> str:
        if not body.startswith(SEALED_PREFIX):
            return body
        if self._data_key is None:
            raise JournalError(f"{self.path}: events are sealed; no journal key given")
        return unseal(self._data_key, base64.b64decode(body[len(SEALED_PREFIX):]),
                      _BODY_CONTEXT).decode()

    def read_portrait(self, path: Path) -> bytes:
        """The JPEG of a portrait file named by :class:`Pending` (FileNotFoundError: evicted)."""
        blob = path.read_bytes()
        return blob if self._data_key is None else unseal(self._data_key, blob,
                                                          _PORTRAIT_CONTEXT)

    def _write_portrait(self, event_id: str, jpeg: bytes) -> int | None:
        final = self.portrait_dir / f"{event_id}{PORTRAIT_SUFFIX}"
        if self._data_key is not None:
            jpeg = seal(self._data_key, jpeg, _PORTRAIT_CONTEXT)
        try:
            write_private(final, jpeg, fsync=False)
        except OSError as exc:
            self.stats.portraits_dropped += 1
            log.warning("journal: portrait of %s not kept (%s)", event_id, exc)
            return None
        return len(jpeg)

    def _schedule_flush(self, delay: float) -> None:
        if self._writer is not None:  # the writer thread retries by itself
            return
        if self._flush_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a script or test): the caller flushes, or the batch fills
        self._flush_handle = loop.call_later(delay, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_handle = None
        self.flush()

    def flush(self, *, durable: bool = False) -> bool:
        """Commit the in-memory tail; True when nothing is left waiting.

        ``durable`` commits with ``synchronous=FULL`` (fsync); otherwise NORMAL, which survives a
        crash of the process but not necessarily a power cut.
        """
        with self._db_lock:
            return self._flush(durable)

    def _flush(self, durable: bool, acks: list[str] | None = None,
               todo: int | None = None) -> bool:
        """Commit the tail as it is now, ``batch_max`` rows per transaction, and mark ``acks``
        delivered in the last of them (alone when the tail is empty); False when a write failed
        (what was not written is back in the tail).

        Each transaction's rows go to the uplink as soon as it commits: a burst of events is
        published while the rest of it is written, not after.  ``acks`` may name any event
        recorded before they were queued, so they wait for the transaction that holds the last
        of those.  ``todo``: the rows of the tail to commit (all of it when None).
        """
        if todo is None:
            with self._tail_lock:
                todo = len(self._tail)
        if not todo:
            return not acks or self._mark_alone(acks)
        while todo > 0:
            with self._tail_lock:
                rows = self._tail[:min(todo, self.batch_max)]
                del self._tail[:len(rows)]
            if not rows:  # a nested flush (recording the report of a drop) took the rest
                return not acks or self._mark_alone(acks)
            todo -= len(rows)
            if not self._commit(rows, durable, acks if todo == 0 else None):
                return False
        return True

    def _mark_alone(self, acks: list[str]) -> bool:
        """Mark ``acks`` in a transaction of their own; False when it failed (the caller keeps
        them queued: dropped, the delivered events would be offered again)."""
        failure = self._try_mark(acks)
        if failure is not None:
            self._write_failed(failure)
        return failure is None

    def _commit(self, rows: list[_Row], durable: bool, acks: list[str] | None) -> bool:
        """One transaction of :meth:`_flush`."""
        failure: BaseException | None = None
        try:
            self._set_synchronous("FULL" if durable or self.fsync == "all" else "NORMAL")
            try:
                self._insert(rows, acks or ())
            except Exception as exc:  # one row no retry can write must not wedge the rest
                if not _row_error(exc):
                    raise
                rows, failure = self._insert_one_by_one(rows)
                if failure is None and acks:
                    failure = self._try_mark(acks)
        except (sqlite3.Error, OSError) as exc:  # full disk above all: the door must go on
            with self._tail_lock:
                self._tail[:0] = rows
            self._write_failed(exc)
            return False
        if failure is not None:  # the disk failed part way: what was written goes on its way
            self._hand_over(rows)
            self._write_failed(failure)
            return False
        # handed over before any report is recorded: recording one may flush the rest of the
        # tail at once (a batch's worth waiting), and the outbox must get them in seq order
        self._hand_over(rows)
        if any(self._pending_drop_report.values()):
            counts, self._pending_drop_report = self._pending_drop_report, {}
            self._report_dropped(counts, reason="disk_full")
        if self._failing:
            self._failing = False
            log.info("journal: writes back; %d events committed", len(rows))
            self._make_reserve()
            if self.stats.tail_dropped > self._tail_drops_reported:
                lost = self.stats.tail_dropped - self._tail_drops_reported
                self._tail_drops_reported = self.stats.tail_dropped
                self._report_dropped({"portraits": 0, "delivered_events": 0,
                                      "undelivered_events": lost}, reason="disk_full")
        self._since_quota_check += len(rows)
        if self._since_quota_check >= QUOTA_CHECK_EVERY and not self._evicting:
            self._since_quota_check = 0
            self.enforce_quota()
        return True

    def _hand_over(self, rows: list[_Row]) -> None:
        """Committed ``rows`` to the uplink: into memory if it takes from there, and a wake-up."""
        if self._outbox.collecting:
            portraits = self.portrait_dir
            self._outbox.add([
                Pending(r.seq, r.id, r.type, r.ts_ms, _PRIORITIES[r.priority], r.body.encode(),
                        None if r.portrait_bytes is None
                        else portraits / f"{r.id}{PORTRAIT_SUFFIX}") for r in rows])
        self._notify_listeners()

    def _insert(self, rows: list[_Row], acks: Sequence[str] = ()) -> None:
        erased = 0
        values: list[Any] = []
        for r in rows:
            values += (r.seq, r.id, r.ts_ms, r.type, r.priority, self._person_ref(r.person),
                       self._seal_body(r.body))
        with self._transaction():
            start = 0
            for size in _INSERT_SIZES:
                step = size * _INSERT_WIDTH
                while len(values) - start >= step:
                    self._db.execute(_INSERT_SQL[size], values[start:start + step])
                    start += step
            self._db.executemany(
                "INSERT INTO portraits (seq, id, ts_ms, bytes) VALUES (?, ?, ?, ?)",
                [(r.seq, r.id, r.ts_ms, r.portrait_bytes)
                 for r in rows if r.portrait_bytes is not None],
            )
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'",
                             (str(rows[-1].seq),))
            if acks:
                erased = self._mark_rows(acks)
        if erased or self._erased_in_wal:
            self._checkpoint_erased()

    def _insert_one_by_one(self, rows: list[_Row]) -> tuple[list[_Row], BaseException | None]:
        """Write ``rows`` one at a time, leaving out (and logging) those that cannot be written
        whatever the disk does.  Returns the rows written and, when the disk failed part way,
        its error: the row it failed on and those after it are back at the head of the tail
        (only they: the rows before are committed)."""
        written: list[_Row] = []
        for index, row in enumerate(rows):
            try:
                self._insert([row])
            except Exception as exc:
                if not _row_error(exc):
                    with self._tail_lock:
                        self._tail[:0] = rows[index:]
                    return written, exc
                self.stats.rejected += 1
                log.error("journal: event seq %d (%s) cannot be stored and is left out: %s: %s",
                          row.seq, row.type[:64], type(exc).__name__, exc)
                continue
            written.append(row)
        return written, None

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _set_synchronous(self, mode: str) -> None:
        if mode != self._synchronous:
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode

    def _make_reserve(self) -> None:
        """(Re)create the ballast file; quietly nothing while the disk is short of space."""
        if self.reserve.exists():
            return
        try:
            with self.reserve.open("wb") as fh:
                fh.truncate(0)
                for _ in range(RESERVE_BYTES // 65536):
                    fh.write(bytes(65536))  # real blocks, not a sparse file
                fh.flush()
        except OSError:
            self.reserve.unlink(missing_ok=True)

    def _free_space(self) -> None:
        """The disk is full: give up what may go, one step per failed write, so that the tail
        (alarms and decisions above all) can be written again: first the reserve, then
        portraits (oldest first), then delivered routine events, then delivered decisions;
        never an alarm, never an undelivered event."""
        if self.reserve.exists():
            self.reserve.unlink(missing_ok=True)
            log.warning("journal: disk full; gave up the reserve of %d bytes", RESERVE_BYTES)
            return
        counts = {"portraits": 0, "delivered_events": 0, "undelivered_events": 0}
        self._evicting = True
        try:
            ids = [r[0] for r in self._db.execute(
                f"SELECT id FROM portraits ORDER BY seq LIMIT {EVICT_CHUNK}")]  # noqa: S608
            # The files first: unlinking frees space at once, while deleting their rows needs
            # room in the WAL (a row whose file is gone goes with the next eviction).
            for event_id in ids:
                (self.portrait_dir / f"{event_id}{PORTRAIT_SUFFIX}").unlink(missing_ok=True)
            counts["portraits"] += len(ids)
            self.stats.evicted_portraits += len(ids)
            with contextlib.suppress(sqlite3.Error, OSError):
                if ids:
                    self._delete_portraits(ids)
                elif not self._evict_events(f"delivered = 1 AND priority < {int(Priority.ACCESS)}",
                                            counts, "delivered_events"):
                    self._evict_events(f"delivered = 1 AND priority < {int(Priority.ALARM)}",
                                       counts, "delivered_events")
        except (sqlite3.Error, OSError) as exc:
            log.debug("journal: eviction on a full disk failed too (%s)", exc)
        finally:
            self._evicting = False
        if any(counts.values()):
            log.warning("journal: disk full; gave up %s",
                        ", ".join(f"{v} {k}" for k, v in counts.items() if v))
        self._pending_drop_report = {k: self._pending_drop_report.get(k, 0) + v
                                     for k, v in counts.items()}

    def _write_failed(self, exc: BaseException) -> None:
        self.stats.write_failures += 1
        if is_disk_full(exc) and not self._evicting:
            self._free_space()
        if not self._failing:
            self._failing = True
            cause = "disk full" if is_disk_full(exc) else "database error"
            log.error("journal: unavailable, cannot write %s (%s: %s); keeping %d events in "
                      "memory and retrying every %g s", self.path, cause, exc, len(self._tail),
                      RETRY_SECONDS)
        with self._tail_lock:
            if len(self._tail) > TAIL_MAX:
                self._shed_tail()
        self._schedule_flush(RETRY_SECONDS)

    def _shed_tail(self) -> None:
        """Keep the in-memory tail bounded during a long disk failure: drop old non-alarms."""
        excess = len(self._tail) - TAIL_MAX
        kept: list[_Row] = []
        for row in self._tail:
            if excess > 0 and row.priority < Priority.ALARM:
                excess -= 1
                self.stats.tail_dropped += 1
                continue
            kept.append(row)
        self._tail = kept

    # ------------------------------------------------------------------ delivery

    def pending(self, limit: int, *, exclude: Collection[int] = ()) -> list[Pending]:
        """Undelivered events: alarms first, then everything else oldest first (by ``seq``).

        ``exclude`` holds seqs already in flight.  They and the acknowledgements still queued
        for the writer thread are left out by SQLite itself, so a refill reads only the rows it
        returns.
        """
        return self._read_pending(limit, exclude)[0]

    def _read_pending(self, limit: int, exclude: Collection[int]) -> tuple[list[Pending], int]:
        """:meth:`pending`, and the last seq committed as that read saw the file."""
        with self._tail_lock:
            acked = list(self._acked)
        with self._read_lock:
            self._reader.execute("BEGIN")  # one snapshot for both
            try:
                rows = self._reader.execute(
                    "SELECT e.seq, e.id, e.type, e.ts_ms, e.priority, e.body, p.id FROM events e "
                    "LEFT JOIN portraits p ON p.seq = e.seq "
                    "WHERE e.delivered = 0 AND e.seq NOT IN (SELECT value FROM json_each(?)) "
                    "AND e.id NOT IN (SELECT value FROM json_each(?)) "
                    "ORDER BY e.priority = 3 DESC, e.seq LIMIT ?",
                    (json.dumps(list(exclude)), json.dumps(acked), limit),
                ).fetchall()
                seen = self._reader.execute(
                    "SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            finally:
                self._reader.execute("COMMIT")
        portraits = self.portrait_dir
        return [Pending(seq, event_id, etype, ts, _PRIORITIES[prio], self._open_body(body).encode(),
                        None if portrait_id is None
                        else portraits / f"{portrait_id}{PORTRAIT_SUFFIX}")
                for seq, event_id, etype, ts, prio, body, portrait_id in rows], int(seen[0])

    def take(self, limit: int, *, exclude: Collection[int] = ()) -> list[Pending]:
        """The next events for the uplink to publish, in :meth:`pending`'s order.

        Unlike :meth:`pending` it hands each event out once: after a read of the store that
        found every undelivered event (fewer than ``limit``), the events committed since are
        served from memory (:class:`~daemon.journal_outbox.RecentOutbox`), without reading back
        what was just written.  ``exclude``: seqs in flight, for the reads from the store.  Call
        :meth:`rewind` when what was handed out may not have arrived (a new connection, a
        refused publish).
        """
        served = self._outbox.take(limit)
        if served is not None:
            return served
        token = self._outbox.arm()
        items, seen = self._read_pending(limit, exclude)
        if len(items) < limit:
            self._outbox.settle(token, seen)
        else:  # more is waiting in the store: keep reading it
            self._outbox.forget()
        return items

    def rewind(self) -> None:
        """Make :meth:`take` read the store again: everything undelivered that is not excluded
        is handed out again."""
        self._outbox.forget()

    def mark_delivered(self, ids: Iterable[str]) -> int:
        """Record the broker's acknowledgement of these event ids; returns rows changed.

        With the writer thread, the acknowledgement is queued for its next commit (and returned
        as if all ids changed); :meth:`pending` leaves these events out meanwhile.
        """
        ids = list(ids)
        if not ids:
            return 0
        if self._writer is not None:
            # While the uplink takes from memory, acknowledgements wait for company as routine
            # events do: an idle writer is woken after ``batch_seconds`` (a wake-up per window
            # of PUBACKs cost the event loop more than forwarding the events did).  While it
            # reads the store, or with a full batch, the writer is woken at once: every id
            # queued here makes each read of pending() longer.
            with self._wakeup:
                idle = not self._acks and not self._tail
                self._acks.extend(ids)
                self._acked.update(ids)
                if len(self._acks) >= self.batch_max or (idle and not self._outbox.serving):
                    self._wakeup.notify()
                elif idle:
                    self._wake_writer_later()
            return len(ids)
        return self._mark(ids)

    def _wake_writer_later(self) -> None:
        """Wake the writer in ``batch_seconds`` (call with the tail lock held); at once when not
        called on the writer's event loop, as ``call_later`` is for the loop's own thread."""
        if self._ack_wake is not None:
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or loop is not self._writer_loop:
            self._wakeup.notify()
            return
        self._ack_wake = loop.call_later(self.batch_seconds, self._wake_for_acks)

    def _wake_for_acks(self) -> None:
        with self._wakeup:
            self._ack_wake = None
            self._wakeup.notify()

    def _mark(self, ids: list[str]) -> int:
        try:
            return self._mark_committed(ids)
        except sqlite3.OperationalError as exc:
            # Losing an acknowledgement only means the event is sent again (duplicates allowed).
            self._write_failed(exc)
            return 0

    def _try_mark(self, ids: list[str]) -> BaseException | None:
        """:meth:`_mark_committed`, its failure returned, not raised."""
        try:
            self._mark_committed(ids)
        except (sqlite3.Error, OSError) as exc:
            return exc
        return None

    def _mark_committed(self, ids: list[str]) -> int:
        """Mark ``ids`` delivered in a transaction of their own; returns rows changed."""
        with self._db_lock:
            self._set_synchronous("NORMAL")
            with self._transaction():
                before = self._db.total_changes
                erased = self._mark_rows(ids)
                changed = self._db.total_changes - before - erased
            if erased or self._erased_in_wal:
                self._checkpoint_erased()
            return changed

    def _mark_rows(self, ids: Sequence[str]) -> int:
        """Mark ``ids`` delivered (inside a transaction); returns how many of them were
        ``person.forgotten`` events whose erased id went with it."""
        # one parameter, however many ids: a list of ``?`` would exceed SQLite's limit on
        # parameters (999 before 3.32) and fail every commit that carries the acknowledgements
        listed = json.dumps(list(ids))
        self._db.execute("UPDATE events SET delivered = 1 "
                         "WHERE id IN (SELECT value FROM json_each(?))", (listed,))
        return self._drop_erased_ids(listed)

    def _checkpoint_erased(self) -> None:
        """The erased id must not outlive the station's copy in an old WAL frame.  Called after
        a commit: a failure must not make the committed events look unwritten, so it is logged
        and the checkpoint is tried again after the next commit."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            self._erased_in_wal = True
            log.warning("journal: -wal not truncated after an erasure was delivered (%s); "
                        "trying again after the next commit", exc)
        else:
            self._erased_in_wal = False

    def _drop_erased_ids(self, listed: str) -> int:
        """A delivered ``person.forgotten`` event has told the station the id to erase: from now
        on it keeps only the pseudonym (``data.erase`` goes).  ``listed``: the ids, a JSON
        array."""
        rows = self._db.execute(
            "SELECT seq, body FROM events WHERE type = 'person.forgotten' "
            "AND id IN (SELECT value FROM json_each(?))", (listed,)).fetchall()
        erased = 0
        for seq, stored in rows:
            try:
                body = json.loads(self._open_body(stored))
            except (JournalError, ValueError) as exc:  # the acknowledgement still counts
                log.error("journal: event seq %d (person.forgotten) is unreadable; its erased id "
                          "stays: %s", seq, exc)
                continue
            body.get("data", {}).pop("erase", None)
            self._db.execute("UPDATE events SET body = ? WHERE seq = ?", (self._seal_body(
                json.dumps(body, separators=(",", ":"), ensure_ascii=False)), seq))
            erased += 1
        return erased

    @property
    def last_seq(self) -> int:
        """The seq of the newest event recorded (0 before the first)."""
        return self._seq

    def queue_depth(self) -> int:
        """Events not yet acknowledged by the broker (including those still in memory)."""
        with self._read_lock:
            row = self._reader.execute(
                "SELECT count(*) FROM events WHERE delivered = 0").fetchone()
        return max(0, int(row[0]) + len(self._tail) - len(self._acked))

    def oldest_undelivered_ms(self) -> int | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT min(ts_ms) FROM events WHERE delivered = 0").fetchone()
        tail = list(self._tail[:1])
        times = [t for t in (row[0], tail[0].ts_ms if tail else None) if t is not None]
        return min(times) if times else None

    def newest_ts_ms(self) -> int | None:
        """The latest event timestamp recorded (a floor for the gate's time), None when empty."""
        with self._read_lock:
            row = self._reader.execute("SELECT max(ts_ms) FROM events").fetchone()
        with self._tail_lock:
            tail = max((r.ts_ms for r in self._tail), default=None)
        times = [t for t in (row[0], tail) if t is not None]
        return max(times) if times else None

    def all_ids(self) -> set[str]:
        """Every stored event id (tests and the benchmark compare it with what arrived)."""
        with self._read_lock:
            return {row[0] for row in self._reader.execute("SELECT id FROM events")}

    def portrait_file(self, event_id: str) -> Path | None:
        with self._read_lock:
            found = self._reader.execute("SELECT 1 FROM portraits WHERE id = ?",
                                         (event_id,)).fetchone()
        file = self.portrait_dir / f"{event_id}{PORTRAIT_SUFFIX}"
        return file if found and file.exists() else None  # evicted on a full disk

    # ------------------------------------------------------------------ retention and quota

    def used_bytes(self) -> int:
        """Pages in use by the database (not free pages) plus the portrait files."""
        page_size, pages, free = (
            self._db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_size", "page_count", "freelist_count")
        )
        portraits = self._db.execute("SELECT coalesce(sum(bytes), 0) FROM portraits").fetchone()
        return int(page_size) * (int(pages) - int(free)) + int(portraits[0])

    def enforce_quota(self) -> dict[str, int] | None:
        with self._db_lock:
            return self._enforce_quota()

    def _enforce_quota(self) -> dict[str, int] | None:
        """Evict until the journal fits its quota; returns the counts (None when nothing went).

        Order: portraits (oldest first), delivered events (oldest first, alarms after every
        other delivered event), then undelivered
        captures, routine events and access decisions; never an undelivered alarm.
        """
        if self.used_bytes() <= self.quota_bytes:
            return None
        counts = {"portraits": 0, "delivered_events": 0, "undelivered_events": 0}
        self._evicting = True
        try:
            while self.used_bytes() > self.quota_bytes:
                if self._evict_portraits(counts):
                    continue
                # delivered alarms go last: the station may still ask for them again
                if self._evict_events("delivered = 1", counts, "delivered_events",
                                      order=f"priority = {int(Priority.ALARM)}, seq"):
                    continue
                if self._evict_events(f"delivered = 0 AND priority < {int(Priority.ALARM)}",
                                      counts, "undelivered_events", order="priority, seq"):
                    continue
                log.warning("journal: over its quota of %d bytes with only unacknowledged alarms "
                            "left; keeping them", self.quota_bytes)
                break
        except sqlite3.OperationalError as exc:
            self._write_failed(exc)
        finally:
            self._evicting = False
        return self._report_dropped(counts, reason="quota")

    def _evict_portraits(self, counts: dict[str, int], *, before_ms: int | None = None) -> bool:
        where, params = ("WHERE ts_ms < ?", (before_ms,)) if before_ms is not None else ("", ())
        ids = [r[0] for r in self._db.execute(
            f"SELECT id FROM portraits {where} ORDER BY seq LIMIT {EVICT_CHUNK}", params)]  # noqa: S608
        if not ids:
            return False
        self._delete_portraits(ids)
        counts["portraits"] += len(ids)
        self.stats.evicted_portraits += len(ids)
        return True

    def _delete_portraits(self, ids: list[str]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM portraits WHERE id = ?", [(i,) for i in ids])
        for event_id in ids:
            (self.portrait_dir / f"{event_id}{PORTRAIT_SUFFIX}").unlink(missing_ok=True)

    def _evict_events(self, where: str, counts: dict[str, int], key: str, *,
                      order: str = "seq", before_ms: int | None = None) -> bool:
        if before_ms is not None:
            where += f" AND ts_ms < {int(before_ms)}"
        seqs = [r[0] for r in self._db.execute(
            f"SELECT seq FROM events WHERE {where} ORDER BY {order} LIMIT {EVICT_CHUNK}")]  # noqa: S608
        if not seqs:
            return False
        portrait_ids = [r[0] for r in self._db.execute(
            f"SELECT id FROM portraits WHERE seq IN ({','.join('?' * len(seqs))})", seqs)]  # noqa: S608
        if portrait_ids:
            self._delete_portraits(portrait_ids)
            counts["portraits"] += len(portrait_ids)
        with self._transaction():
            self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
        self._outbox.forget()  # it may hold some of them
        counts[key] += len(seqs)
        self.stats.evicted_events += len(seqs)
        return True

    def _report_dropped(self, counts: dict[str, int], *, reason: str) -> dict[str, int] | None:
        if not any(counts.values()):
            return None
        log.warning("journal: dropped %s (%s)", ", ".join(f"{v} {k}" for k, v in counts.items()),
                    reason)
        self.record(Event("journal.dropped", reason=reason, data=dict(counts)))
        return counts

    def purge(self, now: int | None = None) -> dict[str, int] | None:
        """Apply retention at wall time ``now`` (ms): old portraits, old delivered events, expired
        nonces; then the quota.  Returns the counts of the retention step (None when nothing)."""
        with self._db_lock:
            return self._purge(now)

    def _purge(self, now: int | None) -> dict[str, int] | None:
        now = self._clock() if now is None else now
        counts = {"portraits": 0, "delivered_events": 0, "undelivered_events": 0}
        try:
            while self._evict_portraits(
                counts, before_ms=now - self.portrait_retention_days * MS_PER_DAY
            ):
                pass
            while self._evict_events("delivered = 1", counts, "delivered_events",
                                     before_ms=now - self.retention_days * MS_PER_DAY):
                pass
            with self._transaction():
                self._db.execute("DELETE FROM nonces WHERE expires_at_ms < ?", (now,))
        except sqlite3.OperationalError as exc:
            self._write_failed(exc)
        result = self._report_dropped(counts, reason="retention")
        self.enforce_quota()
        return result

    # ------------------------------------------------------------------ erasure and commands

    def pseudonymise_person(self, person: str, pseudonym: str) -> int:
        """Replace ``person`` by ``pseudonym`` in every stored event, drop those events' card
        references, and delete their portraits.

        Returns the number of events changed.  Used for an erasure request (``forget``).
        """
        with self._db_lock:
            return self._pseudonymise(person, pseudonym)

    def _pseudonymise(self, person: str, pseudonym: str) -> int:
        self._flush(durable=True)
        ref = self._person_ref(person)
        portrait_ids = [r[0] for r in self._db.execute(
            "SELECT p.id FROM portraits p JOIN events e ON e.seq = p.seq WHERE e.person = ?",
            (ref,))]
        if portrait_ids:
            self._delete_portraits(portrait_ids)
        self._set_synchronous("FULL")
        with self._transaction():
            rows = self._db.execute("SELECT seq, body FROM events WHERE person = ?",
                                    (ref,)).fetchall()
            # the card reference would lead back to the person: it goes with the id
            rewritten = []
            for seq, stored in rows:
                body = json.loads(self._open_body(stored))
                _forget_card(body, pseudonym)
                rewritten.append((pseudonym, self._seal_body(
                    json.dumps(body, separators=(",", ":"), ensure_ascii=False)), seq))
            self._db.executemany("UPDATE events SET person = ?, body = ? WHERE seq = ?",
                                 rewritten)
            changed = len(rewritten)
        self._outbox.forget()  # it may hold the person's events as they were
        # secure_delete zeroed the old rows in the file; the old pages must not live on in the WAL
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with self._tail_lock:
            tail = list(self._tail)
        for row in tail:  # events that could not be written yet
            if row.person == person:
                body = json.loads(row.body)
                _forget_card(body, pseudonym)
                row.person, row.body = pseudonym, json.dumps(body, separators=(",", ":"))
                changed += 1
        return changed

    def redeliver(self, low: int, high: int, *, limit: int) -> tuple[list[int], list[Range]]:
        """Mark the events ``low..high`` (seq, inclusive) undelivered again, so the uplink
        re-publishes them; at most ``limit`` of them, oldest first.

        For the station's ``resend`` command: the station saw a gap (a broker that lost its
        state, a receiver session that expired).  Returns (the seqs queued again, the ranges
        within ``low..`` the last seq examined that this journal no longer holds: pruned by
        retention or the quota, so the station stops waiting for them).
        """
        with self._db_lock:
            self._flush(durable=False)
            rows = self._db.execute(
                "SELECT seq, id FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq LIMIT ?",
                (low, high, limit)).fetchall()
            seqs = [seq for seq, _ in rows]
            end = seqs[-1] if len(seqs) >= limit else min(high, self._seq)
            with self._wakeup:  # an acknowledgement still queued must not undo this
                ids = {event_id for _, event_id in rows}
                self._acks = [i for i in self._acks if i not in ids]
                self._acked -= ids
            with self._transaction():
                self._db.executemany("UPDATE events SET delivered = 0 WHERE seq = ?",
                                     [(seq,) for seq in seqs])
            # after the commit: a read of the store before it would miss them for good
            self._outbox.forget()
        missing: list[Range] = []
        expected = low
        for seq in [*seqs, end + 1]:
            if seq > expected:
                missing.append((expected, seq - 1))
            expected = seq + 1
        if seqs:
            self._notify_listeners()
        return seqs, missing

    def remember_nonce(self, nonce: str, expires_at_ms: int) -> bool:
        """Store a command nonce until it expires; False when it was seen before (a replay).

        Committed with fsync before returning, so a restart cannot make a replay look new.
        """
        with self._db_lock:
            self._set_synchronous("FULL")
            with self._transaction():
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO nonces (nonce, expires_at_ms) VALUES (?, ?)",
                    (nonce, expires_at_ms))
                return cursor.rowcount == 1

    def remember_counter(self, station: str, counter: int, window: int) -> bool:
        """Accept command ``counter`` of ``station`` once; False for a replay.

        A counter is new when it is above the high-water mark, or within ``window`` below it
        and not used yet (commands on different topics may overtake each other).  Committed with
        fsync before returning, like :meth:`remember_nonce`.
        """
        with self._db_lock:
            self._set_synchronous("FULL")
            with self._transaction():
                row = self._db.execute(
                    "SELECT max(counter) FROM command_counters WHERE station = ?", (station,)
                ).fetchone()
                high = int(row[0]) if row[0] is not None else 0
                if counter <= high - window:
                    return False
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO command_counters (station, counter) VALUES (?, ?)",
                    (station, counter))
                if cursor.rowcount != 1:
                    return False
                self._db.execute(
                    "DELETE FROM command_counters WHERE station = ? AND counter <= ?",
                    (station, max(high, counter) - window))
                return True

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Commit what is waiting and close the database."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._ack_wake is not None:
            self._ack_wake.cancel()
            self._ack_wake = None
        if self._writer is not None:
            with self._wakeup:
                self._closing = True
                self._wakeup.notify()
            self._writer.join()
            self._writer = None
        self.flush(durable=True)
        if self._acks:  # after the flush: they may name events that were still in the tail
            self._mark(self._acks)
            self._acks, self._acked = [], set()
        if self._tail:
            log.error("journal: closing with %d events that could not be written", len(self._tail))
        with self._read_lock:
            self._reader.close()
        self._db.close()


def read_events(path: Path, data_key: bytes | None) -> list[dict[str, Any]]:
    """Every stored event of the journal file ``path``, oldest first, as published (opened
    read-only beside a running daemon: for tools and inspection, never the door path)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT body FROM events ORDER BY seq").fetchall()
    finally:
        db.close()
    out = []
    for (body,) in rows:
        if body.startswith(SEALED_PREFIX):
            if data_key is None:
                raise JournalError(f"{path}: events are sealed; no journal key given")
            body = unseal(data_key, base64.b64decode(body[len(SEALED_PREFIX):]),
                          _BODY_CONTEXT).decode()
        out.append(json.loads(body))
    return out
