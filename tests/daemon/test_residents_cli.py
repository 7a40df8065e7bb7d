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
        f"{file}:3: id 'p1' is already used on line 2",
        f"{file}:4: kind: 'guest' is not resident, visitor or staff",
        f"{file}:5: valid_until: must be later than valid_from",
        f"{file}:6: groups: unknown group 'residnets'; did you mean 'residents'?",
        f"{file}:7: card ****7890 is already given to p1 on line 2",
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
    assert err.splitlines()[0] == f"{other}:2: card ****2223 already belongs to v1 in the store"
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
    assert b"0004567890" not in raw and b"Wang" not in raw and b'"p1"' not in raw
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
