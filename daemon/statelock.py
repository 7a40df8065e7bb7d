"""One door daemon per state directory: an exclusive ``flock`` held for the life of the process.

Two daemons on one state directory would drive the same relays, write the same journal and fight
over the control socket and the MQTT client id.  The lock is taken before anything else is opened
(relays, control socket, journal, resident store), so a second ``menjin run`` leaves at once and
touches nothing.  The kernel drops the lock when the process dies, however it dies (SIGKILL and
power loss included), so a stale lock file never blocks a restart.

Offline tools that write the gate's files (erasure while the daemon is stopped) take the same
lock through :func:`offline`: the journal numbers its events itself (gapless ``seq``), and a tool
writing it beside a running daemon would jam the daemon's next commit with a duplicate.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from daemon.files import private_dir

LOCK_FILE = "menjin.lock"


class StateDirBusyError(Exception):
    """Another process holds the state directory (``pid`` as it wrote it, or None)."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"another menjin ({who}) runs with {state_dir}")
        self.pid = pid


class StateLock:
    """The exclusive lock on a state directory; ``release()`` (or process exit) frees it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StateDirBusyError` at once (never waits)."""
        private_dir(self.state_dir)
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateDirBusyError(self.state_dir, pid) from None
        if os.fstat(fd).st_uid == os.geteuid():  # an older, looser lock file is tightened
            os.fchmod(fd, 0o600)
        # The pid is only for the message of a second daemon; the lock is the flock itself.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def offline(state_dir: Path) -> Iterator[None]:
    """Exclusive use of the gate's files by a tool while the daemon is stopped.

    Raises :class:`StateDirBusyError` (the daemon runs: go through its control socket).
    """
    lock = StateLock(state_dir)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()
