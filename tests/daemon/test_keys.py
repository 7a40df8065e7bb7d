"""Key files: created once with owner-only permissions, read back as hex or raw bytes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from daemon.keys import KEY_BYTES, KeyFileError, load_or_create_key, read_key


def test_created_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "k.key"
    key = load_or_create_key(path)
    assert len(key) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key


def test_raw_and_hex_forms(tmp_path: Path) -> None:
    raw = tmp_path / "raw.key"
    raw.write_bytes(bytes(range(32)))
    assert read_key(raw) == bytes(range(32))
    text = tmp_path / "hex.key"
    text.write_text(bytes(range(32)).hex() + "\n")
    assert read_key(text) == bytes(range(32))


def test_wrong_size_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("too short")
    with pytest.raises(KeyFileError, match="expected 32 raw bytes or 64 hex characters"):
        read_key(bad)
