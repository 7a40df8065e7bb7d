"""Receivers in one shared-subscription group against a real mosquitto: each event stored once."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import OperationalError

from protocol.topics import station_subscriptions as subscriptions
from station.config import DatabaseConfig, MqttConfig, StationConfig
from station.messages import EventRow
from station.receiver import Receiver, gap_changes
from station.store import Store
from tests.broker import Broker

PREFIX = "menjin"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


def event(gate: str, seq: int, **extra: Any) -> dict[str, Any]:
    """An event payload as a gate's uplink publishes it (contract of daemon/events.py)."""
    return {"v": 1, "id": str(uuid.uuid4()), "seq": seq, "gate": gate,
            "ts_ms": 1_790_000_000_000 + seq, "type": "access.granted", "door": "front",
            "credential_kind": "card", "credential_ref": f"c{seq}", "person": f"p{seq % 7}",
            "data": {}, **extra}


def station_config(broker: Broker, tmp_path: Path) -> StationConfig:
    return StationConfig(
        version=1,
        mqtt=MqttConfig(port=broker.port, prefix=PREFIX, share_group="station"),
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'station.db'}", batch_size=50),
        portraits_dir=tmp_path / "portraits",
    )


@asynccontextmanager
async def running(receivers: list[Receiver]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(r.run()) for r in receivers]
    try:
        for r in receivers:
            await asyncio.wait_for(r.subscribed.wait(), 10)
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def publish_all(broker: Broker, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def wait_until(predicate: Any, timeout_s: float = 20.0) -> None:
    """Poll the database (written by other tasks and threads) until ``predicate`` holds."""
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(predicate):  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.05)


def test_subscriptions_share_all_but_status() -> None:
    assert subscriptions("m", "g") == [
        "$share/g/m/+/events", "$share/g/m/+/captures/+", "$share/g/m/+/health",
        "$share/g/m/+/cmd/+/result", "m/+/status",
    ]


@pytest.mark.parametrize(
    ("before", "after", "new", "filled"),
    [
        ([], [(5, 9)], [(5, 9)], []),
        ([(5, 9)], [(5, 9)], [], []),
        ([(5, 9)], [(7, 9)], [], []),  # partly re-sent: the same gap, not a new one
        ([(5, 9)], [(7, 11)], [(7, 11)], []),
        ([(5, 9)], [], [], [(5, 9)]),
        ([(5, 9), (20, 21)], [(20, 21)], [], [(5, 9)]),
    ],
)
def test_gap_changes(before: list[tuple[int, int]], after: list[tuple[int, int]],
                     new: list[tuple[int, int]], filled: list[tuple[int, int]]) -> None:
    assert gap_changes(before, after) == (new, filled)


@pytest.mark.timeout(90)
async def test_two_receivers_store_each_event_once_and_report_a_gap_then_its_fill(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="station")
    config = station_config(broker, tmp_path)
    stores = [Store(config.database.url, portraits_dir=config.portraits_dir) for _ in range(2)]
    # settle_ms: a seq still in the other receiver's batch is not yet a gap
    receivers = [Receiver(config, s, index=i, gap_check_seconds=0.2, settle_ms=300)
                 for i, s in enumerate(stores)]
    g1 = [event("g1", seq) for seq in range(1, 201)]
    g2 = [event("g2", seq) for seq in range(1, 101)]
    missing = [e for e in g2 if 40 <= e["seq"] <= 59]
    first = [e for e in g2 if e not in missing]
    duplicates = g1[:30]  # a gate re-sending after a lost PUBACK
    async with running(receivers):
        await publish_all(broker, [(f"{PREFIX}/{e['gate']}/events", json.dumps(e).encode())
                                   for e in [*g1, *first, *duplicates]])
        await wait_until(lambda: stores[0].count_events() == len(g1) + len(first))
        # an event still in flight past the settle cut may widen the first report (40-60)
        await wait_until(lambda: re.search(r"gate g2: missing seq 40-(59|60) ", caplog.text))
        assert stores[0].gaps("g2") == [(40, 59)]
        await publish_all(broker, [(f"{PREFIX}/g2/events", json.dumps(e).encode())
                                   for e in missing])
        await wait_until(lambda: stores[0].count_events() == len(g1) + len(g2))
        await wait_until(lambda: not any(r.open_gaps for r in receivers))
    # reported filled as it was reported, however the re-sent events trickled in
    assert re.search(r"gate g2: gap seq 40-(59|60) filled", caplog.text)
    assert not re.search(r"gate g2: missing seq (4[1-9]|5\d)-", caplog.text)
    assert sorted(stores[0].event_ids()) == sorted(e["id"] for e in [*g1, *g2])
    assert stores[0].gaps("g1") == [] and stores[0].gaps("g2") == []
    # the shared subscription split the load: both receivers stored part of it
    assert all(r.stats.stored > 0 for r in receivers)
    assert sum(r.stats.stored for r in receivers) == len(g1) + len(g2)
    assert sum(r.stats.duplicates for r in receivers) == len(duplicates)


@pytest.mark.timeout(60)
async def test_status_portrait_health_and_bad_messages(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = station_config(broker, tmp_path)
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    status = {"v": 1, "gate": "g1", "state": "online", "version": "0.1.0", "uptime_s": 3,
              "ts_ms": 1, "portraits": "upload", "legal_basis": "consent records 2026-10-01"}
    capture = event("g1", 1, type="capture")
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "image/jpeg"
    props.UserProperty = [("event_id", capture["id"]), ("seq", "1"), ("gate", "g1"),
                          ("ts_ms", str(capture["ts_ms"]))]
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as gate:
        # retained before the receiver starts: shared subscriptions would never deliver it
        await gate.publish(f"{PREFIX}/g1/status", json.dumps(status), qos=1, retain=True)
        async with running([Receiver(config, store, gap_check_seconds=0.2, settle_ms=0)]):
            await gate.publish(f"{PREFIX}/g1/events", json.dumps(capture), qos=1)
            await gate.publish(f"{PREFIX}/g1/captures/{capture['id']}", JPEG, qos=1,
                               properties=props)
            await gate.publish(f"{PREFIX}/g1/health", json.dumps(
                {"v": 1, "gate": "g1", "ts_ms": 2, "queue_depth": 17}), qos=1)
            await gate.publish(f"{PREFIX}/g1/events", b"{not json", qos=1)
            await gate.publish(f"{PREFIX}/g1/events", json.dumps(event("g2", 5)), qos=1)
            await gate.publish(f"{PREFIX}/g1/captures/..", JPEG, qos=1)
            await wait_until(lambda: store.portrait_file(capture["id"]) is not None
                             and store.gates() and store.gates()[0].backlog == 17)
            await wait_until(lambda: store.count_quarantined() == 3)
            offline = {**status, "state": "offline"}
            await gate.publish(f"{PREFIX}/g1/status", json.dumps(offline), qos=1, retain=True)
            await wait_until(lambda: store.gates()[0].state == "offline")
    view = store.gates()[0]
    assert view.status["legal_basis"] == "consent records 2026-10-01"
    assert store.portrait_file(capture["id"]).read_bytes() == JPEG  # type: ignore[union-attr]
    assert store.count_events() == 1
    # set aside for the operator, logged once a minute per gate, never fatal
    reasons = {(q["gate"], q["reason"]) for q in store.quarantined()}
    assert reasons == {
        ("g1", "not JSON: unexpected word b'not'"),
        ("g1", "event names gate 'g2' on the topic of gate 'g1'"),
        (None, "capture topic names an unsafe event id '..'"),
    }
    assert "gate g1: 1 message(s) set aside in quarantine (latest: not JSON" in caplog.text
    assert "gate g1: 2 message(s)" not in caplog.text
    assert "gate g1: offline" in caplog.text


@pytest.mark.timeout(60)
async def test_person_forgotten_erases_the_station_copy(broker: Broker, tmp_path: Path) -> None:
    config = station_config(broker, tmp_path)
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    grant = event("g1", 1, person="p-0101", credential_kind="face")
    store.add_events([EventRow(
        id=grant["id"], gate="g1", seq=1, ts_ms=grant["ts_ms"], type="access.granted",
        door="front", reader=None, credential_kind="face", credential_ref="ref",
        person="p-0101", reason=None, data={})])
    store.add_portrait(event_id=grant["id"], gate="g1", ts_ms=grant["ts_ms"], jpeg=JPEG)
    portrait = store.portrait_file(grant["id"])
    assert portrait is not None
    forgotten = event("g1", 2, type="person.forgotten", person="anon-3f2a",
                      data={"erase": "p-0101", "pseudonym": "anon-3f2a"})
    async with running([Receiver(config, store, gap_check_seconds=0.2, settle_ms=0)]):
        await publish_all(broker, [(f"{PREFIX}/g1/events", json.dumps(forgotten).encode())])
        # the portrait file goes after the rows' transaction commits (a rolled-back erasure
        # must not leave rows naming a deleted file): wait for both
        await wait_until(lambda: store.count_events() == 2
                         and not store.recent_events(person="p-0101") and not portrait.exists())
    assert {e["person"] for e in store.recent_events()} == {"anon-3f2a"}
    assert {e["credential_ref"] for e in store.recent_events()
            if e["type"] != "person.forgotten"} == {None}


@pytest.mark.timeout(60)
async def test_an_enrol_result_updates_the_face_count_and_warns_near_the_filing_threshold(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = station_config(broker, tmp_path).model_copy(update={"face_persons_warn_at": 2})
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    results = []
    for gate, person in (("g1", "p1"), ("g2", "p2")):
        command_id = str(uuid.uuid4())
        store.record_command({"id": command_id, "gate": gate, "name": "enrol",
                              "issued_at_ms": 1, "args": {"person": person, "photos": []}})
        results.append((f"{PREFIX}/{gate}/cmd/enrol/result", json.dumps(
            {"v": 1, "id": command_id, "gate": gate, "name": "enrol", "ok": True, "reason": "",
             "result": {}, "ts_ms": 1}).encode()))
    async with running([Receiver(config, store, gap_check_seconds=0.2, settle_ms=0)]):
        await publish_all(broker, results)
        await wait_until(lambda: store.face_person_count() == 2)
        await wait_until(lambda: "filing with the cyberspace administration" in caplog.text)
    assert "station: 2 persons are enrolled for face entry across all gates" in caplog.text


@pytest.mark.timeout(60)
async def test_a_database_failure_holds_the_batch_until_the_database_is_back(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="station")
    config = station_config(broker, tmp_path)
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    real_add = store.add_events
    failures = [OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error"))]

    def flaky_add(rows: list[EventRow]) -> list[EventRow]:
        if failures:
            raise failures.pop()
        return real_add(rows)

    events = [event("g1", seq) for seq in range(1, 21)]
    with mock.patch.object(store, "add_events", autospec=True, side_effect=flaky_add):
        async with running([Receiver(config, store, gap_check_seconds=0.2, settle_ms=0)]):
            await publish_all(broker, [(f"{PREFIX}/g1/events", json.dumps(e).encode())
                                       for e in events])
            await wait_until(lambda: store.count_events() == len(events))
    assert "station: database unavailable (disk I/O error); retrying every 2.0 s" in caplog.text
    assert "station: database back" in caplog.text
    assert sorted(store.event_ids()) == sorted(e["id"] for e in events)
