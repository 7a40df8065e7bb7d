"""`menjin residents group add/list/remove`, the first resident on a fresh store, sample files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from menjin.cli import app

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "example.yaml"
runner = CliRunner()


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    return str(EXAMPLE)


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["residents", *args])
    return result.exit_code, result.stdout, result.stderr


def test_first_resident_as_the_help_shows(cfg: str) -> None:
    code, _, err = run("add", "p12", "--name", "Wang", "--card", "0004567890",
                       "--group", "residents", "-c", cfg)
    assert code == 65
    assert err == ("groups: unknown group 'residents' (groups in the store: none; create it "
                   f"first: menjin residents group add residents -c {cfg})\n")
    code, out, _ = run("group", "add", "residents", "-c", cfg)
    assert (code, out) == (0, "added group residents: doors front, vehicle; always\n")
    code, out, err = run("add", "p12", "--name", "Wang", "--card", "0004567890",
                         "--group", "residents", "-c", cfg)
    assert (code, out) == (0, "added p12\n"), err


def test_unknown_group_with_db_names_the_door_option(tmp_path: Path) -> None:
    db = tmp_path / "residents.db"
    code, _, err = run("add", "p1", "--name", "Wang", "--group", "residents", "--db", str(db))
    assert code == 65
    assert err == ("groups: unknown group 'residents' (groups in the store: none; create it "
                   f"first: menjin residents group add residents --door DOOR --db {db})\n")
    code, _, err = run("group", "add", "residents", "--db", str(db))
    assert (code, err) == (65, "name the doors: --door DOOR (repeat), or give -c CONFIG for "
                                "every door\n")


def test_group_add_list_remove(cfg: str) -> None:
    code, out, _ = run("group", "add", "office", "--door", "front", "--schedule",
                       "mon-fri 08:00-18:00", "--name", "Office", "-c", cfg)
    assert code == 0
    assert out == "added group office: doors front; mon-fri 08:00-18:00\n"
    code, _, err = run("group", "add", "x", "--door", "frnt", "-c", cfg)
    assert (code, err) == (65, "unknown door 'frnt'; did you mean 'front'?\n")
    code, _, err = run("group", "add", "y", "--door", "front", "--schedule", "sometimes",
                       "-c", cfg)
    assert code == 65
    assert err.startswith("group schedule: ")
    run("group", "add", "residents", "-c", cfg)
    run("add", "p1", "--name", "Wang", "--group", "office", "-c", cfg)
    code, out, _ = run("group", "list", "-c", cfg)
    assert out == ("office\tOffice\tdoors=front\tschedule=mon-fri 08:00-18:00\tmembers=1\n"
                   "residents\t-\tdoors=front,vehicle\tschedule=always\tmembers=0\n"
                   "2 group(s)\n")
    code, out, _ = run("group", "list", "-c", cfg, "--json")
    assert json.loads(out.splitlines()[0]) == {
        "id": "office", "name": "Office", "doors": ["front"],
        "schedule": "mon-fri 08:00-18:00", "members": 1}
    code, _, err = run("group", "remove", "office", "-c", cfg)
    assert (code, err) == (65, "group 'office' still has 1 member(s) (p1); move them to another "
                                "group first\n")
    assert run("group", "remove", "residents", "-c", cfg)[:2] == (0, "removed group residents\n")
    code, _, err = run("group", "remove", "residents", "-c", cfg)
    assert code == 1
    assert err.startswith("no group 'residents' in ")


def test_sample_files_import_cleanly_on_a_fresh_store(cfg: str) -> None:
    code, out, err = run("import", str(REPO / "config" / "residents.example.yaml"), "-c", cfg)
    assert (code, out) == (0, "imported 3 person(s), 2 group(s)\n"), err
    code, out, err = run("import", str(REPO / "config" / "residents.example.csv"), "-c", cfg)
    assert (code, out) == (0, "imported 3 person(s), 0 group(s)\n"), err
    code, out, _ = run("list", "-c", cfg)
    assert out.splitlines()[-1] == "6 person(s), store version 0"


def test_import_help_shows_both_formats() -> None:
    result = runner.invoke(app, ["residents", "import", "--help"], env={"COLUMNS": "100"})
    text = " ".join(result.stdout.split())
    assert "face_consent_source, under_14, guardian_consent_date, guardian_consent_source" in text
    assert 'YAML: "persons:" a list of the same fields' in text
    assert "config/residents.example.csv" in text


def test_edits_print_json_with_json(cfg: str) -> None:
    assert json.loads(run("group", "add", "residents", "-c", cfg, "--json")[1]) == {
        "group": "residents", "changed": False, "doors": ["front", "vehicle"],
        "schedule": "always"}
    assert json.loads(run("add", "p1", "--name", "Wang", "--card", "0004567890", "--group",
                          "residents", "-c", cfg, "--json")[1]) == {"added": "p1"}
    assert json.loads(run("disable", "p1", "-c", cfg, "--json")[1]) == {
        "person": "p1", "enabled": False}
    assert json.loads(run("import", str(REPO / "config" / "residents.example.csv"), "-c", cfg,
                          "--json")[1]) == {"imported": 3, "groups": 0, "skipped": 0}
    assert json.loads(run("remove", "p1", "-c", cfg, "--json")[1]) == {
        "removed": "p1", "cards": 1}


def test_add_with_a_bad_card_answers_in_one_line(cfg: str) -> None:
    run("group", "add", "residents", "-c", cfg)
    result = runner.invoke(app, ["residents", "add", "p12", "--name", "Wang", "--card",
                                 "1.23457E+11", "--group", "residents", "-c", cfg])
    assert isinstance(result.exception, SystemExit)  # an answer, not a traceback
    assert (result.exit_code, result.stdout) == (65, "")
    assert result.stderr == (
        "cards: card number '1.23457E+11' looks like a spreadsheet turned it into a number "
        "(scientific notation or a fraction): format the column as text and copy the card "
        "number as printed\n")
    code, _, err = run("add", "p12", "--name", "Wang", "--kind", "guest", "--card", "0b101",
                       "--group", "residnets", "--valid-from", "2026-12-02", "--valid-until",
                       "2026-12-01", "-c", cfg)
    assert code == 65
    assert err.splitlines() == [
        "kind: 'guest' is not resident, visitor or staff",
        "valid_until: must be later than valid_from",
        "groups: unknown group 'residnets'; did you mean 'residents'?",
        "cards: card number '0b101' is a binary literal, which no card prints: give the decimal "
        "or hex number as printed (a hex tag id with 0x: 0x0b101 if that is what it is)"]
    code, out, _ = run("list", "-c", cfg)
    assert (code, out) == (0, "0 person(s), store version 0\n")
