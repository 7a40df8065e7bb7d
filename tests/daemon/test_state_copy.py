"""A copied SD card: the state directory of a gate with enrolled faces and cards yields no
template, person id, name or card number without the key provider (here the board's TPM)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from daemon.audit import AuditLog
from daemon.configfile import load_config
from daemon.events import Event
from daemon.journal import Journal
from daemon.keyring import Keyring
from daemon.keys import KeyProviderError
from daemon.store import parse_group, parse_person
from tests.daemon.test_keys import fake_tpm  # noqa: F401 (fixture)
from vision.gallery import TemplateStore

ZONE = ZoneInfo("Asia/Shanghai")
PERSONS = [("p-0042", "Wang Fang", "0004567890"), ("p-0043", "李伟", "0009876543")]
JPEG = b"\xff\xd8\xff\xe0" + b"a face portrait" * 20 + b"\xff\xd9"


def secrets_of_the_gate(templates: dict[str, np.ndarray]) -> list[bytes]:
    """Everything that must not be found in the copy, in the forms it could take."""
    found = []
    for person, name, card in PERSONS:
        found += [person.encode(), name.encode(), name.encode("unicode_escape"),
                  card.encode(), card.lstrip("0").encode(),
                  hashlib.sha256(card.encode()).hexdigest().encode()]  # an unkeyed hash
    for matrix in templates.values():
        raw = matrix[0].astype(np.float32).tobytes()
        found += [raw[:16], base64.b64encode(raw)[:24], repr(float(matrix[0][0]))[:10].encode()]
    return [*found, JPEG[4:40]]


def build_gate(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    config = tmp_path / "gate.yaml"
    config.write_text(textwrap.dedent("""\
        version: 1
        state_dir: state
        gate: {id: g1, site: Test compound}
        doors: {front: {lock: {pin: 17}}}
        privacy: {portraits: local, retention_days: 30}
        keys: {provider: tpm2}
        """))
    cfg = load_config(config, check_files=False)
    keyring = Keyring(cfg)
    with keyring.open_store(cfg) as store:
        store.upsert([parse_person({"id": pid, "name": name, "cards": [card],
                                    "groups": ["residents"],
                                    "face_consent": {"date": "2026-10-01", "source": "form"}},
                                   zone=ZONE) for pid, name, card in PERSONS],
                     groups=[parse_group({"id": "residents", "doors": ["front"]})])
        store.remove("p-0043")  # a removed row: its page must not keep the name
        store.upsert([parse_person({"id": "p-0043", "name": "李伟", "cards": ["0009876543"]},
                                   zone=ZONE)])
    rng = np.random.default_rng(7)
    templates = {}
    gallery = TemplateStore(cfg.state_dir / "templates.bin", keyring.template_key(),
                            model="arcface")
    for pid, _name, _card in PERSONS:
        vectors = rng.normal(size=(2, 512)).astype(np.float32)
        templates[pid] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        gallery.add(pid, templates[pid])
    journal = Journal(cfg.journal.path, gate="g1", portraits="local",
                      data_key=keyring.local().journal)
    for pid, _name, card in PERSONS:
        journal.record(Event("access.granted", door="front", person=pid, credential_kind="card",
                             credential_ref=keyring.card_hash(card),
                             data={"card": "****" + card[-4:]}))
        journal.record(Event("capture", door="front", person=pid), portrait=JPEG)
    journal.flush(durable=True)
    journal.close()
    audit = AuditLog(cfg.privacy.audit_path)
    for pid, _name, _card in PERSONS:
        audit.append("enrol", actor="uid:0(root)", target=keyring.pseudonym(pid), details={})
    return config, templates


def test_a_copied_state_directory_yields_nothing_without_the_provider(
    tmp_path: Path, fake_tpm: Path,  # noqa: F811
) -> None:
    config, templates = build_gate(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "state", copy)
    files = [f for f in copy.rglob("*") if f.is_file()]
    names = {f.name for f in files}
    assert {"residents.db", "journal.db", "templates.bin", "audit.log", "root.cred",
            "card.sealed"} <= names
    assert any(f.parent.name == "portraits" for f in files)
    for needle in secrets_of_the_gate(templates):
        for file in files:
            assert needle not in file.read_bytes(), f"{needle!r} found in {file}"
    # another board (another TPM) cannot open what it copied
    fake_tpm.write_bytes(b"\x01" * 32)
    (tmp_path / "state").rename(tmp_path / "original")
    copy.rename(tmp_path / "state")
    with pytest.raises(KeyProviderError, match="unseal failed"):
        Keyring(load_config(config, check_files=False)).open_store(
            load_config(config, check_files=False))


def test_the_same_directory_opens_on_its_own_board(
    tmp_path: Path, fake_tpm: Path,  # noqa: F811
) -> None:
    config, templates = build_gate(tmp_path)
    cfg = load_config(config, check_files=False)
    keyring = Keyring(cfg)
    with keyring.open_store(cfg) as store:
        assert store.card_owner("0004567890") == "p-0042"
        assert [p.name for p in store.persons()] == ["Wang Fang", "李伟"]
    loaded = TemplateStore(cfg.state_dir / "templates.bin", keyring.template_key(),
                           model="arcface").load()
    assert np.allclose(loaded["p-0042"], templates["p-0042"])
