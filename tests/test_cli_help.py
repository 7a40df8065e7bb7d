"""Every `--help` of the menjin command is plain, wrapped text: no type label after a flag, and
examples one per line, each a command line that parses as written (pasted, it runs)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from menjin.cli import app

runner = CliRunner()
ROOT = typer.main.get_command(app)


def command_paths() -> list[list[str]]:
    """Every command and sub-command of `menjin`, as argument lists."""
    paths: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(ROOT, [])
    return paths


def command_at(path: list[str]) -> Any:
    cmd: Any = ROOT
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def help_text(path: list[str]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout


def examples(text: str) -> list[str]:
    """The lines under ``Example:`` / ``Examples:`` of a help text, up to the next blank line."""
    lines = text.splitlines()
    found: list[str] = []
    for i, line in enumerate(lines):
        if line.strip() in ("Example:", "Examples:"):
            for below in lines[i + 1:]:
                if not below.strip():
                    break
                found.append(below.strip())
    return found


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "menjin")
def test_help_is_plain_and_wrapped(path: list[str]) -> None:
    text = help_text(path)
    assert "<bool>" not in text
    assert "│" not in text and "╭" not in text  # no rich panels cutting lines
    assert max(len(line) for line in text.splitlines()) <= 80


LEAVES = [p for p in command_paths() if not getattr(command_at(p), "commands", None)]


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: " ".join(p))
def test_every_example_is_one_command_line_that_parses(
    path: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # where the files an example names (photo.jpg) are at hand
    found = examples(help_text(path))
    assert found, "no Example: in the help"
    for line in found:
        words = shlex.split(line)
        if words[:3] == ["sudo", "-u", "menjin"]:
            words = words[3:]
        elif words[:1] == ["sudo"]:
            words = words[1:]
        assert words[: len(path) + 1] == ["menjin", *path], line  # one command per line, this one
        for word in words:
            if "." in word and "/" not in word and not word.startswith("-"):
                (tmp_path / word).touch()
        try:
            command_at(path).make_context(path[-1], words[len(path) + 1:])
        except typer.TyperException as exc:  # click's usage errors
            pytest.fail(f"{line!r} does not parse: {exc}")
