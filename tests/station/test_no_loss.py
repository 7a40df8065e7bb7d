"""Nothing a gate recorded is lost at the station: a restarted receiver resumes its persistent
session, and what a broker without persistence forgot is asked for again (``resend``).

A real gate uplink (journal, uplink, command processor with the ``resend`` handler) and a real
station receiver against a private mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from daemon.events import Event
from daemon.journal import Journal
from station.commands import keygen
from station.config import DatabaseConfig, MqttConfig, StationConfig
from station.mqtt import receiver_client_id
from station.receiver import Receiver
from station.store import Store
from tests.broker import Broker
from tests.station.gateside import gate_uplink

PREFIX = "menjin"
GATE = "north"


def station_config(broker: Broker, tmp_path: Path) -> StationConfig:
    keygen(tmp_path / "station_key.pem")
    return StationConfig(
        version=1,
        mqtt=MqttConfig(port=broker.port, prefix=PREFIX),  # no client_id: derived, persistent
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'station.db'}", batch_size=50),
        portraits_dir=tmp_path / "portraits",
        signing_key=tmp_path / "station_key.pem",
    )


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[None]:
    task = asyncio.create_task(receiver.run())
    try:
        await asyncio.wait_for(receiver.subscribed.wait(), 10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(predicate: object, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(predicate):  # type: ignore[arg-type]  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def station_and_journal(broker: Broker, tmp_path: Path) -> tuple[StationConfig, Store, Journal]:
    """A station's config and store, and the gate's journal, all in ``tmp_path``."""
    config = station_config(broker, tmp_path)
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    return config, store, Journal(tmp_path / "gate" / "journal.db", gate=GATE)


def repairing_receiver(config: StationConfig, store: Store) -> Receiver:
    """A receiver that looks for gaps quickly and asks again soon, for the repair tests."""
    return Receiver(config, store, gap_check_seconds=0.3, settle_ms=300, resend_retry_seconds=2)


def routine(n: int) -> Event:
    return Event("door.opened", door="front", data={"n": n})


def test_the_receiver_id_is_stable_and_distinct_per_index() -> None:
    config = MqttConfig(port=1883, prefix="m", share_group="s")
    assert receiver_client_id(config, 0) == receiver_client_id(config, 0)
    assert receiver_client_id(config, 0) != receiver_client_id(config, 1)
    assert receiver_client_id(config, 0) != receiver_client_id(
        config.model_copy(update={"share_group": "t"}), 0)
    named = config.model_copy(update={"client_id": "station-a"})
    assert receiver_client_id(named, 2) == "station-a-receiver-2"


@pytest.mark.timeout(120)
async def test_a_receiver_stopped_for_10_s_while_the_gate_sends_loses_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    config, store, journal = station_and_journal(broker, tmp_path)
    async with gate_uplink(broker, journal, tmp_path / "station_key.pub.pem", gate=GATE):
        first = Receiver(config, store, gap_check_seconds=0.5, settle_ms=500)
        async with receiving(first):
            for n in range(10):
                journal.record(routine(n))
            await wait_until(lambda: store.count_events() >= 10)
        # the receiver is down for 10 s; the gate keeps sending and the broker acknowledges
        for n in range(10, 60):
            journal.record(routine(n))
            await asyncio.sleep(0.2)
        await wait_until(lambda: journal.queue_depth() == 0)
        assert store.count_events() < len(journal.all_ids())
        second = Receiver(config, store, gap_check_seconds=0.5, settle_ms=500)
        async with receiving(second):
            await wait_until(lambda: set(store.event_ids(GATE)) >= journal.all_ids())
        assert second.resends_sent == 0  # the session held them: nothing had to be asked again
    assert store.gaps(GATE) == []
    journal.close()


@pytest.mark.timeout(180)
async def test_a_broker_restarted_without_persistence_loses_nothing_thanks_to_resend(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="station")
    config, store, journal = station_and_journal(broker, tmp_path)
    receiver = repairing_receiver(config, store)
    async with gate_uplink(broker, journal, tmp_path / "station_key.pub.pem", gate=GATE):
        async with receiving(receiver):
            for n in range(10):
                journal.record(routine(n))
            await wait_until(lambda: store.count_events() >= 10)
        # the receiver is away: the broker acknowledges the gate and queues for the session ...
        for n in range(10, 30):
            journal.record(routine(n))
        await wait_until(lambda: journal.queue_depth() == 0)
        # ... and forgets it all in a restart without persistence
        broker.stop()
        broker.start()
        async with receiving(receiver):
            for n in range(30, 40):
                journal.record(routine(n))
            await wait_until(lambda: set(store.event_ids(GATE)) >= journal.all_ids())
            await wait_until(lambda: not receiver.open_gaps)
    assert store.gaps(GATE) == []
    assert receiver.resends_sent >= 1
    assert "gate north: missing seq 11-30 (20 events); asking the gate to re-send them" \
        in caplog.text
    assert "gate north: gap seq 11-30 filled" in caplog.text
    journal.close()


@pytest.mark.timeout(120)
async def test_a_gap_the_gate_no_longer_holds_is_recorded_as_lost_not_waited_for(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="station")
    config, store, journal = station_and_journal(broker, tmp_path)
    for n in range(30):
        journal.record(routine(n))
    journal.flush()
    # seq 5-9 went missing on the way and the gate's retention pruned them since
    pending = journal.pending(100)
    journal.mark_delivered([p.id for p in pending if 5 <= p.seq <= 9])
    later = max(p.ts_ms for p in pending) + (journal.retention_days + 1) * 86_400_000
    assert journal.purge(now=later) == {"portraits": 0, "delivered_events": 5,
                                        "undelivered_events": 0}
    receiver = Receiver(config, store, gap_check_seconds=0.3, settle_ms=300)
    async with (gate_uplink(broker, journal, tmp_path / "station_key.pub.pem", gate=GATE),
                receiving(receiver)):
        await wait_until(lambda: set(store.event_ids(GATE)) >= journal.all_ids())
        await wait_until(lambda: store.lost_ranges(GATE) == [(5, 9)])
        await wait_until(lambda: not receiver.open_gaps)
    assert store.gaps(GATE) == []
    assert "gate north: seq 5-9 no longer held by the gate (pruned); recorded as lost" \
        in caplog.text
    journal.close()


@pytest.mark.timeout(180)
async def test_events_lost_at_the_tail_are_found_from_the_gates_health_and_fetched(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="station")
    config, store, journal = station_and_journal(broker, tmp_path)
    receiver = repairing_receiver(config, store)
    async with gate_uplink(broker, journal, tmp_path / "station_key.pub.pem", gate=GATE):
        async with receiving(receiver):
            for n in range(10):
                journal.record(routine(n))
            await wait_until(lambda: store.count_events() >= 10)
        for n in range(10, 20):  # the last events the gate records for a while
            journal.record(routine(n))
        await wait_until(lambda: journal.queue_depth() == 0)
        broker.stop()  # ... and the broker forgets them
        broker.start()
        async with receiving(receiver):
            await wait_until(lambda: set(store.event_ids(GATE)) >= journal.all_ids())
    assert "gate north: missing seq 11-20 (10 events); asking the gate to re-send them" \
        in caplog.text
    assert store.gaps(GATE) == []
    journal.close()
