"""The sync payload models: their committed JSON Schema, strictness, and the messages people see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from protocol.pins import hash_pin
from protocol.sync import Delta, Snapshot, SyncPayloadError, parse_sync, sync_schema

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "docs" / "schemas" / "sync.json"
PIN_HASH = hash_pin("2468")
FULL_PERSON = {
    "id": "p1", "name": "Wang Fang", "kind": "visitor", "enabled": True,
    "valid_from": "2026-12-01", "valid_until": "2026-12-01T18:00:00+08:00",
    "groups": ["residents"], "cards": ["0004567890"], "duress_cards": ["0004567891"],
    "pin_hash": PIN_HASH, "duress_pin_hash": None,
    "face_consent": {"date": "2026-11-02", "source": "form 118"}, "under_14": False,
    "guardian_consent": None,
}
SNAPSHOT = {"mode": "snapshot", "version": 8, "persons": [FULL_PERSON],
            "groups": [{"id": "residents", "name": "R", "doors": ["front"],
                        "schedule": "always"}],
            "holidays": ["2026-10-01", {"date": "2026-10-02", "name": "National Day"}],
            "revoked": ["0000000001"]}
DELTA = {"mode": "delta", "base_version": 8, "version": 9, "upsert": [FULL_PERSON],
         "delete": ["p2"], "groups": [], "delete_groups": ["old"], "revoke": ["1"],
         "unrevoke": ["2"]}


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == sync_schema(), (
        "regenerate docs/schemas/sync.json from protocol.sync.sync_schema()")


@pytest.mark.parametrize("payload", [SNAPSHOT, DELTA])
def test_valid_payloads_pass_models_and_schema(payload: dict[str, Any]) -> None:
    parsed = parse_sync(payload)
    assert isinstance(parsed, Snapshot if payload["mode"] == "snapshot" else Delta)
    jsonschema.validate(payload, sync_schema())
    assert parse_sync(parsed.model_dump(mode="json")) == parsed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "replace"}, "mode must be snapshot or delta, not 'replace'"),
        ({"version": True}, "version: Input should be a valid integer"),
        ({"version": "9"}, "version: Input should be a valid integer"),
        ({"persons": [{**FULL_PERSON, "enabled": 1}]},
         "persons[0].enabled: Input should be a valid boolean"),
        ({"persons": [{**FULL_PERSON, "cards": [4567890]}]},
         "persons[0].cards[0]: Input should be a valid string"),
        ({"persons": [{**FULL_PERSON, "pin_hash": "2468"}]},
         "persons[0].pin_hash: expected an scrypt hash (scrypt$N$r$p$salt$hash), never a PIN"),
        ({"persons": [{**FULL_PERSON, "id": "../x"}]},
         "persons[0].id: '../x' is not a person id (letters, digits, _ - .; max 64)"),
        ({"persons": [{**FULL_PERSON, "duress_cards": ["0004567890"]}]},
         "persons[0].cards: a card is listed twice"),
        ({"persons": [{**FULL_PERSON, "under_14": True}]},
         "persons[0].guardian_consent: face consent of a child under 14 needs a guardian's"),
        ({"groups": [{"id": "g", "doors": ["Front Door"]}]},
         "groups[0].doors[0]: 'Front Door' is not a door id"),
        ({"revoked": [""]}, "revoked[0]: a card number must not be empty"),
        ({"extra": 1}, "extra: unknown field"),
        ({"persons": [{**FULL_PERSON, "card": ["1"]}]},
         "persons[0].card: unknown field; did you mean 'cards'?"),
    ],
)
def test_refusals_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SyncPayloadError) as refused:
        parse_sync({**SNAPSHOT, **change})
    assert str(refused.value).splitlines()[0] == message
