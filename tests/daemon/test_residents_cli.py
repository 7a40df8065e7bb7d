"""`menjin residents`: all-or-nothing imports with line numbers, list, add, disable, forget."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daemon.audit import AuditLog
from daemon.keyring import open_gate_store
from daemon.keys import load_local, provider
from daemon.store import Store, pseudonym
from menjin.cli import app
from protocol.pins import verify_pin

runner = CliRunner()

GOOD_CSV = """\
id,name,kind,valid_until,groups,cards,pin,face_consent_date,face_consent_source
p1,Wang Fang,resident,,residents,0004567890;0004567891,1234,2026-11-02,signed form 118
v1,Zhao Min,visitor,2026-12-31,residents,0001112223,,,
"""
GROUPS_YAML = """\
groups:
  - {id: residents, doors: [front, vehicle], schedule: always}
  - {id: office, doors: [front], schedule: "mon-fri 08:00-18:00"}
holidays: [2026-10-01]
"""


def run(*args: str, input_text: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["residents", *args], input=input_text)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store with the two groups defined."""
    groups = tmp_path / "groups.yaml"
    groups.write_text(GROUPS_YAML, encoding="utf-8")
    path = tmp_path / "residents.db"
    code, out, err = run("import", str(groups), "--db", str(path))
    assert (code, err) == (0, ""), err
    assert out == "imported 0 person(s), 2 group(s)\n"
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_csv_import_and_list(tmp_path: Path, db: Path) -> None:
    code, out, _ = run("import", str(write(tmp_path, "r.csv", GOOD_CSV)), "--db", str(db))
    assert (code, out) == (0, "imported 2 person(s), 0 group(s)\n")
    with Store(db) as store:
        p1 = store.person("p1")
        assert p1 is not None
        assert p1.cards == ("4567890", "4567891")  # canonical: no leading zeros
        assert p1.pin_hash is not None
        assert p1.pin_hash.startswith("scrypt$")  # a salted hash; hex digits may read "1234"
        assert verify_pin("1234", p1.pin_hash)
        assert p1.face_consent_source == "signed form 118"
        v1 = store.person("v1")
        assert v1 is not None
        assert v1.valid_until is not None
        assert v1.valid_until.isoformat() == "2027-01-01T00:00:00+08:00"
        assert store.holidays()
    code, out, err = run("list", "--db", str(db))
    assert code == 0
    assert out.splitlines() == [
        "p1\tWang Fang\tresident\tenabled\t… → …\tgroups=residents\t"
        "cards=****7890,****7891\tpin=yes\tface=2026-11-02",
        "v1\tZhao Min\tvisitor\tenabled\t… → 2027-01-01T00:00:00+08:00\tgroups=residents\t"
        "cards=****2223\tpin=no\tface=no",
        "2 person(s), store version 0",
    ]
    assert "0004567890" not in out
    assert err == ""


BAD_CSV = """\
id,name,kind,valid_from,valid_until,groups,cards,pin,face_consent_date,face_consent_source
p1,Wang Fang,resident,,,residents,0004567890,1234,,
p1,Wang Fang again,resident,,,residents,0009999999,,,
p2,Li Lei,guest,,,residents,0001,,,
p3,Chen Jie,staff,2026-12-01,2026-11-01,office,0002,,,
p4,Sun Li,resident,,,residnets,0003,,,
p5,Zhou Yu,resident,,,residents,0004567890,,,
p6,Wu Hao,resident,,,residents,0005,12,,
p7,Ma Tao,resident,,,residents,0006,,2026-11-02,

p8,Ok Person,resident,,,residents,0007,,,
"""


def test_bad_rows_are_all_reported_and_nothing_is_imported(tmp_path: Path, db: Path) -> None:
    file = write(tmp_path, "bad.csv", BAD_CSV)
    code, out, err = run("import", str(file), "--db", str(db))
    assert code == 65
    assert out == ""
    assert err.splitlines() == [
        f"{file}:3: id: 'p1' is already used on line 2",
        f"{file}:4: kind: 'guest' is not resident, visitor or staff",
        f"{file}:5: valid_until: must be later than valid_from",
        f"{file}:6: groups: unknown group 'residnets'; did you mean 'residents'?",
        f"{file}:7: cards: card ****7890 is already given to p1 on line 2",
        f"{file}:8: pin: a PIN is 4 to 8 digits",
        f"{file}:9: face_consent.source: the form, record or witness must be given",
        "nothing imported: 7 bad row(s); fix them or use --skip-bad",
    ]
    with Store(db) as store:
        assert store.persons() == []


def test_skip_bad_imports_the_good_rows(tmp_path: Path, db: Path) -> None:
    code, out, err = run("import", str(write(tmp_path, "bad.csv", BAD_CSV)), "--db", str(db),
                         "--skip-bad")
    assert code == 0
    assert out == "imported 2 person(s), 0 group(s), 7 bad row(s) skipped\n"
    assert len(err.splitlines()) == 7
    with Store(db) as store:
        assert [p.id for p in store.persons()] == ["p1", "p8"]


def test_a_card_held_by_someone_in_the_store(tmp_path: Path, db: Path) -> None:
    run("import", str(write(tmp_path, "r.csv", GOOD_CSV)), "--db", str(db))
    other = write(tmp_path, "other.csv", "id,name,groups,cards\nx9,Thief,residents,0001112223\n")
    code, _, err = run("import", str(other), "--db", str(db))
    assert code == 65
    assert err.splitlines()[0] == (f"{other}:2: cards: card ****2223 already belongs to v1 in "
                                   "the store")
    moved = write(tmp_path, "moved.csv",
                  "id,name,groups,cards\nx9,New,residents,0001112223\nv1,Zhao Min,residents,\n")
    code, _, err = run("import", str(moved), "--db", str(db))
    assert (code, err) == (0, "")  # the card moves from v1 to x9 within one import
    with Store(db) as store:
        assert store.card_owner("0001112223") == "x9"


def test_yaml_import_reports_the_line_of_the_bad_field(tmp_path: Path, db: Path) -> None:
    file = write(tmp_path, "r.yaml", """\
        persons:
          - id: p1
            name: Wang Fang
            groups: [residents]
            cards: ["0004567890"]
            face_consent: {date: 2026-11-02, source: form 118}
          - id: p2
            name: Li Lei
            cards: [0004567891]
          - id: p3
            name: Zhou Yu
            valid_from: soon
          - id: p4
            name: Kid
            under_14: true
            face_consent: {date: 2026-11-02, source: form 119}
          - id: p5
            name: Typo
            card: ["1"]
        """)
    code, _, err = run("import", str(file), "--db", str(db))
    assert code == 65
    assert err.splitlines() == [
        f"{file}:9: cards: write card numbers in quotes (YAML reads 4567891 as a number and "
        "drops leading zeros)",
        f"{file}:12: valid_from: not a date or time: 'soon' (use 2026-12-01 or "
        "2026-12-01T18:00:00)",
        f"{file}:13: guardian_consent: face consent of a child under 14 needs a guardian's",
        f"{file}:19: card: unknown field; did you mean 'cards'?",
        "nothing imported: 4 bad row(s); fix them or use --skip-bad",
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("r.csv", "id,name,card\n", "{file}:1: unknown column 'card'; did you mean 'cards'?"),
        ("r.csv", "name,cards\n", "{file}:1: the header needs a 'id' column"),
        ("r.yaml", "persons:\n  - id: a\n    id: b\n",
         "{file}:3:5: persons[0].id: key 'id' appears twice, first at line 2, column 5 (each key "
         "may appear once: delete or merge one of them)"),
        ("r.yaml", "people: []\n",
         "{file}:1: unknown section 'people' (persons, groups, holidays, revoked)"),
        ("r.txt", "x", "{file}: use a .csv, .yaml or .json file"),
    ],
)
def test_unreadable_files(tmp_path: Path, db: Path, name: str, text: str, message: str) -> None:
    file = write(tmp_path, name, text)
    code, _, err = run("import", str(file), "--db", str(db))
    assert code == 65
    assert err.splitlines() == [message.format(file=file)]


def test_list_warns_about_face_entry_without_a_card(tmp_path: Path, db: Path) -> None:
    file = write(tmp_path, "f.csv", "id,name,groups,face_consent_date,face_consent_source\n"
                                    "f1,Face Only,residents,2026-11-02,form 7\n")
    run("import", str(file), "--db", str(db))
    code, _, err = run("list", "--db", str(db), "--json")
    assert code == 0
    assert err == ("warning: f1: enrolled for face entry without a card (a PIN only works "
                   "with a card; a non-face credential must remain an alternative)\n")


def test_add_disable_enable_remove(db: Path) -> None:
    code, out, _ = run("add", "p9", "--name", "Wang Fang", "--card", "0004567890", "--group",
                       "residents", "--set-pin", "--db", str(db), input_text="2468\n2468\n")
    assert code == 0
    assert out.endswith("added p9\n")
    code, _, err = run("add", "p9", "--name", "Again", "--db", str(db))
    assert (code, err) == (65, "p9 already exists (change it with an import file)\n")
    code, _, err = run("add", "p10", "--name", "X", "--kind", "guest", "--db", str(db))
    assert (code, err) == (65, "kind: 'guest' is not resident, visitor or staff\n")
    assert run("disable", "p9", "--db", str(db))[:2] == (0, "disabled p9\n")
    with Store(db) as store:
        p9 = store.person("p9")
        assert p9 is not None
        assert not p9.enabled
        assert verify_pin("2468", p9.pin_hash)
    assert run("enable", "p9", "--db", str(db))[:2] == (0, "enabled p9\n")
    assert run("disable", "nobody", "--db", str(db))[0] == 1
    assert run("remove", "p9", "--db", str(db))[:2] == (0, "removed p9 (1 card(s))\n")
    with Store(db) as store:
        assert store.card_owner("0004567890") is None


def test_forget_prints_what_was_removed(tmp_path: Path, db: Path) -> None:
    run("import", str(write(tmp_path, "r.csv", GOOD_CSV)), "--db", str(db))
    code, out, _ = run("forget", "p1", "--db", str(db))
    assert code == 0
    result = json.loads(out)
    key = load_local(provider("file", db.parent / "keys"), db.parent / "keys").pseudonyms
    assert result == {"person": "p1", "pseudonym": pseudonym(key, "p1"), "found": True,
                      "cards_removed": 2, "pin_removed": True}
    with Store(db) as store:
        assert store.person("p1") is None
        assert store.forgotten() == [result["pseudonym"]]
    code, out, err = run("forget", "p1", "--db", str(db))
    assert code == 1
    assert json.loads(out)["pseudonym"] == result["pseudonym"]
    assert err == "no person 'p1' in the store (pseudonym recorded anyway)\n"


def test_with_a_config_file_cards_are_hashed_and_audited(tmp_path: Path) -> None:
    """Card hashing is on by default: no card number, name or id in the store file."""
    config = write(tmp_path, "gate.yaml", """\
        version: 1
        state_dir: state
        gate: {id: g1, site: Test compound}
        doors:
          front:
            lock: {pin: 17}
        """)
    groups = write(tmp_path, "g.yaml", GROUPS_YAML)
    assert run("import", str(groups), "-c", str(config))[0] == 0
    code, _, err = run("import", str(write(tmp_path, "r.csv", GOOD_CSV)), "-c", str(config))
    assert (code, err) == (0, "")
    db = tmp_path / "state" / "residents.db"
    raw = b"".join(f.read_bytes() for f in db.parent.glob("residents.db*"))
    # the whole name: four letters alone turn up by chance in the sealed rows' base64
    assert b"0004567890" not in raw and b"Wang Fang" not in raw and b'"p1"' not in raw
    with open_gate_store(config) as store:
        assert store.card_owner("0004567890") == "p1"
    code, _, err = run("list", "--db", str(db))
    assert code == 78
    assert "card hashing hmac-sha256, the config now asks for plain" in err
    audit = AuditLog(tmp_path / "state" / "audit.log")
    assert [e["action"] for e in audit.entries()] == ["residents.import", "residents.import"]
    assert audit.verify().ok


def test_store_or_config_is_required(tmp_path: Path) -> None:
    code, _, err = run("list")
    assert (code, err) == (78, "give either -c CONFIG or --db FILE\n")
    missing = tmp_path / "typo.db"
    code, _, err = run("list", "--db", str(missing))
    assert (code, err) == (1, f"no resident store at {missing} (import or add residents first)\n")
    assert not missing.exists()


def test_list_shows_masked_cards_from_a_hashed_store(tmp_path: Path) -> None:
    config = write(tmp_path, "gate.yaml", """\
        version: 1
        state_dir: state
        gate: {id: g1, site: Test compound}
        doors:
          front:
            lock: {pin: 17}
        """)
    assert run("import", str(write(tmp_path, "g.yaml", GROUPS_YAML)), "-c", str(config))[0] == 0
    assert run("import", str(write(tmp_path, "r.csv", GOOD_CSV)), "-c", str(config))[0] == 0
    assert run("disable", "p1", "-c", str(config))[0] == 0  # a rewrite keeps the masks
    code, out, _ = run("list", "-c", str(config))
    assert code == 0
    assert "cards=****7890,****7891" in out and "cards=****2223" in out
    assert "0004567890" not in out


HEADER = ("id,name,kind,enabled,valid_from,valid_until,groups,cards,duress_cards,pin,duress_pin,"
          "face_consent_date,face_consent_source,under_14,guardian_consent_date,"
          "guardian_consent_source")
SPREADSHEET = ("looks like a spreadsheet turned it into a number (scientific notation or a "
               "fraction): format the column as text and copy the card number as printed")
BAD_CARDS = [
    ("4.567893E+09", f"card number '4.567893E+09' {SPREADSHEET}"),
    ("12345678.0", f"card number '12345678.0' {SPREADSHEET}"),
    ("0b101", "card number '0b101' is a binary literal, which no card prints: give the decimal "
     "or hex number as printed (a hex tag id with 0x: 0x0b101 if that is what it is)"),
    ("２３４", "card number '２３４' has characters other than ASCII digits, letters A-F and , : / "
     "(type the digits as printed, 0-9)"),
    ("00045-67890", "'00045-67890' is not a card number: use decimal digits (0012345678), hex "
     "(0x00BC614E or 3A00B1C2D4), or facility,number (036,02193)"),
]


def persons(db: Path) -> list[str]:
    with Store(db) as store:
        return [p.id for p in store.persons()]


@pytest.mark.parametrize(("card", "message"), BAD_CARDS)
def test_a_bad_card_is_reported_with_its_line(tmp_path: Path, db: Path, card: str,
                                              message: str) -> None:
    file = write(tmp_path, "one.csv", f"{HEADER}\np1,X,resident,yes,,,residents,{card},,,,,,,,\n"
                                      "p2,Y,resident,yes,,,residents,0004567890,,,,,,,,\n")
    result = runner.invoke(app, ["residents", "import", str(file), "--db", str(db)])
    assert isinstance(result.exception, SystemExit)  # an answer, not a traceback
    assert (result.exit_code, result.stdout) == (65, "")
    assert result.stderr.splitlines() == [
        f"{file}:2: cards: {message}",
        "nothing imported: 1 bad row(s); fix them or use --skip-bad"]
    assert persons(db) == []
    code, out, err = run("import", str(file), "--db", str(db), "--skip-bad")
    assert (code, out) == (0, "imported 1 person(s), 0 group(s), 1 bad row(s) skipped\n")
    assert err.splitlines() == [f"{file}:2: cards: {message}"]
    assert persons(db) == ["p2"]


def test_short_and_truncated_rows_are_refused(tmp_path: Path, db: Path) -> None:
    file = write(tmp_path, "short.csv", f"{HEADER}\nr0,Ok,resident,yes,,,residents,,,,,,,,,\n"
                                        'r1,Short Row,resident,yes,,,residents\nr2,"Truncated')
    code, out, err = run("import", str(file), "--db", str(db))
    assert (code, out) == (65, "")
    assert err.splitlines() == [
        f"{file}:3: missing columns cards, duress_cards, pin, duress_pin, face_consent_date, "
        "face_consent_source, under_14, guardian_consent_date, guardian_consent_source: the row "
        "has 7 values for 16 columns (leave a cell empty, but keep its comma)",
        f"{file}:4: unterminated quote: a value opened with '\"' on this line is never closed; "
        "add the closing '\"'",
        "nothing imported: 2 bad row(s); fix them or use --skip-bad"]
    assert persons(db) == []
    assert run("import", str(file), "--db", str(db), "--skip-bad")[:2] == (
        0, "imported 1 person(s), 0 group(s), 2 bad row(s) skipped\n")
    assert persons(db) == ["r0"]


def test_every_problem_of_each_row_in_one_run(tmp_path: Path, db: Path) -> None:
    file = write(tmp_path, "m.csv", f"{HEADER}\nq1,A,residnet,yes,,,residents,0x4567AB,,,,,,,,\n"
                                    "q2,B,resident,yes,,,residents,4.567893E+09,,123,,,,ja,,\n")
    code, _, err = run("import", str(file), "--db", str(db))
    assert code == 65
    assert err.splitlines() == [
        f"{file}:2: kind: 'residnet' is not resident, visitor or staff",
        f"{file}:3: cards: card number '4.567893E+09' {SPREADSHEET}",
        f"{file}:3: pin: a PIN is 4 to 8 digits",
        f"{file}:3: under_14: 'ja' is not yes or no",
        "nothing imported: 2 bad row(s); fix them or use --skip-bad"]


def test_one_card_twice_in_a_file_names_both_lines(tmp_path: Path, db: Path) -> None:
    file = write(tmp_path, "dup.csv", "id,name,groups,cards\nq1,A,residents,5\n"
                                      "q2,B,residents,0005\n")
    code, _, err = run("import", str(file), "--db", str(db))
    assert code == 65
    assert err.splitlines() == [f"{file}:3: cards: card ****5 is already given to q1 on line 2",
                                "nothing imported: 1 bad row(s); fix them or use --skip-bad"]
    assert persons(db) == []


def test_a_card_stays_with_a_stored_person_whose_row_is_bad(tmp_path: Path, db: Path) -> None:
    run("import", str(write(tmp_path, "r.csv", GOOD_CSV)), "--db", str(db))
    file = write(tmp_path, "moved.csv", "id,name,kind,groups,cards\n"
                                        "x9,New,resident,residents,0001112223\n"
                                        "v1,Zhao Min,guest,residents,\n")
    code, out, err = run("import", str(file), "--db", str(db), "--skip-bad")
    assert (code, out) == (0, "imported 0 person(s), 0 group(s), 2 bad row(s) skipped\n")
    assert err.splitlines() == [
        f"{file}:2: cards: card ****2223 already belongs to v1 in the store (its row on line 3 "
        "is not imported)",
        f"{file}:3: kind: 'guest' is not resident, visitor or staff"]
    with Store(db) as store:
        assert store.card_owner("0001112223") == "v1"


def test_a_yaml_file_with_bad_items_changes_nothing(tmp_path: Path, db: Path) -> None:
    file = write(tmp_path, "bad.yaml", """\
        groups:
          - {id: night, doors: [front], schedule: "sometimes"}
        revoked: ["0001", "1.5E3"]
        persons:
          - {id: y1, name: A, groups: [residents], cards: ["0077"], valid_until: "9999-12-31"}
          - {id: y2, name: B, groups: [residents, nightt], cards: ["77"]}
          - {id: y3, name: C, groups: [office]}
        """)
    code, out, err = run("import", str(file), "--db", str(db))
    assert (code, out) == (65, "")
    assert err.splitlines() == [
        f"{file}:2: group night: schedule: clause 'sometimes' needs days and windows, e.g. "
        "'mon-fri 07:00-22:00'",
        f"{file}:3: revoked[1]: card number '1.5E3' {SPREADSHEET}",
        f"{file}:5: valid_until: '9999-12-31' is past the last day there is (leave it empty for "
        "no end)",
        f"{file}:6: groups: unknown group 'nightt'; did you mean 'night'?",
        f"{file}:6: cards: card ****77 is already given to y1 on line 5",
        "nothing imported: 4 bad row(s); fix them or use --skip-bad"]
    with Store(db) as store:
        assert (store.persons(), store.revoked()) == ([], frozenset())
        assert [g.id for g in store.groups()] == ["office", "residents"]


def test_an_unknown_group_names_the_command_that_creates_it(tmp_path: Path, db: Path) -> None:
    csv_file = write(tmp_path, "r.csv", "id,name,groups\np1,A,garage\n")
    code, _, err = run("import", str(csv_file), "--db", str(db))
    assert code == 65
    assert err.splitlines()[0] == (
        f"{csv_file}:2: groups: unknown group 'garage' (groups in the store: office, residents; "
        f"create it first: menjin residents group add garage --door DOOR --db {db})")
    yaml_file = write(tmp_path, "r.yaml", "persons:\n  - {id: p1, name: A, groups: [garage]}\n")
    code, _, err = run("import", str(yaml_file), "--db", str(db))
    assert err.splitlines()[0] == (
        f"{yaml_file}:2: groups: unknown group 'garage' (groups in the store: office, residents; "
        "define it under 'groups:' or create it first: menjin residents group add garage --door "
        f"DOOR --db {db})")
    assert run("group", "add", "garage", "--door", "front", "--db", str(db))[0] == 0
    assert run("import", str(csv_file), "--db", str(db))[:2] == (
        0, "imported 1 person(s), 0 group(s)\n")


def test_skip_bad_leaves_out_the_members_of_a_bad_group(tmp_path: Path, db: Path) -> None:
    """The store holds 'office' (mon-fri 08:00-18:00); the file redefines it with a schedule the
    gate cannot read and adds 'night' the same way.  Their members are reported and not imported:
    neither without the group nor with the store's old office hours."""
    file = write(tmp_path, "bad-groups.yaml", """\
        groups:
          - {id: night, doors: [front], schedule: "sometimes"}
          - {id: office, doors: [front, vehicle], schedule: "daily"}
        persons:
          - {id: n1, name: Night Guard, groups: [residents, night]}
          - {id: o1, name: Office Clerk, groups: [office]}
          - {id: r1, name: Resident, groups: [residents]}
        """)
    code, out, err = run("import", str(file), "--db", str(db), "--skip-bad")
    assert (code, out) == (0, "imported 1 person(s), 0 group(s), 4 bad row(s) skipped\n")
    assert err.splitlines() == [
        f"{file}:2: group night: schedule: clause 'sometimes' needs days and windows, e.g. "
        "'mon-fri 07:00-22:00'",
        f"{file}:3: group office: schedule: clause 'daily' needs days and windows, e.g. "
        "'mon-fri 07:00-22:00'",
        f"{file}:5: groups: group 'night' is not imported: its definition on line 2 is bad",
        f"{file}:6: groups: group 'office' is not imported: its definition on line 3 is bad"]
    with Store(db) as store:
        assert [p.id for p in store.persons()] == ["r1"]
        office = {g.id: g for g in store.groups()}["office"]
        assert (office.doors, office.schedule.text) == (("front",), "mon-fri 08:00-18:00")
