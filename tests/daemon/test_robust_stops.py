"""Clean stops are delivered, unclean ones are told (issue 14, finding 8).

A real mosquitto; `menjin run` stopped with SIGTERM while a door is unlocked (its `door.locked`
`stopped` must reach the broker before the process exits), then killed with SIGKILL (the next
start says `gate.restarted` with `clean: false`, the previous run's last seq and each door's
relay as set at start).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.broker import Broker, start_broker
from tests.daemon.gate_rig import Gate, count

EVENT_SECONDS = 20.0
UPLINK = "uplink: {{host: 127.0.0.1, port: {port}, health_seconds: 30}}\n"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = start_broker(tmp_path / "broker")
    try:
        yield b
    finally:
        b.stop()


async def collect(broker: Broker, action: Any, until: Any) -> list[Any]:
    """Subscribe to the gate's events, run ``action`` in a thread, collect until ``until``."""
    got: list[dict[str, Any]] = []
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe("menjin/robust-gate/events", qos=1)
        await asyncio.to_thread(action)
        async with asyncio.timeout(EVENT_SECONDS):
            async for message in client.messages:
                got.append(json.loads(bytes(message.payload)))  # type: ignore[arg-type]
                if until(got):
                    break
    return got


@pytest.mark.timeout(180)
def test_sigterm_delivers_the_last_events_and_sigkill_is_told_at_the_next_start(
        tmp_path: Path, broker: Broker) -> None:
    gate = Gate(tmp_path, UPLINK.format(port=broker.port)).start()
    gate.wait_for("the uplink", lambda: gate.call("status")["uplink"].get("state") == "connected")
    gate.call("door.test", door="front", seconds=10)
    gate.wait_for("the unlock", lambda: count(gate.events(), "door.unlocked"))

    def stop() -> None:
        assert gate.stop(signal.SIGTERM) == 0, gate.log_text()

    got = asyncio.run(collect(broker, stop, lambda ev: any(
        e["type"] == "door.locked" and e.get("reason") == "stopped" for e in ev)))
    assert any(e["type"] == "door.locked" and e["reason"] == "stopped" for e in got)
    with sqlite3.connect(gate.state / "journal.db") as db:
        assert db.execute("SELECT count(*) FROM events WHERE delivered = 0").fetchone()[0] == 0
    assert json.loads((gate.state / "run.json").read_text())["clean"] is True

    gate.start()  # after a clean stop: told, clean
    restarted = gate.wait_for("gate.restarted", lambda: [
        e for e in gate.events() if e["type"] == "gate.restarted"])[-1]
    assert restarted["data"]["clean"] is True
    gate.swipe_opens()
    last_seq = gate.events()[-1]["seq"]
    pid = gate.proc.pid  # type: ignore[union-attr]
    gate.stop(signal.SIGKILL)  # power loss, OOM kill, watchdog abort
    assert gate.events()[-1]["seq"] == last_seq  # (the grant's events were all committed)

    gate.start()
    restarted = gate.wait_for("gate.restarted after SIGKILL", lambda: [
        e for e in gate.events() if e["type"] == "gate.restarted"
        and e["data"]["clean"] is False])[-1]
    assert restarted["reason"] == "unclean"
    assert restarted["data"]["previous_last_seq"] == last_seq
    assert restarted["data"]["previous_pid"] == pid
    assert restarted["data"]["doors"] == {"front": {"relay": "released", "lock": "locked",
                                                    "mode": "normal",
                                                    "mode_source": "default"}}
    assert restarted["seq"] > last_seq
    gate.stop()


@pytest.mark.timeout(180)
def test_a_retained_hostile_command_is_ignored_at_every_start(tmp_path: Path,
                                                              broker: Broker) -> None:
    envelope = {"v": 1, "id": "x", "name": "open", "gate": "robust-gate", "nonce": "0" * 32,
                "issued_at_ms": 1, "expires_at_ms": 2, "args": {}, "sig": "AAAA"}
    payload = json.dumps(envelope).replace('"issued_at_ms": 1',
                                           '"issued_at_ms": ' + "9" * 4301).encode()

    async def retain() -> None:
        async with aiomqtt.Client(broker.host, broker.port,
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.publish("menjin/robust-gate/cmd/open", payload, qos=1, retain=True)

    asyncio.run(retain())
    gate = Gate(tmp_path, UPLINK.format(port=broker.port))
    for run in range(1, 3):  # the daemon used to stop after every restart
        gate.start()
        gate.wait_for("the retained command to be ignored",
                      lambda run=run: gate.log.read_text().count(
                          "retained message on menjin/robust-gate/cmd/open ignored") == run)
        gate.swipe_opens()
        status = gate.call("status")
        assert status["uplink"]["state"] == "connected"
        assert status["parts"]["uplink"] == {"state": "running", "restarts": 0}
        assert count(gate.events(), "command.refused") == 0  # not even a refusal: never read
        assert gate.stop() == 0
