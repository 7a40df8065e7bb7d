"""The shared YAML reader: plain-word syntax errors at the line of the cause, and hostile files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yamlconfig import MAX_DEPTH, MAX_NODES, ProblemError, expand_env, parse_yaml, read_yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
SYNTAX = [
    (  # a key indented deeper than its neighbour, which already has a value
        "gate:\n  id: g1\n   site: x\n",
        "3:4: YAML syntax error: wrong indentation: this line is indented more than line 2, "
        "which already has a value; indent it to the column of the key it belongs with",
    ),
    (  # a key at a column no mapping uses
        "gate:\n  id: g1\n site: x\n",
        "3:2: YAML syntax error: wrong indentation: this line starts at column 2, which lines up "
        "with no key above it (keys above start at columns 1, 3); indent it with spaces to the "
        "column of the key it belongs under",
    ),
    (
        "doors:\n  front:\n    lock:\n      pin: 17\n     active_high: true\n",
        "5:6: YAML syntax error: wrong indentation: this line starts at column 6, which lines up "
        "with no key above it (keys above start at columns 1, 3, 5, 7); indent it with spaces "
        "to the column of the key it belongs under",
    ),
    (
        "gate:\n\tid: g1\n",
        "2:1: YAML syntax error: a tab character; YAML indents with spaces only (replace the tab "
        "with spaces)",
    ),
    (
        "gate:\n  id: g1\n\tsite: x\n",
        "3:1: YAML syntax error: a tab character; YAML indents with spaces only (replace the tab "
        "with spaces)",
    ),
    (
        "gate:\n  id: 'g1\n  site: x\n",
        "2:7: YAML syntax error: the quote ' opened here is never closed (add the closing ')",
    ),
    (
        'gate:\n  site: "north gate\n  id: g1\n',
        '2:9: YAML syntax error: the quote " opened here is never closed (add the closing ")',
    ),
    (  # an escape that does not exist, lines after the unclosed quote
        'gate:\n  site: "north gate\n  id: g1  # \\q\n',
        '2:9: YAML syntax error: the quote " opened here is never closed on its line (the value '
        "runs on to line 3); a quoted value continuing over lines is unusual in a config: close "
        "the quote on this line",
    ),
    (  # an apostrophe further on closes the quote: the error is after it, the cause here
        "gate:\n  id: 'g1\n  site: x  # the station's gate\n",
        "2:7: YAML syntax error: the quote ' opened here is never closed on its line (the value "
        "runs on to line 3); a quoted value continuing over lines is unusual in a config: close "
        "the quote on this line",
    ),
    (  # closed on its line by an apostrophe meant for a comment
        "gate:\n  id: 'g1   # the station's gate\n",
        "2:7: YAML syntax error: the quote ' opened here is closed by the ' at column 26, and "
        "'s gate' follows it: put the closing ' right after the value (a ' inside the value is "
        "written '')",
    ),
    (  # a quoted value that is fine, then a real indentation error: not blamed on the quote
        "gate:\n  id: 'g1'\n site: x\n",
        "3:2: YAML syntax error: wrong indentation: this line starts at column 2, which lines up "
        "with no key above it (keys above start at columns 1, 3); indent it with spaces to the "
        "column of the key it belongs under",
    ),
    (
        "formats: [h10301, 34bit\nport: 3\n",
        "1:10: YAML syntax error: the '[' opened here is not closed: expected ',' or ']' before "
        "line 2, column 5",
    ),
    (
        "lock: {pin: 17\nport: 3\n",
        "1:7: YAML syntax error: the '{' opened here is not closed: expected ',' or '}' before "
        "line 2, column 5",
    ),
    (
        "uplink: {host: h, port: ${MENJIN_BROKER_PORT:-1883}}\n",
        "1:25: YAML syntax error: a ${VAR} inside '{ }' must be quoted ('${VAR}'), or write the "
        "values on indented lines",
    ),
    (
        "gate:\n  id: g1 site: x\n",
        "2:14: YAML syntax error: a second 'key: value' on one line: put each key on its own "
        "line, or quote a value that contains ': '",
    ),
    (
        "pin:17\nport: 3\n",
        "1:1: YAML syntax error: a key needs a space after its colon ('key: value'); without it "
        "this line and the next are read as one piece of text",
    ),
    (
        "a: 1\n- b\n",
        "2:1: YAML syntax error: a list item ('- ') cannot stand among keys here: indent it under "
        "the key it belongs to",
    ),
    (
        "a: 1\n---\nb: 2\n",
        "2:1: YAML syntax error: a second YAML document ('---' or '...'); a config file holds one",
    ),
    (
        "a: 1\nb\nc: 2\n",
        "2:1: YAML syntax error: this line is neither 'key: value' nor a list item: add ': ' "
        "after the key, or indent it as the continuation of the value above",
    ),
]


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProblemError) as caught:
        parse_yaml(text, "f.yaml")
    return [str(p).removeprefix("f.yaml:") for p in caught.value.problems]


@pytest.mark.parametrize(("text", "expected"), SYNTAX)
def test_syntax_errors_in_plain_words_at_the_line_of_the_cause(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_every_duplicate_key_names_both_places() -> None:
    assert problems_of("gate:\n  id: a\n  id: b\ndoors:\n  f: 1\n  f: 2\n") == [
        "3:3: gate.id: key 'id' appears twice, first at line 2, column 3 (each key may appear "
        "once: delete or merge one of them)",
        "6:3: doors.f: key 'f' appears twice, first at line 5, column 3 (each key may appear "
        "once: delete or merge one of them)",
    ]


def test_the_same_key_in_different_mappings_is_fine() -> None:
    assert parse_yaml("a: {pin: 1}\nb: {pin: 1}\nc: [{pin: 1}, {pin: 2}]\n", "f.yaml") == {
        "a": {"pin": 1}, "b": {"pin": 1}, "c": [{"pin": 1}, {"pin": 2}]}


def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_limit() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]")
    found = problems_of("\n".join(lines) + "\n")
    assert found == [
        f"5:8: aliases expand this file to more than {MAX_NODES} values (a 'billion laughs' "
        "file?); write the values out instead of nesting aliases"
    ]


def test_ordinary_aliases_still_work() -> None:
    root = parse_yaml("base: &lock {pin: 17, active_high: true}\nfront: {lock: *lock}\n", "f.yaml")
    assert root["front"]["lock"]["pin"] == 17


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: " + "[" * 1000 + "]" * 1000 + "\n", f"1:{3 + MAX_DEPTH}"),  # the top level counts
        ("".join("  " * i + f"k{i}:\n" for i in range(1000)),
         f"{MAX_DEPTH + 1}:{2 * MAX_DEPTH + 1}"),
    ],
    ids=["flow", "block"],
)
def test_excessive_nesting_is_refused_with_its_line(text: str, where: str) -> None:
    assert problems_of(text) == [
        f"{where}: nested more than {MAX_DEPTH} levels deep (a config needs a few; is an "
        "indentation or a bracket wrong?)"
    ]


def test_nesting_through_aliases_counts_too() -> None:
    deep = "a: &a " + "[" * 20 + "]" * 20 + "\nb: " + "[" * 20 + "*a" + "]" * 20 + "\n"
    assert problems_of(deep) == [
        f"2:24: nested more than {MAX_DEPTH} levels deep through this alias"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 2\x00\n", "2:5: control character U+0000 (NUL) is not allowed in a config "
         "file; is the file damaged or not text? (save it as plain UTF-8 text)"),
        ("a: \x1b[31m\n", "1:4: control character U+001B is not allowed in a config file; is "
         "the file damaged or not text? (save it as plain UTF-8 text)"),
        ("port: " + "9" * 5000 + "\n", "1:7: a number of 5000 digits is too long (at most 30; "
         "quote it if it is text)"),
        ("port: 0x" + "f" * 4400 + "\n", "1:7: a number of 4402 digits is too long (at most 30; "
         "quote it if it is text)"),
        ("- -" + "1" * 31 + "\n", "1:3: a number of 31 digits is too long (at most 30; quote it "
         "if it is text)"),
    ],
    ids=["nul", "escape", "decimal", "hex", "negative"],
)
def test_bytes_that_would_crash_a_loader_are_refused_by_position(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (  # the rest of the line is a comment with an apostrophe: closed on the line, too early
            "  id: xingfuli-north  ", "  id: 'g1  ",
            "18:7: YAML syntax error: the quote ' opened here is closed by the ' at column 47, and "
            "'s gates; part of every...' follows it: put the closing ' right after the value (a ' "
            "inside the value is written '')",
        ),
        (  # the quote runs on to an apostrophe 42 lines further down
            "  id: xingfuli-north           # unique among the station's gates; part of every "
            "MQTT topic\n", "  id: 'g1\n",
            "18:7: YAML syntax error: the quote ' opened here is never closed on its line (the "
            "value runs on to line 60); a quoted value continuing over lines is unusual in a "
            "config: close the quote on this line",
        ),
        (
            "  site: 幸福里小区", "  site: '幸福里小区",
            "19:9: YAML syntax error: the quote ' opened here is never closed on its line (the "
            "value runs on to line 60); a quoted value continuing over lines is unusual in a "
            "config: close the quote on this line",
        ),
    ],
)
def test_an_unclosed_quote_in_the_example_is_reported_where_it_opens(
    old: str, new: str, expected: str,
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.count(old) == 1
    assert problems_of(text.replace(old, new)) == [expected]


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ProblemError) as caught:
        read_yaml(tmp_path, hint=" (check the path)")
    assert str(caught.value) == f"{tmp_path}:1:1: this is a directory, not a file: give the " \
        "path of the config file itself"


def test_a_long_quoted_number_is_text() -> None:
    assert parse_yaml(f"card: '{'1' * 100}'\n", "f.yaml") == {"card": "1" * 100}


def test_not_utf8_names_the_byte_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_bytes("gate:\n  site: 北门\n".encode("gb18030"))
    with pytest.raises(ProblemError) as caught:
        read_yaml(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:2:9: not UTF-8 text (byte 0xb1); save the file as UTF-8 (a damaged copy or a "
        "file in another encoding, such as GBK?)"
    ]


def test_a_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ProblemError) as caught:
        read_yaml(tmp_path / "nope.yaml", hint=" (check the path)")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}:1:1: cannot read: No such file or " \
        "directory (check the path)"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:- \n\t[]{}'\"&*!|>#%@,?0\x00\x85")), max_size=60))
def test_any_text_parses_or_gives_problems(text: str) -> None:
    try:
        parse_yaml(text, "f.yaml")
    except ProblemError as exc:
        assert exc.problems and all(p.line >= 1 and p.column >= 1 for p in exc.problems)


def test_environment_values_are_expanded_and_remembered() -> None:
    root = parse_yaml("a: ${X:-1}\nb: ${Y}/models\nc:\n  - ${Z}\nd: x${Y}\n", "f.yaml")
    use = expand_env(root, {"Y": "rel", "Z": "abc"})
    assert root == {"a": "1", "b": "rel/models", "c": ["abc"], "d": "xrel"}
    assert use.used == {("b",): [("Y", "rel")], ("c", 0): [("Z", "abc")], ("d",): [("Y", "rel")]}
    assert use.leading == {("b",), ("c", 0)}
    assert use.missing == {}
    assert use.describe(("c", 0)) == "Z=abc"
    assert expand_env(parse_yaml("a: ${NOPE}\n", "f.yaml"), {}).missing == {("a",): ["NOPE"]}


@pytest.mark.parametrize(
    ("text", "where"),
    [("? [a, b]\n: 1\n", "1:3"), ("a: &x 1\n*x : 2\n", "2:1"), ("{a: 1}: x\n", "1:1")],
)
def test_a_key_that_is_not_a_name_is_refused(text: str, where: str) -> None:
    assert problems_of(text) == [
        f"{where}: a key must be a plain name, not a list, a mapping or an alias (is a ':' or an "
        "indentation misplaced?)"
    ]
