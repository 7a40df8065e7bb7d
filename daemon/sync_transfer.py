"""The gate's end of a resident sync sent in pieces (``sync_part``, :mod:`protocol.sync_pieces`).

Each verified piece is checked with the sync models as it arrives and staged in a small SQLite
file beside the resident store (``sync_parts.db`` in ``state_dir``), so neither a 100,000-resident
list nor its JSON is ever held in memory whole.  When the last piece of a transfer is there, the
pieces are read back one by one into :meth:`daemon.store.Store.apply_sync_parts`, which applies
them in one transaction; the decision index is then rebuilt and swapped in.  Until then, and when
a transfer is abandoned half-way, the previous resident set stays in force.  Only one transfer is
staged at a time: the first piece of a newer one discards an older one's pieces.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from protocol.sync import SyncPayloadError, parse_sync
from protocol.sync_pieces import PieceError, check_piece

log = logging.getLogger(__name__)

STAGING_FILE = "sync_parts.db"
#: Staged bytes at most (a bound against a sender that never finishes).
MAX_STAGED_BYTES = 512 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS parts (
    transfer TEXT NOT NULL,
    idx INTEGER NOT NULL,
    count INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (transfer, idx)
);
"""


class TransferRefusedError(ValueError):
    """A piece that cannot be staged; the text is the gate's answer to the station."""


class SyncStaging:
    """Staged pieces of the transfer in progress; blocking methods (run them in a thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        with contextlib.suppress(OSError):
            path.chmod(0o600)  # resident lists name persons

    def close(self) -> None:
        self._db.close()

    def stage(self, args: dict[str, Any]) -> tuple[str, int, int]:
        """Check and keep one piece; returns (transfer, pieces staged, count)."""
        try:
            transfer, index, count, part = check_piece(args)
            parse_sync(part)
        except (PieceError, SyncPayloadError) as exc:
            raise TransferRefusedError(f"sync_part: {exc}") from None
        body = json.dumps(part, separators=(",", ":"), ensure_ascii=False)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            old = db.execute("SELECT DISTINCT transfer FROM parts WHERE transfer != ?",
                             (transfer,)).fetchall()
            if old:
                log.info("sync: a new transfer replaces %d unfinished one(s)", len(old))
                db.execute("DELETE FROM parts WHERE transfer != ?", (transfer,))
            known = db.execute("SELECT DISTINCT count FROM parts WHERE transfer = ?",
                               (transfer,)).fetchall()
            if known and known[0][0] != count:
                raise TransferRefusedError(f"sync_part: count {count} differs from the transfer's "
                                      f"{known[0][0]}")
            staged = db.execute("SELECT coalesce(sum(length(body)), 0) FROM parts").fetchone()[0]
            if staged + len(body) > MAX_STAGED_BYTES:
                raise TransferRefusedError(f"sync_part: more than {MAX_STAGED_BYTES} bytes staged")
            db.execute("INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?)",
                       (transfer, index, count, body))
            have = db.execute("SELECT count(*) FROM parts WHERE transfer = ?",
                              (transfer,)).fetchone()[0]
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return transfer, int(have), count

    def pieces(self, transfer: str) -> Iterator[dict[str, Any]]:
        """The staged pieces of ``transfer`` in order, read one at a time."""
        last = -1
        while True:
            row = self._db.execute(
                "SELECT idx, body FROM parts WHERE transfer = ? AND idx > ? ORDER BY idx LIMIT 1",
                (transfer, last)).fetchone()
            if row is None:
                return
            last = int(row[0])
            yield json.loads(row[1])

    def discard(self, transfer: str) -> None:
        self._db.execute("DELETE FROM parts WHERE transfer = ?", (transfer,))
