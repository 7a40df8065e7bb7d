"""The simulated twin of a gate board's wiring, for simulate mode (`gpio_backend: mock`).

The daemon runs its real drivers against simulated hardware seams, never against shortcuts: GPIO
pins are gpiozero ``MockFactory`` pins, serial card readers read a real pty whose other end the
reader emulators of ``drivers/sim`` write to, Wiegand readers see pulses on their D0/D1 mock pins.
`menjin sim ...` commands arrive here through the control socket and act on those seams exactly
as a person at the gate acts on the real ones (a finger on the button, a card in the field).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from gpiozero.pins.mock import MockFactory, MockPin

from daemon.config import InputSection, ReaderSection, Wiring
from drivers.ascii_reader import MAX_LINE_BYTES
from drivers.sim.serial_emitter import EM4100_VALUE_BITS, PtyEmitter, ascii_line, em4100_frame
from drivers.sim.wiegand_emitter import WiegandEmitter
from drivers.wiegand import FORMATS, encode_value
from protocol.cards import MAX_CARD_DIGITS

log = logging.getLogger(__name__)

#: How long a simulated finger stays on the exit button (well above any debounce time).
PRESS_SECONDS = 0.3


class SimInputError(ValueError):
    """A simulated input that the simulated hardware cannot produce; the message says why."""


def input_level(wiring: Wiring, asserted: bool) -> bool:
    """Pin level (True = high) of an input with pull-up for a switch that is ``asserted``.

    Asserted means the door is open, the button pressed or the housing opened.  A normally-open
    switch closes when asserted and pulls the pin low; a normally-closed one opens and the pull-up
    takes the pin high.
    """
    closed = asserted if wiring is Wiring.NORMALLY_OPEN else not asserted
    return not closed


def wiegand_frame(formats: tuple[str, ...], credential: str) -> str:
    """The bits a Wiegand reader sends for a card whose canonical (decimal) credential is given.

    The first configured format the card fits is used; the credential is the card's data bits,
    facility above number, as the reader decodes them.
    """
    value = _card_value(credential)
    for name in formats:
        if value < 1 << len(FORMATS[name].data_positions):
            return encode_value(name, value)
    raise SimInputError(f"card {credential} does not fit any of the formats {', '.join(formats)}")


def _card_value(credential: str) -> int:
    """The card number of ``credential``; SimInputError for what no reader reports."""
    if len(credential) > MAX_CARD_DIGITS:  # before int(), which refuses 4300 digits and more
        raise SimInputError(f"a card number of {len(credential)} digits: readers report at most "
                            f"{MAX_CARD_DIGITS}")
    if not (credential.isascii() and credential.isdigit()):  # int() reads "١٢٣" as 123
        raise SimInputError(f"card {credential!r}: give the card number in decimal, as the "
                            "readers report it")
    return int(credential)


def em4100_value(credential: str) -> int:
    """The tag value of ``credential`` on an EM4100 reader (SimInputError when it has more bits)."""
    value = _card_value(credential)
    if value >> EM4100_VALUE_BITS:
        raise SimInputError(f"card {credential} does not fit an EM4100 tag ({EM4100_VALUE_BITS} "
                            f"bits: at most {(1 << EM4100_VALUE_BITS) - 1})")
    return value


def ascii_text(reader: ReaderSection, credential: str) -> str:
    """The line an ASCII reader sends for ``credential`` (SimInputError when it is too long)."""
    value = _card_value(credential)
    number = str(value) if reader.number_base == 10 else f"{value:X}"
    line = f"{reader.strip_prefix}{number}{reader.strip_suffix}"
    if not line.isascii():
        raise SimInputError(f"reader prefix or suffix of {line!r} is not ASCII: an ASCII reader "
                            "sends no such line")
    if len(line) > MAX_LINE_BYTES:
        raise SimInputError(f"card {credential}: the line {line!r} is longer than the "
                            f"{MAX_LINE_BYTES} characters an ASCII reader takes")
    return line


class SwitchPin(MockPin):  # type: ignore[misc]  # gpiozero ships no type hints
    """A gpiozero MockPin with a switch wired to it.

    Opening an input device sets its pull-up, and a plain MockPin then jumps high: a door part
    restarted by a config reload would see a shut door (normally-closed contact) fly open.  Once a
    switch position is set, the line keeps the switch's level whatever the pull resistor does, as
    a real switch holding the line would.
    """

    held: bool | None = None

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        if self.held is not None and self.held != self._state:
            self._change_state(self.held)


def _switch_pins() -> MockFactory:
    return MockFactory(pin_class=SwitchPin)


@dataclass
class SimulatedBoard:
    """MockFactory pins and reader ptys that outlive part restarts and config reloads."""

    pin_factory: MockFactory = field(default_factory=_switch_pins)
    ptys: dict[str, PtyEmitter] = field(default_factory=dict)

    def serial_port(self, reader_id: str) -> str:
        """The pty path a simulated serial reader opens (the same one across restarts)."""
        if reader_id not in self.ptys:
            self.ptys[reader_id] = PtyEmitter()
            log.info("reader %s: simulated on %s", reader_id, self.ptys[reader_id].port)
        return self.ptys[reader_id].port

    def pin(self, number: int) -> MockPin:
        pin: MockPin = self.pin_factory.pin(number)
        return pin

    def set_input(self, section: InputSection, asserted: bool) -> None:
        """Put a simulated switch in the given position (through its MockFactory pin)."""
        pin = self.pin(section.pin)
        level = input_level(section.wiring, asserted)
        if isinstance(pin, SwitchPin):
            pin.held = level
        if level:
            pin.drive_high()
        else:
            pin.drive_low()

    def rest_position(self, section: InputSection) -> None:
        """Before a door's first start: its switch at rest (door shut, button up, housing shut).

        A later start (a reload) keeps whatever position the switch was left in.
        """
        pin = self.pin(section.pin)
        if not isinstance(pin, SwitchPin) or pin.held is None:
            self.set_input(section, False)

    async def press(self, section: InputSection) -> None:
        """Press and release a button, like a finger would."""
        self.set_input(section, True)
        try:
            await asyncio.sleep(PRESS_SECONDS)
        finally:
            self.set_input(section, False)

    async def swipe(self, reader_id: str, reader: ReaderSection, credential: str) -> str:
        """Present a card at a simulated reader, through the reader's own wire protocol."""
        if reader.type == "em4100":
            self.ptys[reader_id].write(em4100_frame(em4100_value(credential)))
            return f"card sent to {reader_id} as an EM4100 frame"
        if reader.type == "ascii":
            line = ascii_text(reader, credential)
            self.ptys[reader_id].write(ascii_line(line))
            return f"card sent to {reader_id} as the line {line!r}"
        if reader.type == "wiegand":
            assert reader.d0_pin is not None and reader.d1_pin is not None
            bits = wiegand_frame(reader.formats, credential)
            emitter = WiegandEmitter(self.pin(reader.d0_pin), self.pin(reader.d1_pin))
            await asyncio.to_thread(emitter.send, bits)  # real pulse timing, off the loop
            return f"card sent to {reader_id} as {len(bits)} Wiegand bits"
        raise SimInputError(f"reader {reader_id} is {reader.type}: simulate mode has no "
                            f"{reader.type} peer (use em4100, ascii or wiegand)")

    def close(self) -> None:
        for emitter in self.ptys.values():
            emitter.close()
        self.ptys.clear()
        self.pin_factory.close()
