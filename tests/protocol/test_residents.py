"""One resident-file dialect: the gate's import and the station's sync read a file alike."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.store import Store, person_from_record
from protocol.pins import verify_pin
from protocol.residents import ResidentFileError, check, parse_resident_file
from station.residents import hash_pins, load_residents, sync_args

CSV = """\
id,name,groups,cards,pin,enabled,under_14,face_consent_date,face_consent_source
p1,Wang Fang,residents,0004567890 ; 0004567891,1234,yes,no,2026-11-02,form 118
p2,Li Lei,residents,,,no,,,
"""
YAML = """\
groups:
  - {id: residents, doors: [front], schedule: always}
persons:
  - id: p1
    name: Wang Fang
    groups: [residents]
    cards: ["0004567890", "0004567891"]
    pin: "1234"
    enabled: yes
    under_14: false
    face_consent: {date: 2026-11-02, source: form 118}
  - {id: p2, name: Li Lei, groups: [residents], enabled: false}
"""
GROUPS = "groups:\n  - {id: residents, doors: [front], schedule: always}\n"


def records(text: str, name: str) -> list[dict[str, object]]:
    checked = check(parse_resident_file(textwrap.dedent(text), name), known_groups=["residents"])
    assert checked.problems == []
    return [item.record.model_dump(exclude={"pin_hash"}) for item in checked.persons]


def test_csv_and_yaml_mean_the_same_persons() -> None:
    assert records(CSV, "r.csv") == records(YAML, "r.yaml")


def test_list_cells_split_on_semicolons_only() -> None:
    data = parse_resident_file("id,name,groups\np1,A,big group\n", "r.csv")
    assert data.rows[0].fields["groups"] == ["big group"]
    assert check(data).problems == [(2, "groups[0]: 'big group' is not a group id")]


def test_the_gate_and_the_station_store_the_same_person(tmp_path: Path) -> None:
    """The station's sync of a file gives the gate what its own import of the file gives."""
    (tmp_path / "r.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "g.yaml").write_text(GROUPS, encoding="utf-8")
    station = hash_pins(load_residents(tmp_path / "r.csv", tmp_path / "g.yaml"), None)
    assert verify_pin("1234", station.persons["p1"]["pin_hash"])  # hashed before it is sent
    zone = ZoneInfo("Asia/Shanghai")
    with Store(tmp_path / "gate.db", zone=zone) as gate:
        gate.apply_sync(sync_args(station, None))
        synced = {p.id: p for p in gate.persons()}
    checked = check(parse_resident_file(CSV, "r.csv"), known_groups=["residents"])
    imported = {i.record.id: person_from_record(i.record, zone=zone) for i in checked.persons}
    assert set(imported) == set(synced) == {"p1", "p2"}
    for person_id, person in imported.items():  # PIN hashes differ by their salt only
        assert replace(synced[person_id], pin_hash=None) == person


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("r.csv", "id,name,card\n", "r.csv:1: unknown column 'card'; did you mean 'cards'?"),
        ("r.yaml", "persons:\n  - id: a\n    id: b\n",
         ("r.yaml:3:5: persons[0].id: key 'id' appears twice, first at line 2, column 5 (each key "
          "may appear once: delete or merge one of them)")),
        ("r.json", '{"persons": [', "r.json:1:14: JSON syntax error: Expecting value"),
        ("r.yaml", "people: []\n",
         "r.yaml:1: unknown section 'people' (persons, groups, holidays, revoked)"),
        ("r.txt", "x", "r.txt: use a .csv, .yaml or .json file"),
    ],
)
def test_unreadable_files(name: str, text: str, message: str) -> None:
    with pytest.raises(ResidentFileError) as refused:
        parse_resident_file(text, name)
    assert str(refused.value) == message


def test_revoked_cards_must_be_quoted_strings() -> None:
    checked = check(parse_resident_file("revoked: [4567890]\n", "r.yaml"))
    assert checked.problems == [(1, "revoked: expected a list of card numbers in quotes")]
