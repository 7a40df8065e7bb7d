"""The resident store: sync snapshot and delta, atomicity under SIGKILL, keyed cards, erasure."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.access import AccessController, DoorPolicy, Reason
from daemon.store import (
    PersonError,
    Store,
    StoreError,
    SyncRefusedError,
    parse_group,
    parse_person,
    person_json,
    pseudonym,
)
from protocol.pins import hash_pin

REPO = Path(__file__).resolve().parents[2]
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
GROUPS = [{"id": "residents", "doors": ["front"], "schedule": "always"}]


def snapshot(version: int, persons: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"mode": "snapshot", "version": version, "persons": persons, "groups": GROUPS, **extra}


def resident(pid: str, *cards: str, **fields: Any) -> dict[str, Any]:
    return {"id": pid, "name": f"name of {pid}", "groups": ["residents"], "cards": list(cards),
            **fields}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "residents.db", zone=SHANGHAI)
    s.apply_sync(snapshot(3, [resident("p1", "1001"), resident("p2", "1002")],
                          holidays=["2026-10-01"], revoked=["5555"]))
    return s


def test_snapshot_is_applied_and_indexed(store: Store) -> None:
    assert store.version == 3
    assert [p.id for p in store.persons()] == ["p1", "p2"]
    assert store.holidays() == {date(2026, 10, 1): ""}
    index = store.load_index()
    assert index.version == 3
    assert index.cards["1002"] == ("p2", False)
    assert index.revoked == {"5555"}
    assert store.card_owner("1001") == "p1"


def test_delta_on_the_right_base(store: Store) -> None:
    result = store.apply_sync({
        "mode": "delta", "base_version": 3, "version": 4,
        "upsert": [resident("p3", "1003"), resident("p1", "1011")], "delete": ["p2"],
        "revoke": ["1003"], "unrevoke": ["5555"], "holidays": [{"date": "2026-10-02",
                                                                "name": "National Day"}],
    })
    assert result.as_dict() == {"version": 4, "persons": 2, "upserted": 2, "deleted": 1}
    index = store.load_index()
    assert set(index.cards) == {"1011", "1003"}
    assert index.revoked == {"1003"}
    assert index.holidays == {date(2026, 10, 2)}
    controller = AccessController(index, {"front": DoorPolicy("front")})
    assert controller.decide_card("front", "1003", MONDAY_10).reason is Reason.REVOKED
    assert controller.decide_card("front", "1001", MONDAY_10).reason is Reason.UNKNOWN_CREDENTIAL


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        ({"mode": "delta", "base_version": 2, "version": 4, "upsert": []}, "snapshot_required",
         "delta is based on version 2, the gate has 3: send a snapshot"),
        ({"mode": "delta", "version": 4}, "snapshot_required",
         "delta is based on version None, the gate has 3: send a snapshot"),
        ({"mode": "delta", "base_version": 3, "version": 3}, "bad_payload",
         "delta version must exceed its base"),
        (snapshot(2, []), "stale_version", "snapshot version 2 is older than 3"),
        ({"mode": "replace", "version": 9}, "bad_payload",
         "mode must be snapshot or delta, not 'replace'"),
        ({**snapshot(4, []), "extra": 1}, "bad_payload", "extra: unknown field"),
        (snapshot(True, []), "bad_payload", "version: Input should be a valid integer"),
        (snapshot(0, []), "bad_payload", "version: Input should be greater than or equal to 1"),
        (snapshot(4, [resident("p1", "1"), {"id": "p2", "name": "x", "kind": "guest"}]),
         "bad_payload", "persons[1].kind: 'guest' is not resident, visitor or staff"),
        (snapshot(4, [resident("p1", "1"), resident("p2", "1")]), "bad_payload",
         "cards: a card of p2 already belongs to p1"),
        (snapshot(4, [{**resident("p1", "1"), "valid_until": "9999-12-31"}]), "bad_payload",
         "persons[0].valid_until: '9999-12-31' is past the last day there is (leave it empty "
         "for no end)"),
        (snapshot(4, [resident("p1", "1.23457E+11")]), "bad_payload",
         "persons[0].cards: card number '1.23457E+11' looks like a spreadsheet turned it into a "
         "number (scientific notation or a fraction): format the column as text and copy the "
         "card number as printed"),
        (snapshot(4, [resident("p1", pin_hash="1234")]), "bad_payload",
         "persons[0].pin_hash: expected an scrypt hash (scrypt$N$r$p$salt$hash), never a PIN"),
        (snapshot(4, [], groups=[{"id": "g", "doors": ["front"], "schedule": "mon 9-10"}]),
         "bad_payload",
         "schedule: bad time window '9-10' (write HH:MM-HH:MM, e.g. 07:00-22:00)"),
    ],
)
def test_refused_syncs_change_nothing(store: Store, payload: dict[str, Any], reason: str,
                                      detail: str) -> None:
    before = store.load_index()
    with pytest.raises(SyncRefusedError) as err:
        store.apply_sync(payload)
    assert (err.value.reason, err.value.detail, err.value.version) == (reason, detail, 3)
    after = store.load_index()
    assert (after.version, dict(after.cards), after.revoked) == (
        before.version, dict(before.cards), before.revoked)


def test_a_snapshot_replaces_everything(store: Store) -> None:
    store.apply_sync(snapshot(7, [resident("p9", "1009")]))
    assert [p.id for p in store.persons()] == ["p9"]
    assert store.revoked() == frozenset()
    assert store.holidays() == {date(2026, 10, 1): ""}  # no holidays key: calendar kept


def test_person_json_round_trip() -> None:
    obj = resident(
        "v1", "1001", kind="visitor", valid_from="2026-12-01", valid_until="2026-12-01",
        pin_hash=hash_pin("2468"), face_consent={"date": "2026-11-02", "source": "form 118"},
        under_14=True, guardian_consent={"date": "2026-11-02", "source": "mother, form 118"},
    )
    person = parse_person(obj, zone=SHANGHAI)
    assert person.valid_from == datetime(2026, 12, 1, tzinfo=SHANGHAI)
    assert person.valid_until == datetime(2026, 12, 2, tzinfo=SHANGHAI)  # end of that day
    assert person.may_use_face
    assert parse_person(person_json(person), zone=SHANGHAI) == person


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": "bad id"}, "id: 'bad id' is not a person id (letters, digits, _ - .; max 64)"),
        ({"name": " "}, "name: must not be empty"),
        ({"valid_from": "tomorrow"},
         "valid_from: not a date or time: 'tomorrow' (use 2026-12-01 or 2026-12-01T18:00:00)"),
        ({"valid_from": "2026-12-02", "valid_until": "2026-12-01"},
         "valid_until: must be later than valid_from"),
        ({"valid_until": "9999-12-31"},
         "valid_until: '9999-12-31' is past the last day there is (leave it empty for no end)"),
        ({"valid_from": ""},
         "valid_from: not a date or time: '' (use 2026-12-01 or 2026-12-01T18:00:00)"),
        ({"face_consent": {"date": "2026-11-02"}},
         "face_consent.source: Field required"),
        ({"face_consent": {"date": "2026-11-02", "source": ""}},
         "face_consent.source: the form, record or witness must be given"),
        ({"under_14": True, "face_consent": {"date": "2026-11-02", "source": "form"}},
         "guardian_consent: face consent of a child under 14 needs a guardian's"),
        ({"enabled": "yes"}, "enabled: Input should be a valid boolean"),
        ({"cards": [1234]}, "cards[0]: Input should be a valid string"),
        ({"cards": ["1", "1"]}, "cards: a card is listed twice"),
        ({"photo": "x"}, "photo: unknown field"),
    ],
)
def test_person_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(PersonError) as err:
        parse_person({**resident("p1"), **fields}, zone=SHANGHAI)
    assert str(err.value) == message


def test_keyed_card_hashes(tmp_path: Path) -> None:
    key = bytes(range(32))
    db = tmp_path / "keyed.db"
    with Store(db, card_key=key) as keyed:
        keyed.apply_sync(snapshot(1, [resident("p1", "0004567890")]))
        controller = AccessController(keyed.load_index(), {"front": DoorPolicy("front")},
                                      card_key=keyed.card_ref)
        decision = controller.decide_card("front", "0004567890", MONDAY_10)
        assert (decision.granted, decision.person) == (True, "p1")
        assert len(controller.card_ref("0004567890")) == 64
        assert keyed.card_owner("0004567890") == "p1"
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"0004567890" not in raw
    with pytest.raises(StoreError, match="card hashing hmac-sha256, the config now asks for plain"):
        Store(db)
    with pytest.raises(StoreError, match="or another key"):
        Store(db, card_key=bytes(32))


def test_forget_removes_credentials_and_keeps_a_pseudonym(store: Store) -> None:
    key = b"k" * 32
    store.apply_sync({"mode": "delta", "base_version": 3, "version": 4, "upsert": [
        resident("p1", "1001", duress_cards=["9001"], pin_hash=hash_pin("1234"))]})
    gone = store.forget("p1", key, now_ms=1)
    assert gone.as_dict() == {"person": "p1", "pseudonym": pseudonym(key, "p1"), "found": True,
                              "cards_removed": 2, "pin_removed": True}
    assert gone.pseudonym.startswith("anon-")
    assert gone.pseudonym != pseudonym(b"x" * 32, "p1")
    assert store.person("p1") is None
    assert store.card_owner("1001") is None
    assert store.card_owner("9001") is None
    assert store.forgotten() == [gone.pseudonym]
    rows = sqlite3.connect(store.path).execute("SELECT data FROM persons").fetchall()
    assert all("p1" not in row[0] for row in rows)
    assert not store.forget("nobody", key).found


def test_local_edits_keep_the_sync_version(store: Store) -> None:
    assert store.set_enabled("p1", False)
    assert not store.set_enabled("nobody", False)
    removed = store.remove("p2")
    assert removed is not None
    assert removed.cards == ("1002",)
    assert store.version == 3
    controller = AccessController(store.load_index(), {"front": DoorPolicy("front")})
    assert controller.decide_card("front", "1001", MONDAY_10).reason is Reason.DISABLED


# A child that applies one snapshot and blocks in the middle of the transaction, after a number
# of SQLite progress callbacks given on the command line, until the test SIGKILLs it.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from daemon.store import Store

    store = Store(Path(sys.argv[1]))
    stop_after, persons = int(sys.argv[2]), int(sys.argv[3])
    version = store.version + 1
    calls = 0

    def progress():
        global calls
        if store._conn.in_transaction:
            calls += 1
            if calls == stop_after:
                print("mid-apply", flush=True)
                time.sleep(120)
        return 0

    store._conn.set_progress_handler(progress, 50)
    store.apply_sync({
        "mode": "snapshot", "version": version,
        "groups": [{"id": "g", "doors": ["front"], "schedule": "always"}],
        "persons": [{"id": f"p{i}", "name": f"version {version}", "groups": ["g"],
                     "cards": [str(version * 100_000 + i)]} for i in range(persons)],
    })
    print("applied", calls, flush=True)
""")
PERSONS_PER_SYNC = 400


def _run_child(db: Path, stop_after: int) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(stop_after), str(PERSONS_PER_SYNC)],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if line == "mid-apply":
        child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    return line


def _assert_whole(db: Path, version: int) -> None:
    with Store(db) as s:
        assert s.version == version
        persons = s.persons()
        assert len(persons) == PERSONS_PER_SYNC
        assert {p.name for p in persons} == {f"version {version}"}
        controller = AccessController(s.load_index(), {"front": DoorPolicy("front")})
        assert controller.decide_card("front", str(version * 100_000 + 7), MONDAY_10).granted
        half = controller.decide_card("front", f"{version + 1}-0", MONDAY_10)
        assert half.reason is Reason.UNKNOWN_CREDENTIAL


@pytest.mark.timeout(120)
def test_sigkill_mid_apply_leaves_the_previous_version(tmp_path: Path) -> None:
    db = tmp_path / "residents.db"
    first = _run_child(db, stop_after=10**9)
    assert first.startswith("applied")
    total_calls = int(first.split()[1])
    assert total_calls > 20
    _assert_whole(db, 1)
    for fraction in (0.05, 0.3, 0.6, 0.95):
        assert _run_child(db, stop_after=max(1, int(total_calls * fraction))) == "mid-apply"
        _assert_whole(db, 1)
    assert _run_child(db, stop_after=10**9).startswith("applied")
    _assert_whole(db, 2)


@given(
    pid=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    name=st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s),
    kind=st.sampled_from(["resident", "visitor", "staff"]),
    enabled=st.booleans(),
    cards=st.lists(st.integers(0, 10**12), max_size=3, unique=True).map(
        lambda numbers: [f"{n:010d}" for n in numbers]),
    days=st.one_of(st.none(), st.tuples(st.dates(date(2020, 1, 1), date(2030, 1, 1)),
                                        st.integers(0, 400))),
    consent=st.booleans(),
)
def test_person_json_round_trips(pid: str, name: str, kind: str, enabled: bool,
                                 cards: list[str], days: tuple[date, int] | None,
                                 consent: bool) -> None:
    obj: dict[str, Any] = {"id": pid, "name": name, "kind": kind, "enabled": enabled,
                           "cards": cards}
    if days is not None:
        start, length = days
        obj["valid_from"] = start.isoformat()
        obj["valid_until"] = date.fromordinal(start.toordinal() + length).isoformat()
    if consent:
        obj["face_consent"] = {"date": "2026-11-02", "source": "form"}
    person = parse_person(obj, zone=SHANGHAI)
    assert parse_person(person_json(person), zone=SHANGHAI) == person
    assert person.face_consent is consent
    if days is not None:
        assert person.valid_until is not None
        assert person.valid_from is not None
        assert (person.valid_until - person.valid_from).days == days[1] + 1


# --------------------------------------------------------------- one canonical card number
def test_a_card_stored_with_leading_zeros_opens_for_the_reader_number(tmp_path: Path) -> None:
    """Issue 16, finding 5: stored ``0012345678``, read ``12345678``."""
    with Store(tmp_path / "r.db", zone=SHANGHAI) as s:
        s.upsert([parse_person(resident("p1", "0012345678"), zone=SHANGHAI)],
                 groups=[parse_group(GROUPS[0])])
        access = AccessController(s.load_index(), {"front": DoorPolicy("front")},
                                  card_key=s.card_ref)
        assert access.decide_card("front", "12345678", MONDAY_10).granted
        assert s.card_owner("0012345678") == s.card_owner("12345678") == "p1"


@pytest.mark.parametrize("card_key", [None, b"k" * 32])
def test_a_revocation_with_leading_zeros_blocks_the_card(tmp_path: Path,
                                                         card_key: bytes | None) -> None:
    with Store(tmp_path / "r.db", zone=SHANGHAI, card_key=card_key) as s:
        s.apply_sync(snapshot(1, [resident("p1", "12345678")], revoked=["0012345678"]))
        access = AccessController(s.load_index(), {"front": DoorPolicy("front")},
                                  card_key=s.card_ref)
        assert access.decide_card("front", "12345678", MONDAY_10).reason is Reason.REVOKED
        s.revoke("0000004242")
        assert s.card_ref("4242") in s.revoked()


def test_two_residents_cannot_hold_the_same_card_in_two_forms(tmp_path: Path) -> None:
    with Store(tmp_path / "r.db", zone=SHANGHAI) as s:
        with pytest.raises(SyncRefusedError, match="a card of p2 already belongs to p1"):
            s.apply_sync(snapshot(1, [resident("p1", "12345678"),
                                      resident("p2", "0012345678")]))
        with pytest.raises(PersonError, match="cards: a card is listed twice"):
            parse_person(resident("p3", "0x00BC614E", "12345678"), zone=SHANGHAI)
        with pytest.raises(PersonError, match="cards: '12-34' is not a card number"):
            parse_person(resident("p3", "12-34"), zone=SHANGHAI)


def test_cards_stored_before_they_were_canonical_are_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with Store(path, zone=SHANGHAI) as s:
        s.apply_sync(snapshot(1, [resident("p1", "12345678")], revoked=["4242"]))
    with sqlite3.connect(path) as conn:  # what an older menjin wrote
        conn.execute("UPDATE cards SET card = '0012345678'")
        conn.execute("UPDATE revoked SET card = '0000004242'")
    with Store(path, zone=SHANGHAI) as s:
        assert s.card_owner("12345678") == "p1"
        assert s.revoked() == frozenset({"4242"})
