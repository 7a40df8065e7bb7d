"""Private files of the gate: modes that do not depend on the caller's umask.

Everything the gate writes (resident store, journal and its ``-wal``, portraits, audit log, sealed
keys, templates) is personal data or a secret, so files are 0600 and directories 0700 whoever
starts the program and whatever its umask.  ``chmod`` ignores the umask, and SQLite creates its
``-wal`` and ``-shm`` files with the mode of the database file, so creating the database file here
first makes all three private.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
#: The umask the gate's processes run with (``menjin`` sets it at start-up).
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it 0700; returns ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid == os.geteuid():
        path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if absent (in a 0700 parent) and make it 0600; returns ``path``.

    Existing files created by an older version with a looser mode are tightened too.
    """
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    if path.stat().st_uid == os.geteuid():
        path.chmod(FILE_MODE)
    return path


def write_private(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` atomically with ``data`` (0600, fsynced unless told not to, renamed)."""
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    tmp.replace(path)
