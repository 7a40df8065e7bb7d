"""Random bytes read from the OS a block at a time: never handed out twice, not even across a
fork, whose child must not go on with its parent's block."""

from __future__ import annotations

import os
from collections.abc import Callable
from unittest import mock

from protocol.entropy import RandomBlocks
from protocol.uuid7 import Uuid7

MS = 1_780_000_000_000


def first_in_child(draw: Callable[[], bytes], size: int) -> bytes:
    """Fork; what the child's first ``draw()`` returns (``size`` bytes)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, draw())
        finally:
            os._exit(0)
    os.close(write)
    out = os.read(read, size)
    os.close(read)
    os.waitpid(pid, 0)
    return out


def test_blocks_are_read_whole_and_never_handed_out_twice() -> None:
    blocks = RandomBlocks(120)
    with mock.patch("protocol.entropy.os.urandom", wraps=os.urandom) as urandom:
        parts = [blocks.take(12) for _ in range(19)]  # 10 in the first block, 9 in the second
        parts.append(blocks.take(13))  # 108 + 13 > 120: a third block
    assert urandom.call_count == 3
    assert len(set(parts)) == len(parts)
    assert [len(p) for p in parts] == [12] * 19 + [13]


def test_a_forked_child_draws_from_a_block_of_its_own() -> None:
    blocks = RandomBlocks(1200)
    blocks.take(12)  # the parent holds a block it has started
    child = first_in_child(lambda: blocks.take(12), 12)
    assert len(child) == 12 and child != blocks.take(12)


def test_a_forked_child_never_issues_its_parents_next_event_id() -> None:
    """Same millisecond, same counter: only the random bits tell the two ids apart."""
    ids = Uuid7()
    ids.new(MS)
    child = first_in_child(lambda: ids.new(MS).encode(), 36).decode()
    assert len(child) == 36 and child != ids.new(MS)
