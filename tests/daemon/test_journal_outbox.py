"""What the uplink takes from the journal: each event once, alarms first, from memory once caught
up, and from the store again whenever the memory cannot follow (a new connection, a refused
publish, a resend, an erasure, an eviction, too many events waiting)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from unittest import mock

import pytest

from daemon.events import Event, Priority
from daemon.journal import Journal
from daemon.journal_outbox import EVENT_OVERHEAD_BYTES, Pending, RecentOutbox


def open_journal(tmp_path: Path, **kwargs: object) -> Journal:
    return Journal(tmp_path / "journal.db", gate="g1", **kwargs)  # type: ignore[arg-type]


def record(journal: Journal, event_type: str, **fields: object) -> int:
    seq = journal.record(Event(event_type, **fields))["seq"]  # type: ignore[arg-type]
    journal.flush()
    return int(seq)


def seqs(items: list[Pending]) -> list[int]:
    return [item.seq for item in items]


def test_take_hands_each_event_once_and_serves_later_ones_from_memory(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    first = [record(journal, "door.opened", door="front") for _ in range(3)]
    assert seqs(journal.take(10)) == first  # from the store: all of them, so caught up
    assert journal.take(10) == []
    later = [record(journal, "door.closed", door="front") for _ in range(3)]
    # Served from memory: another process marking one delivered in the file changes nothing
    # for take(), while pending() reads the file.
    other = sqlite3.connect(journal.path)
    with other:
        other.execute("UPDATE events SET delivered = 1 WHERE seq = ?", (later[0],))
    other.close()
    assert later[0] not in seqs(journal.pending(10))
    taken = journal.take(2)
    assert seqs(taken) == later[:2] and seqs(journal.take(10)) == later[2:]
    assert json.loads(taken[0].payload)["type"] == "door.closed"
    assert journal.take(10) == []
    journal.close()


def test_take_puts_alarms_ahead_of_older_routine_events_from_memory_too(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    assert journal.take(10) == []  # caught up with an empty journal
    routine = [record(journal, "door.opened", door="front") for _ in range(4)]
    alarm = record(journal, "door.forced", door="front")
    taken = journal.take(3)
    assert seqs(taken) == [alarm, *routine[:2]]
    assert taken[0].priority is Priority.ALARM
    assert seqs(journal.take(10)) == routine[2:]
    journal.close()


def test_more_waiting_than_asked_for_keeps_reading_the_store(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    stored = [record(journal, "door.opened", door="front") for _ in range(5)]
    assert seqs(journal.take(2)) == stored[:2]
    # not caught up: the store is read again, leaving out what is in flight
    assert seqs(journal.take(2, exclude=stored[:2])) == stored[2:4]
    later = record(journal, "door.closed", door="front")
    assert seqs(journal.take(10, exclude=stored[:4])) == [stored[4], later]
    journal.close()


def test_rewind_hands_out_again_what_was_not_acknowledged(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    journal.take(10)
    sent = [record(journal, "door.opened", door="front") for _ in range(3)]
    assert seqs(journal.take(10)) == sent
    journal.mark_delivered([item.id for item in journal.pending(1)])  # the first one arrived
    journal.rewind()  # e.g. the connection dropped before the other PUBACKs
    assert seqs(journal.take(10)) == sent[1:]
    journal.close()


def test_a_resend_after_catching_up_is_taken_again(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    sent = [record(journal, "door.opened", door="front") for _ in range(3)]
    journal.mark_delivered([item.id for item in journal.take(10)])
    assert journal.take(10) == []  # caught up: serving from memory
    queued, missing = journal.redeliver(sent[0], sent[1], limit=10)
    assert queued == sent[:2] and missing == []
    assert seqs(journal.take(10)) == sent[:2]
    journal.close()


def test_an_erasure_after_catching_up_hands_out_the_pseudonymised_bodies(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    journal.take(10)
    record(journal, "access.granted", door="front", person="p1", credential_kind="card",
           credential_ref="****5678")
    journal.pseudonymise_person("p1", "anon-1f2e")
    [item] = journal.take(10)
    body = json.loads(item.payload)
    assert body["person"] == "anon-1f2e" and "credential_ref" not in body
    journal.close()


def test_an_eviction_after_catching_up_is_not_handed_out_from_memory(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, quota_bytes=1)  # every check evicts what it may
    journal.take(10)
    kept = record(journal, "door.forced", door="front")  # an unacknowledged alarm always stays
    for _ in range(3):
        record(journal, "door.opened", door="front")
    journal.enforce_quota()
    assert seqs(journal.take(10)) == [kept]
    journal.close()


DELIVERED = "SELECT count(*) FROM events WHERE delivered = 1"


async def _until_delivered(path: Path, count: int) -> None:
    reader = sqlite3.connect(path)
    try:
        async with asyncio.timeout(10):
            while reader.execute(DELIVERED).fetchone() != (count,):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        reader.close()


async def _writer_journal(tmp_path: Path, count: int) -> tuple[Journal, list[str]]:
    """A journal with its writer thread (routine batches wait an hour, batches of 5), holding
    ``count`` committed decisions."""
    journal = open_journal(tmp_path, batch_seconds=3600, batch_max=5)
    journal.start_writer(asyncio.get_running_loop())
    ids = [journal.record(Event("access.granted", door="front"))["id"] for _ in range(count)]
    async with asyncio.timeout(10):
        while len(journal.pending(10)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return journal, ids


async def test_acknowledgements_wait_for_company_while_served_from_memory(tmp_path: Path) -> None:
    """Caught up, one acknowledgement does not wake the idle writer (it waits ``batch_seconds``,
    here an hour); a full batch of them does, at once."""
    journal, ids = await _writer_journal(tmp_path, 6)
    try:
        assert len(journal.take(10)) == 6  # caught up: from now on served from memory
        journal.mark_delivered(ids[:1])
        await asyncio.sleep(0.2)
        assert journal.queue_depth() == 5 and len(journal.pending(10)) == 5  # left out ...
        with contextlib.closing(sqlite3.connect(journal.path)) as reader:
            assert reader.execute(DELIVERED).fetchone() == (0,)  # ... and not yet committed
        journal.mark_delivered(ids[1:5])  # five waiting: a full batch
        await _until_delivered(journal.path, 5)
    finally:
        journal.close()


async def test_acknowledgements_are_committed_at_once_while_the_store_is_read(
        tmp_path: Path) -> None:
    """Reading the store, every acknowledgement queued makes each read longer: no waiting."""
    journal, ids = await _writer_journal(tmp_path, 6)
    try:
        assert len(journal.take(3)) == 3  # more waiting: the store is read
        journal.mark_delivered(ids[:1])
        await _until_delivered(journal.path, 1)
    finally:
        journal.close()


def pending_item(seq: int, priority: Priority = Priority.ROUTINE) -> Pending:
    return Pending(seq, f"id-{seq}", "door.opened", 0, priority, b"{}")


def test_recent_outbox_reads_the_store_again_beyond_its_capacity() -> None:
    outbox = RecentOutbox(capacity_bytes=3 * (EVENT_OVERHEAD_BYTES + 2))  # 3 events of b"{}"
    outbox.settle(outbox.arm(), 0)
    outbox.add([pending_item(1), pending_item(2), pending_item(3)])
    assert seqs(outbox.take(1) or []) == [1]
    outbox.add([pending_item(4)])
    assert seqs(outbox.take(1) or []) == [2]
    outbox.add([pending_item(5), pending_item(6)])  # 4 waiting: more than it keeps
    assert outbox.take(10) is None and not outbox.collecting


def test_recent_outbox_ignores_a_settle_from_before_it_forgot() -> None:
    """A resend committed during the read of the store: that read may have missed it, so the
    memory must not take over."""
    outbox = RecentOutbox()
    token = outbox.arm()
    outbox.add([pending_item(1)])
    outbox.forget()
    outbox.settle(token, 0)
    assert outbox.take(10) is None


def test_recent_outbox_drops_what_the_store_read_already_handed_out() -> None:
    outbox = RecentOutbox()
    token = outbox.arm()
    outbox.add([pending_item(7), pending_item(8)])  # committed during the read of the store
    outbox.settle(token, 7)  # ... which saw 7 too
    assert seqs(outbox.take(10) or []) == [8]
    outbox.add([pending_item(7)])  # the writer's hand-over may come after the read
    assert outbox.take(10) == []


def test_a_commit_reaching_memory_after_a_store_read_saw_it_is_not_taken_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer hands a commit to the outbox a moment after committing it; a rewind and a read
    of the store in that moment hand the event out, and the memory must not hand it out again."""
    journal = open_journal(tmp_path)
    assert journal.take(10) == []  # caught up: commits are collected
    committed, go = threading.Event(), threading.Event()
    add = RecentOutbox.add

    def late_add(self: RecentOutbox, items: Iterable[Pending]) -> None:
        committed.set()
        go.wait(5)
        add(self, items)

    monkeypatch.setattr(RecentOutbox, "add", late_add)
    seq = journal.record(Event("door.opened", door="front"))["seq"]
    writer = threading.Thread(target=journal.flush)
    writer.start()
    assert committed.wait(5)  # in the file, not yet in memory
    journal.rewind()  # a new connection
    assert seqs(journal.take(10)) == [seq]
    go.set()
    writer.join()
    assert journal.take(10) == []
    journal.close()


def test_the_report_of_a_drop_between_two_batches_keeps_the_outbox_in_seq_order(
        tmp_path: Path) -> None:
    """The disk was full (a portrait went to make room) while 10 events waited in memory; the
    disk is back and they are committed 4 at a time.  The first commit records the
    ``journal.dropped`` report, which flushed the rest of the tail at once (a batch's worth
    was waiting): those went to the outbox before the first 4, and the uplink published seq
    order backwards."""
    journal = open_journal(tmp_path, portraits="local")
    first = journal.record(Event("capture", door="front"), portrait=b"\xff\xd8jpeg\xff\xd9")
    assert journal.flush()
    assert seqs(journal.take(20)) == [first["seq"]]  # caught up: the uplink takes from memory
    waiting = [journal.record(Event("door.opened", door="front"))["seq"] for _ in range(10)]
    with mock.patch.object(journal, "_insert",
                           side_effect=sqlite3.OperationalError("database or disk is full")):
        assert journal.flush() is False  # the reserve goes
        assert journal.flush() is False  # then the portrait
    journal.batch_max = 4
    assert journal.flush()
    taken = journal.take(20)
    assert seqs(taken) == [*waiting, waiting[-1] + 1]
    assert taken[-1].type == "journal.dropped"
    journal.close()
