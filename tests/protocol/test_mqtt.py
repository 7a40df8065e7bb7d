"""The MQTT adapter against a real mosquitto: reason codes, manual acks, batches, loss, TLS."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol.mqtt import (
    REASON_FAILURE,
    Message,
    MqttClient,
    MqttError,
    reason_text,
)
from tests.broker import Broker, start_broker

REPO = Path(__file__).resolve().parents[2]


def client(broker: Broker, name: str, **options: object) -> MqttClient:
    return MqttClient(broker.host, broker.port, client_id=name, **options)  # type: ignore[arg-type]


async def test_publish_subscribe_and_properties(broker: Broker) -> None:
    async with client(broker, "sub") as sub, client(broker, "pub") as pub:
        assert await sub.subscribe("t/#") == [1]
        code = await pub.publish("t/a", b"x", content_type="image/jpeg",
                                 user_properties=[("seq", "7")])
        assert code == 0
        async with asyncio.timeout(5):
            message = await anext(sub.messages())
    assert message == Message("t/a", b"x", 1, False, message.mid, "image/jpeg", (("seq", "7"),))


async def test_an_acl_refusal_is_a_puback_reason_code_not_a_success(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "b", acl="user gate\ntopic write allowed/#\n",
                          passwords={"gate": "pw"})
    try:
        async with MqttClient(broker.host, broker.port, client_id="g", username="gate",
                              password="pw") as gate:
            assert await gate.publish("allowed/x", b"1") == 0x10  # no matching subscribers: ok
            refused = await gate.publish("forbidden/x", b"1")
            assert refused == 0x87 and refused >= REASON_FAILURE
            assert reason_text("PUBACK", refused) == "Not authorized"
    finally:
        broker.stop()


async def test_manual_ack_unacknowledged_messages_come_back(broker: Broker) -> None:
    """A QoS 1 message not acked before a disconnect is redelivered to the kept session."""
    receiver = {"client_id": "rx", "manual_ack": True, "clean_start": False,
                "session_expiry_seconds": 60}
    async with MqttClient(broker.host, broker.port, **receiver) as rx:  # type: ignore[arg-type]
        await rx.subscribe("q/#")
    async with client(broker, "tx") as tx:
        for i in range(3):
            await tx.publish("q/x", str(i).encode())
    async with MqttClient(broker.host, broker.port, **receiver) as rx:  # type: ignore[arg-type]
        assert rx.session_present
        async with asyncio.timeout(5):
            got: list[Message] = []
            async for batch in rx.batches():
                got += batch
                if len(got) == 3:
                    break
        rx.ack(got[0])  # only the first is committed
    async with MqttClient(broker.host, broker.port, **receiver) as rx:  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            again = [await anext(rx.messages()), await anext(rx.messages())]
        assert [m.payload for m in again] == [b"1", b"2"]
        for message in again:
            rx.ack(message)


async def test_batches_hand_over_what_arrived_together(broker: Broker) -> None:
    async with client(broker, "sub", manual_ack=True) as sub, client(broker, "pub") as pub:
        await sub.subscribe("b/#")
        await asyncio.gather(*(pub.publish_nowait("b/x", b"%d" % i) for i in range(500)))
        await asyncio.sleep(0.5)  # all 500 are buffered: one batch holds more than one
        async with asyncio.timeout(5):
            batches = []
            total = 0
            async for batch in sub.batches():
                batches.append(len(batch))
                total += len(batch)
                for message in batch:
                    sub.ack(message)
                if total == 500:
                    break
        assert max(batches) > 1


async def test_a_lost_broker_fails_waiters_with_mqtt_error(broker: Broker) -> None:
    async with client(broker, "sub", keepalive=2) as sub:
        await sub.subscribe("x")
        broker.stop()
        with pytest.raises(MqttError, match=re.escape("connection lost")
                           + "|disconnected"):
            async with asyncio.timeout(10):
                await anext(sub.messages())
        with pytest.raises(MqttError):
            sub.publish_nowait("x", b"1")


async def test_no_broker_is_an_mqtt_error() -> None:
    from tests.broker import free_port

    with pytest.raises(MqttError, match=r"cannot connect to 127\.0\.0\.1"):
        async with MqttClient("127.0.0.1", free_port(), client_id="x"):
            pass


DYING_GATE = """
import asyncio, ssl, sys
from pathlib import Path
from protocol.mqtt import MqttClient, Will, tls_context

async def main():
    ca, crt, key, port = sys.argv[1:5]
    async with MqttClient("localhost", int(port), client_id="dying",
                          will=Will("will/x", b"offline"),
                          tls=tls_context(Path(ca), Path(crt), Path(key))) as client:
        assert await client.publish("will/alive", b"1") == 0
        print("ready", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_last_will_over_tls_when_the_process_dies(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "b", tls=True)
    try:
        assert broker.pki is not None and broker.tls_port is not None
        crt, key = broker.pki.issue("gate")
        async with client(broker, "watch") as watch:
            await watch.subscribe("will/#")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", DYING_GATE, str(broker.pki.ca_cert), str(crt), str(key),
                str(broker.tls_port), stdout=asyncio.subprocess.PIPE, cwd=REPO)
            assert process.stdout is not None
            async with asyncio.timeout(20):
                assert await process.stdout.readline() == b"ready\n"
                process.kill()
                await process.wait()
                payloads = [message.payload async for message in _until(watch, b"offline")]
        assert payloads == [b"1", b"offline"]
    finally:
        broker.stop()


async def _until(client: MqttClient, last: bytes) -> AsyncIterator[Message]:
    async for message in client.messages():
        yield message
        if message.payload == last:
            return
