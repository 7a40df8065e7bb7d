"""The gate's end of a resident sync sent in pieces (``sync_part``, :mod:`protocol.sync_pieces`).

Each verified piece is checked with the sync models as it arrives and staged in a small SQLite
file beside the resident store (``sync_parts.db`` in ``state_dir``), so neither a 100,000-resident
list nor its JSON is ever held in memory whole.  When the last piece of a transfer is there, the
pieces are read back one by one into :meth:`daemon.store.Store.apply_sync_parts`, which applies
them in one transaction; the decision index is then rebuilt and swapped in.  Until then, and when
a transfer is abandoned half-way, the previous resident set stays in force.  Only one transfer is
staged at a time: the first piece of a newer one discards an older one's pieces.

Pieces name residents, so the staging file holds them sealed (AES-256-GCM under the resident store
key, :func:`daemon.keys.seal`), is 0600, zeroes deleted rows (``secure_delete``), and is removed
with its ``-wal`` once a transfer has been applied or refused (:meth:`SyncStaging.remove`).
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon.files import private_file
from daemon.keys import seal, unseal
from protocol.sync import SyncPayloadError, parse_sync
from protocol.sync_pieces import PieceError, check_piece

log = logging.getLogger(__name__)

STAGING_FILE = "sync_parts.db"
#: Staged bytes at most (a bound against a sender that never finishes).
MAX_STAGED_BYTES = 512 * 1024 * 1024
_PIECE_CONTEXT = b"menjin sync piece"

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

    def __init__(self, path: Path, key: bytes) -> None:
        """``key``: the resident store key (32 bytes) the pieces are sealed with."""
        self.path = path
        self._key = key
        private_file(path)  # the -wal and -shm inherit its 0600
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def remove(self) -> None:
        """Close and delete the staging file and its ``-wal``/``-shm`` (nothing staged left)."""
        self._db.close()
        for file in (self.path, self.path.with_name(self.path.name + "-wal"),
                     self.path.with_name(self.path.name + "-shm")):
            file.unlink(missing_ok=True)

    def stage(self, args: dict[str, Any]) -> tuple[str, int, int]:
        """Check and keep one piece; returns (transfer, pieces staged, count)."""
        try:
            transfer, index, count, part = check_piece(args)
            parse_sync(part)
        except (PieceError, SyncPayloadError) as exc:
            raise TransferRefusedError(f"sync_part: {exc}") from None
        body = base64.b64encode(seal(self._key, json.dumps(
            part, separators=(",", ":"), ensure_ascii=False).encode(), _PIECE_CONTEXT)).decode()
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
            yield json.loads(unseal(self._key, base64.b64decode(row[1]), _PIECE_CONTEXT))
