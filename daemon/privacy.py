"""Erasure of a person (PIPL art. 47): one function used by the CLI, the control socket and the
station's signed ``forget`` command, so every path removes exactly the same things.

What goes: the person's record, cards and PIN (resident store), their face templates (template
store), their portraits (journal), and every reference to their id in stored events, which is
replaced by a keyed pseudonym so alarm history and statistics survive without pointing at them.
What is emitted: ``person.forgotten`` carrying the erased id and its pseudonym (no biometrics), so
the station can replace the id in its own copy and delete its portraits of them too.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from daemon.audit import AuditLog
from daemon.config import GateConfig
from daemon.events import Event
from daemon.journal import Journal
from daemon.keyring import Keyring
from daemon.recovery import snapshot_path
from daemon.store import Forgotten, Store

log = logging.getLogger(__name__)


class Templates(Protocol):
    """The part of the template store erasure needs (``vision.gallery.TemplateStore``)."""

    def forget(self, person: str) -> bool: ...


@dataclass(frozen=True)
class Erasure:
    """What an erasure removed; ``as_dict`` is the command/CLI result (no personal data)."""

    person: str
    pseudonym: str
    found: bool
    cards_removed: int
    pin_removed: bool
    templates_removed: bool
    events_pseudonymised: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def forget_person(
    person: str,
    *,
    store: Store,
    pseudonym_key: bytes,
    templates: Templates | None,
    journal: Journal | None,
) -> Erasure:
    """Erase ``person`` everywhere on this gate; safe to repeat (a second call finds nothing)."""
    gone: Forgotten = store.forget(person, pseudonym_key)
    templates_removed = templates.forget(person) if templates is not None else False
    changed = journal.pseudonymise_person(person, gone.pseudonym) if journal is not None else 0
    erasure = Erasure(
        person=person,
        pseudonym=gone.pseudonym,
        found=gone.found,
        cards_removed=gone.cards_removed,
        pin_removed=gone.pin_removed,
        templates_removed=templates_removed,
        events_pseudonymised=changed,
    )
    log.info(  # the log names the pseudonym only: journald is not erased
        "erasure: %s (%d card(s), templates %s, %d event(s) rewritten)",
        gone.pseudonym,
        gone.cards_removed,
        "removed" if templates_removed else "none",
        changed,
    )
    return erasure


def forget_offline(config: GateConfig, person: str, *, actor: str) -> Erasure:
    """Erasure while the daemon is stopped: on the store, template and journal files.

    ``person.forgotten`` is recorded in the journal, so the station hears of it at the next start.
    The caller holds the gate lock (:func:`daemon.statelock.offline`): a running daemon owns the
    journal's sequence numbers, so this never runs beside it.
    """
    keyring = Keyring(config)
    store = keyring.open_store(config)
    journal = Journal(
        config.journal.path,
        gate=config.gate.id,
        portraits=config.privacy.portraits,
        retention_days=config.journal.retention_days,
        data_key=keyring.local().journal,
    )
    try:
        templates = None
        if config.vision is not None and config.vision.templates.exists():
            from daemon.faces import template_store

            templates = template_store(config.vision, keyring.template_key())
        erasure = forget_person(
            person,
            store=store,
            pseudonym_key=keyring.local().pseudonyms,
            templates=templates,
            journal=journal,
        )
        _refresh_snapshot(store, config)
        journal.record(forgotten_event(erasure, actor=actor))
        AuditLog(config.privacy.audit_path).append(
            "person.forget",
            actor=actor,
            target=erasure.pseudonym,
            details={k: v for k, v in erasure.as_dict().items() if k != "person"},
        )
    finally:
        journal.close()
        store.close()
    return erasure


def _refresh_snapshot(store: Store, config: GateConfig) -> None:
    """The last good copy of the store without the erased person (or no copy at all)."""
    snapshot = snapshot_path(config.access.db)
    try:
        store.snapshot(snapshot)
    except (OSError, sqlite3.Error) as exc:
        snapshot.unlink(missing_ok=True)  # the older copy would still hold the erased person
        log.warning("resident store snapshot %s removed, not refreshed: %s", snapshot, exc)


def forgotten_event(erasure: Erasure, *, actor: str) -> Event:
    """The ``person.forgotten`` event telling the station to erase its copy too."""
    return Event(
        "person.forgotten",
        person=erasure.pseudonym,
        reason=actor,
        data={
            "erase": erasure.person,
            "pseudonym": erasure.pseudonym,
            "cards_removed": erasure.cards_removed,
            "templates_removed": erasure.templates_removed,
            "events_pseudonymised": erasure.events_pseudonymised,
        },
    )
