"""A gate's backlog in packs: every event of a pack checked and stored as if it came alone, a bad
one set aside by itself, a pack beyond the contract refused whole."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from protocol.mqtt import Message
from protocol.packs import MAX_PACK_EVENTS, packs
from station.ingest import Ingest
from station.messages import parse_event, parse_pack
from station.store import Store, now_ms

PREFIX = "menjin"
TOPIC = f"{PREFIX}/g1/events"


def event(seq: int, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "id": str(uuid.uuid4()), "seq": seq, "gate": "g1", "ts_ms": now_ms(),
            "type": "access.granted", "door": "front", "reader": "front-in",
            "credential_kind": "card", "credential_ref": "3b1f", "person": "p-0042",
            "reason": "ok", "time_trusted": False, "data": {"card": "****5678"}, **fields}


def pack(*events: dict[str, Any] | object) -> bytes:
    return json.dumps(list(events)).encode()


def nested(levels: int) -> Any:
    """``levels`` arrays one inside the other: with the pack, the event and its data, deeper
    than a pack's events may go by one."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def message(payload: bytes, mid: int = 1) -> Message:
    return Message(TOPIC, payload, 1, False, mid)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")


def test_an_event_of_a_pack_reads_as_the_same_event_alone() -> None:
    one = event(7)
    alone = parse_event(json.dumps(one).encode(), "g1", now_ms=now_ms())
    assert parse_pack(pack(event(6), one), "g1", now_ms=now_ms())[1] == alone
    assert (alone.door, alone.reader, alone.credential_kind, alone.credential_ref, alone.person,
            alone.reason, alone.time_trusted) == ("front", "front-in", "card", "3b1f", "p-0042",
                                                  "ok", False)


async def test_packs_are_stored_once_per_event(store: Store) -> None:
    events = [event(seq) for seq in range(1, 251)]
    ingest = Ingest(store, prefix=PREFIX)
    messages = [message(payload, mid) for mid, (_, payload) in
                enumerate(packs([json.dumps(e).encode() for e in events]), start=1)]
    assert len(messages) == 3
    await ingest.handle(messages)
    # re-sent after a lost PUBACK, with a copy of one event inside the pack itself
    await ingest.handle([message(pack(*events[:99], events[0]), 9)])
    assert sorted(store.event_ids("g1")) == sorted(e["id"] for e in events)
    assert (ingest.stats.stored, ingest.stats.duplicates, ingest.stats.rejected) == (250, 100, 0)
    assert store.gaps("g1") == []


async def test_a_bad_event_of_a_pack_is_set_aside_alone(store: Store) -> None:
    good = [event(1), event(3)]
    other_gate, no_object = event(2, gate="g2"), ["not", "an", "event"]
    ingest = Ingest(store, prefix=PREFIX)
    await ingest.handle([message(pack(good[0], other_gate, good[1], no_object))])
    assert sorted(store.event_ids("g1")) == sorted(e["id"] for e in good)
    assert (ingest.stats.stored, ingest.stats.rejected) == (2, 2)
    quarantined = {q["reason"]: q for q in store.quarantined()}
    wrong_gate = quarantined["event names gate 'g2' on the topic of gate 'g1'"]
    assert (wrong_gate["gate"], wrong_gate["topic"]) == ("g1", TOPIC)
    assert json.loads(wrong_gate["payload"]) == other_gate  # the event, not the whole pack
    not_object = quarantined["event 3 of the pack is not a JSON object"]
    assert json.loads(not_object["payload"]) == no_object


async def test_a_bad_event_of_a_pack_still_counts_for_its_gates_seq(store: Store) -> None:
    ingest = Ingest(store, prefix=PREFIX)
    await ingest.handle([message(pack(event(1), event(2, ts_ms=1), event(3)))])
    assert [q["seq"] for q in store.quarantined()] == [2]


@pytest.mark.parametrize(("payload", "reason"), [
    (b"[]", f"a pack must be a JSON array of 1 to {MAX_PACK_EVENTS} events"),
    (pack(*(event(seq) for seq in range(1, MAX_PACK_EVENTS + 2))),
     f"a pack must be a JSON array of 1 to {MAX_PACK_EVENTS} events"),
    (pack(event(1, data={"a": nested(31)})), "nested deeper than 33 levels"),
    (b'[{"v":1,"seq":1' + b"0" * 30 + b"}]", "number with more than 20 digits"),
    (b"[" + b" " * 1024 * 1024 + b"]", "1048578 bytes > 1048576"),
    (b'[{"v":1}', "not JSON (Expecting ',' delimiter: line 1 column 9 (char 8))"),
])
async def test_a_pack_beyond_the_contract_is_refused_whole(store: Store, payload: bytes,
                                                           reason: str) -> None:
    ingest = Ingest(store, prefix=PREFIX)
    await ingest.handle([message(payload)])
    assert store.count_events() == 0
    [quarantined] = store.quarantined()
    assert (quarantined["reason"], quarantined["bytes"]) == (reason, len(payload))
