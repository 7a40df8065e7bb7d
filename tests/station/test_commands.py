"""Signed commands from the station to real gates' command processors through a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from daemon.commands import CommandProcessor
from daemon.credentials import load_station_key as load_public_key
from protocol.topics import GateTopics
from station.commands import (
    CommandError,
    enrol_args,
    keygen,
    send_command,
    signing_key,
    sync,
)
from station.config import DatabaseConfig, MqttConfig, StationConfig
from station.residents import ResidentList
from station.store import Store
from tests.broker import Broker, start_broker

PREFIX = "menjin"
REPO = Path(__file__).resolve().parents[2]
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32 + b"\xff\xd9"


@dataclass
class FakeGateLog:
    """What one gate's processor saw: handler calls and emitted events."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    sync_fails: int = 0


def handlers_for(log: FakeGateLog) -> dict[str, Any]:
    async def open_door(args: dict[str, Any]) -> dict[str, Any]:
        log.calls.append(("open", args))
        return {"door": args["door"], "unlocked_seconds": args["seconds"]}

    async def apply_sync(args: dict[str, Any]) -> dict[str, Any]:
        log.calls.append(("sync", args))
        if args["mode"] == "delta" and log.sync_fails:
            log.sync_fails -= 1
            raise ValueError("base version mismatch: send a snapshot")
        return {"version": args["version"]}

    async def enrol(args: dict[str, Any]) -> dict[str, Any]:
        log.calls.append(("enrol", args))
        return {"person": args["person"], "templates": len(args["photos"])}

    async def erase(args: dict[str, Any]) -> dict[str, Any]:
        log.calls.append(("erase", args))
        return {"person": args["person"], "cards_removed": 1}

    return {"open": open_door, "sync": apply_sync, "enrol": enrol, "forget": erase,
            "remove": erase}


async def run_gate(broker: Broker, gate: str, public_key_path: Path, log: FakeGateLog,
                   ready: asyncio.Event) -> None:
    """A gate's command side: the daemon's real CommandProcessor verifying each envelope."""
    nonces: set[str] = set()

    def remember(nonce: str, _until_ms: int) -> bool:
        new = nonce not in nonces
        nonces.add(nonce)
        return new

    processor = CommandProcessor(gate=gate, station_key=load_public_key(public_key_path),
                                 remember_nonce=remember, emit=log.events.append,
                                 handlers=handlers_for(log))
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(f"{PREFIX}/{gate}/cmd/+", qos=1)
        ready.set()
        async for message in client.messages:
            name = message.topic.value.rsplit("/", 1)[1]
            outcome = await processor.process(name, bytes(message.payload))  # type: ignore[arg-type]
            await client.publish(GateTopics(PREFIX, gate).result(outcome.name),
                                 json.dumps(outcome.result), qos=1)


@asynccontextmanager
async def gates(
    broker: Broker, public_key: Path, *ids: str
) -> AsyncIterator[dict[str, FakeGateLog]]:
    logs = {g: FakeGateLog() for g in ids}
    readies = {g: asyncio.Event() for g in ids}
    tasks = [asyncio.create_task(run_gate(broker, g, public_key, logs[g], readies[g])) for g in ids]
    try:
        for ready in readies.values():
            await asyncio.wait_for(ready.wait(), 10)
        yield logs
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def make_config(broker: Broker, tmp_path: Path, *, timeout_s: float = 10.0) -> StationConfig:
    return StationConfig(
        version=1,
        mqtt=MqttConfig(port=broker.port, prefix=PREFIX),
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'station.db'}"),
        portraits_dir=tmp_path / "portraits",
        signing_key=tmp_path / "station_key.pem",
        command_timeout_seconds=timeout_s,
    )


def test_keygen_writes_a_private_key_only_we_can_read_and_refuses_to_overwrite(
    tmp_path: Path,
) -> None:
    private = tmp_path / "keys" / "station_key.pem"
    public = keygen(private)
    assert public == tmp_path / "keys" / "station_key.pub.pem"
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    load_public_key(public)
    first = private.read_bytes()
    with pytest.raises(CommandError, match="already exists and the gates trust it"):
        keygen(private)
    keygen(private, force=True)
    assert private.read_bytes() != first
    signing_key(private)
    with pytest.raises(CommandError, match="no signing key; create one with `menjin station"):
        signing_key(tmp_path / "absent.pem")


def test_enrol_args_refuses_what_the_gate_would_refuse(tmp_path: Path) -> None:
    text = tmp_path / "photo.jpg"
    text.write_text("not an image")
    with pytest.raises(CommandError, match=r"photo\.jpg: not a JPEG file"):
        enrol_args("p1", [text])
    big = tmp_path / "big.jpg"
    big.write_bytes(JPEG[:4] + os.urandom(900_000))
    with pytest.raises(CommandError, match="photos too large"):
        enrol_args("p1", [big])


@pytest.mark.timeout(60)
async def test_a_signed_open_reaches_the_right_gate_and_only_that_gate(
    broker: Broker, tmp_path: Path
) -> None:
    config = make_config(broker, tmp_path)
    public = keygen(config.signing_key)
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    async with gates(broker, public, "g1", "g2") as logs:
        result = await send_command(config, "g1", "open", {"door": "front", "seconds": 5},
                                    key=signing_key(config.signing_key), store=store)
    assert result["ok"] is True and result["gate"] == "g1"
    assert result["result"] == {"door": "front", "unlocked_seconds": 5}
    assert logs["g1"].calls == [("open", {"door": "front", "seconds": 5})]
    assert logs["g2"].calls == [] and logs["g2"].events == []
    assert [e.type for e in logs["g1"].events] == ["command.accepted"]
    assert store.command_result(result["id"])["ok"] is True  # type: ignore[index]


@pytest.mark.timeout(60)
async def test_a_command_signed_by_another_key_is_refused(broker: Broker, tmp_path: Path) -> None:
    config = make_config(broker, tmp_path)
    public = keygen(config.signing_key)
    keygen(tmp_path / "intruder.pem")
    async with gates(broker, public, "g1") as logs:
        result = await send_command(config, "g1", "open", {"door": "front", "seconds": 5},
                                    key=signing_key(tmp_path / "intruder.pem"))
    assert (result["ok"], result["reason"]) == (False, "bad_signature")
    assert logs["g1"].calls == []
    assert [e.type for e in logs["g1"].events] == ["command.refused"]


@pytest.mark.timeout(60)
async def test_no_answer_is_a_clear_error(broker: Broker, tmp_path: Path) -> None:
    config = make_config(broker, tmp_path, timeout_s=0.5)
    keygen(config.signing_key)
    with pytest.raises(CommandError, match=r"gate g9 did not answer open .* within 0.5 s"):
        await send_command(config, "g9", "open", {"door": "front", "seconds": 5},
                           key=signing_key(config.signing_key))


@pytest.mark.timeout(60)
async def test_sync_sends_a_snapshot_then_deltas_and_falls_back_to_a_snapshot(
    broker: Broker, tmp_path: Path
) -> None:
    config = make_config(broker, tmp_path)
    public = keygen(config.signing_key)
    key = signing_key(config.signing_key)
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    groups = {"residents": {"id": "residents", "doors": ["front"], "schedule": "always"}}
    first = ResidentList({"p1": {"id": "p1", "name": "A", "cards": ["1"]},
                          "p2": {"id": "p2", "name": "B", "cards": ["2"]}}, groups)
    second = ResidentList({"p1": {"id": "p1", "name": "A", "cards": ["9"]},
                           "p3": {"id": "p3", "name": "C", "cards": ["3"]}}, groups)
    async with gates(broker, public, "g1") as logs:
        assert (await sync(config, "g1", first, key=key, store=store))["ok"]
        assert (await sync(config, "g1", second, key=key, store=store))["ok"]
        logs["g1"].sync_fails = 1
        assert (await sync(config, "g1", first, key=key, store=store))["ok"]
    modes = [args["mode"] for _, args in logs["g1"].calls]
    assert modes == ["snapshot", "delta", "delta", "snapshot"]
    delta = logs["g1"].calls[1][1]
    assert delta["upsert"] == [second.persons["p1"], second.persons["p3"]]
    assert delta["delete"] == ["p2"] and delta["groups"] == []
    assert delta["base_version"] == logs["g1"].calls[0][1]["version"]
    assert logs["g1"].calls[0][1]["groups"] == [groups["residents"]]
    state = store.sync_state("g1")
    assert state is not None and ResidentList.from_json(state[1]) == first


@pytest.mark.timeout(60)
async def test_enrol_counts_face_persons_across_gates(broker: Broker, tmp_path: Path) -> None:
    config = make_config(broker, tmp_path)
    public = keygen(config.signing_key)
    key = signing_key(config.signing_key)
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    photo = tmp_path / "face.jpg"
    photo.write_bytes(JPEG)
    async with gates(broker, public, "g1", "g2") as logs:
        for gate in ("g1", "g2"):
            result = await send_command(config, gate, "enrol", enrol_args("p-0101", [photo]),
                                        key=key, store=store)
            assert result["ok"] and result["result"] == {"person": "p-0101", "templates": 1}
    assert logs["g1"].calls[0][1]["photos"] == enrol_args("p-0101", [photo])["photos"]
    assert store.face_person_count() == 1  # one person at two gates


@pytest.mark.timeout(90)
async def test_cli_open_prints_the_result_and_exits_by_it(broker: Broker, tmp_path: Path) -> None:
    key_path = tmp_path / "station_key.pem"
    public = keygen(key_path)
    config_file = tmp_path / "station.yaml"
    config_file.write_text(
        f"version: 1\nmqtt: {{port: {broker.port}}}\ndatabase: {{url: 'sqlite:///station.db'}}\n"
        "signing_key: station_key.pem\ncommand_timeout_seconds: 20\n")
    menjin = [sys.executable, "-c", "from menjin.cli import main; main()"]
    # the station knows gate g1 and its door (commands to unknown ones are refused at once); the
    # CLI finds it in the database relative to its working directory
    known = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")
    known.set_health("g1", {"gate": "g1", "doors": {"front": {"state": "closed"}}})
    known.close()
    async with gates(broker, public, "g1"):
        proc = await asyncio.create_subprocess_exec(
            *menjin, "station", "open", "g1", "front", "--seconds", "3", "--json",
            "-c", str(config_file),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
        out, err = await proc.communicate()
        refused = await asyncio.create_subprocess_exec(
            *menjin, "station", "open", "g1", "front", "-c", str(tmp_path / "missing.yaml"),
            stderr=asyncio.subprocess.PIPE, cwd=REPO)
        _, refused_err = await refused.communicate()
    assert proc.returncode == 0, err.decode()
    printed = json.loads(out)
    assert printed["ok"] is True and printed["result"]["door"] == "front"
    assert (tmp_path / "station.db").exists()  # relative to the working directory
    assert refused.returncode == 78
    assert b"missing.yaml:1:1: cannot read" in refused_err


def test_cli_keygen_prints_both_paths_and_refuses_to_overwrite(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from station.cli import station_app

    out = tmp_path / "k.pem"
    first = CliRunner().invoke(station_app, ["keygen", "-o", str(out)])
    assert first.exit_code == 0, first.output
    assert f"public key:  {tmp_path / 'k.pub.pem'} (copy to the gates)" in first.output
    again = CliRunner().invoke(station_app, ["keygen", "-o", str(out)])
    assert again.exit_code == 1


async def test_a_command_the_broker_refuses_is_reported_not_waited_for(tmp_path: Path) -> None:
    """A PUBACK 0x87 (ACL) is an error at once, never a silent wait for the gate's answer."""
    broker = start_broker(tmp_path / "acl", passwords={"station": "pw"},
                          acl=f"user station\ntopic read {PREFIX}/+/cmd/+/result\n")
    try:
        (tmp_path / "pw").write_text("pw\n")
        config = make_config(broker, tmp_path, timeout_s=30.0)
        config = config.model_copy(update={"mqtt": config.mqtt.model_copy(
            update={"username": "station", "password_file": tmp_path / "pw"})})
        keygen(tmp_path / "k.pem")
        key = signing_key(tmp_path / "k.pem")
        with pytest.raises(CommandError, match=r"broker refused the command on "
                           rf"{PREFIX}/g1/cmd/ping \(Not authorized\); check its ACL"):
            async with asyncio.timeout(10):
                await send_command(config, "g1", "ping", {}, key=key)
    finally:
        broker.stop()


@pytest.mark.parametrize("argv", [["enrol", "g1", "p-0101"],
                                  ["enrol", "g1", "p-0101", "a.jpg", "--at-door", "front"]])
def test_station_enrol_needs_photos_or_a_door_not_both(argv: list[str]) -> None:
    from typer.testing import CliRunner

    from station.cli import station_app

    result = CliRunner().invoke(station_app, argv)
    assert result.exit_code != 0
    assert "give either photos or --at-door DOOR" in result.output
