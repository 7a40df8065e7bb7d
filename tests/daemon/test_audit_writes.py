"""An audit entry is appended whole or not at all (issue 14, finding 2: a short os.write on a
full disk was ignored and left half an entry)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from unittest import mock

import pytest

from daemon.audit import AuditLog

REAL_WRITE = os.write


def test_a_short_write_is_continued_until_the_entry_is_whole(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")

    def short(fd: int, data: bytes) -> int:  # the kernel may write less than asked
        return REAL_WRITE(fd, bytes(data[:7]))

    with mock.patch("daemon.audit.os.write", autospec=True, side_effect=short):
        log.append("door.test", actor="admin", target="front")
    result = AuditLog(tmp_path / "audit.log").verify()
    assert result.ok and result.entries == 1


def test_a_write_that_fails_half_way_leaves_no_half_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    log.append("residents.import", actor="admin")
    before = path.read_bytes()
    calls = 0

    def full_disk(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return REAL_WRITE(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    with mock.patch("daemon.audit.os.write", autospec=True, side_effect=full_disk), \
            pytest.raises(OSError):
        log.append("door.test", actor="admin")
    assert path.read_bytes() == before  # cut back: the chain stays whole
    log.append("door.test", actor="admin")  # the retry succeeds and continues the chain
    result = AuditLog(path).verify()
    assert result.ok and result.entries == 2


@pytest.mark.parametrize("tail", [b'{"seq": 3, "act', b"\xff\xfe garbage\n", b"not json\n\n"])
def test_every_kind_of_torn_tail_is_cut_and_kept(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "audit.log"
    AuditLog(path).append("residents.import", actor="admin")
    good = path.read_bytes()
    path.write_bytes(good + tail)
    log = AuditLog(path)
    assert log.repaired == {"bytes": len(tail), "kept_in": "audit.log.damaged"}
    assert path.read_bytes() == good
    assert (tmp_path / "audit.log.damaged").read_bytes() == tail
    assert AuditLog(path).repaired is None  # repaired once
