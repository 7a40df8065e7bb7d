"""A resident list larger than one command goes in signed pieces that the gate applies together,
through a real mosquitto to the daemon's real handler and resident store."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from daemon.commands import CommandProcessor
from daemon.credentials import load_station_key
from daemon.keys import KEY_BYTES, LocalKeys
from daemon.store import Store as GateStore
from daemon.sync_transfer import SyncStaging, TransferRefusedError
from protocol.mqtt import MqttClient
from protocol.sync_pieces import check_piece, new_transfer_id, piece_args, split_sync
from protocol.topics import GateTopics
from station.commands import CommandError, keygen, signing_key, sync
from station.residents import ResidentList
from station.store import Store
from tests.broker import Broker
from tests.station.test_commands import PREFIX, make_config


def residents(count: int, *, name: str = "Resident") -> ResidentList:
    persons = {f"p{i:06d}": {"id": f"p{i:06d}", "name": f"{name} {i}",
                             "cards": [f"{1_000_000 + i:010d}"], "groups": ["all"]}
               for i in range(count)}
    return ResidentList(persons=persons, groups={"all": {"id": "all", "doors": ["front"]}})


def test_pieces_carry_every_record_once_and_stay_under_the_size() -> None:
    args = {"mode": "snapshot", "version": 9, "holidays": ["2026-10-01"],
            "persons": [{"id": f"p{i}", "pad": "x" * 90} for i in range(1000)],
            "groups": [{"id": "g"}], "revoked": [f"{i:010d}" for i in range(500)]}
    pieces = split_sync(args, max_bytes=8000)
    assert len(pieces) > 10
    assert all(len(json.dumps(p)) < 8000 + 200 for p in pieces)
    assert all((p["mode"], p["version"]) == ("snapshot", 9) for p in pieces)
    assert pieces[0]["holidays"] == ["2026-10-01"] and all("holidays" not in p
                                                            for p in pieces[1:])
    for key in ("persons", "groups", "revoked"):
        assert [x for p in pieces for x in p.get(key, [])] == args[key]
    assert split_sync({"mode": "delta", "version": 2, "base_version": 1}) == [
        {"mode": "delta", "version": 2, "base_version": 1}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"transfer": "x", "index": 0, "count": 1, "part": {}}, "transfer: 32 lowercase hex"),
        ({"transfer": "a" * 32, "index": 1, "count": 1, "part": {}}, "index: an integer"),
        ({"transfer": "a" * 32, "index": 0, "count": 0, "part": {}}, "count: an integer"),
        ({"transfer": "a" * 32, "index": 0, "count": True, "part": {}}, "count: an integer"),
        ({"transfer": "a" * 32, "index": 0, "count": 1, "part": []}, "part: a sync payload"),
        ({"transfer": "a" * 32, "index": 0, "count": 1, "part": {}, "x": 1}, "unknown field"),
    ],
)
def test_a_malformed_piece_is_refused(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_piece(args)


def local_keys() -> LocalKeys:
    return LocalKeys(*(secrets.token_bytes(KEY_BYTES) for _ in range(4)))


class GateKeys:
    """The gate's local keys, as :class:`daemon.keyring.Keyring` gives them."""

    def __init__(self) -> None:
        self.keys = local_keys()

    def local(self) -> LocalKeys:
        return self.keys


def test_staging_refuses_an_invalid_part_and_a_changed_count(tmp_path: Path) -> None:
    staging = SyncStaging(tmp_path / "sync_parts.db", local_keys().store)
    transfer = new_transfer_id()
    with pytest.raises(TransferRefusedError, match=r"sync_part: .*version"):
        staging.stage(piece_args(transfer, 0, 2, {"mode": "snapshot", "version": "9"}))
    staging.stage(piece_args(transfer, 0, 2, {"mode": "snapshot", "version": 9}))
    with pytest.raises(TransferRefusedError, match="count 3 differs from the transfer's 2"):
        staging.stage(piece_args(transfer, 1, 3, {"mode": "snapshot", "version": 9}))
    newer = new_transfer_id()
    assert staging.stage(piece_args(newer, 0, 2, {"mode": "snapshot", "version": 10})) == (
        newer, 1, 2)
    assert list(staging.pieces(transfer)) == []  # the older, unfinished transfer is gone


def test_staged_pieces_are_sealed_private_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "gate" / "sync_parts.db"
    staging = SyncStaging(path, local_keys().store)
    transfer = new_transfer_id()
    part = {"mode": "snapshot", "version": 9,
            "persons": [{"id": "p-0042", "name": "Wang Xiuying", "cards": ["0004123456"]}]}
    staging.stage(piece_args(transfer, 0, 2, part))
    assert path.stat().st_mode & 0o777 == 0o600
    on_disk = b"".join(f.read_bytes() for f in path.parent.iterdir())
    assert b"Wang Xiuying" not in on_disk and b"0004123456" not in on_disk
    assert b"p-0042" not in on_disk
    assert list(staging.pieces(transfer)) == [part]
    staging.remove()
    assert list(path.parent.iterdir()) == []


async def run_gate(broker: Broker, tmp_path: Path, store: GateStore, stop_after: int | None,
                   ready: asyncio.Event, keys: GateKeys) -> None:
    """The gate's command side with the daemon's real sync handlers and resident store."""
    from daemon.station_commands import StationCommands

    class Residents:
        def __init__(self) -> None:
            self.store = store
            self.lock = asyncio.Lock()

        async def reload(self) -> None:
            store.load_index()

    class Config:
        state_dir = tmp_path / "gate"

    commands = StationCommands(config=lambda: Config(),  # type: ignore[arg-type,return-value]
                               doors={}, residents=lambda: Residents(),  # type: ignore[arg-type,return-value]
                               erasure=lambda: None,  # type: ignore[arg-type,return-value]
                               audit=None, faces_changed=None,  # type: ignore[arg-type]
                               keyring=keys)  # type: ignore[arg-type]
    nonces: set[str] = set()
    processor = CommandProcessor(
        gate="g1", station_key=load_station_key(tmp_path / "station_key.pub.pem"),
        remember_nonce=lambda n, _t: not (n in nonces or nonces.add(n)),  # type: ignore[func-returns-value]
        emit=lambda _e: None, handlers=commands.handlers())
    handled = 0
    async with MqttClient(broker.host, broker.port, client_id="gate-g1") as client:
        await client.subscribe(f"{PREFIX}/g1/cmd/+")
        ready.set()
        async for message in client.messages():
            name = message.topic.rsplit("/", 1)[1]
            if name == "result":
                continue
            if stop_after is not None and handled >= stop_after:
                return  # the gate goes away in the middle of the transfer
            handled += 1
            outcome = await processor.process(name, message.payload)
            await client.publish(GateTopics(PREFIX, "g1").result(outcome.name),
                                 json.dumps(outcome.result).encode())


@pytest.mark.timeout(180)
async def test_a_large_list_arrives_in_pieces_and_an_interrupted_one_changes_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    keygen(tmp_path / "station_key.pem")
    config = make_config(broker, tmp_path, timeout_s=5)
    station = Store(config.database.url, portraits_dir=config.portraits_dir)
    key = signing_key(config.signing_key)
    keys = GateKeys()
    gate = GateStore(tmp_path / "gate" / "residents.db", card_key=keys.keys.card,
                     data_key=keys.keys.store)
    first = residents(3000)
    ready = asyncio.Event()
    task = asyncio.create_task(run_gate(broker, tmp_path, gate, None, ready, keys))
    await asyncio.wait_for(ready.wait(), 10)
    result = await sync(config, "g1", first, key=key, store=station, piece_bytes=32 * 1024)
    task.cancel()
    assert result["ok"] is True, result
    assert result["result"]["complete"] is True and result["result"]["count"] > 5
    assert result["result"]["persons"] == 3000
    assert len(gate.persons()) == 3000
    assert not (tmp_path / "gate" / "sync_parts.db").exists()  # applied: the staging went
    version = gate.version
    # a second list, interrupted after two pieces: the first list stays in force
    ready = asyncio.Event()
    task = asyncio.create_task(run_gate(broker, tmp_path, gate, 2, ready, keys))
    await asyncio.wait_for(ready.wait(), 10)
    with pytest.raises(CommandError, match="did not answer sync_part"):
        await sync(config, "g1", residents(3000, name="Other"), key=key, store=station,
                   snapshot=True, piece_bytes=32 * 1024)
    await asyncio.gather(task, return_exceptions=True)
    assert gate.version == version
    assert {p.name for p in gate.persons()} == {f"Resident {i}" for i in range(3000)}
    staged = b"".join(f.read_bytes() for f in (tmp_path / "gate").glob("sync_parts.db*"))
    assert staged and b"Other" not in staged  # the unfinished pieces are sealed
