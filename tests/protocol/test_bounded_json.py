"""Bounded parsing of network bytes: every limit is checked before decoding, one error type."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.bounded_json import PayloadError, check_bounds, loads_bounded, loads_object

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'"' + b"a" * 100 + b'"', "102 bytes > 100"),
        (b'{"a":"\xff"}', "not valid UTF-8 at byte 6"),
        (b'{"a":"\xed\xa0\x80"}', "not valid UTF-8 at byte 6"),  # UTF-8-encoded surrogate
        (b'{"a":"\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"a":"\\udc00"}', "lone UTF-16 surrogate"),
        (b'{"a":"\\ud800x\\udc00"}', "lone UTF-16 surrogate"),
        (b'{"a":"\\ud800\\u0041"}', "lone UTF-16 surrogate"),
        (b'["\\uD83D"]', "lone UTF-16 surrogate"),
        (b"[" * 33 + b"]" * 33, "nested deeper than 32 levels"),
        (b'{"a":' * 33 + b"1" + b"}" * 33, "nested deeper than 32 levels"),
        (b"1" + b"0" * 20, "number with more than 20 digits"),
        (b'{"n":-123456789012345678901}', "number with more than 20 digits"),
        (b"[1.23456789012345678901]", "number with more than 20 digits"),
        (b"[NaN]", "unexpected word b'NaN'"),
        (b"[Infinity]", "unexpected word b'Infinity'"),
        (b"[-Infinity]", "unexpected word b'Infinity'"),
        (b"[nullNaN]", "unexpected word b'nullNaN'"),  # JSON's words glued to another
        (b"[truefalse]", "not JSON"),
        (b"[" + b"{}," * 40 + b'{"a":' * 32 + b"1" + b"}" * 32 + b"]",
         "nested deeper than 32 levels"),
        (b"]" * 40 + b"[" * 40, "not JSON"),
        (b"[1e400]", "number is not finite"),
        (b"[-1E+999]", "number is not finite"),
        (b'{"a":1,"a":2}', "duplicate key 'a'"),
        (b"{'a':1}", "not JSON"),
        (b"", "not JSON"),
    ],
)
def test_refused_with_the_limit_named(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message.replace("[", r"\[").replace("+", r"\+")):
        loads_bounded(payload, max_bytes=100 if message.endswith("> 100") else 1000)


@pytest.mark.parametrize(
    "payload",
    [b'{"a":"\\ud83d\\ude00"}', b'"\\\\ud800"', b'["\\"\\\\"]', b"[" * 32 + b"]" * 32,
     b"[" + b"{}," * 40 + b'{"a":' * 31 + b"1" + b"}" * 31 + b"]",  # many brackets, 32 deep
     b"18446744073709551615", b"1e-400", b'"a\\/b"'],
)
def test_accepted_at_the_edges(payload: bytes) -> None:
    assert loads_bounded(payload) == json.loads(payload)


def test_a_paired_surrogate_decodes_to_one_character() -> None:
    assert loads_bounded(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_objects_only_where_asked() -> None:
    with pytest.raises(PayloadError, match="not a JSON object"):
        loads_object(b"[1]")


def test_a_megabyte_string_is_checked_without_recursion() -> None:
    check_bounds(b'{"photo":"' + b"A" * 1_000_000 + b'"}', max_bytes=2_000_000)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_whatever_json_dumps_writes_within_the_limits_reads_back(value: object) -> None:
    data = json.dumps(value, ensure_ascii=False).encode()
    assert loads_bounded(data, max_bytes=10**6, max_number_digits=400) == json.loads(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_arbitrary_bytes_give_a_value_or_payload_error(data: bytes) -> None:
    try:
        loads_bounded(data)
    except PayloadError as exc:
        assert str(exc)
