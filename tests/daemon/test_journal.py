"""The event journal on real SQLite files: identity, durability, order, retention, quota, erasure,
full disk, and SIGKILL at random moments."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest

from daemon.events import Event, Priority
from daemon.journal import MS_PER_DAY, Journal, JournalError

REPO = Path(__file__).resolve().parents[2]
EVENT_SCHEMA = json.loads((REPO / "docs" / "schemas" / "event.json").read_text())
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 2000 + b"\xff\xd9"
T0 = 1_780_000_000_000


def open_journal(tmp_path: Path, **kwargs: object) -> Journal:
    return Journal(tmp_path / "journal.db", gate="g1", **kwargs)  # type: ignore[arg-type]


def stored(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read with a separate connection: what another process (or a restart) would see."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_identity_is_uuid7_gapless_seq_gate_and_version(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    payloads = [journal.record(Event("door.opened", door="front", ts_ms=T0 + i)) for i in range(5)]
    journal.close()
    journal = open_journal(tmp_path)  # numbering continues across a restart
    payloads.append(journal.record(Event("access.granted", door="front", reader="r1",
                                         credential_kind="card", credential_ref="****5678",
                                         person="p1", ts_ms=T0 + 10)))
    journal.close()
    assert [p["seq"] for p in payloads] == [1, 2, 3, 4, 5, 6]
    ids = [p["id"] for p in payloads]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 6
    for payload in payloads:
        assert payload["gate"] == "g1" and payload["v"] == 1
        jsonschema.validate(payload, EVENT_SCHEMA)
    assert "reason" not in payloads[0]  # absent optional keys are omitted


def test_uuid7_stays_monotonic_across_a_restart_with_the_clock_set_back(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    before = journal.record(Event("door.opened", ts_ms=T0 + 60_000))["id"]
    journal.close()
    journal = open_journal(tmp_path)  # the RTC lost a minute while the board was off
    after = journal.record(Event("door.opened", ts_ms=T0))["id"]
    journal.close()
    assert after > before


def test_uuid7_stays_sorted_within_one_millisecond(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    ids = [journal.record(Event("door.opened", ts_ms=T0))["id"] for _ in range(300)]
    journal.close()
    assert ids == sorted(ids)


def test_journal_of_another_gate_is_refused(tmp_path: Path) -> None:
    open_journal(tmp_path).close()
    with pytest.raises(JournalError, match="journal of gate 'g1', not 'g2'"):
        Journal(tmp_path / "journal.db", gate="g2")


@pytest.mark.parametrize(
    ("policy", "event_type", "committed_at_once"),
    [
        ("alarms_and_access", "door.forced", True),
        ("alarms_and_access", "access.denied", True),
        ("alarms_and_access", "door.opened", False),
        ("alarms_and_access", "capture", False),
        ("batched", "access.granted", False),
        ("batched", "tamper", True),
        ("all", "door.closed", True),
    ],
)
def test_durability_policy(tmp_path: Path, policy: str, event_type: str,
                           committed_at_once: bool) -> None:
    journal = open_journal(tmp_path, fsync=policy)
    journal.record(Event(event_type))
    visible = stored(journal.path, "SELECT count(*) FROM events")[0][0]
    assert visible == (1 if committed_at_once else 0)
    assert journal.flush()
    assert stored(journal.path, "SELECT count(*) FROM events")[0][0] == 1
    journal.close()


def test_pending_puts_alarms_ahead_of_older_routine_events(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    for _ in range(5):
        journal.record(Event("door.opened"))
    journal.record(Event("access.granted", person="p1"))
    journal.record(Event("door.forced", door="front"))
    journal.flush()
    order = [(p.seq, p.type) for p in journal.pending(10)]
    assert order[0] == (7, "door.forced")
    assert [s for s, _ in order[1:]] == [1, 2, 3, 4, 5, 6]
    assert [p.seq for p in journal.pending(3, exclude={7, 1})] == [2, 3, 4]
    journal.close()


def test_mark_delivered_empties_the_queue(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    ids = [journal.record(Event("access.denied"))["id"] for _ in range(4)]
    assert journal.queue_depth() == 4
    assert journal.mark_delivered(ids[:3]) == 3
    assert [p.id for p in journal.pending(10)] == [ids[3]]
    assert journal.queue_depth() == 1
    journal.close()


@pytest.mark.parametrize(("policy", "kept"), [("off", False), ("local", True), ("upload", True)])
def test_portrait_policy(tmp_path: Path, policy: str, kept: bool) -> None:
    journal = open_journal(tmp_path, portraits=policy)
    event_id = journal.record(Event("capture", person="p1"), portrait=JPEG)["id"]
    journal.flush()
    files = list(journal.portrait_dir.iterdir())
    assert bool(files) == kept
    pending = journal.pending(1)[0]
    if kept:
        assert pending.portrait is not None and pending.portrait.read_bytes() == JPEG
        assert journal.portrait_file(event_id) == files[0]
    else:
        assert pending.portrait is None
    journal.close()


def test_portrait_on_a_full_disk_is_dropped_and_the_event_kept(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, portraits="local")
    with mock.patch("daemon.journal.write_private", autospec=True,
                    side_effect=OSError(errno.ENOSPC, "No space left on device")):
        journal.record(Event("capture"), portrait=JPEG)
    journal.flush()
    assert journal.stats.portraits_dropped == 1
    assert journal.queue_depth() == 1 and journal.pending(1)[0].portrait is None
    journal.close()


def test_full_database_never_raises_keeps_the_tail_and_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "daemon.journal")
    journal = open_journal(tmp_path)
    for _ in range(20):
        journal.record(Event("door.opened", data={"pad": "x" * 500}))
    journal.flush()
    pages = stored(journal.path, "PRAGMA page_count")[0][0]
    journal._db.execute(f"PRAGMA max_page_count={pages}")  # SQLite now answers SQLITE_FULL
    for _ in range(200):
        journal.record(Event("access.granted", data={"pad": "x" * 500}))  # must not raise
    assert journal.stats.write_failures > 0
    assert journal.queue_depth() == 220  # 20 stored + 200 in memory
    unavailable = [r.getMessage() for r in caplog.records if "journal: unavailable" in r.message]
    assert len(unavailable) == 1 and "disk full" in unavailable[0]
    journal._db.execute("PRAGMA max_page_count=1073741823")
    assert journal.flush()
    seqs = [r[0] for r in stored(journal.path, "SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, 221))
    assert any("journal: writes back" in r.message for r in caplog.records)
    journal.close()


def test_a_long_disk_failure_sheds_old_routine_events_never_alarms_and_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("daemon.journal.TAIL_MAX", 10)
    journal = open_journal(tmp_path, batch_max=1)
    journal.record(Event("door.opened"))
    pages = stored(journal.path, "PRAGMA page_count")[0][0]
    journal._db.execute(f"PRAGMA max_page_count={pages}")
    alarms = [journal.record(Event("tamper", data={"pad": "x" * 4000}))["id"] for _ in range(3)]
    for _ in range(20):
        journal.record(Event("door.opened", data={"pad": "x" * 4000}))
    assert journal.stats.tail_dropped >= 13
    journal._db.execute("PRAGMA max_page_count=1073741823")
    assert journal.flush()
    assert set(alarms) <= journal.all_ids()
    journal.flush()
    [dropped] = [json.loads(p.payload) for p in journal.pending(100)
                 if p.type == "journal.dropped"]
    assert dropped["reason"] == "disk_full"
    assert dropped["data"]["undelivered_events"] == journal.stats.tail_dropped
    journal.close()


async def test_privacy_upkeep_purges_at_start_up(tmp_path: Path) -> None:
    from daemon.audit import AuditLog
    from daemon.upkeep import AuditTrail, privacy_upkeep

    now = T0 + 40 * MS_PER_DAY
    journal = open_journal(tmp_path, clock=lambda: now)
    old = journal.record(Event("access.granted", ts_ms=T0))["id"]
    journal.mark_delivered([old])
    audit = AuditTrail(AuditLog(tmp_path / "audit.log"), tmp_path / "audit.cursor",
                       emit=journal.record, forwarding=lambda: True)
    task = asyncio.create_task(privacy_upkeep(journal, audit, lambda: 1095))
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if old not in journal.all_ids():
                break
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert old not in journal.all_ids()
    journal.close()


def test_purge_applies_retention_with_an_injected_clock(tmp_path: Path) -> None:
    now = T0 + 40 * MS_PER_DAY
    journal = open_journal(tmp_path, portraits="local", retention_days=30,
                           portrait_retention_days=7, clock=lambda: now)
    old_delivered = journal.record(Event("access.granted", ts_ms=T0))["id"]
    old_undelivered = journal.record(Event("door.opened", ts_ms=T0))["id"]
    old_portrait = journal.record(Event("capture", ts_ms=now - 8 * MS_PER_DAY), portrait=JPEG)
    fresh_portrait = journal.record(Event("capture", ts_ms=now - 1 * MS_PER_DAY), portrait=JPEG)
    journal.flush()
    journal.mark_delivered([old_delivered])
    journal.remember_nonce("a" * 32, now - 1)
    journal.remember_nonce("b" * 32, now + 60_000)

    counts = journal.purge()

    assert counts == {"portraits": 1, "delivered_events": 1, "undelivered_events": 0}
    ids = journal.all_ids()
    assert old_delivered not in ids and old_undelivered in ids
    assert journal.portrait_file(old_portrait["id"]) is None
    assert not (journal.portrait_dir / f"{old_portrait['id']}.jpg").exists()
    assert journal.portrait_file(fresh_portrait["id"]) is not None
    assert {r[0] for r in stored(journal.path, "SELECT nonce FROM nonces")} == {"b" * 32}
    journal.flush()
    dropped = [json.loads(p.payload) for p in journal.pending(50) if p.type == "journal.dropped"]
    assert dropped[0]["reason"] == "retention"
    assert dropped[0]["data"]["portraits"] == 1
    jsonschema.validate(dropped[0], EVENT_SCHEMA)
    journal.close()


def test_quota_evicts_portraits_then_delivered_then_never_unacknowledged_alarms(
    tmp_path: Path,
) -> None:
    journal = open_journal(tmp_path, portraits="local", quota_bytes=10**9)
    alarms = [journal.record(Event("door.forced", data={"pad": "a" * 800}))["id"]
              for _ in range(200)]
    routine = [journal.record(Event("door.opened", data={"pad": "r" * 800}))["id"]
               for _ in range(200)]
    portraits = [journal.record(Event("capture"), portrait=JPEG * 5)["id"] for _ in range(20)]
    journal.flush()
    journal.mark_delivered(routine[:100])
    full = journal.used_bytes()

    journal.quota_bytes = full - 150_000  # the portraits alone free about 200 kB
    counts = journal.enforce_quota()
    assert counts is not None
    assert counts["portraits"] > 0
    assert counts["delivered_events"] == counts["undelivered_events"] == 0
    assert set(alarms + routine) <= journal.all_ids()

    journal.quota_bytes = 1  # impossible: everything evictable goes, unacknowledged alarms stay
    counts = journal.enforce_quota()
    assert counts is not None and counts["delivered_events"] == 100
    assert counts["undelivered_events"] >= 100
    assert set(alarms) <= journal.all_ids()
    assert not set(routine) & journal.all_ids()
    assert not any(journal.portrait_file(i) for i in portraits)
    assert list(journal.portrait_dir.iterdir()) == []
    journal.flush()
    dropped = [json.loads(p.payload) for p in journal.pending(1000)
               if p.type == "journal.dropped"]
    assert len(dropped) == 2 and all(d["reason"] == "quota" for d in dropped)
    journal.close()


def test_pseudonymise_person_replaces_the_id_and_deletes_portraits(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, portraits="local")
    journal.record(Event("access.granted", person="p1", credential_kind="face"))
    capture = journal.record(Event("capture", person="p1"), portrait=JPEG)["id"]
    journal.record(Event("access.granted", person="p2"))
    journal.record(Event("door.opened", person="p1"))  # still in the batch tail
    changed = journal.pseudonymise_person("p1", "ps-1f2e")
    assert changed == 3
    persons = [r[0] for r in stored(journal.path, "SELECT person FROM events ORDER BY seq")]
    assert persons == ["ps-1f2e", "ps-1f2e", "p2", "ps-1f2e"]
    bodies = [json.loads(r[0]) for r in stored(journal.path, "SELECT body FROM events")]
    assert not any(b.get("person") == "p1" for b in bodies)
    assert journal.portrait_file(capture) is None and list(journal.portrait_dir.iterdir()) == []
    journal.close()


def test_nonces_survive_a_restart(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    assert journal.remember_nonce("c" * 32, T0)
    assert not journal.remember_nonce("c" * 32, T0)
    journal.close()
    journal = open_journal(tmp_path)
    assert not journal.remember_nonce("c" * 32, T0)
    journal.close()


def test_event_priorities_follow_the_contract(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    for event_type in ("capture", "door.opened", "access.granted", "tamper"):
        journal.record(Event(event_type))
    journal.flush()
    priorities = dict(stored(journal.path, "SELECT type, priority FROM events"))
    assert priorities == {"capture": Priority.CAPTURE, "door.opened": Priority.ROUTINE,
                          "access.granted": Priority.ACCESS, "tamper": Priority.ALARM}
    journal.close()


WRITER = """
import sys
from pathlib import Path
from daemon.events import Event
from daemon.journal import Journal

journal = Journal(Path(sys.argv[1]), gate="g1", portraits="local", batch_max=64)
kinds = ["access.granted", "door.opened", "capture", "door.forced", "door.closed"]
i = 0
while True:
    kind = kinds[i % len(kinds)]
    payload = journal.record(Event(kind, data={"i": i}),
                             portrait=b"\\xff\\xd8" + bytes(3000) if kind == "capture" else None)
    if kind in ("door.opened", "capture", "door.closed"):
        journal.flush()  # batched events count as recorded once flushed
    sys.stdout.write(payload["id"] + "\\n")
    sys.stdout.flush()
    i += 1
"""


@pytest.mark.timeout(60)
def test_sigkill_at_random_moments_loses_no_recorded_event(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    rng = random.Random(6)
    recorded: set[str] = set()
    for _ in range(10):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        for _ in range(rng.randint(20, 400)):
            recorded.add(child.stdout.readline().strip())
        child.send_signal(signal.SIGKILL)
        child.wait()
        recorded.update(line.strip() for line in child.stdout if line.strip())
        child.stdout.close()

        assert stored(path, "PRAGMA integrity_check") == [("ok",)]
        journal = Journal(path, gate="g1", portraits="local")  # reopening recovers the WAL
        try:
            ids = journal.all_ids()
            assert recorded <= ids
            seqs = [r[0] for r in journal._db.execute("SELECT seq FROM events ORDER BY seq")]
            assert seqs == list(range(1, len(seqs) + 1))  # gapless across kills
            files = {f.stem for f in journal.portrait_dir.iterdir()}
            linked = {r[0] for r in journal._db.execute("SELECT id FROM portraits")}
            assert files == linked  # no orphan file, no dangling link
        finally:
            journal.close()
    assert len(recorded) > 100


async def test_writer_thread_group_commits_and_tells_listeners_on_the_loop(tmp_path: Path) -> None:
    """With the writer thread, record() never commits on the loop: a burst of decisions goes to
    disk in fewer transactions than events, all of them durable after close()."""
    journal = Journal(tmp_path / "journal.db", gate="g1")
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    threads: list[str] = []

    def listener() -> None:
        threads.append(threading.current_thread().name)
        woken.set()

    journal.add_listener(listener)
    journal.start_writer(loop)
    ids = [journal.record(Event("access.granted", door="front"))["id"] for _ in range(200)]
    await asyncio.wait_for(woken.wait(), 10)
    # A broker acknowledgement is committed by the writer too; pending() never offers it again.
    journal.mark_delivered(ids[:50])
    assert not {p.id for p in journal.pending(500)} & set(ids[:50])
    journal.close()
    assert 1 <= journal.group_commits < 200
    assert set(threads) == {threading.current_thread().name}  # called on the loop's thread
    reopened = Journal(tmp_path / "journal.db", gate="g1")
    try:
        assert reopened.all_ids() == set(ids)
        assert {p.id for p in reopened.pending(500)} == set(ids[50:])
    finally:
        reopened.close()


async def _committed(journal: Journal, ids: set[str], *, within_s: float = 10.0) -> None:
    """Wait until every id in ``ids`` is readable from the journal's file (committed)."""
    async with asyncio.timeout(within_s):
        while not ids <= {p.id for p in journal.pending(10_000)}:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("event_type", ["access.granted", "door.forced"])
async def test_writer_commits_a_decision_or_alarm_at_once_behind_waiting_routine_events(
        tmp_path: Path, event_type: str) -> None:
    """Routine events wait for company (here an hour); a decision or an alarm recorded behind
    them wakes the writer, which commits all of them then, not an hour later."""
    journal = Journal(tmp_path / "journal.db", gate="g1", batch_seconds=3600)
    journal.start_writer(asyncio.get_running_loop())
    try:
        routine = {journal.record(Event("door.opened", door="front"))["id"] for _ in range(5)}
        await asyncio.sleep(0.05)  # the writer is now waiting for company
        urgent = journal.record(Event(event_type, door="front"))["id"]
        await _committed(journal, routine | {urgent})
    finally:
        journal.close()


async def test_writer_commits_a_full_batch_without_waiting_for_the_timer(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", gate="g1", batch_seconds=3600, batch_max=20)
    journal.start_writer(asyncio.get_running_loop())
    try:
        ids = {journal.record(Event("door.opened", door="front"))["id"] for _ in range(20)}
        await _committed(journal, ids)
    finally:
        journal.close()


async def test_writer_wakes_from_idle_for_a_routine_event_and_an_acknowledgement(
        tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db", gate="g1", batch_seconds=0.05)
    journal.start_writer(asyncio.get_running_loop())
    try:
        first = journal.record(Event("door.opened", door="front"))["id"]
        await _committed(journal, {first})
        await asyncio.sleep(0.1)  # idle again: nothing to commit
        journal.mark_delivered([first])
        async with asyncio.timeout(10):
            while stored(tmp_path / "journal.db",  # noqa: ASYNC110
                         "SELECT delivered FROM events") != [(1,)]:
                await asyncio.sleep(0.01)
        second = journal.record(Event("door.closed", door="front"))["id"]
        await _committed(journal, {second})
    finally:
        journal.close()


async def test_a_resend_while_the_writer_commits_an_acknowledgement_is_not_undone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The station asks for an event again (``resend``) just as the writer thread has taken the
    event's PUBACK to commit it: the event must be published again, not marked delivered."""
    journal = Journal(tmp_path / "journal.db", gate="g1")
    event = journal.record(Event("access.granted", door="front"))
    journal.flush()
    journal.start_writer(asyncio.get_running_loop())
    marking, go = threading.Event(), threading.Event()
    mark = Journal._mark_committed

    def slow_mark(self: Journal, ids: list[str]) -> int:
        if threading.current_thread().name == "journal-writer":
            marking.set()
            go.wait(5)
        return mark(self, ids)

    monkeypatch.setattr(Journal, "_mark_committed", slow_mark)
    try:
        journal.mark_delivered([event["id"]])
        assert await asyncio.to_thread(marking.wait, 5)  # the writer holds the acknowledgement
        resend = asyncio.ensure_future(
            asyncio.to_thread(journal.redeliver, event["seq"], event["seq"], limit=10))
        await asyncio.sleep(0.2)
        go.set()
        assert (await resend)[0] == [event["seq"]]
        await asyncio.sleep(0.2)  # the writer's commit is done
        assert [item.seq for item in journal.pending(10)] == [event["seq"]]
    finally:
        go.set()
        journal.close()


async def test_a_burst_of_routine_events_goes_to_disk_in_a_few_group_commits(
        tmp_path: Path) -> None:
    """Counted, not timed: with the batch timer longer than the test, 500 routine events
    recorded back to back are committed when a batch of 100 is full (and the rest with the
    decision that follows them), not one commit per event."""
    journal = Journal(tmp_path / "journal.db", gate="g1", batch_seconds=3600, batch_max=100)
    journal.start_writer(asyncio.get_running_loop())
    try:
        ids = {journal.record(Event("door.opened", door="front"))["id"] for _ in range(500)}
        ids.add(journal.record(Event("access.granted", door="front"))["id"])
        await _committed(journal, ids)
        assert journal.group_commits <= 500 // 100 + 2
    finally:
        journal.close()


def test_numbering_continues_after_a_seq_floor_known_from_elsewhere(tmp_path: Path) -> None:
    """A new journal after a recovery: seq 1 again would be dropped by the station as a
    duplicate of the lost journal's seq 1 (it dedups by gate and seq)."""
    journal = open_journal(tmp_path, seq_floor=29)
    assert journal.seq_at_open == 0
    assert journal.record(Event("door.opened", door="front", ts_ms=T0))["seq"] == 30
    journal.close()
    journal = open_journal(tmp_path)  # the floor was stored: no floor needed on reopening
    assert journal.seq_at_open == 30
    assert journal.record(Event("door.opened", door="front", ts_ms=T0 + 1))["seq"] == 31
    journal.close()
    journal = open_journal(tmp_path, seq_floor=5)  # a lower floor changes nothing
    assert journal.record(Event("door.opened", door="front", ts_ms=T0 + 2))["seq"] == 32
    journal.close()


def test_a_disk_failure_while_rows_go_one_by_one_puts_back_only_the_rest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A batch holding a row no retry can write is written one row at a time; when the disk
    then fails part way, the rows already written are committed once and go to the uplink at
    once, and only the failed row and those after it wait for the retry.  (Before, the whole
    batch went back as well: the written rows were reported as "cannot be stored" on the retry
    and, caught up, the uplink took them only after a reconnect.)"""
    journal = open_journal(tmp_path)
    assert journal.take(10) == []  # caught up: the uplink takes from memory
    seqs = [journal.record(Event("door.opened", door="front"))["seq"] for _ in range(5)]
    unwritable, disk_fails = seqs[1], seqs[3]
    insert = journal._insert
    disk = {"failed": False}

    def failing_insert(rows: list[Any], acks: Any = ()) -> None:
        if any(row.seq == unwritable for row in rows):
            raise sqlite3.IntegrityError("a row no retry can write")
        if rows[0].seq == disk_fails and not disk["failed"]:
            disk["failed"] = True
            raise sqlite3.OperationalError("database or disk is full")
        insert(rows, acks)

    with mock.patch.object(journal, "_insert", failing_insert):
        assert journal.flush() is False
        assert [p.seq for p in journal.take(10)] == [seqs[0], seqs[2]]
        assert journal.flush() is True  # the disk is back
    assert [p.seq for p in journal.take(10)] == seqs[3:]
    journal.close()
    assert stored(journal.path, "SELECT seq FROM events ORDER BY seq") == [
        (s,) for s in (seqs[0], *seqs[2:])]
    assert journal.stats.rejected == 1
    assert [r.message for r in caplog.records if "cannot be stored" in r.message] == [
        f"journal: event seq {unwritable} (door.opened) cannot be stored and is left out: "
        "IntegrityError: a row no retry can write"]


def _statements(journal: Journal) -> list[str]:
    """Every SQL statement the journal's write connection runs from now on."""
    seen: list[str] = []
    journal._db.set_trace_callback(seen.append)
    return seen


def test_a_batch_goes_to_sqlite_in_a_few_statements_not_one_per_row(tmp_path: Path) -> None:
    """sqlite3 gives up the GIL around every statement step; with one step per row, a busy
    event loop made the writer wait a switch interval per row.  300 rows now go in multi-row
    INSERTs of 128, 16 and 1 rows (2 + 2 + 12 statements), every value intact."""
    journal = open_journal(tmp_path, batch_max=1000)
    people = ["p1", "张伟", "p\x00q", None]
    payloads = [journal.record(Event("door.opened", door="front", person=people[i % 4],
                                     data={"i": i})) for i in range(300)]
    seen = _statements(journal)
    assert journal.flush()
    inserts = [sql for sql in seen if sql.startswith("INSERT INTO events")]
    assert len(inserts) == 2 + 2 + 12
    assert [sql for sql in seen if sql == "COMMIT"] == ["COMMIT"]
    journal.close()
    rows = stored(journal.path, "SELECT seq, id, ts_ms, type, priority, person, body FROM events "
                                "ORDER BY seq")
    assert rows == [(p["seq"], p["id"], p["ts_ms"], "door.opened", int(Priority.ROUTINE),
                     people[i % 4], json.dumps(p, separators=(",", ":"), ensure_ascii=False))
                    for i, p in enumerate(payloads)]


def test_a_burst_longer_than_a_batch_is_committed_and_handed_over_a_batch_at_a_time(
        tmp_path: Path) -> None:
    """10 events waiting with batches of 4: three transactions (4, 4, 2), and the uplink hears
    of each as it commits, so it publishes the first while the rest is written."""
    journal = open_journal(tmp_path, batch_max=100)
    handed: list[int] = []
    journal.add_listener(lambda: handed.append(len(journal.all_ids())))
    ids = [journal.record(Event("door.opened", door="front"))["id"] for _ in range(10)]
    journal.batch_max = 4
    seen = _statements(journal)
    assert journal.flush()
    assert seen.count("COMMIT") == 3
    assert handed == [4, 8, 10]
    assert [p.id for p in journal.pending(20)] == ids
    journal.close()


def test_acknowledgements_naming_a_later_batch_are_marked_with_it(tmp_path: Path) -> None:
    """Acknowledgements go in the transaction that holds the last event they can name: here
    the second of three batches' worth of rows is acknowledged before any is committed."""
    journal = open_journal(tmp_path, batch_max=100)
    ids = [journal.record(Event("door.opened", door="front"))["id"] for _ in range(10)]
    journal.batch_max = 4
    seen = _statements(journal)
    with journal._db_lock:
        assert journal._flush(False, ids[4:8])
    assert seen.count("COMMIT") == 3
    assert {p.id for p in journal.pending(20)} == set(ids[:4] + ids[8:])
    journal.close()


async def test_the_writer_marks_waiting_acknowledgements_in_the_commit_of_new_events(
        tmp_path: Path) -> None:
    """While the uplink takes from memory, acknowledgements wait for company; the next commit
    of events carries them: one transaction, not two."""
    journal = Journal(tmp_path / "journal.db", gate="g1", batch_seconds=3600)
    journal.start_writer(asyncio.get_running_loop())
    try:
        assert journal.take(10) == []  # caught up: from now on the uplink takes from memory
        first = journal.record(Event("access.granted", door="front"))["id"]
        await _committed(journal, {first})
        assert [p.id for p in journal.take(10)] == [first]
        seen = _statements(journal)
        journal.mark_delivered([first])  # waits: the timer is an hour
        await asyncio.sleep(0.05)
        assert "COMMIT" not in seen
        second = journal.record(Event("access.granted", door="front"))["id"]
        async with asyncio.timeout(10):
            while stored(journal.path,  # noqa: ASYNC110 (another connection)
                         "SELECT id, delivered FROM events ORDER BY seq") != [(first, 1),
                                                                              (second, 0)]:
                await asyncio.sleep(0.01)
        assert seen.count("COMMIT") == 1
    finally:
        journal.close()


def test_more_acknowledgements_than_sqlite_takes_parameters_do_not_wedge_the_writes(
        tmp_path: Path) -> None:
    """SQLite before 3.32 takes at most 999 parameters a statement.  1000 acknowledgements
    queued (a burst acknowledged while the writer was busy, or while the disk was full) went
    into ``id IN (?, ?, ...)`` in the transaction of the new events: "too many SQL variables",
    the events went back to the tail, the acknowledgements back to the queue, and every retry
    failed the same way, for good."""
    journal = open_journal(tmp_path, batch_max=2000)
    journal._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # an old SQLite
    delivered = [journal.record(Event("door.opened", door="front"))["id"] for _ in range(1000)]
    assert journal.flush()
    new = journal.record(Event("door.opened", door="front"))["id"]
    with journal._db_lock:
        assert journal._flush(False, delivered)
    assert [p.id for p in journal.pending(2000)] == [new]
    journal.close()
    assert stored(journal.path, "SELECT count(*) FROM events WHERE delivered = 1") == [(1000,)]


async def test_an_acknowledgement_whose_commit_fails_is_kept_queued_with_no_event_waiting(
        tmp_path: Path) -> None:
    """With nothing new to commit, queued acknowledgements are marked in a transaction of
    their own.  When that one failed (a full disk) they were dropped all the same: the
    delivered event was offered to the uplink again.  They stay queued for the retry, as they
    do when the commit of new events fails."""
    journal = Journal(tmp_path / "journal.db", gate="g1")
    event = journal.record(Event("access.granted", door="front"))
    mark_rows = journal._mark_rows
    failed = threading.Event()

    def full_once(ids: Any) -> int:
        if not failed.is_set():
            failed.set()
            raise sqlite3.OperationalError("database or disk is full")
        return mark_rows(ids)

    journal.start_writer(asyncio.get_running_loop())
    try:
        with mock.patch.object(journal, "_mark_rows", full_once):
            journal.mark_delivered([event["id"]])
            assert await asyncio.to_thread(failed.wait, 5)
            assert journal.pending(10) == []  # delivered: never offered again
            async with asyncio.timeout(10):  # the retry marks it
                while stored(journal.path,  # noqa: ASYNC110 (another connection)
                             "SELECT delivered FROM events") != [(1,)]:
                    await asyncio.sleep(0.01)
    finally:
        journal.close()


class _FailingCheckpoint:
    """A write connection whose WAL checkpoints fail (an I/O error of the card)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("PRAGMA wal_checkpoint"):
            raise sqlite3.OperationalError("disk I/O error")
        return self._db.execute(sql, *args)


def test_a_failed_checkpoint_after_an_erasure_is_delivered_does_not_undo_the_commit(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The acknowledgement of a ``person.forgotten`` event is marked with the commit of new
    events and the ``-wal`` is then truncated.  When the checkpoint failed (an I/O error of
    the card), the committed events went back to the tail as if never written: on the retry
    they were rejected as rows that "cannot be stored" (their seq already was), and the
    uplink, caught up, never heard of them."""
    journal = open_journal(tmp_path)
    forgotten = journal.record(Event("person.forgotten", person="anon-1",
                                     data={"erase": "p1", "pseudonym": "anon-1"}))["id"]
    assert journal.flush()
    assert [p.id for p in journal.take(10)] == [forgotten]  # caught up: taken from memory now
    new = journal.record(Event("door.opened", door="front"))["id"]
    with mock.patch.object(journal, "_db", _FailingCheckpoint(journal._db)), journal._db_lock:
        journal._flush(False, [forgotten])
    assert journal.flush()
    assert [p.id for p in journal.take(10)] == [new]
    assert journal.stats.rejected == 0
    assert not [r for r in caplog.records if "cannot be stored" in r.message]
    journal.close()
    assert stored(journal.path, "SELECT id, delivered FROM events ORDER BY seq") == [
        (forgotten, 1), (new, 0)]


class _WatchedLock:
    """The journal's write lock, telling when the writer thread starts waiting for it."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.writer_waits = threading.Event()

    def __enter__(self) -> Any:
        if threading.current_thread().name == "journal-writer":
            self.writer_waits.set()
        return self.lock.__enter__()

    def __exit__(self, *exc: object) -> Any:
        return self.lock.__exit__(*exc)


async def test_a_decision_recorded_while_the_writer_waits_for_the_lock_is_fsynced(
        tmp_path: Path) -> None:
    """The writer decided whether its commit is durable, then waited for the write connection
    (a purge, a resend, an erasure held it).  An access decision recorded meanwhile was in
    that commit, made with synchronous=NORMAL (no fsync), and its wake-up was used up: nothing
    fsynced it until the next event, however long that took."""
    journal = Journal(tmp_path / "journal.db", gate="g1", batch_max=1)
    lock = journal._db_lock = _WatchedLock(journal._db_lock)  # type: ignore[assignment]
    modes: list[str] = []
    journal._db.set_trace_callback(
        lambda sql: modes.append(journal._synchronous) if sql == "COMMIT" else None)
    journal.start_writer(asyncio.get_running_loop())
    try:
        with lock:  # an upkeep thread holds the write connection
            journal.record(Event("door.opened", door="front"))
            assert await asyncio.to_thread(lock.writer_waits.wait, 5)
            decision = journal.record(Event("access.granted", door="front"))["id"]
        async with asyncio.timeout(10):
            while stored(journal.path,  # noqa: ASYNC110 (another connection)
                         f"SELECT count(*) FROM events WHERE id = '{decision}'") != [(1,)]:
                await asyncio.sleep(0.01)
        assert modes[-1] == "FULL"  # the commit that holds the decision
    finally:
        journal.close()


@pytest.mark.parametrize("bad", [
    {"ts_ms": 2**63},  # beyond SQLite's 64-bit integers: OverflowError while binding
    {"ts_ms": -(2**63) - 1},
])
async def test_a_row_sqlite_cannot_take_is_left_out_and_the_writer_goes_on(
        tmp_path: Path, bad: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """Any error of a row that is not the disk's leaves that row out, logged and counted: the
    events around it are stored, and the writer thread lives on (it died, taking its batch)."""
    journal = Journal(tmp_path / "journal.db", gate="g1", batch_seconds=0.01)
    journal.start_writer(asyncio.get_running_loop())
    try:
        before = journal.record(Event("door.opened", door="front"))["id"]
        broken = journal.record(Event("door.opened", door="front", **bad))
        after = journal.record(Event("door.closed", door="front"))["id"]
        await _committed(journal, {before, after})
        later = journal.record(Event("access.granted", door="front"))["id"]
        await _committed(journal, {later})
        assert journal.stats.rejected == 1
        assert broken["id"] not in journal.all_ids()
    finally:
        journal.close()
    assert [r.message for r in caplog.records if "cannot be stored" in r.message] == [
        f"journal: event seq {broken['seq']} (door.opened) cannot be stored and is left out: "
        "OverflowError: Python int too large to convert to SQLite INTEGER"]


def test_an_unreadable_erasure_event_does_not_stop_its_acknowledgement(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Marking a delivered ``person.forgotten`` event rewrites its body without the erased id;
    a body that cannot be read (damaged on the card) is logged and left, and the
    acknowledgement, and the new events committed with it, still go in."""
    journal = open_journal(tmp_path)
    forgotten = journal.record(Event("person.forgotten", person="anon-1",
                                     data={"erase": "p1", "pseudonym": "anon-1"}))
    assert journal.flush()
    journal._db.execute("UPDATE events SET body = '{damaged' WHERE seq = ?", (forgotten["seq"],))
    new = journal.record(Event("door.opened", door="front"))["id"]
    with journal._db_lock:
        assert journal._flush(False, [forgotten["id"]])
    journal.close()
    assert stored(journal.path, "SELECT id, delivered FROM events ORDER BY seq") == [
        (forgotten["id"], 1), (new, 0)]
    assert [r.message for r in caplog.records if "unreadable" in r.message] == [
        f"journal: event seq {forgotten['seq']} (person.forgotten) is unreadable; its erased "
        "id stays: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"]
