"""Events, UUIDv7, topics, canonical JSON and the envelope: the contract both sides import."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import CanonicalError, canonical_json
from protocol.envelope import (
    EnvelopeError,
    new_command,
    parse_envelope,
    public_key_from_pem,
    sign_envelope,
    signature_valid,
    signed_bytes,
)
from protocol.events import ALARM_TYPES, EVENT_TYPES, Event, Priority
from protocol.topics import GateTopics, Topic, TopicError, parse_topic, station_subscriptions
from protocol.uuid7 import Uuid7, uuid7_parts

REPO = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()
BMP_KEYS = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=6)
CONTRACT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4)
    # Keys within the Basic Multilingual Plane: beyond it RFC 8785 orders keys by UTF-16 code
    # units, json.dumps by code points (a key mixing U+10000.. with U+E000..U+FFFF sorts apart);
    # the contract's keys are ASCII names.
    | st.dictionaries(BMP_KEYS, children, max_size=4),
    max_leaves=15,
)


def test_event_types_are_those_of_the_schema() -> None:
    schema = json.loads((REPO / "docs" / "schemas" / "event.json").read_text())
    assert set(schema["properties"]["type"]["enum"]) == EVENT_TYPES
    assert ALARM_TYPES <= EVENT_TYPES
    assert Event("door.forced").priority is Priority.ALARM


def test_uuid7_is_monotonic_when_the_clock_jumps_back_and_across_a_floor() -> None:
    ids = Uuid7()
    issued = [ids.new(ms) for ms in (1_000, 1_000, 999, 5, 2_000, 2_000)]
    assert issued == sorted(issued) and len(set(issued)) == len(issued)
    assert [uuid7_parts(i)[0] for i in issued] == [1_000, 1_000, 1_000, 1_000, 2_000, 2_000]
    restarted = Uuid7(floor=issued[-1])
    after = restarted.new(1)  # the clock went back to 1970 across the restart
    assert after > issued[-1] and uuid7_parts(after)[0] == 2_000


def test_uuid7_counter_overflow_moves_to_the_next_millisecond() -> None:
    ids = Uuid7()
    issued = [ids.new(7) for _ in range(5000)]
    assert issued == sorted(issued) and len(set(issued)) == 5000
    assert uuid7_parts(issued[-1])[0] > 7


def test_uuid7_threads_never_share_an_id() -> None:
    ids = Uuid7()
    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.extend(ids.new(1) for _ in range(500)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(out)) == 2000


def test_uuid7_floor_must_be_a_uuid7() -> None:
    with pytest.raises(ValueError, match="is not a UUIDv7"):
        Uuid7(floor="6f1c8a52-8c3b-4c55-9f0e-1d2e3f405162")


def test_topics_round_trip() -> None:
    topics = GateTopics("menjin", "north")
    assert parse_topic(topics.status, "menjin") == Topic("north", "status")
    assert parse_topic(topics.events, "menjin") == Topic("north", "events")
    assert parse_topic(topics.health, "menjin") == Topic("north", "health")
    assert parse_topic(topics.capture("e1"), "menjin") == Topic("north", "capture", "e1")
    assert parse_topic(topics.command("open"), "menjin") == Topic("north", "command", "open")
    assert parse_topic(topics.result("open"), "menjin") == Topic("north", "result", "open")
    assert topics.commands == "menjin/north/cmd/#"
    assert station_subscriptions("menjin", "g")[-1] == "menjin/+/status"


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("other/north/events", "is not <menjin>/<gate>"),
        ("menjin/../events", "is not <menjin>/<gate>"),
        ("menjin/north/captures/..", "unsafe event id '..'"),
        ("menjin/north/cmd/open/result/x", "unexpected topic"),
        ("menjin/north/cmd/", "unexpected topic"),
        ("menjin/north/other", "unexpected topic"),
    ],
)
def test_topics_outside_the_contract(topic: str, message: str) -> None:
    with pytest.raises(TopicError, match=message.replace(".", r"\.")):
        parse_topic(topic, "menjin")


@settings(max_examples=300, deadline=None)
@given(CONTRACT_VALUES)
def test_canonical_json_is_the_form_signed_before(value: object) -> None:
    """For the contract's value types RFC 8785 equals the sorted compact json.dumps of before."""
    old = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical_json(value) == old


@pytest.mark.parametrize("value", [float("nan"), 2**53 + 1, {1: "a"}, b"x"])
def test_no_canonical_form(value: object) -> None:
    with pytest.raises(CanonicalError):
        canonical_json(value)


def test_envelope_sign_verify_and_every_field_bound() -> None:
    envelope = new_command("open", "north", {"door": "front", "seconds": 5}, KEY, now_ms=1000)
    public = KEY.public_key()
    assert signature_valid(envelope, public)
    assert parse_envelope(json.dumps(envelope).encode()) == envelope
    for field, other in (("gate", "south"), ("name", "mode"), ("expires_at_ms", 10**12),
                         ("args", {"door": "back", "seconds": 5})):
        assert not signature_valid({**envelope, field: other}, public)
    assert not signature_valid(sign_envelope(envelope, Ed25519PrivateKey.generate()), public)
    assert signed_bytes(envelope) == canonical_json({k: v for k, v in envelope.items()
                                                     if k != "sig"})


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"x" * 101, "oversized", "101 bytes > 100"),
        (b'{"v":1}', "unsigned", "no signature"),
        (b'{"sig":"","x":1}', "malformed", "missing fields"),
        (b'{"a":"\\ud800"}', "malformed", "lone UTF-16 surrogate"),
        (b"[" * 40 + b"]" * 40, "malformed", "nested deeper"),
    ],
)
def test_envelope_refusals(payload: bytes, reason: str, detail: str) -> None:
    with pytest.raises(EnvelopeError, match=detail) as refused:
        parse_envelope(payload, max_bytes=100)
    assert refused.value.reason == reason


def test_an_envelope_integer_beyond_2_53_has_no_canonical_form() -> None:
    body = {"v": 1, "id": "x", "name": "ping", "gate": "north", "issued_at_ms": 1,
            "expires_at_ms": 2**60, "nonce": "0" * 32, "args": {}, "sig": "AA=="}
    with pytest.raises(EnvelopeError, match="no canonical form"):
        parse_envelope(json.dumps(body).encode())


def test_public_key_from_pem_refuses_other_keys() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match=r"^not an Ed25519 public key$"):
        public_key_from_pem(ec_pem)
