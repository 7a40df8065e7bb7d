"""The station store on SQLite (always) and PostgreSQL (when one is reachable)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text

from station.messages import EventRow, MessageError, parse_event
from station.store import ERASURE_INDEX, Store, missing_ranges

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32 + b"\xff\xd9"


def _postgres_schema() -> Iterator[tuple[str, str | None]]:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            schema = f"menjin_test_{uuid.uuid4().hex[:12]}"
            conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any connection failure means: no PostgreSQL here
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}")
    try:
        yield POSTGRES_URL, schema
    finally:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'station.db'}", None
        s = Store(url, portraits_dir=tmp_path / "portraits")
        yield s
        s.close()
        return
    for url, schema in _postgres_schema():
        s = Store(url, portraits_dir=tmp_path / "portraits", schema=schema)
        try:
            yield s
        finally:
            s.close()


def row(gate: str, seq: int, **fields: object) -> EventRow:
    values: dict[str, object] = {
        "id": str(uuid.uuid4()), "gate": gate, "seq": seq, "ts_ms": 1_790_000_000_000 + seq,
        "type": "access.granted", "door": "front", "reader": None, "credential_kind": "card",
        "credential_ref": f"c{seq}", "person": "p1", "reason": None, "data": {"n": seq},
    }
    values.update(fields)
    return EventRow(**values)  # type: ignore[arg-type]


def test_events_are_stored_once_per_id(store: Store) -> None:
    rows = [row("g1", seq) for seq in range(1, 101)]
    assert len(store.add_events(rows[:60])) == 60
    new = store.add_events(rows[40:] + rows[:5])  # overlap and re-sent events in one batch
    assert [r.seq for r in new] == list(range(61, 101))
    assert store.count_events() == 100
    assert sorted(store.event_ids("g1")) == sorted(r.id for r in rows)


def test_gaps_are_missing_ranges_and_close_when_filled(store: Store) -> None:
    rows = {seq: row("g1", seq) for seq in range(1, 31)}
    store.add_events([rows[s] for s in rows if not (5 <= s <= 9 or s == 20)])
    store.add_events([row("g2", 3)])
    assert store.gaps("g1") == [(5, 9), (20, 20)]
    assert store.gaps("g2") == [(1, 2)]
    store.add_events([rows[s] for s in range(5, 10)])
    assert store.gaps("g1") == [(20, 20)]
    assert store.gates()[0].contiguous_seq == 19
    store.add_events([rows[20]])
    assert store.gaps("g1") == []


def test_unsettled_events_do_not_count_for_gaps(store: Store) -> None:
    store.add_events([row("g1", 1), row("g1", 5)])
    assert store.gaps("g1", settled_before_ms=0) == []
    assert store.gaps("g1") == [(2, 4)]


@given(st.sets(st.integers(1, 60)), st.integers(0, 10))
def test_missing_ranges_matches_a_brute_force_count(present: set[int], start: int) -> None:
    seqs = sorted(s for s in present if s > start)
    ranges, contiguous = missing_ranges(start, seqs)
    top = max(seqs, default=start)
    expected_missing = {s for s in range(start + 1, top + 1) if s not in present}
    assert {s for lo, hi in ranges for s in range(lo, hi + 1)} == expected_missing
    assert all(lo <= hi for lo, hi in ranges)
    assert contiguous == min(expected_missing, default=top + 1) - 1


def test_portraits_are_files_with_rows_and_stored_once(store: Store) -> None:
    event = row("g1", 1, type="capture")
    store.add_events([event])
    assert store.add_portrait(event_id=event.id, gate="g1", ts_ms=event.ts_ms, jpeg=JPEG)
    assert not store.add_portrait(event_id=event.id, gate="g1", ts_ms=event.ts_ms, jpeg=JPEG)
    path = store.portrait_file(event.id)
    assert path is not None and path.read_bytes() == JPEG
    assert path.relative_to(store.portraits_dir).parts[0] == "g1"
    assert store.recent_events()[0]["portrait"] is True
    with pytest.raises(ValueError, match="unsafe portrait name"):
        store.add_portrait(event_id="../x", gate="g1", ts_ms=0, jpeg=JPEG)


def test_recent_events_filters(store: Store) -> None:
    store.add_events([
        row("g1", 1, door="front", person="p1", ts_ms=1000),
        row("g1", 2, door="side", person="p2", ts_ms=2000),
        row("g2", 1, door="front", person="p1", ts_ms=3000, type="door.forced"),
    ])
    table = [
        ({}, [("g2", 1), ("g1", 2), ("g1", 1)]),
        ({"gate": "g1"}, [("g1", 2), ("g1", 1)]),
        ({"door": "front"}, [("g2", 1), ("g1", 1)]),
        ({"person": "p2"}, [("g1", 2)]),
        ({"since_ms": 1500, "until_ms": 2500}, [("g1", 2)]),
        ({"alarms_only": True}, [("g2", 1)]),
        ({"limit": 1}, [("g2", 1)]),
    ]
    for filters, expected in table:
        got = [(e["gate"], e["seq"]) for e in store.recent_events(**filters)]  # type: ignore[arg-type]
        assert got == expected, filters
    assert store.recent_events(gate="g2")[0]["alarm"] is True


def test_status_and_health_track_each_gate(store: Store) -> None:
    online = {"gate": "g1", "state": "online", "version": "0.1.0"}
    assert store.set_status("g1", online) == "unknown"
    assert store.set_status("g1", {"gate": "g1", "state": "offline"}) == "online"
    store.set_health("g1", {"gate": "g1", "queue_depth": 42})
    (view,) = store.gates()
    assert (view.state, view.backlog, view.status["state"]) == ("offline", 42, "offline")


def test_forget_person_pseudonymises_events_and_deletes_portraits(store: Store) -> None:
    mine, other = row("g1", 1, person="p-0101"), row("g1", 2, person="p-0202")
    store.add_events([mine, other])
    store.add_portrait(event_id=mine.id, gate="g1", ts_ms=mine.ts_ms, jpeg=JPEG)
    path = store.portrait_file(mine.id)
    assert store.forget_person("g1", "p-0101", "anon-1") == 1
    assert path is not None and not path.exists()
    assert store.portrait_file(mine.id) is None
    people = {(e["person"], e["credential_ref"]) for e in store.recent_events()}
    assert people == {("anon-1", None), ("p-0202", "c2")}


def test_face_person_count_follows_enrol_and_remove_results(store: Store) -> None:
    def command(gate: str, name: str, person: str) -> str:
        command_id = str(uuid.uuid4())
        store.record_command({"id": command_id, "gate": gate, "name": name,
                              "issued_at_ms": 1, "args": {"person": person}})
        return command_id

    for gate in ("g1", "g2"):
        store.record_result(gate, {"id": command(gate, "enrol", "p1"), "name": "enrol", "ok": True})
    store.record_result("g1", {"id": command("g1", "enrol", "p2"), "name": "enrol", "ok": False})
    store.record_result("g1", {"id": command("g1", "enrol", "p3"), "name": "enrol", "ok": True})
    assert store.face_person_count() == 2
    store.record_result("g1", {"id": command("g1", "remove", "p3"), "name": "remove", "ok": True})
    assert store.face_person_count() == 1


def test_sync_state_round_trips(store: Store) -> None:
    assert store.sync_state("g1") is None
    store.set_sync_state("g1", 7, {"p1": {"person": "p1"}})
    store.set_sync_state("g1", 8, {"p2": {"person": "p2"}})
    assert store.sync_state("g1") == (8, {"p2": {"person": "p2"}})


NOW_MS = 1_790_000_000_000
SEQ_RANGE = "'seq' must be an integer from 1 to 9007199254740992"
TS_RANGE = f"'ts_ms' must be an integer from 1577836800000 to {NOW_MS + 86_400_000}"
OK = b'"v": 1, "id": "a", "gate": "g1", "seq": 1'


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"[]", "not a JSON object"),
        (b'{"v": 2, "gate": "g1", "seq": 1}', "unsupported schema version 2"),
        (b'{"v": 1, "id": "../etc", "gate": "g1", "seq": 1}',
         "'id' must be a UUID-like identifier"),
        (b'{"v": 1, "id": "a", "gate": "g2"}', "event names gate 'g2' on the topic of gate 'g1'"),
        (b'{"v": 1, "id": "a", "gate": "g1", "seq": 0, "ts_ms": 1, "type": "x"}', SEQ_RANGE),
        (b'{"v": 1, "id": "a", "gate": "g1", "seq": true, "ts_ms": 1, "type": "x"}', SEQ_RANGE),
        (b'{"v": 1, "id": "a", "gate": "g1", "seq": 9007199254740993}', SEQ_RANGE),
        (b'{' + OK + b', "ts_ms": 1790000000000}', "'type' is missing"),
        (b'{' + OK + b', "ts_ms": 1790000000000, "type": "x", "data": 3}',
         "'data' must be a JSON object"),
        (b'{' + OK + b', "ts_ms": 1790000000000, "type": "x", "door": 5}',
         "'door' must be a string of at most 256 characters"),
        (b'{' + OK + b', "ts_ms": 1790000000000, "type": "x\\u0000"}',
         "'type' must be a string of at most 256 characters"),
        (b'{' + OK + b', "ts_ms": 1, "type": "x"}', TS_RANGE),  # a clock never set
        (b'{' + OK + b', "ts_ms": 1790086400001, "type": "x"}', TS_RANGE),  # a day ahead
        (b'{' + OK + b', "ts_ms": 1.79e12, "type": "x"}', TS_RANGE),
        (b'{"v": 1, "id": "a", "gate": "g1", "seq": 1, "ts_ms": 1, "type": "\\udfff"}',
         "string holds a lone UTF-16 surrogate escape"),
        (b'{"v": 1, "data": ' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper than 32 levels"),
        (b'{"v": 1, "seq": 1' + b"0" * 30 + b"}", "number with more than 20 digits"),
        (b'{"v": 1, "seq": ' + b"9" * 4301 + b"}", "number with more than 20 digits"),
        (b'{"v": 1, "ts_ms": Infinity}', "not JSON: unexpected word b'Infinity'"),
        (b'{"v": 1, "ts_ms": 1e999}', "number is not finite"),
        (b'{"v": 1, "v": 1}', "duplicate key 'v'"),
        (b'{"v": 1, "type": "\xc3"}', "not valid UTF-8 at byte 18"),
    ],
)
def test_parse_event_rejects_what_breaks_the_contract(payload: bytes, message: str) -> None:
    with pytest.raises(MessageError) as caught:
        parse_event(payload, "g1", now_ms=NOW_MS)
    assert str(caught.value) == message


@given(st.binary(max_size=200))
def test_parse_event_never_fails_otherwise(payload: bytes) -> None:
    with contextlib.suppress(MessageError):
        parse_event(payload, "g1", now_ms=NOW_MS)


def test_read_only_gap_lookups_leave_the_checkpoint_alone(store: Store) -> None:
    store.add_events([row("g1", seq) for seq in (1, 2, 3, 5)])
    assert store.gaps("g1", remember=False) == [(4, 4)]
    assert store.gates()[0].contiguous_seq == 0
    assert store.gaps("g1") == [(4, 4)]
    assert store.gates()[0].contiguous_seq == 3


def test_the_id_pseudonym_pair_goes_once_every_gate_has_erased(store: Store) -> None:
    """The station needs the id until each gate has erased it, not one moment longer."""
    store.add_events([row("g1", 1, person="p-0101"), row("g2", 1, person="p-0101")])
    store.record_command({"id": str(uuid.uuid4()), "gate": "g1", "name": "forget",
                          "issued_at_ms": 1, "args": {"person": "p-0101"}})

    def notice(gate: str, alias: str) -> EventRow:
        return row(gate, 2, type="person.forgotten", person=alias, credential_ref=None,
                   data={"erase": "p-0101", "pseudonym": alias})

    store.add_events([notice("g1", "anon-1")])
    store.forget_person("g1", "p-0101", "anon-1")
    assert "p-0101" in json.dumps(store.recent_events())  # g2 has not erased yet
    store.add_events([notice("g2", "anon-2")])
    store.forget_person("g2", "p-0101", "anon-2")
    assert "p-0101" not in json.dumps(store.recent_events())
    with store.engine.connect() as conn:
        dump = json.dumps([list(map(str, r)) for t in ("events", "commands")
                           for r in conn.execute(store.t[t].select())])
    assert "p-0101" not in dump and "anon-1" in dump and "anon-2" in dump


def test_only_notices_naming_the_person_as_text_confirm_an_erasure(store: Store) -> None:
    """The notices are chosen in the database (the JSON field): a notice for someone else, one
    naming the id as a number, and one without ``erase`` confirm nothing; the one naming the
    person does."""
    store.add_events([row("g1", 1, person="5"), row("g2", 1, person="5")])

    def notice(gate: str, seq: int, data: dict[str, object]) -> EventRow:
        return row(gate, seq, type="person.forgotten", person="anon-x", credential_ref=None,
                   data=data)

    store.add_events([notice("g2", 2, {"erase": 5, "pseudonym": "anon-x"}),
                      notice("g2", 3, {"erase": "p-other", "pseudonym": "anon-x"}),
                      notice("g2", 4, {"pseudonym": "anon-x"}),
                      notice("g1", 5, {"erase": "5", "pseudonym": "anon-1"})])
    store.forget_person("g1", "5", "anon-1")
    with store.engine.connect() as conn:
        assert store._confirmed_gates(conn, "5") == {"g1"}  # g2 has not erased "5"
    erased = [e for e in store.recent_events() if e["type"] == "person.forgotten"
              and e["data"].get("erase") == "5"]
    assert len(erased) == 1  # still naming them: g2 must be told whom


def test_a_station_created_before_the_erasure_index_gets_it_and_uses_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'station.db'}"
    Store(url, portraits_dir=tmp_path / "p").close()
    with sqlite3.connect(tmp_path / "station.db") as db:
        db.execute(f"DROP INDEX {ERASURE_INDEX}")
    store = Store(url, portraits_dir=tmp_path / "p")
    try:
        with sqlite3.connect(tmp_path / "station.db") as db:  # SQLAlchemy skips expressions
            assert db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                              (ERASURE_INDEX,)).fetchone() == (1,)
        query = select(store.t["events"].c.id).where(*store._notices_naming("p-1"))
        with store.engine.connect() as conn:
            plan = " ".join(str(r[-1]) for r in conn.execute(
                text("EXPLAIN QUERY PLAN " + str(query.compile(
                    store.engine, compile_kwargs={"literal_binds": True})))))
        assert f"USING INDEX {ERASURE_INDEX}" in plan, plan  # not a scan of every event
    finally:
        store.close()


def test_erasure_confirmations_from_station_forget_drop_the_pair(store: Store) -> None:
    """``menjin station forget --all``'s recorded answers are the same confirmations: once every
    gate answered ok, the pair goes, and a gate's notice arriving afterwards loses the id too."""
    store.add_events([row("g1", 1, person="p-0303"), row("g2", 1, person="p-0303")])
    ids = {gate: str(uuid.uuid4()) for gate in ("g1", "g2")}
    for gate, command_id in ids.items():
        store.record_command({"id": command_id, "gate": gate, "name": "forget",
                              "issued_at_ms": 1, "args": {"person": "p-0303"}})

    def answer(gate: str) -> None:
        store.record_result(gate, {"id": ids[gate], "name": "forget", "ok": True, "result": {
            "person": "p-0303", "pseudonym": f"anon-{gate}"}})

    answer("g1")
    assert [r["gate"] for r in store.erasures("p-0303") if r["ok"]] == ["g1"]  # g2 pending
    answer("g2")
    assert store.erasures("p-0303") == []  # every gate confirmed: no row names the person
    assert {r["ok"] for r in store.erasures()} == {True}
    for gate in ("g1", "g2"):  # the notices after their commands' answers
        store.add_events([row(gate, 2, type="person.forgotten", person=f"anon-{gate}",
                              credential_ref=None,
                              data={"erase": "p-0303", "pseudonym": f"anon-{gate}"})])
        store.forget_person(gate, "p-0303", f"anon-{gate}")
    with store.engine.connect() as conn:
        dump = json.dumps([list(map(str, r)) for t in ("events", "commands")
                           for r in conn.execute(store.t[t].select())])
    assert "p-0303" not in dump and "anon-g1" in dump and "anon-g2" in dump


def test_an_erased_person_leaves_no_bytes_in_the_sqlite_files(tmp_path: Path) -> None:
    sqlite_store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "p")
    sqlite_store.add_events([row("g1", 1, person="p-7777", credential_ref="c-secret-ref"),
                             row("g1", 2, person="p-0202")])
    sqlite_store.forget_person("g1", "p-7777", "anon-7")
    raw = b"".join(f.read_bytes() for f in tmp_path.glob("station.db*"))
    assert b"p-7777" not in raw and b"c-secret-ref" not in raw
    sqlite_store.close()
