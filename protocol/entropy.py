"""Random bytes from the OS's CSPRNG, read a block at a time.

A system call per value lets another thread take the GIL: on the door's event loop (event ids)
and in the journal's writer behind a busy loop (a nonce per sealed body), each draw then waited
up to a switch interval to get it back.  A forked child starts on fresh blocks: the unused rest
of its parent's must never be used twice (the same GCM nonce under one key, the same event id).
"""

from __future__ import annotations

import os
import threading
import weakref


class RandomBlocks:
    """Thread-safe random bytes, ``block_bytes`` read from the OS at a time."""

    def __init__(self, block_bytes: int) -> None:
        self.block_bytes = block_bytes
        self._lock = threading.Lock()
        self._block = b""
        self._used = 0
        _LIVE.add(self)

    def take(self, size: int) -> bytes:
        """``size`` random bytes (at most ``block_bytes``), never handed out before."""
        with self._lock:
            if self._used + size > len(self._block):
                self._block, self._used = os.urandom(self.block_bytes), 0
            start, self._used = self._used, self._used + size
            return self._block[start:self._used]

    def _forget(self) -> None:
        self._lock = threading.Lock()  # the fork may have copied it held
        self._block, self._used = b"", 0


_LIVE: weakref.WeakSet[RandomBlocks] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for blocks in list(_LIVE):
        blocks._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
