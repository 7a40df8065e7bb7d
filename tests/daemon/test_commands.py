"""Signed station commands: every refusal, acceptance, replay across a restart, the MQTT path."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.commands import CommandProcessor, Handler
from daemon.events import Event
from daemon.journal import Journal
from daemon.uplink import Uplink
from protocol.envelope import new_command, sign_envelope, signed_bytes
from tests.broker import mosquitto_binary, start_broker

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = {name: json.loads((REPO / "docs" / "schemas" / f"{name}.json").read_text())
           for name in ("command", "command-result", "event")}
GATE = "g1"
NOW_MS = 1_780_000_000_000
STATION_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()


class Gate:
    """A processor wired to a real journal, collecting what it emits."""

    def __init__(self, path: Path, *, handlers: dict[str, Handler] | None = None,
                 station_key: bool = True, max_bytes: int = 1024 * 1024) -> None:
        self.journal = Journal(path, gate=GATE)
        self.events: list[Event] = []
        self.processor = CommandProcessor(
            gate=GATE, station_key=STATION_KEY.public_key() if station_key else None,
            remember_nonce=self.journal.remember_nonce, emit=self._emit, handlers=handlers,
            max_bytes=max_bytes, clock=lambda: NOW_MS,
        )

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        self.journal.record(event)

    async def send(self, name: str, payload: bytes | dict[str, Any]) -> dict[str, Any]:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        outcome = await self.processor.process(name, raw)
        assert outcome.name == name
        return outcome.result


def command(name: str = "open", **changes: Any) -> dict[str, Any]:
    args = {"door": "front", "seconds": 5} if name == "open" else {}
    envelope = new_command(name, GATE, args, STATION_KEY, now_ms=NOW_MS)
    if changes:
        envelope = sign_envelope({**envelope, **changes}, STATION_KEY)
    return envelope


def unsigned() -> bytes:
    envelope = command()
    del envelope["sig"]
    return json.dumps(envelope).encode()


def signed_by_other_key() -> dict[str, Any]:
    return sign_envelope(command(), OTHER_KEY)


def tampered_args() -> dict[str, Any]:
    envelope = command()
    envelope["args"] = {"door": "back", "seconds": 300}
    return envelope


def without(field: str) -> dict[str, Any]:
    envelope = command()
    del envelope[field]
    return envelope


def with_extra() -> dict[str, Any]:
    return sign_envelope({**command(), "priority": "high"}, STATION_KEY)


REFUSALS: list[tuple[str, str, Callable[[], bytes | dict[str, Any]], str]] = [
    ("not json", "open", lambda: b"{open the door", "malformed"),
    ("not utf-8", "open", lambda: b"\xff\xfe", "malformed"),
    ("not an object", "open", lambda: b"[1, 2]", "malformed"),
    ("lone surrogate escape", "open",
     lambda: json.dumps({**command(), "id": "\ud800"}).encode(), "malformed"),
    ("nested 33 deep", "open", lambda: b'{"args":' * 33 + b"1" + b"}" * 33, "malformed"),
    ("a 21-digit integer", "open",
     lambda: json.dumps(command()).encode().replace(b'"args": {', b'"args": {"n": '
                                                   + b"9" * 21 + b", ", 1), "malformed"),
    ("NaN", "open", lambda: json.dumps({**command(), "args": {"n": float("nan")}}).encode(),
     "malformed"),
    ("repeated key", "open",
     lambda: json.dumps(command()).encode().replace(b'{"v": 1', b'{"v": 1, "v": 1', 1),
     "malformed"),
    ("unsigned", "open", unsigned, "unsigned"),
    ("missing field", "open", lambda: without("nonce"), "malformed"),
    ("extra field", "open", with_extra, "malformed"),
    ("wrong type", "open", lambda: command(issued_at_ms=str(NOW_MS)), "malformed"),
    ("bool as int", "open", lambda: command(v=True), "malformed"),
    ("wrong version", "open", lambda: command(v=2), "malformed"),
    ("bad nonce", "open", lambda: command(nonce="nonce"), "malformed"),
    ("expires before issued", "open",
     lambda: command(issued_at_ms=NOW_MS + 200_000, expires_at_ms=NOW_MS + 100_000), "malformed"),
    ("name differs from topic", "ping", command, "wrong_name"),
    ("unknown command", "reboot", lambda: command(name="reboot"), "unknown_command"),
    ("other gate", "open", lambda: command(gate="g2"), "wrong_gate"),
    ("signed by another key", "open", signed_by_other_key, "bad_signature"),
    ("args changed after signing", "open", tampered_args, "bad_signature"),
    ("garbage signature", "open", lambda: {**command(), "sig": "not base64!"}, "bad_signature"),
    ("expired", "open",
     lambda: command(issued_at_ms=NOW_MS - 120_000, expires_at_ms=NOW_MS - 60_000), "expired"),
    ("issued beyond the clock skew", "open",
     lambda: command(issued_at_ms=NOW_MS + 301_000, expires_at_ms=NOW_MS + 361_000), "future"),
]


@pytest.mark.parametrize(("name", "payload", "reason"),
                         [(n, p, r) for _, n, p, r in REFUSALS], ids=[c[0] for c in REFUSALS])
async def test_refused_commands_get_an_event_and_a_result(
    tmp_path: Path, name: str, payload: Callable[[], bytes | dict[str, Any]], reason: str
) -> None:
    opened: list[dict[str, Any]] = []

    async def open_door(args: dict[str, Any]) -> dict[str, Any]:
        opened.append(args)
        return {"opened": True}

    gate = Gate(tmp_path / "journal.db", handlers={"open": open_door})
    result = await gate.send(name, payload())
    assert (result["ok"], result["reason"], result["name"], result["gate"]) == (
        False, reason, name, GATE)
    jsonschema.validate(result, SCHEMAS["command-result"])
    assert opened == []
    [event] = gate.events
    assert (event.type, event.reason, event.data["command"]) == ("command.refused", reason, name)
    gate.journal.flush()
    [stored] = [json.loads(p.payload) for p in gate.journal.pending(5)]
    jsonschema.validate(stored, SCHEMAS["event"])
    assert stored["type"] == "command.refused"
    gate.journal.close()


async def test_oversized_and_no_station_key(tmp_path: Path) -> None:
    small = Gate(tmp_path / "a.db", max_bytes=200)
    assert (await small.send("ping", command("ping", args={"pad": "x" * 300})))["reason"] == \
        "oversized"
    keyless = Gate(tmp_path / "b.db", station_key=False)
    assert (await keyless.send("ping", command("ping")))["reason"] == "no_station_key"
    small.journal.close()
    keyless.journal.close()


async def test_accepted_command_runs_its_handler_once_and_replays_are_refused(
    tmp_path: Path,
) -> None:
    calls: list[dict[str, Any]] = []

    async def open_door(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(args)
        return {"door": args["door"], "unlocked_seconds": args["seconds"]}

    gate = Gate(tmp_path / "journal.db", handlers={"open": open_door})
    envelope = command()
    jsonschema.validate(envelope, SCHEMAS["command"])
    result = await gate.send("open", envelope)
    assert result == {"v": 1, "id": envelope["id"], "gate": GATE, "name": "open", "ok": True,
                      "reason": "", "result": {"door": "front", "unlocked_seconds": 5},
                      "ts_ms": NOW_MS}
    jsonschema.validate(result, SCHEMAS["command-result"])
    assert [e.type for e in gate.events] == ["command.accepted"]
    assert (await gate.send("open", envelope))["reason"] == "replayed"
    gate.journal.close()

    restarted = Gate(tmp_path / "journal.db", handlers={"open": open_door})
    assert (await restarted.send("open", envelope))["reason"] == "replayed"
    assert calls == [{"door": "front", "seconds": 5}]
    assert [e.type for e in restarted.events] == ["command.refused"]
    restarted.journal.close()


async def test_ping_is_built_in_and_missing_or_failing_handlers_answer(tmp_path: Path) -> None:
    async def broken(args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("store locked")

    gate = Gate(tmp_path / "journal.db", handlers={"sync": broken})
    pong = await gate.send("ping", command("ping"))
    assert pong["ok"] and pong["result"]["pong"] is True
    failed = await gate.send("sync", command("sync"))
    assert (failed["ok"], failed["reason"]) == (False, "failed")
    assert "store locked" in failed["result"]["detail"]
    missing = await gate.send("enrol", command("enrol"))
    assert (missing["ok"], missing["reason"]) == (False, "unsupported")
    for result in (pong, failed, missing):
        jsonschema.validate(result, SCHEMAS["command-result"])
    gate.journal.close()


def test_signed_bytes_are_what_is_signed() -> None:
    envelope = command()
    STATION_KEY.public_key().verify(base64.b64decode(envelope["sig"]), signed_bytes(envelope))


@settings(max_examples=100, deadline=None)
@given(payload=st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from([*sorted(SCHEMAS["command"]["required"]), "x"]),
                    st.one_of(st.integers(), st.text(max_size=40), st.none(), st.booleans()),
                    max_size=10).map(lambda d: json.dumps(d).encode()),
))
def test_arbitrary_payloads_are_refused_never_raise(payload: bytes) -> None:
    events: list[Event] = []
    processor = CommandProcessor(gate=GATE, station_key=STATION_KEY.public_key(),
                                 remember_nonce=lambda nonce, until: True, emit=events.append,
                                 clock=lambda: NOW_MS)
    result = asyncio.run(processor.process("open", payload)).result
    assert result["ok"] is False
    jsonschema.validate(result, SCHEMAS["command-result"])
    assert [e.type for e in events] == ["command.refused"]


async def until_the_gate_answers_ping(station: aiomqtt.Client) -> None:
    """The gate subscribes after it connects: ping until a result proves it listens."""
    while True:
        ping = new_command("ping", GATE, {}, STATION_KEY)
        await station.publish(f"menjin/{GATE}/cmd/ping", json.dumps(ping), qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for message in station.messages:
                    if str(message.topic).endswith("/cmd/ping/result"):
                        return


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed")
@pytest.mark.timeout(30)
async def test_commands_over_mqtt_with_results(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "broker")
    opened: list[dict[str, Any]] = []

    async def open_door(args: dict[str, Any]) -> dict[str, Any]:
        opened.append(args)
        return {"opened": args["door"]}

    journal = Journal(tmp_path / "journal.db", gate=GATE)
    processor = CommandProcessor(gate=GATE, station_key=STATION_KEY.public_key(),
                                 remember_nonce=journal.remember_nonce, emit=journal.record,
                                 handlers={"open": open_door})
    uplink = Uplink(journal, gate=GATE, host=broker.host, port=broker.port, commands=processor)
    results: list[dict[str, Any]] = []
    good = new_command("open", GATE, {"door": "front", "seconds": 3}, STATION_KEY)
    forged = new_command("open", GATE, {"door": "front", "seconds": 3}, OTHER_KEY)
    task = asyncio.create_task(uplink.run())
    try:
        async with aiomqtt.Client(broker.host, broker.port,
                                  protocol=aiomqtt.ProtocolVersion.V5) as station:
            await station.subscribe(f"menjin/{GATE}/cmd/+/result", qos=1)
            async with asyncio.timeout(20):
                await until_the_gate_answers_ping(station)
                for envelope in (forged, good, good):
                    await station.publish(f"menjin/{GATE}/cmd/open", json.dumps(envelope), qos=1)
                async for message in station.messages:
                    if str(message.topic).endswith("/cmd/ping/result"):
                        continue  # a late answer to an extra ping
                    assert str(message.topic) == f"menjin/{GATE}/cmd/open/result"
                    assert isinstance(message.payload, bytes)
                    results.append(json.loads(message.payload))
                    if len(results) == 3:
                        break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        broker.stop()
        journal.close()
    assert [(r["ok"], r["reason"]) for r in results] == [
        (False, "bad_signature"), (True, ""), (False, "replayed")]
    assert [r["id"] for r in results] == [forged["id"], good["id"], good["id"]]
    assert opened == [{"door": "front", "seconds": 3}]


async def test_a_flood_of_refused_commands_cannot_fill_the_journal(tmp_path: Path) -> None:
    """Refusal alarms are never evicted: past 10 a minute they are counted, not journaled."""
    now = [NOW_MS]
    events: list[Event] = []
    processor = CommandProcessor(gate=GATE, station_key=STATION_KEY.public_key(),
                                 remember_nonce=lambda nonce, until: True, emit=events.append,
                                 clock=lambda: now[0])
    results = [(await processor.process("open", unsigned())).result for _ in range(25)]
    assert all(r["ok"] is False for r in results)  # every command still gets its answer
    assert len(events) == 10
    now[0] += 61_000
    await processor.process("open", unsigned())
    assert len(events) == 11 and events[-1].data["suppressed"] == 15
