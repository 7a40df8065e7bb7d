"""The live feed of open pages: new passages and alarms, pushed as server-sent events.

One task per web process polls the database (not the receiver's memory), so a page sees what any
receiver of the station stored, and alarms raised by another station process too.  Each open page
holds a small queue; a page too slow to keep up loses its queue's oldest items rather than holding
the feed back (the page shows everything again on reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from station.alarms import Alarms
from station.queries import Passages
from station.store import now_ms

log = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 1.0
#: Events are looked up again this far back: a transaction may commit a row stamped earlier.
OVERLAP_MS = 5_000
#: On start, alarm events received this long ago still raise their alarm (the page was down).
ALARM_CATCH_UP_MS = 7 * 24 * 3_600_000
CLIENT_QUEUE = 256


@dataclass(frozen=True)
class Item:
    kind: Literal["passage", "alarm", "end"]  # "end": the server shuts down
    row: dict[str, Any]


class LiveFeed:
    """Polls for new events and unacknowledged alarms, raises alarms, fans items out."""

    def __init__(self, passages: Passages, alarms: Alarms, *,
                 poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        self.passages = passages
        self.alarms = alarms
        self.poll_seconds = poll_seconds
        self._clients: set[asyncio.Queue[Item]] = set()
        self._cursor_ms = now_ms()
        self._seen_events: dict[str, int] = {}
        self._seen_alarms: set[str] = set()
        self._primed = False

    @contextlib.contextmanager
    def client(self) -> Iterator[asyncio.Queue[Item]]:
        """The queue of one open page, registered while the ``with`` block runs."""
        queue: asyncio.Queue[Item] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(queue)
        try:
            yield queue
        finally:
            self._clients.discard(queue)

    def end_streams(self) -> None:
        """Tell every open page's stream to finish (the web server is shutting down)."""
        self._publish(Item("end", {}))

    def _publish(self, item: Item) -> None:
        for queue in self._clients:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(item)

    def _poll(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Blocking: new events, alarms raised for them and the gates, unseen open alarms."""
        started = now_ms()
        since = self._cursor_ms - (OVERLAP_MS if self._primed else ALARM_CATCH_UP_MS)
        self.alarms.raise_for_events(since)
        self.alarms.raise_for_gates()
        rows = self.passages.since(self._cursor_ms - OVERLAP_MS)
        fresh = [r for r in rows if r["id"] not in self._seen_events]
        for row in fresh:
            self._seen_events[row["id"]] = row["received_ms"]
        self._cursor_ms = started
        floor = self._cursor_ms - OVERLAP_MS
        self._seen_events = {k: v for k, v in self._seen_events.items() if v >= floor}
        alarms = self.alarms.recent(unacknowledged=True)
        new_alarms = [a for a in reversed(alarms) if a["id"] not in self._seen_alarms]
        self._seen_alarms = {a["id"] for a in alarms}
        return fresh, new_alarms

    async def tick(self) -> None:
        """One poll; the first one only learns what is already there."""
        fresh, new_alarms = await asyncio.to_thread(self._poll)
        if not self._primed:
            self._primed = True
            return
        for row in fresh:
            self._publish(Item("passage", row))
        for alarm in new_alarms:
            self._publish(Item("alarm", alarm))

    async def run(self) -> None:
        """Poll until cancelled; a database outage costs polls, never the task."""
        failing = False
        while True:
            try:
                await self.tick()
            except SQLAlchemyError as exc:
                if not failing:
                    log.warning("station web: live feed cannot read the database (%s)", exc)
                failing = True
            else:
                if failing:
                    log.info("station web: live feed back")
                failing = False
            await asyncio.sleep(self.poll_seconds)
