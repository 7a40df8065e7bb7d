"""What every card reader hands out, and the one way a card number becomes a credential.

A resident's card must give the same credential whether it is read by a serial EM4100 reader at
the pedestrian gate or by a Wiegand-26 reader at the car barrier, and whatever form the installer
typed it in: all readers reduce a card to its data bits (``value``) and present them through
:func:`card_credential`, which gives the canonical card string of :mod:`protocol.cards` (the
store, revocations, imports and the station use the same function).

The plumbing every reader shares (counting malformed input, rate-limited debug logs with masked
numbers, one read per presentation, the raw tap) lives in :class:`ReadSink`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

log = logging.getLogger(__name__)

#: Digits left visible when a credential appears in a log line.
MASK_VISIBLE_DIGITS = 4
#: At most this many "malformed input" debug lines per reader per window.
MALFORMED_LOG_BURST = 5
MALFORMED_LOG_WINDOW_SECONDS = 60.0


def card_credential(value: int, *, keep_bits: int | None = None) -> str:
    """The canonical credential string of a card read (decimal, no leading zeros).

    ``value`` is all data bits of the card (EM4100: 40 bits; Wiegand: facility and number
    together, parity removed; ASCII: the number read).  ``keep_bits`` keeps only the low bits, so
    a site that mixes 40-bit serial readers with 26-bit Wiegand readers can compare the 24 bits
    both see (32 bits match the 10-digit number printed on EM4100 cards).
    """
    if value < 0:
        raise ValueError(f"card value must not be negative: {value}")
    if keep_bits is not None:
        value &= (1 << keep_bits) - 1
    return str(value)  # decimal, no leading zeros: the canonical form of protocol.cards


def mask(credential: str) -> str:
    """A credential fit for a log line: ``****5678``."""
    return "****" + credential[-MASK_VISIBLE_DIGITS:]


@dataclass(frozen=True, slots=True)
class CardRead:
    """One presentation of a card at a reader.

    ``credential`` is what access control compares; ``facility``/``number`` are the format's own
    fields (None when the format has none); ``read_ns`` is ``time.perf_counter_ns()`` when the
    last bit or byte of the frame arrived (for latency measurements).
    """

    credential: str
    value: int
    format: str
    bits: int
    facility: int | None = None
    number: int | None = None
    read_ns: int = 0

    def __repr__(self) -> str:  # keep raw numbers out of tracebacks and logs
        return f"CardRead({mask(self.credential)}, format={self.format}, bits={self.bits})"


class RepeatFilter:
    """One presentation = one read: a card held in the field repeats every ~100 ms.

    The window slides: every repeat of the same credential extends it, so a card held for a
    minute is still one read; another card, or the same one after a pause longer than the
    window, is a new presentation.
    """

    def __init__(self, window_ms: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_seconds = window_ms / 1000
        self._clock = clock
        self._last: str | None = None
        self._last_seen = 0.0

    def fresh(self, credential: str) -> bool:
        """True when ``credential`` starts a new presentation."""
        now = self._clock()
        repeat = credential == self._last and now - self._last_seen <= self.window_seconds
        self._last, self._last_seen = credential, now
        return not repeat


class ReadSink:
    """What a reader does with what it decoded: count, log, filter repeats, call back.

    Called on the event loop thread only.  ``stats`` is a live read-only view of the counters
    (``frames_ok``, ``repeats``, and one counter per kind of malformed input).
    """

    def __init__(
        self,
        name: str,
        *,
        on_card: Callable[[CardRead], None],
        repeat_window_ms: int = 1500,
        keep_bits: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.keep_bits = keep_bits
        self._on_card = on_card
        self._repeats = RepeatFilter(repeat_window_ms, clock=clock)
        self._clock = clock
        self._counters: Counter[str] = Counter()
        self.stats: Mapping[str, int] = MappingProxyType(self._counters)
        self._log_window_start = -MALFORMED_LOG_WINDOW_SECONDS
        self._logged_in_window = 0

    def count(self, counter: str, amount: int = 1) -> None:
        self._counters[counter] += amount

    def card(
        self,
        value: int,
        *,
        card_format: str,
        bits: int,
        facility: int | None = None,
        number: int | None = None,
        read_ns: int | None = None,
    ) -> None:
        """A well-formed frame: present it and hand it on unless it repeats the last card."""
        self._counters["frames_ok"] += 1
        credential = card_credential(value, keep_bits=self.keep_bits)
        if not self._repeats.fresh(credential):
            self._counters["repeats"] += 1
            return
        read = CardRead(
            credential, value, card_format, bits, facility, number,
            time.perf_counter_ns() if read_ns is None else read_ns,
        )
        log.debug("reader %s: card %s (%s)", self.name, mask(credential), card_format)
        try:
            self._on_card(read)
        except Exception:  # a consumer bug must not stop the reader
            log.exception("reader %s: card handler failed", self.name)

    def malformed(self, counter: str, detail: str, amount: int = 1) -> None:
        """Count malformed input and say so at debug level, at most a few lines a minute."""
        self._counters[counter] += amount
        now = self._clock()
        if now - self._log_window_start >= MALFORMED_LOG_WINDOW_SECONDS:
            if self._logged_in_window > MALFORMED_LOG_BURST:
                log.debug("reader %s: %d more malformed inputs not logged",
                          self.name, self._logged_in_window - MALFORMED_LOG_BURST)
            self._log_window_start, self._logged_in_window = now, 0
        self._logged_in_window += 1
        if self._logged_in_window <= MALFORMED_LOG_BURST:
            log.debug("reader %s: %s: %s", self.name, counter.replace("_", " "), detail)
