"""One resident-file dialect: the gate's import and the station's sync read a file alike."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.store import Store, person_from_record
from protocol.cards import canonical_card
from protocol.pins import verify_pin
from protocol.residents import (
    CSV_COLUMNS,
    FILE_FIELDS,
    ResidentFile,
    ResidentFileError,
    Row,
    check,
    parse_resident_file,
)
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


HEADER = ",".join(CSV_COLUMNS)
SPREADSHEET = ("looks like a spreadsheet turned it into a number (scientific notation or a "
               "fraction): format the column as text and copy the card number as printed")


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("4.567893E+09", f"card number '4.567893E+09' {SPREADSHEET}"),
        ("12345678.0", f"card number '12345678.0' {SPREADSHEET}"),
        ("0b101", "card number '0b101' is a binary literal, which no card prints: give the "
         "decimal or hex number as printed (a hex tag id with 0x: 0x0b101 if that is what it is)"),
        ("２３４", "card number '２３４' has characters other than ASCII digits, letters A-F and "
         ", : / (type the digits as printed, 0-9)"),
        ("00045-67890", "'00045-67890' is not a card number: use decimal digits (0012345678), "
         "hex (0x00BC614E or 3A00B1C2D4), or facility,number (036,02193)"),
    ],
)
@pytest.mark.parametrize("column", ["cards", "duress_cards"])
def test_a_bad_card_is_a_problem_of_its_line(card: str, message: str, column: str) -> None:
    cells = {"cards": f"{card},", "duress_cards": f",{card}"}[column]
    text = (f"{HEADER}\np1,X,resident,yes,,,residents,{cells},,,,,,,\n"
            "p2,Y,resident,yes,,,residents,1,,,,,,,,\n")
    checked = check(parse_resident_file(text, "one.csv"), known_groups=["residents"])
    assert checked.problems == [(2, f"{column}: {message}")]
    assert [p.record.id for p in checked.persons] == ["p2"]
    assert checked.bad == 1


def test_only_canonical_cards_come_out_or_reach_the_store() -> None:
    asked: list[str] = []

    def owner(card: str) -> None:
        assert canonical_card(card) == card
        asked.append(card)

    text = "id,name,cards,duress_cards\np1,A,0012345678;0x00BC614F,036:02193\n"
    checked = check(parse_resident_file(text, "r.csv"), card_owner=owner)
    assert checked.problems == []
    record = checked.persons[0].record
    assert (record.cards, record.duress_cards) == (["12345678", "12345679"], ["2361489"])
    assert asked == ["12345678", "12345679", "2361489"]


def test_one_card_in_two_forms_names_both_lines() -> None:
    text = "id,name,cards\nq1,A,5\nq2,B,0005\nq3,C,0x5;6;0006\n"
    assert check(parse_resident_file(text, "r.csv")).problems == [
        (3, "cards: card ****5 is already given to q1 on line 2"),
        (4, "cards: a card is listed twice"),
        (4, "cards: card ****5 is already given to q1 on line 2"),
    ]


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        (f'{HEADER}\nr0,Ok,resident,yes,,,residents,,,,,,,,,\n'
         'r1,Short Row,resident,yes,,,residents\nr2,"Truncated',
         [(3, "missing columns cards, duress_cards, pin, duress_pin, face_consent_date, "
              "face_consent_source, under_14, guardian_consent_date, guardian_consent_source: "
              "the row has 7 values for 16 columns (leave a cell empty, but keep its comma)"),
          (4, "unterminated quote: a value opened with '\"' on this line is never closed; add "
              "the closing '\"'")]),
        ('id,name\np1,"Wang\np2,Li\n',
         [(2, "unterminated quote: a value opened with '\"' on this line is never closed "
              "(lines 2-3 were read into it); add the closing '\"'")]),
        ('id,name\np1,"Wang" Fang\np2,Li\n',
         [(2, "text after a closing '\"': a quoted value must be the whole cell (write a '\"' "
              "inside a quoted value as '\"\"')")]),
        ("id,name\np1,Wang, Fang\n",
         [(2, 'too many values: 3 for 2 columns (quote a value that holds a comma: '
              '"Wang, Fang")')]),
        ('id,name,kind\np1,"Wang\nFang",resident\np2,Li,guest\n\n,,\np3,"Zhao, Min"\n',
         [(4, "kind: 'guest' is not resident, visitor or staff"),
          (7, "missing columns kind: the row has 2 values for 3 columns (leave a cell empty, but "
              "keep its comma)")]),
    ],
)
def test_a_row_the_reader_cannot_match_to_the_header(
        text: str, problems: list[tuple[int, str]]) -> None:
    checked = check(parse_resident_file(text, "r.csv"), known_groups=["residents"])
    assert checked.problems == problems
    assert checked.bad == len(problems)


def test_header_problems_are_all_reported() -> None:
    with pytest.raises(ResidentFileError) as refused:
        parse_resident_file("name,card,name,pin_hash\n", "r.csv")
    assert str(refused.value).splitlines() == [
        "r.csv:1: unknown column 'card'; did you mean 'cards'?",
        "r.csv:1: unknown column 'pin_hash'; write plain PINs in 'pin'; they are hashed on the "
        "way in",
        "r.csv:1: column 'name' appears twice",
        "r.csv:1: the header needs a 'id' column",
    ]


def test_every_problem_of_a_row_is_reported() -> None:
    text = (f"{HEADER}\n"
            "q1,A,residnet,yes,,,residents,0x4567AB,,,,,,,,\n"
            "q2,B,resident,yes,,,residents,4.567893E+09,,123,,,,ja,,\n"
            "q3,C,resident,yes,,,staf,,,１２３４,,,,,,\n")
    checked = check(parse_resident_file(text, "r.csv"), known_groups=["residents", "staff"])
    assert checked.problems == [
        (2, "kind: 'residnet' is not resident, visitor or staff"),
        (3, f"cards: card number '4.567893E+09' {SPREADSHEET}"),
        (3, "pin: a PIN is 4 to 8 digits"),
        (3, "under_14: 'ja' is not yes or no"),
        (4, "groups: unknown group 'staf'; did you mean 'staff'?"),
        (4, "pin: a PIN is typed with the keypad's digits 0-9 (this one has other characters)"),
    ]
    assert checked.persons == []


def test_every_problem_of_a_yaml_person_on_the_line_of_its_field() -> None:
    text = textwrap.dedent("""\
        persons:
          - {id: y1, name: A, cards: ["5"]}
          - id: y1
            name: " "
            kind: guest
            valid_from: 2026-12-02
            valid_until: 2026-12-01
            groups: [resdents]
            cards: ["0005", "5"]
            under_14: yes
            face_consent: {date: 2026-11-02, source: form 1}
            photo: x
        """)
    assert check(parse_resident_file(text, "r.yaml"), known_groups=["residents"]).problems == [
        (3, "id: 'y1' is already used on line 2"),
        (3, "guardian_consent: face consent of a child under 14 needs a guardian's"),
        (4, "name: must not be empty"),
        (5, "kind: 'guest' is not resident, visitor or staff"),
        (7, "valid_until: must be later than valid_from"),
        (8, "groups: unknown group 'resdents'; did you mean 'residents'?"),
        (9, "cards: a card is listed twice"),
        (9, "cards: card ****5 is already given to y1 on line 2"),
        (12, "photo: unknown field"),
    ]


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "zone", "refused"),
    [
        ("2026-12-02", "2026-12-01", None, True),
        ("2026-12-01", "2026-12-01", None, False),  # the whole of that day
        ("2026-12-01T18:00:00", "2026-12-01T08:00:00", None, True),
        # naive and with an offset: only the gate's zone can tell
        ("2026-12-01T10:00:00+08:00", "2026-12-01T09:30:00", None, False),
        ("2026-12-01T10:00:00+08:00", "2026-12-01T09:30:00", ZoneInfo("Asia/Shanghai"), True),
        ("2026-12-01T10:00:00+08:00", "2026-12-01T09:30:00", ZoneInfo("UTC"), False),
    ],
)
def test_an_empty_validity_period(valid_from: str, valid_until: str, zone: ZoneInfo | None,
                                  refused: bool) -> None:
    text = f"id,name,valid_from,valid_until\np1,A,{valid_from},{valid_until}\n"
    problems = check(parse_resident_file(text, "r.csv"), zone=zone).problems
    assert problems == ([(2, "valid_until: must be later than valid_from")] if refused else [])


def test_revoked_cards_come_out_canonical_and_each_bad_one_is_named() -> None:
    checked = check(parse_resident_file("revoked: ['0001', '1.5E3', '0x10']\n", "r.yaml"))
    assert checked.revoked == ["1", "16"]
    assert checked.problems == [(1, f"revoked[1]: card number '1.5E3' {SPREADSHEET}")]
    assert checked.bad == 1


def test_an_undefined_group_says_how_to_define_it() -> None:
    data = parse_resident_file("id,name,groups\np1,A,night\n", "r.csv")
    assert check(data).problems == [
        (2, "groups: unknown group 'night' (define it under 'groups:')")]
    hinted = check(data, group_hint=lambda group: f"menjin residents group add {group}")
    assert hinted.problems == [(2, "groups: unknown group 'night' (menjin residents group add "
                                   "night)")]


def test_a_group_defined_twice_is_left_out_with_its_members() -> None:
    """Which of the two definitions the members were meant to get cannot be told."""
    text = ("groups:\n  - {id: a, doors: [front]}\n  - {id: a, doors: [side]}\n"
            "  - {id: 'b c'}\npersons:\n  - {id: p1, name: A, groups: [a]}\n")
    checked = check(parse_resident_file(text, "g.yaml"))
    assert checked.problems == [
        (3, "group 'a' is already defined on line 2"),
        (4, "group id: 'b c' is not a group id"),
        (6, "groups: group 'a' is not imported: its definition on line 3 is bad")]
    assert (checked.groups, checked.persons, checked.bad) == ([], [], 4)


@pytest.mark.parametrize("known", [[], ["night"]])
def test_a_person_in_a_badly_defined_group_is_refused(known: list[str]) -> None:
    """Also when the store holds the group: its old doors and hours are not what the file says."""
    text = ("groups:\n  - {id: night, doors: 'front'}\n  - {id: day, doors: [front]}\n"
            "persons:\n  - {id: p1, name: A, groups: [day, night]}\n"
            "  - {id: p2, name: B, groups: [day]}\n")
    checked = check(parse_resident_file(text, "g.yaml"), known_groups=known)
    assert checked.problems == [
        (2, "group doors: Input should be a valid list"),
        (5, "groups: group 'night' is not imported: its definition on line 2 is bad")]
    assert [p.record.id for p in checked.persons] == ["p2"]
    assert ([g.id for g in checked.groups], checked.bad) == (["day"], 2)
    refused = check(parse_resident_file(text.replace("'front'", "[front]"), "g.yaml"),
                    group_problem=lambda g: "schedule: not today" if g.id == "night" else None)
    assert refused.problems == [
        (2, "group night: schedule: not today"),
        (5, "groups: group 'night' is not imported: its definition on line 2 is bad")]


CELLS = st.one_of(
    st.sampled_from(["", "yes", "ja", "resident", "residnet", "residents", "0004567890",
                     "4.567893E+09", "0b101", "２３４", "00045-67890", "0x4567AB", "5;0005", "1234",
                     "123", "2026-12-01", "2026-12-01T18:00:00+08:00", "9999-12-31",
                     "2026-13-01", '"', '""', '"a,b"', "x\ny", ";"]),
    st.text(max_size=6))


@given(st.lists(st.lists(CELLS, max_size=18), max_size=6),
       st.sampled_from([None, ZoneInfo("Asia/Shanghai")]))
def test_any_csv_is_read_or_refused_line_by_line(rows: list[list[str]],
                                                 zone: ZoneInfo | None) -> None:
    """No text makes the reader raise anything but its own error, and every row is either a
    person or has its problems on its line."""
    text = HEADER + "\n" + "\n".join(",".join(row) for row in rows)
    try:
        data = parse_resident_file(text, "r.csv")
    except ResidentFileError:
        return
    checked = check(data, known_groups=["residents"], zone=zone,
                    card_owner=lambda card: None if canonical_card(card) == card else "?")
    imported = {person.line for person in checked.persons}
    refused = {line for line, _ in checked.problems}
    assert imported.isdisjoint(refused)
    assert imported | refused == {row.line for row in data.rows}
    assert checked.bad == len(data.rows) - len(checked.persons)
    assert all(1 < line <= len(text.splitlines()) for line in refused)  # a lone \r ends a line


VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True),
              CELLS),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["date", "source", "x"]), inner,
                                            max_size=3)),
    max_leaves=6)


@given(st.dictionaries(st.sampled_from(sorted(FILE_FIELDS | {"photo"})), VALUES, max_size=8))
def test_any_yaml_person_is_a_record_or_problems(fields: dict[str, object]) -> None:
    """YAML and JSON give any type to any field: still a record, or problems on its lines."""
    checked = check(ResidentFile([Row(2, dict(fields))]), known_groups=["residents"],
                    zone=ZoneInfo("Asia/Shanghai"),
                    card_owner=lambda card: None if canonical_card(card) == card else "?")
    assert (len(checked.persons), checked.bad) in ((1, 0), (0, 1))
    assert bool(checked.persons) != bool(checked.problems)
