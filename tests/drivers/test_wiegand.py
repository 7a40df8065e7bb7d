"""Wiegand: the pure decoder against independently computed vectors, then the GPIO reader fed
through gpiozero MockFactory pins with real pulse timing (50 us pulses, 2 ms apart)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given
from hypothesis import strategies as st

from drivers.card import CardRead
from drivers.sim.wiegand_emitter import WiegandEmitter
from drivers.wiegand import WiegandError, WiegandReader, decode, encode

# ---------------------------------------------------------------- independent test vectors
# Written from the format descriptions, 1-indexed as in the HID documents, sharing no code with
# drivers.wiegand: (length, facility bits, number bits, even parity covers 2..E, odd covers O..n-1)
SPECS = {
    "h10301": (26, 8, 16, 13, 14),
    "34bit": (34, 16, 16, 17, 18),
    "h10304": (37, 16, 19, 19, 19),
    "h10302": (37, 0, 35, 19, 19),
}


def reference_frame(name: str, facility: int, number: int) -> str:
    length, fbits, nbits, even_last, odd_first = SPECS[name]
    data = (format(facility, f"0{fbits}b") if fbits else "") + format(number, f"0{nbits}b")
    frame = "?" + data + "?"  # positions 1..length
    ones_even = frame[1:even_last].count("1")  # positions 2..even_last
    ones_odd = frame[odd_first - 1:length - 1].count("1")  # positions odd_first..length-1
    first = "1" if ones_even % 2 else "0"
    last = "0" if ones_odd % 2 else "1"
    return first + data + last


VECTORS = [
    ("h10301", 18, 54919),
    ("h10301", 0, 0),
    ("h10301", 255, 65535),
    ("h10301", 1, 1),
    ("34bit", 1234, 56789),
    ("34bit", 65535, 0),
    ("h10304", 4660, 300000),
    ("h10304", 0, 524287),
    ("h10302", 0, 12345678901),
    ("h10302", 0, 1),
]


def test_reference_matches_a_published_h10301_frame() -> None:
    # Facility 1, card 1: 0 00000001 0000000000000001 0  (both halves hold one 1 -> 1 / 0)
    assert reference_frame("h10301", 1, 1) == "1" + "00000001" + "0000000000000001" + "0"


@pytest.mark.parametrize(("name", "facility", "number"), VECTORS)
def test_decode_vectors(name: str, facility: int, number: int) -> None:
    frame = reference_frame(name, facility, number)
    card = decode(frame, [name])
    assert (card.format, card.number) == (name, number)
    assert card.facility == (facility if SPECS[name][1] else None)
    assert card.bits == SPECS[name][0] - 2
    assert encode(name, number, facility) == frame


@pytest.mark.parametrize(("name", "facility", "number"), VECTORS)
def test_every_single_bit_flip_is_rejected(name: str, facility: int, number: int) -> None:
    frame = reference_frame(name, facility, number)
    for i in range(len(frame)):
        flipped = frame[:i] + ("1" if frame[i] == "0" else "0") + frame[i + 1:]
        with pytest.raises(WiegandError) as caught:
            decode(flipped, [name])
        assert caught.value.counter == "bad_parity"


@pytest.mark.parametrize(
    ("frame", "formats", "counter"),
    [
        ("1" * 25, ["h10301"], "bad_length"),
        ("0" * 27, ["h10301", "34bit"], "bad_length"),
        ("0" * 26, ["h10301"], "bad_parity"),  # the odd parity bit must not be 0 over zeros
        ("1" * 37, ["h10304", "h10302"], "bad_parity"),
    ],
)
def test_decode_rejections(frame: str, formats: list[str], counter: str) -> None:
    with pytest.raises(WiegandError) as caught:
        decode(frame, formats)
    assert caught.value.counter == counter


def test_formats_are_tried_in_order_and_raw_takes_anything() -> None:
    frame = reference_frame("h10304", 4660, 300000)
    assert decode(frame, ["h10302", "h10304"]).format == "h10302"
    assert decode(frame, ["h10304", "h10302"]).facility == 4660
    raw = decode("1011", ["h10301", "raw"])
    assert (raw.format, raw.value, raw.bits, raw.facility) == ("raw", 0b1011, 4, None)
    assert decode(frame, ["raw"]).value == int(frame, 2)


def test_raw_never_takes_a_frame_another_format_rejected() -> None:
    good = reference_frame("h10301", 18, 54919)
    corrupted = good[:-1] + ("0" if good[-1] == "1" else "1")
    with pytest.raises(WiegandError) as caught:
        decode(corrupted, ["h10301", "raw"])
    assert caught.value.counter == "bad_parity"
    with pytest.raises(WiegandError) as caught:
        decode(corrupted, ["raw", "h10301"])
    assert caught.value.counter == "bad_parity"


def test_unknown_format_is_named() -> None:
    with pytest.raises(ValueError, match="unknown Wiegand format 'h99999'"):
        decode("0" * 26, ["h99999"])


@given(st.sampled_from(list(SPECS)), st.data())
def test_encode_decode_round_trip(name: str, data: st.DataObject) -> None:
    _, fbits, nbits, _, _ = SPECS[name]
    facility = data.draw(st.integers(0, (1 << fbits) - 1)) if fbits else 0
    number = data.draw(st.integers(0, (1 << nbits) - 1))
    frame = encode(name, number, facility)
    assert frame == reference_frame(name, facility, number)
    assert decode(frame, [name]).number == number


@given(st.text(alphabet="01", max_size=40))
def test_decoder_never_returns_a_card_for_a_bad_frame(frame: str) -> None:
    try:
        card = decode(frame, ["h10301", "34bit", "h10304"])
    except WiegandError:
        return
    assert frame == reference_frame(card.format, card.facility or 0, card.number)


# ---------------------------------------------------------------- the reader on MockFactory pins
D0, D1 = 17, 27
#: Pulses keep the real 2 ms spacing, but frames are cut after a generous silence: on a shared,
#: loaded test machine the emitting thread itself can be descheduled for tens of milliseconds.
TEST_FRAME_GAP_MS = 150
BETWEEN_FRAMES_SECONDS = 0.4


class Harness:
    def __init__(self, factory: MockFactory, **kwargs: object) -> None:
        self.cards: list[CardRead] = []
        self.faults: list[str] = []
        self.restored = 0
        self.raw: list[bytes | str] = []
        kwargs.setdefault("frame_gap_ms", TEST_FRAME_GAP_MS)
        self.reader = WiegandReader(
            D0, D1, pin_factory=factory, on_card=self.cards.append, on_fault=self.faults.append,
            on_restored=self._restored, on_raw=self.raw.append, name="car", **kwargs,  # type: ignore[arg-type]
        )
        self.emitter = WiegandEmitter(factory.pin(D0), factory.pin(D1))

    def _restored(self) -> None:
        self.restored += 1

    async def send(self, bits: str) -> None:
        await asyncio.to_thread(self.emitter.send, bits)

    async def gap(self) -> None:
        await asyncio.sleep(BETWEEN_FRAMES_SECONDS)  # longer than the frame gap: a new frame


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    try:
        yield f
    finally:
        f.close()


async def wait_for(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Poll state changed by the reader's callbacks until ``condition`` holds."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - callbacks set plain attributes, no event
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(factory: MockFactory, **kwargs: object) -> AsyncIterator[Harness]:
    h = Harness(factory, **kwargs)
    task = asyncio.create_task(h.reader.run())
    try:
        await asyncio.sleep(0.01)  # pins claimed
        yield h
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.timeout(30)
async def test_every_format_through_real_pulse_timing(factory: MockFactory) -> None:
    formats = ["h10301", "34bit", "h10304"]
    cases = [("h10301", 18, 54919), ("34bit", 1234, 56789), ("h10304", 4660, 300000)]
    async with running(factory, formats=formats, repeat_window_ms=0) as h:
        for name, facility, number in cases:
            await h.send(reference_frame(name, facility, number))
            await h.gap()
        await wait_for(lambda: len(h.cards) == len(cases))
    assert [(c.format, c.facility, c.number) for c in h.cards] == cases
    assert h.cards[0].credential == str((18 << 16) | 54919)
    assert h.raw[0] == reference_frame("h10301", 18, 54919)
    assert h.reader.stats["frames_ok"] == 3


@pytest.mark.timeout(30)
async def test_facility_number_presentation(factory: MockFactory) -> None:
    async with running(factory, presentation="facility_number") as h:
        await h.send(reference_frame("h10301", 18, 54919))
        await wait_for(lambda: len(h.cards) == 1)
    assert h.cards[0].credential == "018:54919"


@pytest.mark.timeout(30)
async def test_noise_and_truncated_frames_are_counted_and_the_next_card_is_read(
    factory: MockFactory,
) -> None:
    good = reference_frame("h10301", 18, 54919)
    other = reference_frame("h10301", 7, 4242)
    async with running(factory, repeat_window_ms=0) as h:
        await asyncio.to_thread(h.emitter.pulse, 1)  # a lone spike on D1
        await h.gap()
        await h.send(good[:20])  # reader reset mid-frame
        await h.gap()
        await h.send(good[:10] + "1" + good[10:])  # a spike inside a frame: 27 bits
        await h.gap()
        flipped = other[:5] + ("0" if other[5] == "1" else "1") + other[6:]
        await h.send(flipped)
        await h.gap()
        await h.send(other)
        await wait_for(lambda: len(h.cards) == 1)
    assert [(c.facility, c.number) for c in h.cards] == [(7, 4242)]
    stats = h.reader.stats
    assert (stats["noise_pulses"], stats["bad_length"], stats["bad_parity"]) == (1, 2, 1)


@pytest.mark.timeout(30)
async def test_held_card_repeating_is_one_read(factory: MockFactory) -> None:
    frame = reference_frame("h10301", 18, 54919)
    async with running(factory, repeat_window_ms=1500) as h:
        for _ in range(3):
            await h.send(frame)
            await h.gap()
        await wait_for(lambda: h.reader.stats["frames_ok"] == 3)
    assert len(h.cards) == 1
    assert h.reader.stats["repeats"] == 2


@pytest.mark.timeout(30)
async def test_line_held_low_is_a_fault_until_released(factory: MockFactory) -> None:
    async with running(factory) as h:
        factory.pin(D0).drive_low()
        await wait_for(lambda: len(h.faults) == 1)
        factory.pin(D0).drive_high()
        await wait_for(lambda: h.restored == 1)
        await h.gap()
        await h.send(reference_frame("h10301", 1, 1))
        await wait_for(lambda: len(h.cards) == 1)
    assert h.faults == ["D0 held low (wiring short or reader unpowered)"]
    assert h.cards[0].number == 1


@pytest.mark.timeout(30)
async def test_pins_are_released_on_cancel(factory: MockFactory) -> None:
    async with running(factory):
        pass
    # claiming the same pins again only works when the reader closed its devices
    async with running(factory) as again:
        await again.send(reference_frame("h10301", 1, 1))
        await wait_for(lambda: len(again.cards) == 1)
