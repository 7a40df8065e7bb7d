"""Card credentials, masking, one-read-per-presentation and the shared read plumbing."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.card import CardRead, ReadSink, RepeatFilter, card_credential, mask
from protocol.cards import canonical_card


class FakeClock:
    """A hand-moved monotonic clock (the only thing faked here)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# EM4100 tag 0x0A0012D687 carries facility 0x12 = 18 and number 0xD687 = 54919 in its low 24 bits.
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"value": 0x0A0012D687}, str(0x0A0012D687)),
        ({"value": 0x0A0012D687, "keep_bits": 24}, str(18 * 65536 + 54919)),
        ({"value": 0x0A0012D687, "keep_bits": 32}, str(0x0012D687)),
        ({"value": 0}, "0"),
    ],
)
def test_card_credential_table(kwargs: dict[str, int], expected: str) -> None:
    assert card_credential(**kwargs) == expected


@given(st.integers(0, 255), st.integers(0, 65535), st.integers(0, 0xFFFF))
def test_same_card_same_credential_from_serial_and_wiegand26(
    facility: int, number: int, high: int
) -> None:
    """A 40-bit serial read and a Wiegand-26 read of one tag agree when both keep 24 bits, and
    agree with the facility,number printed on the card."""
    serial_value = (high << 24) | (facility << 16) | number
    from_serial = card_credential(serial_value, keep_bits=24)
    assert from_serial == card_credential((facility << 16) | number, keep_bits=24)
    assert from_serial == canonical_card(f"{facility:03d},{number:05d}")


def test_mask_and_repr_hide_the_number() -> None:
    assert mask("1234567890") == "****7890"
    read = CardRead("1234567890", 1234567890, "em4100", 40)
    assert "123456" not in repr(read)
    assert "****7890" in repr(read)


def test_repeat_filter_window_slides_while_the_card_is_held() -> None:
    clock = FakeClock()
    repeats = RepeatFilter(1500, clock=clock)
    assert repeats.fresh("A")
    for _ in range(30):  # held for 3 s, repeating every 100 ms: still one presentation
        clock.now += 0.1
        assert not repeats.fresh("A")
    assert repeats.fresh("B")  # another card is a new presentation at once
    assert repeats.fresh("A")
    clock.now += 1.6
    assert repeats.fresh("A")  # taken away longer than the window and shown again


def test_zero_window_never_suppresses() -> None:
    clock = FakeClock()
    repeats = RepeatFilter(0, clock=clock)
    clock.now += 0.001
    assert repeats.fresh("A")
    clock.now += 0.001
    assert repeats.fresh("A")


def test_sink_counts_filters_and_survives_a_failing_consumer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    seen: list[CardRead] = []

    def consumer(read: CardRead) -> None:
        seen.append(read)
        raise RuntimeError("consumer bug")

    sink = ReadSink("front", on_card=consumer, repeat_window_ms=1000, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="drivers.card"):
        sink.card(12345678, card_format="em4100", bits=40)
        sink.card(12345678, card_format="em4100", bits=40)
    assert [r.credential for r in seen] == ["12345678"]
    assert sink.stats["frames_ok"] == 2
    assert sink.stats["repeats"] == 1
    assert "card handler failed" in caplog.text
    assert "12345678" not in caplog.text
    assert "****5678" in caplog.text


def test_malformed_logging_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    sink = ReadSink("front", on_card=lambda read: None, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="drivers.card"):
        for _ in range(50):
            sink.malformed("bad_checksum", "checksum 0x01, data gives 0x02")
        clock.now += 61
        sink.malformed("bad_checksum", "again")
    lines = [r.getMessage() for r in caplog.records]
    assert sink.stats["bad_checksum"] == 51
    assert sum("bad checksum" in line for line in lines) == 6
    assert any("45 more malformed inputs not logged" in line for line in lines)


def test_stats_is_read_only() -> None:
    sink = ReadSink("front", on_card=lambda read: None)
    with pytest.raises(TypeError):
        sink.stats["frames_ok"] = 5  # type: ignore[index]
