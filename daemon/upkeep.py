"""Work of the gate that is not a passage: audit trail, resident store, erasure, privacy upkeep.

Everything here touches files (the audit log, the resident store, the template store, the
journal's rows), so it runs in worker threads (``asyncio.to_thread``) and never on the event loop
that drives the doors; only the resulting events are emitted on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from daemon.access import AccessController
from daemon.audit import AuditLog
from daemon.config import GateConfig
from daemon.events import Emit, Event
from daemon.faces import template_store
from daemon.files import write_private
from daemon.journal import Journal
from daemon.keyring import Keyring
from daemon.privacy import forget_person, forgotten_event
from daemon.store import Store

log = logging.getLogger(__name__)

UPKEEP_SECONDS = 3600.0
STORE_POLL_SECONDS = 2.0
AUDIT_CURSOR = "audit.cursor"
#: A failed audit append (a full disk) is tried this often, waiting 1 s, 2 s, ... between.
AUDIT_WRITE_ATTEMPTS = 3
AUDIT_RETRY_SECONDS = 1.0


class AuditTrail:
    """The hash-chained audit log, appended off the loop and forwarded as ``audit`` events.

    The CLI appends entries while the daemon may be stopped, so entries are forwarded from a
    cursor file rather than at append time.  The cursor holds the chain hash of the last entry
    sent: each entry goes out once, whoever wrote it and however sequence numbers look after a
    prune.  It is written after the events are recorded, so a crash repeats an entry (the
    station deduplicates by its hash) rather than losing one.
    """

    def __init__(self, log_file: AuditLog, cursor: Path, *, emit: Emit,
                 forwarding: Callable[[], bool]) -> None:
        self.log = log_file
        self._cursor = cursor
        self._emit = emit
        self._forwarding = forwarding  # False while no journal is open
        self._lock = asyncio.Lock()

    async def record(self, action: str, *, actor: str, target: str | None = None,
                     details: Mapping[str, Any] | None = None) -> None:
        """Append an entry (in a thread) and uplink what is new; a full disk never raises."""
        log.info("audit: %s by %s on %s", action, actor, target)
        for attempt in range(1, AUDIT_WRITE_ATTEMPTS + 1):
            try:  # a failed append leaves no half entry behind, so trying again is safe
                await asyncio.to_thread(self.log.append, action, actor=actor, target=target,
                                        details=details)
                break
            except OSError as exc:  # a full disk must not stop the door
                if attempt == AUDIT_WRITE_ATTEMPTS:
                    log.error("audit log %s: %s; entry %s by %s lost after %d attempts",
                              self.log.path, exc, action, actor, attempt)
                    return
                log.warning("audit log %s: %s; trying again", self.log.path, exc)
                await asyncio.sleep(AUDIT_RETRY_SECONDS * attempt)
        await self.forward()

    async def forward(self) -> int:
        """Uplink entries not yet sent, including those the CLI wrote meanwhile."""
        if not self._forwarding():
            return 0
        async with self._lock:
            new = await asyncio.to_thread(self._unsent)
            for entry in new:
                self._emit(Event("audit", reason=str(entry["action"]), data=entry))
            if new:
                await asyncio.to_thread(self._advance, str(new[-1]["hash"]))
            return len(new)

    def _unsent(self) -> list[dict[str, Any]]:
        """Entries after the one whose hash the cursor holds (all when it is not kept any more:
        pruned past, or no cursor yet)."""
        try:
            done = self._cursor.read_text().strip()
        except FileNotFoundError:
            done = ""
        entries = self.log.entries()
        hashes = [str(e["hash"]) for e in entries]
        if done in hashes:
            return entries[hashes.index(done) + 1:]
        return entries

    def _advance(self, last_hash: str) -> None:
        write_private(self._cursor, last_hash.encode())


class Residents:
    """The resident store behind the decision index: reload, watch for changes, erase."""

    def __init__(self, store: Store, access: AccessController, *,
                 snapshot: Path | None = None) -> None:
        self.store = store
        self._access = access
        self._snapshot = snapshot  # the last good copy, refreshed after every good load
        self.lock = asyncio.Lock()  # one writer of the store at a time (sync, erasure)

    async def reload(self, *, erased: bool = False) -> None:
        """Rebuild the decision index off the loop and swap it in (one assignment); then the
        store becomes the last good snapshot (an erased person leaves the snapshot too)."""
        async with self.lock:
            index = await asyncio.to_thread(self.store.load_index)
            if self._snapshot is not None:
                try:
                    await asyncio.to_thread(self.store.snapshot, self._snapshot)
                except (OSError, sqlite3.Error) as exc:  # a full disk keeps the older snapshot
                    if erased:  # ... unless it still holds a person just erased
                        self._snapshot.unlink(missing_ok=True)
                    log.warning("resident store snapshot %s not refreshed: %s", self._snapshot,
                                exc)
        self._access.replace(index)
        log.info("residents reloaded: version %d, %d person(s)", index.version,
                 len(index.persons))

    async def watch(self) -> None:
        """Swap in a new index whenever the store changes (`menjin residents ...`, a sync).

        SQLite's ``data_version`` of a connection of our own changes with every commit made
        through any other connection, so polling it costs one pragma every few seconds.
        """
        probe = sqlite3.connect(self.store.path, check_same_thread=False)
        try:
            seen = probe.execute("PRAGMA data_version").fetchone()[0]
            while True:
                await asyncio.sleep(STORE_POLL_SECONDS)
                version = await asyncio.to_thread(
                    lambda: probe.execute("PRAGMA data_version").fetchone()[0])
                if version != seen:
                    seen = version
                    await self.reload()
        finally:
            probe.close()


class Erasure:
    """Erasure of a person everywhere on this gate (PIPL art. 47), then the station is told.

    The running daemon does it (not the CLI on the files) so that the decision index and the
    face gallery in memory forget the person too.
    """

    def __init__(self, *, config: Callable[[], GateConfig], residents: Residents,
                 journal: Callable[[], Journal | None], audit: AuditTrail, emit: Emit,
                 faces_changed: Callable[[], Awaitable[None]], keyring: Keyring,
                 scrub: Callable[[str, str], None]) -> None:
        self._config = config
        self._keyring = keyring
        self._scrub = scrub  # the daemon's in-memory buffers (recent events, followers)
        self._residents = residents
        self._journal = journal
        self._audit = audit
        self._emit = emit
        self._faces_changed = faces_changed

    async def forget(self, person: str, *, actor: str) -> dict[str, Any]:
        """Erase ``person`` from the store, templates, journal and memory, then tell the station.

        Raises KeyProviderError when templates exist but the face key is not here yet (provider
        ``station`` before it answered): nothing is erased then, the request can be repeated.
        """
        config = self._config()
        vision = config.vision
        async with self._residents.lock:
            templates = (template_store(vision, self._keyring.template_key())
                         if vision is not None and vision.templates.exists() else None)
            erasure = await asyncio.to_thread(
                forget_person, person, store=self._residents.store,
                pseudonym_key=self._keyring.local().pseudonyms,
                templates=templates, journal=self._journal())
        self._emit(forgotten_event(erasure, actor=actor))
        self._scrub(person, erasure.pseudonym)  # in the same step: nothing in memory names them
        await self._audit.record("person.forget", actor=actor, target=erasure.pseudonym,
                                 details={k: v for k, v in erasure.as_dict().items()
                                          if k != "person"})
        await self._residents.reload(erased=True)
        if erasure.templates_removed:
            await self._faces_changed()
        return erasure.as_dict()


async def privacy_upkeep(journal: Journal, audit: AuditTrail,
                         retention_days: Callable[[], int]) -> None:
    """Retention at start-up and hourly, in threads: journal (events, portraits), audit log."""
    while True:
        await asyncio.to_thread(journal.purge)
        await asyncio.to_thread(audit.log.prune, retention_days())
        await audit.forward()
        await asyncio.sleep(UPKEEP_SECONDS)
