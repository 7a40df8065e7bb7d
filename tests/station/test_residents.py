"""Resident lists from the operator's files, and the snapshot/delta that carries them to a gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.pins import verify_pin
from station.residents import (
    ResidentList,
    ResidentsError,
    hash_pins,
    load_residents,
    sync_args,
)

GROUPS_YAML = """\
groups:
  - {id: residents, name: Residents, doors: [front], schedule: always}
holidays: ["2026-10-01"]
revoked: ["0000000001"]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_become_the_gates_person_objects(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "residents.csv",
                     "id,name,groups,cards,enabled,face_consent_date,face_consent_source\n"
                     "p-0101,王芳,residents,0004567890;0004567891,yes,2026-11-02,form 118\n"
                     "p-0102,Li Lei,,,no,,\n")
    residents = load_residents(csv_path, write(tmp_path, "groups.yaml", GROUPS_YAML))
    assert residents.persons == {
        "p-0101": {"id": "p-0101", "name": "王芳", "groups": ["residents"],
                   "cards": ["4567890", "4567891"], "enabled": True,
                   "face_consent": {"date": "2026-11-02", "source": "form 118"}},
        "p-0102": {"id": "p-0102", "name": "Li Lei", "enabled": False},
    }
    assert list(residents.groups) == ["residents"]
    assert residents.holidays == ["2026-10-01"] and residents.revoked == ("1",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,cards\nA,1\n", "1: the header needs a 'id' column"),
        ("id,name,card\np1,A,1\n", "1: unknown column 'card'; did you mean 'cards'?"),
        ("id,name,pin_hash\np1,A,x\n",
         "1: unknown column 'pin_hash'; write plain PINs in 'pin'; they are hashed on the way in"),
        ("id,name\np1,A\n,B\n", "3: id: Field required"),
        ("id,name\np1,A\np1,B\n", "3: id: 'p1' is already used on line 2"),
        ("id,name\np1,A,extra\n", '2: too many values: 3 for 2 columns (quote a value that '
         'holds a comma: "Wang, Fang")'),
        ("id,name,pin\np1,A,12\n", "2: pin: a PIN is 4 to 8 digits"),
        ("id,name,enabled\np1,A,maybe\n", "2: enabled: 'maybe' is not yes or no"),
    ],
)
def test_each_bad_csv_line_is_reported(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "residents.csv", text)
    with pytest.raises(ResidentsError) as caught:
        load_residents(path)
    assert str(caught.value).startswith(f"{path}:{message}")


def test_a_person_in_an_undefined_group_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "residents.csv", "id,name,groups\np1,A,staff\n")
    with pytest.raises(ResidentsError, match="2: groups: unknown group 'staff'"):
        load_residents(path)


def test_cards_are_canonical_and_never_shared(tmp_path: Path) -> None:
    """Issue 16, finding 5, station side: leading zeros, printed forms and duplicates."""
    path = write(tmp_path, "residents.csv", "id,name,cards\np1,A,0012345678\np2,B,036;02193\n")
    residents = load_residents(path)
    assert residents.persons["p1"]["cards"] == ["12345678"]
    shared = write(tmp_path, "shared.csv", "id,name,cards\np1,A,0012345678\np2,B,12345678\n")
    with pytest.raises(ResidentsError) as caught:
        load_residents(shared)
    assert str(caught.value) == f"{shared}:3: cards: card ****5678 is already given to p1 on line 2"
    bad = write(tmp_path, "bad.yaml", "revoked: ['12-34']\n")
    with pytest.raises(ResidentsError) as caught:
        load_residents(bad)
    assert str(caught.value) == (
        f"{bad}:1: revoked[0]: '12-34' is not a card number: use decimal digits (0012345678), "
        "hex (0x00BC614E or 3A00B1C2D4), or facility,number (036,02193)")


def test_a_revocation_rewritten_with_leading_zeros_is_no_change(tmp_path: Path) -> None:
    old = load_residents(write(tmp_path, "old.yaml", "revoked: ['12345678']\n"))
    new = load_residents(write(tmp_path, "new.yaml", "revoked: ['0012345678']\n"))
    delta = sync_args(new, (4, old), clock_s=lambda: 0.0)
    assert (delta["revoke"], delta["unrevoke"]) == ([], [])


def test_one_yaml_file_holds_everything(tmp_path: Path) -> None:
    path = write(tmp_path, "residents.yaml", GROUPS_YAML + "persons:\n"
                 "  - {id: p1, name: A, groups: [residents], cards: ['1']}\n")
    residents = load_residents(path)
    assert residents.persons["p1"]["cards"] == ["1"] and "residents" in residents.groups


def test_first_sync_is_a_snapshot_with_groups() -> None:
    residents = ResidentList({"p1": {"id": "p1", "name": "A"}},
                             {"g": {"id": "g", "doors": ["front"]}}, None, ("c9",))
    args = sync_args(residents, None, clock_s=lambda: 1_800_000_000.5)
    assert args == {"mode": "snapshot", "version": 1_800_000_000,
                    "persons": [{"id": "p1", "name": "A"}],
                    "groups": [{"id": "g", "doors": ["front"]}], "revoked": ["c9"]}


def lists() -> st.SearchStrategy[ResidentList]:
    persons = st.dictionaries(st.sampled_from([f"p{i}" for i in range(6)]),
                              st.sampled_from(["c1", "c2", "c3"]))
    groups = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["front", "side"]))
    revoked = st.sets(st.sampled_from(["r1", "r2", "r3"]))
    return st.builds(
        lambda p, g, r: ResidentList(
            {k: {"id": k, "name": k, "cards": [v]} for k, v in p.items()},
            {k: {"id": k, "doors": [v]} for k, v in g.items()}, None, tuple(sorted(r))),
        persons, groups, revoked)


def apply_delta(old: ResidentList, args: dict[str, Any]) -> ResidentList:
    """What the gate's store does with a delta (daemon/store.py)."""
    persons = {k: v for k, v in old.persons.items() if k not in args["delete"]}
    persons.update({p["id"]: p for p in args["upsert"]})
    groups = {k: v for k, v in old.groups.items() if k not in args["delete_groups"]}
    groups.update({g["id"]: g for g in args["groups"]})
    revoked = (set(old.revoked) | set(args["revoke"])) - set(args["unrevoke"])
    return ResidentList(persons, groups, None, tuple(sorted(revoked)))


@given(lists(), lists(), st.integers(0, 10**10))
def test_a_delta_applied_to_the_previous_list_gives_the_new_one(
    old: ResidentList, new: ResidentList, version: int
) -> None:
    args = sync_args(new, (version, old), clock_s=lambda: 1_800_000_000)
    assert args["mode"] == "delta" and args["base_version"] == version
    assert args["version"] > version
    assert apply_delta(old, args) == new


def test_the_gates_own_store_applies_the_snapshot_and_the_delta(tmp_path: Path) -> None:
    """Compatibility with the real receiving end: daemon/store.py's apply_sync."""
    from zoneinfo import ZoneInfo

    from daemon.store import Store as GateStore

    groups = write(tmp_path, "groups.yaml", GROUPS_YAML)
    first = load_residents(write(tmp_path, "a.csv", "id,name,groups,cards\n"
                                 "p1,A,residents,0004567890\np2,B,residents,0004567891\n"), groups)
    second = load_residents(write(tmp_path, "b.csv", "id,name,groups,cards\n"
                                  "p1,A,residents,0004567899\np3,C,residents,0004567893\n"), groups)
    with GateStore(tmp_path / "residents.db", zone=ZoneInfo("Asia/Shanghai")) as gate:
        snapshot = sync_args(first, None)
        gate.apply_sync(snapshot)
        gate.apply_sync(sync_args(second, (snapshot["version"], first)))
        assert sorted(p.id for p in gate.persons()) == ["p1", "p3"]
        assert gate.card_owner("0004567899") == "p1"
        assert gate.card_owner("0004567890") is None
        assert [g.id for g in gate.groups()] == ["residents"]
        assert len(gate.revoked()) == 1


def test_pins_are_hashed_before_sending_and_an_unchanged_pin_keeps_its_hash(
    tmp_path: Path,
) -> None:
    """A fresh salt per hash would put every PIN holder in every delta."""
    groups = write(tmp_path, "groups.yaml", GROUPS_YAML)
    path = write(tmp_path, "r.csv", "id,name,groups,pin\np1,A,residents,1234\np2,B,residents,\n")
    loaded = load_residents(path, groups)
    assert "pin_hash" not in loaded.persons["p1"]
    with pytest.raises(ResidentsError, match="still holds plain PINs"):
        sync_args(loaded, None)
    first = hash_pins(loaded, None)
    assert verify_pin("1234", first.persons["p1"]["pin_hash"])
    again = hash_pins(load_residents(path, groups), first)
    assert again.persons == first.persons
    args = sync_args(again, (7, first), clock_s=lambda: 1)
    assert (args["mode"], args["upsert"]) == ("delta", [])
    changed = write(tmp_path, "r.csv", "id,name,groups,pin\np1,A,residents,4321\n"
                                       "p2,B,residents,\n")
    new = hash_pins(load_residents(changed, groups), first)
    assert [p["id"] for p in sync_args(new, (7, first))["upsert"]] == ["p1"]
    assert verify_pin("4321", new.persons["p1"]["pin_hash"])


def test_station_sync_reports_a_bad_card_on_its_line(tmp_path: Path) -> None:
    """The station reads the gate's dialect with the gate's checks: FILE:LINE: field: message,
    and nothing is sent (the file is refused before the station config is even read)."""
    from typer.testing import CliRunner

    from menjin.cli import app

    groups = write(tmp_path, "groups.yaml", GROUPS_YAML)
    path = write(tmp_path, "s.csv", "id,name,groups,cards\np1,X,residents,12345678.0\n"
                                    "p2,Y,residents,5\np3,Z,residnets,0005\n")
    result = CliRunner().invoke(app, ["station", "sync", "g1", str(path), "--groups",
                                      str(groups), "-c", str(tmp_path / "station.yaml")])
    assert isinstance(result.exception, SystemExit)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:2: cards: card number '12345678.0' looks like a spreadsheet turned it into a "
        "number (scientific notation or a fraction): format the column as text and copy the "
        "card number as printed",
        f"{path}:4: groups: unknown group 'residnets'; did you mean 'residents'?",
        f"{path}:4: cards: card ****5 is already given to p2 on line 3",
    ]


def test_a_csv_without_groups_says_where_groups_go(tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "id,name,groups\np1,A,residents\n")
    with pytest.raises(ResidentsError) as caught:
        load_residents(path)
    assert str(caught.value) == (f"{path}:2: groups: unknown group 'residents' (a CSV cannot "
                                 "define groups: give them with --groups FILE)")
    with pytest.raises(ResidentsError) as caught:
        load_residents(path, write(tmp_path, "g.yaml", "groups: []\n"))
    assert str(caught.value) == (f"{path}:2: groups: unknown group 'residents' (define it under "
                                 f"'groups:' in {tmp_path / 'g.yaml'})")


def test_groups_file_beside_a_yaml_with_its_own_groups_is_merged(tmp_path: Path) -> None:
    """--groups adds to what the residents file defines: groups and revoked cards of both,
    the holidays of the one file that gives them."""
    path = write(tmp_path, "residents.yaml", """\
groups:
  - {id: night, doors: [front], schedule: "mon-sun 22:00-06:00"}
revoked: ["0000000002"]
persons:
  - {id: p1, name: A, groups: [residents, night]}
""")
    residents = load_residents(path, write(tmp_path, "groups.yaml", GROUPS_YAML))
    assert sorted(residents.groups) == ["night", "residents"]
    assert residents.persons["p1"]["groups"] == ["residents", "night"]
    assert (residents.holidays, residents.revoked) == (["2026-10-01"], ("1", "2"))


def test_a_group_or_holidays_in_both_files_are_refused_naming_both(tmp_path: Path) -> None:
    """One definition silently winning would give its members other doors than they are meant."""
    path = write(tmp_path, "residents.yaml", """\
groups:
  - {id: night, doors: [front]}
  - {id: residents, doors: [front, side]}
holidays: ["2026-10-02"]
persons:
  - {id: p1, name: A, groups: [residents]}
""")
    groups = write(tmp_path, "groups.yaml", GROUPS_YAML)
    with pytest.raises(ResidentsError) as caught:
        load_residents(path, groups)
    assert str(caught.value).splitlines() == [
        f"{path}:3: group 'residents' is also defined in {groups}:2: define each group in one "
        "file",
        f"{path}:4: holidays: also given in {groups}:3: give the holidays in one file"]
    from typer.testing import CliRunner

    from menjin.cli import app

    result = CliRunner().invoke(app, ["station", "sync", "g1", str(path), "--groups",
                                      str(groups), "-c", str(tmp_path / "station.yaml")])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"{path}:3: group 'residents' is also defined in {groups}:2: define each group in one "
        "file")
