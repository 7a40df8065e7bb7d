"""The simulated board: switch positions on MockFactory pins, cards through the real drivers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.config import InputSection, ReaderSection, Wiring
from daemon.simulate import SimInputError, SimulatedBoard, input_level, wiegand_frame
from drivers.card import CardRead
from drivers.em4100 import Em4100Reader
from drivers.wiegand import WiegandReader, decode
from tests.daemon.gate_rig import Gate, menjin


@pytest.mark.parametrize(
    ("wiring", "asserted", "high"),
    [
        (Wiring.NORMALLY_OPEN, True, False),  # button pressed: switch closes, pulls low
        (Wiring.NORMALLY_OPEN, False, True),  # released: pull-up
        (Wiring.NORMALLY_CLOSED, True, True),  # door open: loop broken, pull-up
        (Wiring.NORMALLY_CLOSED, False, False),  # door shut: loop closed, low
    ],
)
def test_input_level(wiring: Wiring, asserted: bool, high: bool) -> None:
    assert input_level(wiring, asserted) is high


def test_set_input_drives_the_mock_pin() -> None:
    board = SimulatedBoard()
    try:
        contact = InputSection(pin=27, wiring=Wiring.NORMALLY_CLOSED)
        board.set_input(contact, asserted=False)
        assert not board.pin(27).state
        board.set_input(contact, asserted=True)
        assert board.pin(27).state
    finally:
        board.close()


def test_a_shut_door_stays_shut_when_its_input_device_is_reopened() -> None:
    """A reload rebuilds the door's devices; the pull-up must not make the contact read open."""
    from gpiozero import DigitalInputDevice

    board = SimulatedBoard()
    try:
        contact = InputSection(pin=27, wiring=Wiring.NORMALLY_CLOSED)
        board.set_input(contact, asserted=False)  # door shut: line low
        device = DigitalInputDevice(27, pull_up=True, pin_factory=board.pin_factory)
        assert device.is_active  # pulled low = active with a pull-up
        device.close()
        device = DigitalInputDevice(27, pull_up=True, pin_factory=board.pin_factory)
        assert device.is_active
        device.close()
    finally:
        board.close()


@pytest.mark.parametrize(
    ("formats", "credential", "fmt", "facility", "number"),
    [
        (("h10301",), "1193046", "h10301", 18, 13398),  # 0x123456: facility 0x12, number 0x3456
        (("h10301", "34bit"), "16777216", "34bit", 256, 0),  # too big for 26 bits
        (("h10302",), "12345678901", "h10302", None, 12345678901),
    ],
)
def test_wiegand_frame_decodes_back_to_the_credential(
    formats: tuple[str, ...], credential: str, fmt: str, facility: int | None, number: int
) -> None:
    card = decode(wiegand_frame(formats, credential), formats)
    assert (card.format, card.facility, card.number, card.value) == (
        fmt, facility, number, int(credential))


@pytest.mark.parametrize("credential", ["12AB", "", "-5", "\u0661\u0662\u0663"])
def test_card_numbers_must_be_decimal(credential: str) -> None:
    with pytest.raises(SimInputError, match="decimal"):
        wiegand_frame(("h10301",), credential)


@pytest.mark.timeout(20)
async def test_swipe_reaches_a_real_em4100_reader_through_its_pty() -> None:
    board = SimulatedBoard()
    reads: list[CardRead] = []
    got = asyncio.Event()

    def on_card(read: CardRead) -> None:
        reads.append(read)
        got.set()

    reader = Em4100Reader(board.serial_port("front-card"), on_card=on_card,
                          on_fault=lambda reason: None, on_restored=lambda: None)
    task = asyncio.create_task(reader.run())
    try:
        section = ReaderSection(type="em4100", door="front", port="/dev/menjin-reader-front")
        await asyncio.sleep(0.1)  # the reader opens its port
        await board.swipe("front-card", section, "12345678")
        await asyncio.wait_for(got.wait(), 10)
        assert reads[0].credential == "12345678"
    finally:
        task.cancel()
        board.close()


@pytest.mark.timeout(20)
async def test_swipe_reaches_a_real_wiegand_reader_through_mock_pins() -> None:
    board = SimulatedBoard()
    reads: list[CardRead] = []
    got = asyncio.Event()

    def on_card(read: CardRead) -> None:
        reads.append(read)
        got.set()

    reader = WiegandReader(20, 21, on_card=on_card, on_fault=lambda reason: None,
                           on_restored=lambda: None, pin_factory=board.pin_factory)
    task = asyncio.create_task(reader.run())
    try:
        section = ReaderSection(type="wiegand", door="vehicle", d0_pin=20, d1_pin=21)
        await asyncio.sleep(0.1)
        await board.swipe("vehicle-card", section, "1193046")
        await asyncio.wait_for(got.wait(), 10)
        assert reads[0].credential == "1193046"
    finally:
        task.cancel()
        board.close()


async def test_osdp_has_no_simulated_peer() -> None:
    board = SimulatedBoard()
    try:
        section = ReaderSection(type="osdp", door="front", port="/dev/ttyUSB0")
        with pytest.raises(SimInputError, match="no osdp peer"):
            await board.swipe("front-osdp", section, "1")
    finally:
        board.close()


LONG = "9" * 100_000  # more digits than int() converts


@pytest.mark.parametrize(
    ("section", "credential", "message"),
    [
        (ReaderSection(type="em4100", door="front", port="/dev/ttyUSB0"), LONG,
         "a card number of 100000 digits: readers report at most 40"),
        (ReaderSection(type="em4100", door="front", port="/dev/ttyUSB0"), str(1 << 40),
         "card 1099511627776 does not fit an EM4100 tag (40 bits: at most 1099511627775)"),
        (ReaderSection(type="ascii", door="front", port="/dev/ttyUSB0"), LONG,
         "a card number of 100000 digits: readers report at most 40"),
        (ReaderSection(type="ascii", door="front", port="/dev/ttyUSB0", strip_prefix="#" * 75),
         "1234567", "card 1234567: the line '" + "#" * 75 + "1234567' is longer than the 80 "
         "characters an ASCII reader takes"),
        (ReaderSection(type="ascii", door="front", port="/dev/ttyUSB0", strip_prefix="卡"), "1",
         "reader prefix or suffix of '卡1' is not ASCII: an ASCII reader sends no such line"),
        (ReaderSection(type="wiegand", door="front", d0_pin=20, d1_pin=21), LONG,
         "a card number of 100000 digits: readers report at most 40"),
        (ReaderSection(type="wiegand", door="front", d0_pin=20, d1_pin=21), str(1 << 26),
         "card 67108864 does not fit any of the formats h10301"),
        (ReaderSection(type="osdp", door="front", port="/dev/ttyUSB0"), "1",
         "reader r1 is osdp: simulate mode has no osdp peer (use em4100, ascii or wiegand)"),
    ],
)
async def test_a_card_no_reader_could_send_is_refused_in_one_line(
    section: ReaderSection, credential: str, message: str,
) -> None:
    board = SimulatedBoard()
    try:
        board.serial_port("r1")
        with pytest.raises(SimInputError) as caught:
            await board.swipe("r1", section, credential)
        assert str(caught.value) == message
    finally:
        board.close()


@pytest.mark.timeout(120)
def test_menjin_sim_swipe_answers_a_bad_card_in_one_line(tmp_path: Path) -> None:
    """Through the running daemon: an error line for the installer, no traceback in its log."""
    gate = Gate(tmp_path, seed=False).start()
    try:
        for card, message in [
            (LONG, "error: a card number of 100000 digits: readers report at most 40"),
            ("1099511627776", "error: card 1099511627776 does not fit an EM4100 tag (40 bits: "
                              "at most 1099511627775)"),
        ]:
            result = menjin("sim", "swipe", "front-card", card, "-c", str(gate.config))
            assert (result.returncode, result.stderr) == (1, message + "\n")
    finally:
        gate.stop()
    log = gate.log.read_text(errors="replace")
    assert "Traceback" not in log and "internal error" not in log
