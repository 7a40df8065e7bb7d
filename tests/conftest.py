"""Shared fixtures: a private mosquitto per test, and the paths of the shared models and photos."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import Broker, start_broker

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("MENJIN_MODELS", REPO.parent / "shared" / "models"))
FACES_DIR = Path(os.environ.get("MENJIN_FACES", REPO.parent / "shared" / "faces"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A plain-TCP mosquitto on a free port, anonymous, no ACL."""
    b = start_broker(tmp_path / "broker")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def models_dir() -> Path:
    """The folder with the real ONNX face models; skips the test when it is absent."""
    if not (MODELS_DIR / "README.md").exists() and not any(MODELS_DIR.glob("*.onnx")):
        pytest.skip(f"face models not found in {MODELS_DIR} (set MENJIN_MODELS)")
    return MODELS_DIR


@pytest.fixture
def faces_dir() -> Path:
    """The folder with the labelled test photos; skips the test when it is absent."""
    if not (FACES_DIR / "enrol").is_dir():
        pytest.skip(f"face photos not found in {FACES_DIR} (set MENJIN_FACES)")
    return FACES_DIR
