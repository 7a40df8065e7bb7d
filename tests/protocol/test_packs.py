"""Packs: a backlog's events several to a message, within the bounds, in order."""

from __future__ import annotations

import json

import pytest

from protocol.packs import MAX_PACK_BYTES, MAX_PACK_EVENTS, is_pack, packs


def event(seq: int, size: int = 0) -> bytes:
    return json.dumps({"seq": seq, "pad": "x" * size}, separators=(",", ":")).encode()


def test_events_are_packed_up_to_the_count_in_order() -> None:
    payloads = [event(seq) for seq in range(1, 2 * MAX_PACK_EVENTS + 6)]
    messages = list(packs(payloads))
    assert [count for count, _ in messages] == [MAX_PACK_EVENTS, MAX_PACK_EVENTS, 5]
    decoded = [e["seq"] for _, message in messages for e in json.loads(message)]
    assert decoded == list(range(1, 2 * MAX_PACK_EVENTS + 6))


def test_a_pack_stays_within_its_bytes_and_a_large_event_goes_alone() -> None:
    large = event(2, MAX_PACK_BYTES)
    payloads = [event(1), large, *(event(seq, 50_000) for seq in range(3, 13))]
    messages = list(packs(payloads))
    assert messages[:2] == [(1, payloads[0]), (1, large)]  # alone: its own payload, no array
    assert all(len(message) <= MAX_PACK_BYTES for _, message in messages[2:])
    assert [count for count, _ in messages[2:]] == [5, 5]
    assert sum(count for count, _ in messages) == len(payloads)


def test_one_event_is_never_a_pack_of_one() -> None:
    assert list(packs([event(7)])) == [(1, event(7))]
    assert list(packs([])) == []


@pytest.mark.parametrize(("payload", "pack"), [
    (b"[{}]", True), (b" \n\t[", True), (b"{}", False), (b' {"a":[1]}', False), (b"", False),
])
def test_a_pack_is_told_by_its_first_character(payload: bytes, pack: bool) -> None:
    assert is_pack(payload) is pack
