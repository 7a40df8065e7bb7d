"""The gate's card readers: one supervised part per reader, its state for status and `watch`.

Each reader driver is built from config by :mod:`daemon.builders`; its cards go to the passage,
its faults become ``reader.fault`` / ``reader.restored`` events, and what it sent on the wire is
offered to `menjin readers watch` through ``raw``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.builders import build_reader, reader_port
from daemon.config import ReaderSection
from daemon.events import Emit, Event
from daemon.simulate import SimulatedBoard
from drivers.card import CardRead, mask
from drivers.feedback import FeedbackFanout

#: ``raw(item)`` receives ``{"reader", "kind", "text"}`` dicts for `menjin readers watch`.
RawSink = Callable[[dict[str, Any]], None]
#: ``on_card(reader_id, door_id, read)``: where a presented card goes (the passage).
CardSink = Callable[[str, str, CardRead], None]
#: ``on_keys(reader_id, door_id, keys)``: what a reader's keypad typed (the passage's PIN entry).
KeySink = Callable[[str, str, str], None]


@dataclass
class ReaderView:
    """What the status and `readers watch` know of one reader."""

    type: str
    door: str
    status: str = "starting"
    port: str | None = None
    fault: str | None = None
    stats: Mapping[str, int] = field(default_factory=dict)


class Readers:
    """Runs reader parts; ``views`` (reader id → :class:`ReaderView`) is their live state."""

    def __init__(self, *, pins: Any, board: SimulatedBoard | None, emit: Emit,
                 on_card: CardSink, on_keys: KeySink, raw: RawSink,
                 feedback: Callable[[str], FeedbackFanout]) -> None:
        self._pins = pins
        self._board = board
        self._emit = emit
        self._on_card = on_card
        self._on_keys = on_keys
        self._feedback = feedback
        self._raw_sink = raw
        self.views: dict[str, ReaderView] = {}

    async def run(self, reader_id: str, section: ReaderSection) -> None:
        """One reader part: build the driver and read until cancelled or it fails."""
        view = self.views[reader_id] = ReaderView(section.type, section.door)
        view.port = reader_port(reader_id, section, self._board)
        callbacks: dict[str, Any] = {
            "on_card": functools.partial(self._card, reader_id),
            "on_fault": functools.partial(self._fault, reader_id),
            "on_restored": functools.partial(self._restored, reader_id),
            "on_raw": functools.partial(self._reader_raw, reader_id),
            "name": reader_id,
            "repeat_window_ms": section.repeat_window_ms,
            "keep_bits": section.keep_bits,
        }
        reader = build_reader(
            section, port=view.port, pins=self._pins, callbacks=callbacks,
            on_keys=functools.partial(self._on_keys, reader_id, section.door))
        view.stats = reader.stats
        view.status = "ok"
        # An OSDP reader shows the door's feedback (granted, denied, held, lockdown) on its own
        # LED and buzzer, next to the door's GPIO LEDs.
        fanout = self._feedback(section.door)
        sink = reader.feedback() if section.type == "osdp" else None
        if sink is not None:
            fanout.add(sink)
        try:
            await reader.run()
        finally:
            view.status = "stopped"
            if sink is not None:
                fanout.remove(sink)

    def health(self) -> dict[str, str]:
        return {rid: ("ok" if v.status == "ok" else "fault") for rid, v in self.views.items()}

    def _card(self, reader_id: str, read: CardRead) -> None:
        view = self.views.get(reader_id)
        if view is None:
            return
        self._raw(reader_id, "card", f"{mask(read.credential)} ({read.format}, {read.bits} bits)",
                  clear=f"{read.credential} ({read.format}, {read.bits} bits)")
        self._on_card(reader_id, view.door, read)

    def _fault(self, reader_id: str, reason: str) -> None:
        view = self.views.get(reader_id)
        if view is not None:
            view.status, view.fault = "fault", reason
        self._emit(Event("reader.fault", door=view.door if view else None, reader=reader_id,
                         reason="unavailable", data={"detail": reason}))
        self._raw(reader_id, "fault", reason)

    def _restored(self, reader_id: str) -> None:
        view = self.views.get(reader_id)
        if view is not None:
            view.status, view.fault = "ok", None
        self._emit(Event("reader.restored", door=view.door if view else None, reader=reader_id))
        self._raw(reader_id, "restored", "back")

    def _reader_raw(self, reader_id: str, data: bytes | str) -> None:
        # the frame encodes the card number: shown only to `readers watch --show-cards`
        if isinstance(data, bytes):
            self._raw(reader_id, "bytes", f"{len(data)} byte(s)",
                      clear=f"{data!r} ({data.hex(' ')})")
        else:
            self._raw(reader_id, "bits", f"{len(data)} bits", clear=f"{data} ({len(data)} bits)")

    def _raw(self, reader_id: str, kind: str, text: str, *, clear: str | None = None) -> None:
        """Offer a line to `readers watch`: ``text`` is safe to show, ``clear`` (when the line
        holds a card number) only for ``--show-cards``."""
        item = {"reader": reader_id, "kind": kind, "text": text}
        if clear is not None:
            item["clear"] = clear
        self._raw_sink(item)
