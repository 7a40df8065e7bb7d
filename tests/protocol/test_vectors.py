"""The published command test vectors (docs/vectors/commands.json) hold: a station written in
another language that reproduces them produces commands a gate accepts."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.commands import CommandProcessor
from protocol.canonical import canonical_json
from protocol.envelope import parse_envelope, public_key_from_pem, signature_valid

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "docs" / "vectors" /
                      "commands.json").read_text(encoding="utf-8"))
KEY = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["private_key_seed_hex"]))
PUBLIC = public_key_from_pem(VECTORS["public_key_pem"].encode())


def test_the_published_keys_belong_together() -> None:
    raw = PUBLIC.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw.hex() == VECTORS["public_key_hex"]
    assert KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw) == raw


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["title"])
def test_each_vector_signs_and_verifies(vector: dict[str, Any]) -> None:
    signed = vector["signed_bytes"].encode("utf-8")
    assert canonical_json(vector["envelope"]) == signed
    sig = base64.b64decode(vector["sig"], validate=True)
    PUBLIC.verify(sig, signed)  # raises InvalidSignature when wrong
    assert KEY.sign(signed) == sig  # Ed25519 is deterministic: a reimplementation matches
    envelope = parse_envelope(vector["payload"].encode("utf-8"))
    assert {k: v for k, v in envelope.items() if k != "sig"} == vector["envelope"]
    assert signature_valid(envelope, PUBLIC)


def processor(now_ms: int) -> CommandProcessor:
    return CommandProcessor(gate="north", station_key=PUBLIC,
                            remember_nonce=lambda nonce, until: True, emit=lambda e: None,
                            clock=lambda: now_ms)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["title"])
async def test_a_gate_accepts_each_payload(vector: dict[str, Any]) -> None:
    gate = processor(vector["envelope"]["issued_at_ms"] + 1_000)
    outcome = await gate.process(vector["envelope"]["name"], vector["payload"].encode())
    assert outcome.result["reason"] in ("", "unsupported")  # verified; `mode` has no handler


@pytest.mark.parametrize("case", VECTORS["refused"], ids=lambda c: c["title"])
async def test_a_gate_refuses_each_bad_payload(case: dict[str, Any]) -> None:
    first = VECTORS["vectors"][0]["envelope"]
    gate = processor(first["issued_at_ms"] + 1_000)
    outcome = await gate.process(first["name"], case["payload"].encode())
    assert (outcome.result["ok"], outcome.result["reason"]) == (False, case["reason"])
