"""Architecture rules as tests: dependencies point one way (import-linter, see pyproject)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _contracts_config(tmp_path: Path) -> Path:
    """pyproject's import-linter section; without a ``protocol`` package yet, its contract and
    root are left out (import-linter refuses a root package that does not exist)."""
    text = (REPO / "pyproject.toml").read_text()
    if not (REPO / "protocol" / "__init__.py").exists():
        text = text.replace(', "protocol"]', "]").replace('"(protocol)", ', "")
        text = text.replace('"station", "protocol", "menjin"]', '"station", "menjin"]')
        text = text.replace('"vision", "protocol", "menjin",', '"vision", "menjin",')
        head, sep, rest = text.partition('name = "protocol is the contract')
        if sep:
            block_end = rest.index("[[tool.importlinter.contracts]]")
            head = head[: head.rindex("[[tool.importlinter.contracts]]")]
            text = head + rest[block_end:]
    config = tmp_path / "importlinter.toml"
    config.write_text(text)
    return config


def _lint_imports(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.fail("import-linter is not installed: run `make .venv`")
    return subprocess.run(
        [lint_imports, "--no-cache", "--config", str(_contracts_config(tmp_path))],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def test_import_contracts_hold(tmp_path: Path) -> None:
    result = _lint_imports(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_runtime_module_importing_the_cli_breaks_the_contracts(tmp_path: Path) -> None:
    """The contracts catch what they promise: a runtime module that imports a CLI module."""
    offender = REPO / "daemon" / "zz_offender_for_test.py"
    offender.write_text('"""Test-only module."""\n\nimport daemon.cli.run  # noqa: F401\n')
    try:
        result = _lint_imports(tmp_path)
    finally:
        offender.unlink()
    assert result.returncode != 0
    assert "the gate's runtime never imports its CLI BROKEN" in result.stdout
    assert "daemon.zz_offender_for_test -> daemon.cli.run" in result.stdout


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed: run `make .venv`")
    return found


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [_tool("ruff"), "check", "menjin", "daemon", "drivers", "vision", "station", "protocol",
         "yamlconfig", "tests", "bench"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(600)
def test_mypy_strict_on_drivers_daemon_and_protocol() -> None:
    result = subprocess.run(
        [_tool("mypy"), "--strict", "menjin", "drivers", "daemon", "protocol", "yamlconfig"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
