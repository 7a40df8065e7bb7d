"""A gate with keys.provider station gets its face key at boot through a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import aiomqtt
import pytest

from daemon.commands import CommandProcessor
from daemon.credentials import load_station_key as load_public_key
from daemon.events import Event
from daemon.journal import Journal
from daemon.keys import StationProvider
from daemon.station_key import StationKeyExchange
from station.commands import keygen
from station.keyservice import wrap_new_key
from station.receiver import Receiver
from station.store import Store
from tests.broker import Broker
from tests.station.test_receiver import PREFIX, running, station_config


@pytest.mark.timeout(60)
async def test_the_station_answers_a_keys_request_with_a_signed_sealed_unwrap(
    broker: Broker, tmp_path: Path
) -> None:
    kek_file = tmp_path / "station.kek"
    kek_file.write_text(os.urandom(32).hex() + "\n")
    public = keygen(tmp_path / "station_key.pem")
    config = station_config(broker, tmp_path).model_copy(update={
        "key_encryption_key": kek_file, "signing_key": tmp_path / "station_key.pem"})
    wrapped = tmp_path / "gate" / "keys" / "station.wrapped"
    wrapped.parent.mkdir(parents=True)
    wrapped.write_bytes(wrap_new_key(bytes.fromhex(kek_file.read_text().strip()), "g1"))
    provider = StationProvider(wrapped)
    emitted: list[Event] = []

    async def unlocked() -> None:
        return None

    exchange = StationKeyExchange(provider, gate="g1", emit=emitted.append, unlocked=unlocked)
    exchange.request()
    journal = Journal(tmp_path / "gate" / "journal.db", gate="g1")
    payload = journal.record(emitted[-1])
    processor = CommandProcessor(gate="g1", station_key=load_public_key(public),
                                 remember_nonce=journal.remember_nonce, emit=emitted.append,
                                 handlers={"unwrap": exchange.unwrap})
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    async with running([Receiver(config, store)]), aiomqtt.Client(
            broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5,
            identifier=f"gate-{uuid.uuid4().hex[:8]}") as gate:
        await gate.subscribe(f"{PREFIX}/g1/cmd/+", qos=1)
        await gate.publish(f"{PREFIX}/g1/events", json.dumps(payload), qos=1)
        async with asyncio.timeout(30):
            message = await anext(aiter(gate.messages))
        assert message.topic.value == f"{PREFIX}/g1/cmd/unwrap"
        assert isinstance(message.payload, bytes)
        assert bytes.fromhex(kek_file.read_text().strip()) not in message.payload
        outcome = await processor.process("unwrap", message.payload)
        await gate.publish(f"{PREFIX}/g1/cmd/unwrap/result", json.dumps(outcome.result), qos=1)
    assert outcome.result["ok"] is True, outcome.result
    assert len(provider.root_key()) == 32
    journal.close()
