"""Line-per-card serial readers: parsing options, then the reader on a real pty."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ascii_reader import AsciiCard, AsciiLineParser, AsciiReader, AsciiRejected
from drivers.card import CardRead
from drivers.sim.serial_emitter import PtyEmitter, ascii_line


@pytest.mark.parametrize(
    ("options", "line", "expected"),
    [
        ({}, b"0012345678", 12345678),
        ({"number_base": 16}, b"00BC614E", 0x00BC614E),
        ({"number_base": 16}, b"00bc614e", 0x00BC614E),
        # little-endian hex as some converters send it: bytes 4E 61 BC 00 mean 0x00BC614E
        ({"number_base": 16, "byte_order": "little"}, b"4E61BC00", 0x00BC614E),
        # 12345678 = 0xBC614E; little-endian reading of those three bytes is 0x4E61BC
        ({"byte_order": "little"}, b"12345678", 0x4E61BC),
        ({"strip_prefix": "ID:", "strip_suffix": "#"}, b"ID:12345678#", 12345678),
        ({"strip_prefix": "ID:"}, b"  ID: 42  ", 42),  # surrounding blanks are not data
        ({"strip_prefix": "ID:"}, b"ID: 42", 42),
        ({"pattern": r"CARD=(?P<card>\d+);RSSI=\d+"}, b"CARD=987654;RSSI=40", 987654),
        ({"pattern": r"^W26 (?P<card>[0-9A-F]{6})$", "number_base": 16}, b"W26 12D687", 0x12D687),
    ],
)
def test_parse_line_table(options: dict[str, Any], line: bytes, expected: int | None) -> None:
    result = AsciiLineParser(**options).parse_line(line)
    if expected is None:
        assert isinstance(result, AsciiRejected)
    else:
        assert isinstance(result, AsciiCard)
        assert result.value == expected


@pytest.mark.parametrize(
    ("options", "line", "counter"),
    [
        ({}, b"12AB", "bad_format"),
        ({"number_base": 16}, b"12XY", "bad_format"),
        ({"strip_prefix": "ID:"}, b"12345", "bad_format"),
        ({"strip_suffix": "#"}, b"12345", "bad_format"),
        ({"pattern": r"CARD=(?P<card>\d+)"}, b"RSSI=40", "bad_format"),
        ({}, b"\xff\xfe12", "garbage_lines"),
        ({}, b"", "bad_format"),
    ],
)
def test_rejections_table(options: dict[str, Any], line: bytes, counter: str) -> None:
    result = AsciiLineParser(**options).parse_line(line)
    assert isinstance(result, AsciiRejected)
    assert result.counter == counter


def test_bad_options_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"named group \(\?P<card>"):
        AsciiLineParser(pattern=r"\d+")
    with pytest.raises(ValueError, match="number_base must be 10 or 16, not 8"):
        AsciiLineParser(number_base=8)  # type: ignore[arg-type]


def test_overlong_line_is_dropped_up_to_the_next_line_end() -> None:
    items = AsciiLineParser(max_line_bytes=16).feed(b"9" * 100 + b"\r\n12345\n")
    assert [i.counter for i in items if isinstance(i, AsciiRejected)] == ["bad_length"]
    assert [i.value for i in items if isinstance(i, AsciiCard)] == [12345]


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=10), st.data())
def test_any_split_and_line_end_style_gives_the_same_cards(
    cards: list[int], data: st.DataObject
) -> None:
    end = data.draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    stream = b"".join(str(c).encode() + end for c in cards)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = AsciiLineParser()
    found: list[int] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        found += [i.value for i in parser.feed(stream[start:cut]) if isinstance(i, AsciiCard)]
        start = max(start, cut)
    assert found == cards


@given(st.binary(max_size=60))
def test_arbitrary_bytes_never_raise(noise: bytes) -> None:
    parser = AsciiLineParser(number_base=16, strip_prefix="ID")
    parser.feed(noise)
    assert [i.value for i in parser.feed(b"\nID0A\n") if isinstance(i, AsciiCard)] == [10]


async def wait_for(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Poll state changed by the reader's callbacks until ``condition`` holds."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - callbacks set plain attributes, no event
            await asyncio.sleep(0.005)


@pytest.mark.timeout(60)
async def test_reader_on_a_pty_with_garbage_splits_and_a_burst() -> None:
    cards: list[CardRead] = []
    raw: list[bytes | str] = []
    with PtyEmitter() as pty:
        reader = AsciiReader(pty.port, on_card=cards.append, on_fault=lambda r: None,
                             on_restored=lambda: None, on_raw=raw.append,
                             strip_prefix="ID:", repeat_window_ms=0, name="side",
                             inter_char_timeout_ms=2000)
        task = asyncio.create_task(reader.run())
        try:
            await wait_for(lambda: reader.transport.opens == 1)
            first = b"\x00\xff\r\n" + ascii_line("ID:0012345678") + b"ID:12x45\r\n"
            await asyncio.to_thread(pty.write_split, first, [2, 9, 15], gap_seconds=0.02)
            await wait_for(lambda: len(cards) == 1)
            burst = b"".join(ascii_line(f"ID:{n}") for n in range(1000, 2000))
            await asyncio.to_thread(pty.write, burst)
            await wait_for(lambda: len(cards) == 1001, within_s=30)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert cards[0].credential == "12345678"
    assert [c.value for c in cards[1:]] == list(range(1000, 2000))
    assert reader.stats["garbage_lines"] == 1
    assert reader.stats["bad_format"] == 1
    assert reader.stats["frames_ok"] == 1001
    assert b"".join(r for r in raw if isinstance(r, bytes)).startswith(first)


def test_a_line_cut_by_silence_never_joins_the_next() -> None:
    """Issue 16, finding 2: ``00027``, seconds later ``0002764857\\r\\n`` is card 2764857."""
    parser = AsciiLineParser(inter_char_timeout_ms=50)
    assert parser.feed(b"00027", now=100.0) == []
    items = parser.feed(b"0002764857\r\n", now=103.0)
    assert items[0] == AsciiRejected("timeout", "line cut: 5 bytes, then 3000 ms silence")
    assert items[1:] == [AsciiCard(2764857, 24)]


def test_within_the_timeout_a_split_line_is_whole() -> None:
    parser = AsciiLineParser(inter_char_timeout_ms=50)
    assert parser.feed(b"00027", now=100.0) == []
    assert parser.feed(b"64857\r\n", now=100.04) == [AsciiCard(2764857, 24)]
    unbounded = AsciiLineParser(inter_char_timeout_ms=None)
    unbounded.feed(b"00027", now=1.0)
    assert unbounded.feed(b"64857\r\n", now=9.0) == [AsciiCard(2764857, 24)]


@pytest.mark.timeout(30)
async def test_reader_on_a_pty_drops_a_cut_line() -> None:
    cards: list[CardRead] = []
    raw: list[bytes | str] = []
    with PtyEmitter() as pty:
        reader = AsciiReader(pty.port, on_card=cards.append, on_fault=lambda r: None,
                             on_restored=lambda: None, on_raw=raw.append, name="side",
                             inter_char_timeout_ms=50)
        task = asyncio.create_task(reader.run())
        try:
            await wait_for(lambda: reader.transport.opens == 1)
            await asyncio.to_thread(pty.write, b"00027")
            await wait_for(lambda: len(raw) == 1)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(pty.write, b"0002764857\r\n")
            await wait_for(lambda: len(cards) == 1)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [c.credential for c in cards] == ["2764857"]
    assert reader.stats["timeout"] == 1
