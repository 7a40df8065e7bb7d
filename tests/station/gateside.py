"""A gate's upload side for station tests: its real journal, uplink and command processor, with
the ``resend`` handler the daemon installs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from daemon.commands import CommandProcessor
from daemon.credentials import load_station_key
from daemon.journal import Journal
from daemon.station_commands import resend
from daemon.uplink import Uplink
from tests.broker import Broker


@asynccontextmanager
async def gate_uplink(broker: Broker, journal: Journal, station_public_key: Path, *,
                      gate: str, prefix: str = "menjin") -> AsyncIterator[Uplink]:
    """The gate's uplink with the command processor the daemon builds (``resend`` included),
    trusting commands signed by the key of ``station_public_key``."""
    processor = CommandProcessor(
        gate=gate, station_key=load_station_key(station_public_key),
        remember_nonce=journal.remember_nonce, emit=journal.record,
        handlers={"resend": functools.partial(resend, journal)},
    )
    uplink = Uplink(journal, gate=gate, host=broker.host, port=broker.port, prefix=prefix,
                    commands=processor, initial_backoff_seconds=0.1, max_backoff_seconds=0.5,
                    health_seconds=1.0)
    task = asyncio.create_task(uplink.run())
    try:
        yield uplink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
