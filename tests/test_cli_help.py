"""Every `--help` of the menjin command is plain, wrapped text: no type label after a flag."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from menjin.cli import app

runner = CliRunner()


def command_paths() -> list[list[str]]:
    """Every command and sub-command of `menjin`, as argument lists."""
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "menjin")
def test_help_is_plain_and_wrapped(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "<bool>" not in text
    assert "│" not in text and "╭" not in text  # no rich panels cutting lines
    assert max(len(line) for line in text.splitlines()) <= 80
