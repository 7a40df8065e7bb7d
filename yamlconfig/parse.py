"""Parse a config file's YAML: bounded, with positions, and syntax errors in plain words.

Before ruamel builds anything, one pass over the parser's events (a flat stream, no recursion)
checks what would hang or crash the loader or the code after it: aliases that expand a small file
into millions of values ("billion laughs"), nesting deeper than any config needs (a recursion
error), integers longer than Python converts (``ValueError``), and control characters such as NUL.
The same pass finds every duplicated key and names both places, which ruamel's own error cannot.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.tokens import ScalarToken

from yamlconfig.problem import Problem, ProblemError

#: Values after expanding aliases: a gate's config has a few hundred.
MAX_NODES = 20_000
#: Nested mappings and lists: a gate's config needs five.
MAX_DEPTH = 32
#: Digits of an integer: 64-bit values have 20; Python refuses to convert more than 4300.
MAX_NUMBER_DIGITS = 30

# Characters YAML does not allow in a stream (ruamel's reader refuses them without a line number).
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_INTEGER = re.compile(r"[-+]?(?:0x[0-9a-fA-F_]+|0o[0-7_]+|[0-9][0-9_]*)")
_CLOSERS = {"[": "]", "{": "}"}
#: Characters of the text after a closed quote shown in the message.
PREVIEW_CHARS = 24

Loc = tuple[str | int, ...]


def dotted(loc: Loc) -> str:
    """``doors.front.lock.pin`` / ``vision.liveness.paths[1]`` for a location."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_yaml(path: Path, *, hint: str = "") -> tuple[str, Any]:
    """Read and parse ``path``: ``(file name as given, root node or None when empty)``.

    ``hint`` ends the "cannot read" message (what the installer should do).
    Raises :class:`ProblemError`.
    """
    file = str(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise ProblemError([Problem(file, 1, 1, "", "this is a directory, not a file: give the "
                                                    "path of the config file itself")]) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ProblemError([Problem(file, 1, 1, "", f"cannot read: {reason}{hint}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = (f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8 "
                   "(a damaged copy or a file in another encoding, such as GBK?)")
        raise ProblemError([Problem(file, line, col, "", message)]) from None
    return file, parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> Any:
    """Parse YAML keeping positions (ruamel round-trip nodes); ``None`` for an empty document.

    Raises :class:`ProblemError` with every duplicated key (its ``parsed`` holds the document
    with each key's first value, so the caller can report the file's other problems too), or
    with the first syntax error or exceeded limit, each at the line of its cause.
    """
    _check_characters(text, file)
    yaml = YAML(typ="rt")
    try:
        problems = _scan(yaml.parse(text), file)
    except MarkedYAMLError as exc:
        raise ProblemError([_syntax_problem(exc, text, file)]) from None
    # The scan has named every duplicate with both places; ruamel's own check would stop at the
    # first one, so the load keeps each key's first value and the duplicates are raised below.
    loader = YAML(typ="rt")
    loader.allow_duplicate_keys = True
    try:
        root = loader.load(text)
    except MarkedYAMLError as exc:
        raise ProblemError([_syntax_problem(exc, text, file)]) from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:  # the scan catches these
        raise ProblemError([Problem(file, 1, 1, "", f"cannot parse: {exc}")]) from None
    if problems:
        raise ProblemError(problems, parsed=root)
    return root


def _check_characters(text: str, file: str) -> None:
    match = _NOT_PRINTABLE.search(text)
    if match is None:
        return
    line = text.count("\n", 0, match.start()) + 1
    col = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
    char = ord(match.group())
    name = " (NUL)" if char == 0 else ""
    raise ProblemError([Problem(
        file, line, col, "",
        f"control character U+{char:04X}{name} is not allowed in a config file; "
        "is the file damaged or not text? (save it as plain UTF-8 text)",
    )])


@dataclass
class _Frame:
    """A mapping or list being read, during the event scan."""

    loc: Loc
    mapping: bool
    anchor: str | None
    expect_key: bool = True
    key: str | int | None = None
    index: int = 0
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)
    weight: int = 1
    depth_below: int = 1


def _scan(events: Any, file: str) -> list[Problem]:
    """Limits and duplicated keys, from the parser's events; the first limit ends the scan."""
    problems: list[Problem] = []
    frames: list[_Frame] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, depth below it)
    total = 0

    def fail(event: Event, message: str) -> ProblemError:
        mark = event.start_mark
        return ProblemError([*problems, Problem(file, mark.line + 1, mark.column + 1, "", message)])

    def finished(weight: int, depth_below: int) -> None:
        """A node under the top frame is complete: count it, move to the next key or item."""
        if not frames:
            return
        top = frames[-1]
        top.weight += weight
        top.depth_below = max(top.depth_below, depth_below + 1)
        if top.mapping:
            top.expect_key = not top.expect_key
        else:
            top.index += 1

    for event in events:
        if isinstance(event, CollectionEndEvent):
            done = frames.pop()
            if done.anchor:
                anchors[done.anchor] = (done.weight, done.depth_below)
            finished(done.weight, done.depth_below)
            continue
        if not isinstance(event, NodeEvent):
            continue
        top = frames[-1] if frames else None
        is_key = top is not None and top.mapping and top.expect_key
        if isinstance(event, ScalarEvent):
            total += 1
            if event.style is None and _INTEGER.fullmatch(event.value or ""):
                digits = len(event.value.lstrip("+-").replace("_", ""))
                if digits > MAX_NUMBER_DIGITS:
                    raise fail(event, f"a number of {digits} digits is too long (at most "
                                      f"{MAX_NUMBER_DIGITS}; quote it if it is text)")
            if is_key and top is not None:
                problems += _duplicate(top, event, file)
            if event.anchor:
                anchors[event.anchor] = (1, 0)
            finished(1, 0)
        elif is_key:
            raise fail(event, "a key must be a plain name, not a list, a mapping or an alias "
                              "(is a ':' or an indentation misplaced?)")
        elif isinstance(event, AliasEvent):
            weight, below = anchors.get(event.anchor or "", (1, 0))
            total += weight
            if total > MAX_NODES:
                raise fail(event, f"aliases expand this file to more than {MAX_NODES} values "
                                  "(a 'billion laughs' file?); write the values out instead of "
                                  "nesting aliases")
            if len(frames) + below > MAX_DEPTH:
                raise fail(event, f"nested more than {MAX_DEPTH} levels deep through this alias")
            finished(weight, below)
        elif isinstance(event, CollectionStartEvent):
            total += 1
            if len(frames) + 1 > MAX_DEPTH:
                raise fail(event, f"nested more than {MAX_DEPTH} levels deep (a config needs "
                                  "a few; is an indentation or a bracket wrong?)")
            loc: Loc = () if top is None else (*top.loc, _child_key(top))
            frames.append(_Frame(loc, isinstance(event, MappingStartEvent), event.anchor))
        if total > MAX_NODES:
            raise fail(event, f"the file holds more than {MAX_NODES} values")
    return problems


def _child_key(frame: _Frame) -> str | int:
    if frame.mapping:
        return frame.key if frame.key is not None else "?"
    return frame.index


def _duplicate(frame: _Frame, event: ScalarEvent, file: str) -> list[Problem]:
    key = event.value or ""
    frame.key = key
    here = (event.start_mark.line + 1, event.start_mark.column + 1)
    first = frame.keys.setdefault(key, here)
    if first == here or key == "<<":
        return []
    return [Problem(
        file, *here, dotted((*frame.loc, key)),
        f"key {key!r} appears twice, first at line {first[0]}, column {first[1]} "
        "(each key may appear once: delete or merge one of them)",
    )]


def _syntax_problem(exc: MarkedYAMLError, text: str, file: str) -> Problem:
    """ruamel's parser jargon, said the way an installer sees the file, at the line of the cause."""
    lines = text.splitlines()
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line, mark.column) if mark is not None else (0, 0)
    problem = (exc.problem or "").strip()
    context = (exc.context or "").strip()
    start = exc.context_mark

    def at(row: int, column: int, message: str) -> Problem:
        return Problem(file, row + 1, column + 1, "", f"YAML syntax error: {message}")

    def opener(row: int, column: int) -> str:
        return lines[row][column] if row < len(lines) and column < len(lines[row]) else "?"

    if "'\\t'" in problem or "\t" in problem:
        return at(line, col, "a tab character; YAML indents with spaces only "
                             "(replace the tab with spaces)")
    if context.startswith("while scanning a") and context.endswith("quoted scalar") \
            and start is not None:
        quote = opener(start.line, start.column)
        if "end of stream" in problem:
            return at(start.line, start.column,
                      f"the quote {quote} opened here is never closed (add the closing {quote})")
        if start.line < line:
            return at(start.line, start.column, _runs_on(quote, line))
        return at(line, col, f"in the text quoted at line {start.line + 1}: {problem}")
    if mark is not None:
        closed = _closed_too_late(text, lines, mark.index)
        if closed is not None:
            return at(*closed)
    if context.startswith(("while parsing a flow sequence", "while parsing a flow mapping")) \
            and start is not None:
        bracket = opener(start.line, start.column)
        close = _CLOSERS.get(bracket, "]")
        text = lines[line] if line < len(lines) else ""
        if "${" in text[max(0, col - 2): col + 1]:  # '{' of ${VAR} read as a flow mapping
            return at(line, col - 1 if text[col - 1: col] == "$" else col,
                      f"a ${{VAR}} inside '{bracket} {close}' must be quoted ('${{VAR}}'), or "
                      "write the values on indented lines")
        return at(start.line, start.column,
                  f"the '{bracket}' opened here is not closed: expected ',' or '{close}' "
                  f"before line {line + 1}, column {col + 1}")
    if problem.startswith("mapping values are not allowed"):
        return _colon_problem(lines, line, col, at)
    if problem.startswith("expected <block end>"):
        if "'-'" in problem or "block sequence" in problem:
            return at(line, col, "a list item ('- ') cannot stand among keys here: indent it "
                                 "under the key it belongs to")
        return at(line, _indent(lines, line), _indent_message(lines, line))
    if problem.startswith("could not find expected ':'") and start is not None:
        return at(start.line, start.column,
                  "this line is neither 'key: value' nor a list item: add ': ' after the key, "
                  "or indent it as the continuation of the value above")
    if "single document" in f"{problem} {context}":
        return at(line, col, "a second YAML document ('---' or '...'); a config file holds one")
    where = f" ({context} that starts at {start.line + 1}:{start.column + 1})" \
        if context and start is not None and start is not mark else ""
    return at(line, col, f"{problem or 'invalid YAML'}{where}")


def _runs_on(quote: str, end_line: int) -> str:
    return (f"the quote {quote} opened here is never closed on its line (the value runs on to "
            f"line {end_line + 1}); a quoted value continuing over lines is unusual in a config: "
            f"close the quote on this line")


def _closed_too_late(text: str, lines: list[str], index: int) -> tuple[int, int, str] | None:
    """A quoted value closed by a quote meant as something else, just before the error at ``index``.

    ``id: 'g1`` without its closing quote runs on until the next ``'`` in the file, often an
    apostrophe in a later comment (``station's``); the parser fails only after it, where the text
    that follows cannot stand.  The cause is the opening quote: returns its 0-based line and
    column and the message, or None when the error does not follow a quoted value.
    """
    last: ScalarToken | None = None
    try:
        for token in YAML(typ="rt").scan(text):
            if token.start_mark.index >= index:
                break
            last = token if isinstance(token, ScalarToken) else None
    except YAMLError:
        pass
    if last is None or last.style not in ("'", '"') or last.end_mark.index > index \
            or text[last.end_mark.index: index].strip(" \t"):
        return None
    start, end = last.start_mark, last.end_mark
    quote = str(last.style)
    if start.line < end.line:
        return start.line, start.column, _runs_on(quote, end.line)
    doubled = "''" if quote == "'" else '\\"'
    rest = lines[end.line][end.column:].strip() if end.line < len(lines) else ""
    if len(rest) > PREVIEW_CHARS:
        rest = rest[:PREVIEW_CHARS].rsplit(" ", 1)[0] + "..."
    return start.line, start.column, (
        f"the quote {quote} opened here is closed by the {quote} at column {end.column}, and "
        f"{rest!r} follows it: put the closing {quote} right after the value (a {quote} "
        f"inside the value is written {doubled})")


def _indent(lines: list[str], row: int) -> int:
    text = lines[row] if row < len(lines) else ""
    return len(text) - len(text.lstrip(" "))


def _previous(lines: list[str], row: int) -> int | None:
    """The nearest line above ``row`` holding something other than a comment."""
    for above in range(row - 1, -1, -1):
        stripped = lines[above].strip()
        if stripped and not stripped.startswith("#"):
            return above
    return None


def _indent_message(lines: list[str], row: int) -> str:
    columns = sorted({_indent(lines, r) + 1 for r in range(row)
                      if lines[r].strip() and not lines[r].strip().startswith("#")})
    listed = ", ".join(str(c) for c in columns)
    return (f"wrong indentation: this line starts at column {_indent(lines, row) + 1}, which "
            f"lines up with no key above it (keys above start at columns {listed}); indent it "
            "with spaces to the column of the key it belongs under")


def _colon_problem(
    lines: list[str], row: int, col: int, at: Callable[[int, int, str], Problem],
) -> Problem:
    """``mapping values are not allowed here``: a ``key:`` where no key can start."""
    text = lines[row] if row < len(lines) else ""
    above = _previous(lines, row)
    if above is not None and _indent(lines, row) > _indent(lines, above):
        prior = lines[above].split(" #")[0].rstrip()
        if re.match(r"\s*(- )?[^:]+:\s+\S", prior):
            return at(row, _indent(lines, row),
                      f"wrong indentation: this line is indented more than line {above + 1}, "
                      "which already has a value; indent it to the column of the key it "
                      "belongs with")
    if ": " in text[: col].lstrip(" -"):
        return at(row, col, "a second 'key: value' on one line: put each key on its own line, "
                            "or quote a value that contains ': '")
    if above is not None and re.search(r"\w:[^\s/]", lines[above]):
        return at(above, _indent(lines, above),
                  "a key needs a space after its colon ('key: value'); without it this line "
                  "and the next are read as one piece of text")
    return at(row, col, "a 'key: value' cannot stand here: check the indentation of this line "
                        "and of the line above, and quote values that contain ': '")
