"""Erasure: a forgotten person leaves no record, card, template, portrait or id behind."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from daemon.events import Event
from daemon.journal import Journal
from daemon.privacy import forget_person, forgotten_event
from daemon.store import Store
from drivers.card import mask
from vision.gallery import TemplateStore

JPEG = b"\xff\xd8\xff\xe0" + b"portrait" * 10 + b"\xff\xd9"


@pytest.fixture
def gate(tmp_path: Path) -> tuple[Store, TemplateStore, Journal, bytes]:
    store = Store(tmp_path / "residents.db")
    store.apply_sync(
        {
            "mode": "snapshot",
            "version": 1,
            "persons": [
                {
                    "id": "p1",
                    "name": "Li Wei",
                    "cards": ["10:12345"],
                    "face_consent": {"date": "2026-10-01", "source": "form 17"},
                },
                {"id": "p2", "name": "Wang Fang", "cards": ["10:777"]},
            ],
        }
    )
    templates = TemplateStore(
        tmp_path / "templates.bin", secrets.token_bytes(32), model="arcface"
    )
    rng = np.random.default_rng(1)
    for person in ("p1", "p2"):
        vec = rng.normal(size=(2, 512)).astype(np.float32)
        templates.add(person, vec / np.linalg.norm(vec, axis=1, keepdims=True))
    journal = Journal(tmp_path / "journal.db", gate="g1", portraits="local", retention_days=30)
    return store, templates, journal, secrets.token_bytes(32)


def test_forget_removes_everything_and_leaves_only_pseudonyms(
    gate: tuple[Store, TemplateStore, Journal, bytes],
) -> None:
    store, templates, journal, key = gate
    journal.record(
        Event("access.granted", person="p1", credential_kind="card", credential_ref="10:12345",
              data={"card": mask("10:12345")})
    )
    capture = journal.record(Event("capture", person="p1"), portrait=JPEG)["id"]
    journal.record(
        Event("access.granted", person="p2", credential_kind="card", credential_ref="10:777")
    )
    journal.flush(durable=True)

    erasure = forget_person(
        "p1", store=store, pseudonym_key=key, templates=templates, journal=journal
    )

    assert erasure.found and erasure.cards_removed == 1 and erasure.templates_removed
    assert erasure.events_pseudonymised == 2
    assert store.person("p1") is None and store.card_owner("10:12345") is None
    assert set(templates.load()) == {"p2"}
    assert journal.portrait_file(capture) is None
    journal.flush(durable=True)
    rows = sqlite3.connect(journal.path).execute("SELECT person, body FROM events").fetchall()
    text = json.dumps(rows)
    # neither the id nor the card survive (the card searched whole: bare digits turn up in
    # the rows' random hex ids)
    assert "p1" not in text and "10:12345" not in text and mask("10:12345") not in text
    assert [r[0] for r in rows] == [erasure.pseudonym, erasure.pseudonym, "p2"]
    assert "10:777" in text  # other residents are untouched

    event = forgotten_event(erasure, actor="station")
    assert event.type == "person.forgotten" and event.person == erasure.pseudonym
    assert event.data["erase"] == "p1"
    assert not any(isinstance(v, (bytes, list)) for v in event.data.values())  # no biometrics

    again = forget_person(
        "p1", store=store, pseudonym_key=key, templates=templates, journal=journal
    )
    assert not again.found and again.pseudonym == erasure.pseudonym
    journal.close()
