"""One owner of a gate's journal at a time: the running daemon, or one offline tool.

The journal numbers events itself (gapless ``seq``); a second process opening it while the
daemon runs would number its events from a stale counter and jam the daemon's next commit with a
duplicate.  The daemon holds an exclusive ``flock`` on ``<state_dir>/menjin.lock`` for its whole
life; a tool that would write the journal takes the same lock without waiting and, when it is
held, goes through the daemon's control socket instead (or tells the installer to).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from daemon.files import private_file

LOCK_FILE = "menjin.lock"


class GateBusyError(Exception):
    """The daemon of this gate is running and owns the journal."""


def lock_path(state_dir: Path) -> Path:
    return state_dir / LOCK_FILE


def hold(state_dir: Path) -> int:
    """Take the gate lock for the daemon's life; returns the fd (closing it releases the lock).

    Raises GateBusyError when another daemon of this state directory runs.
    """
    fd = os.open(private_file(lock_path(state_dir)), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GateBusyError(f"another menjin daemon uses {state_dir}") from None
    return fd


@contextlib.contextmanager
def offline(state_dir: Path) -> Iterator[None]:
    """Exclusive use of the gate's files by a tool while the daemon is stopped."""
    fd = os.open(private_file(lock_path(state_dir)), os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GateBusyError(
                f"the menjin daemon of {state_dir} is running: this must go through it (its "
                "control socket), not around it"
            ) from None
        yield
    finally:
        os.close(fd)
