"""The security audit log: an append-only, hash-chained record of administrative actions.

PIPL and the 2025 face-recognition measures ask for a security audit of who did what with personal
information.  Each line is one JSON entry (enrol, forget, residents import, config reload, remote
open, door test, key rotation ...) holding no biometrics and no raw card numbers; its ``hash`` is
SHA-256 over the previous entry's hash and the entry's canonical JSON, so editing, inserting or
deleting a line breaks the chain and ``menjin audit verify`` names the first bad line.  Entries are
also uplinked as ``audit`` events, so the station holds a copy an attacker on the board cannot
rewrite.

There is one chain per gate, whoever writes: every append takes an exclusive lock on
``audit.log.lock`` (``flock``) and reads the chain's tail under it, so the daemon, a CLI command and
a station command interleave into one chain instead of forking it.  The running daemon is the
usual writer (the CLI sends its entries through the control socket, where the kernel names the
actor); the lock covers the CLI while the daemon is stopped.

Retention prunes whole leading entries and writes, as the file's first line, an anchor holding the
last pruned entry's sequence number and hash, so the remaining chain still verifies from a known
starting point; the rewrite is one atomic rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.events import now_ms
from daemon.files import FILE_MODE, private_dir, private_file, write_private

GENESIS = "0" * 64
MS_PER_DAY = 86_400_000


def _canonical(entry: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def uid_actor(uid: int) -> str:
    """The audit actor for a local user id: ``uid:1000(wang)`` (the name when it has one)."""
    try:
        return f"uid:{uid}({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid:{uid}"


def local_actor() -> str:
    """This process's user as an audit actor (from the kernel, not from ``$USER``)."""
    return uid_actor(os.getuid())


def _parses(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False


def _append_whole(path: Path, data: bytes) -> None:
    """Append ``data`` completely or not at all: a short ``os.write`` (a full disk) is continued,
    and a write that fails half-way is cut back off, so no half entry is ever left behind."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an older, looser file is tightened whatever the umask
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The chain hash of ``entry`` (which carries its predecessor's hash in ``prev``)."""
    return hashlib.sha256(_canonical(entry)).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    line: int | None = None  # 1-based line of the first broken entry
    reason: str = ""


class AuditLog:
    """Append-only audit log in one JSON-lines file (fsynced per entry: entries are rare)."""

    def __init__(self, path: Path, *, clock: Callable[[], int] = now_ms) -> None:
        self.path = path
        self._clock = clock
        private_dir(self.path.parent)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        with self._locked():  # another writer may be appending right now
            #: what :meth:`repair_tail` cut off at start-up (``audit.repaired``), or None
            self.repaired: dict[str, Any] | None = self.repair_tail()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive use of the chain across processes (released when the fd closes)."""
        fd = os.open(private_file(self._lock_path), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def repair_tail(self) -> dict[str, Any] | None:
        """Cut a torn last entry (power lost mid-write) off the file, keeping its bytes aside.

        Returns ``{"bytes": n, "kept_in": "<file>.damaged"}`` when something was cut, else None.
        Only the tail is repaired: a damaged line inside the file is left for
        ``menjin audit verify`` to report (it is evidence, not an accident of a write).
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        end = data.rfind(b"\n") + 1  # an unterminated last line is torn whatever it holds
        while end > 0:  # then every complete line at the end that is not an entry
            start = data.rfind(b"\n", 0, end - 1) + 1
            if _parses(data[start:end]):
                break
            end = start
        if not data[end:].strip():  # nothing torn (at most blank lines)
            return None
        damaged = self.path.with_name(self.path.name + ".damaged")
        with private_file(damaged).open("ab") as fh:  # repairs accumulate; nothing is thrown away
            fh.write(data[end:])
            fh.flush()
            os.fsync(fh.fileno())
        with self.path.open("r+b") as fh:
            fh.truncate(end)
            os.fsync(fh.fileno())
        return {"bytes": len(data) - end, "kept_in": damaged.name}

    def _read(self) -> tuple[tuple[int, str], list[dict[str, Any]]]:
        """The anchor (sequence, hash) the chain starts from, and the entries after it."""
        anchor: tuple[int, str] = (0, GENESIS)
        entries: list[dict[str, Any]] = []
        if self.path.exists():
            with self.path.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if not line.strip() or not _parses(line.encode()):
                        continue  # a damaged line inside the file: `verify` reports it
                    record = json.loads(line)
                    if record.get("anchor") and not entries:
                        anchor = (int(record["seq"]), str(record["hash"]))
                    else:
                        entries.append(record)
        return anchor, entries

    def _tail(self) -> tuple[int, str]:
        (seq, last), entries = self._read()
        if entries:
            seq, last = int(entries[-1]["seq"]), str(entries[-1]["hash"])
        return seq, last

    def entries(self) -> list[dict[str, Any]]:
        """All entries still kept, oldest first."""
        return self._read()[1]

    def append(
        self,
        action: str,
        *,
        actor: str,
        target: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record one administrative action and return the entry (for uplinking).

        ``target`` is a door, a pseudonym or a file, never a person id or name (erasure must not
        have to rewrite a hash chain).
        """
        with self._locked():
            seq, last_hash = self._tail()  # under the lock: another writer may have appended
            entry: dict[str, Any] = {
                "seq": seq + 1,
                "ts_ms": self._clock(),
                "action": action,
                "actor": actor,
                "target": target,
                "details": dict(details or {}),
                "prev": last_hash,
            }
            entry["hash"] = entry_hash(entry)
            line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
            _append_whole(self.path, line.encode())
        return entry

    def verify(self) -> VerifyResult:
        """Walk the chain from its anchor; report the first line that does not fit."""
        seq, prev = 0, GENESIS
        count = 0
        if not self.path.exists():
            return VerifyResult(True, 0)
        with self.path.open(encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    return VerifyResult(False, count, lineno, "not valid JSON")
                if entry.get("anchor") and lineno == 1:
                    seq, prev = int(entry["seq"]), str(entry["hash"])
                    continue
                if entry.get("prev") != prev:
                    return VerifyResult(False, count, lineno, "does not follow the previous entry")
                if entry.get("seq") != seq + 1:
                    return VerifyResult(
                        False, count, lineno, f"sequence {entry.get('seq')} after {seq}"
                    )
                if entry.get("hash") != entry_hash(entry):
                    return VerifyResult(False, count, lineno, "content does not match its hash")
                seq, prev = entry["seq"], entry["hash"]
                count += 1
        return VerifyResult(True, count)

    def prune(self, retention_days: int) -> int:
        """Drop the entries older than the retention; returns how many were dropped."""
        cutoff = self._clock() - retention_days * MS_PER_DAY
        with self._locked():
            entries = self.entries()
            dropped = next((i for i, e in enumerate(entries) if e["ts_ms"] >= cutoff),
                           len(entries))
            if dropped == 0:
                return 0
            last = entries[dropped - 1]
            lines = [json.dumps({"anchor": True, "seq": last["seq"], "hash": last["hash"]})
                     + "\n"]
            lines += [
                json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n"
                for e in entries[dropped:]
            ]
            write_private(self.path, "".join(lines).encode())
        return dropped

    def anchor_hash(self) -> str:
        """The hash the kept chain starts from (all zeros before the first prune)."""
        return self._read()[0][1]
