"""station.yaml: strict, with line-precise messages, relative paths resolved, ${VAR} expanded."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from menjin.cli import app
from station.commands import keygen
from station.config import ConfigError, load_station_config
from station.configcheck import check_station_config
from station.web import WebConfigError, check_web_config

REPO = Path(__file__).resolve().parents[2]


def test_the_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where `menjin station keygen` wrote station_key.pem
    config = load_station_config(REPO / "config" / "station.example.yaml")
    assert config.mqtt.share_group == "station"
    assert config.signing_key == tmp_path / "station_key.pem"
    assert config.database.url == f"sqlite:///{tmp_path / 'station.db'}"
    assert config.web.login  # operator accounts by default


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: 1\nmqtt:\n  prot: 1883\n",
         "3:3: mqtt.prot: unknown key 'prot'; did you mean 'port'?"),
        ("version: 1\nmqtt:\n  port: 0\n",
         "3:9: mqtt.port: Input should be greater than or equal to 1 (got 0)"),
        ("mqtt: {}\n", "1:1: version: required key is missing"),
        ("version: 1\nversion: 1\n", "2:1: version: key 'version' appears twice, first at line 1, "
         "column 1 (each key may appear once: delete or merge one of them)"),
        ("", "1:1: the file is empty: a station config needs at least version: 1 (start from "
         "config/station.example.yaml)"),
        ("version: 1\ngate: {id: g1}\ndoors: {}\n", "1:1: this is a gate config (it has doors, "
         "gate): check it with menjin check-config {path}"),
        ("version: 1\nmqtt:\n  port: ${MENJIN_TEST_PORT}\n",
         "3:9: mqtt.port: Input should be a valid integer, unable to parse string as an integer "
         "(got 'abc') (the value comes from the environment: MENJIN_TEST_PORT=abc)"),
        ("version: 1\nmqtt:\n  host: ${MENJIN_TEST_UNSET}\n",
         "3:9: mqtt.host: environment variable MENJIN_TEST_UNSET is not set (set it, or give a "
         "default: ${MENJIN_TEST_UNSET:-value})"),
        ("version: 1\nmqtt: " + "[" * 36 + "]" * 36 + "\n",
         "2:38: nested more than 32 levels deep (a config needs a few; is an indentation or a "
         "bracket wrong?)"),
        ("version: 1\nweb:\n  timezone: Mars/Olympus\n",
         "3:13: web.timezone: unknown time zone 'Mars/Olympus' (e.g. Asia/Shanghai, UTC)"),
        ("version: 1\nweb:\n  trusted_proxies: [10.0.0.1, proxy.local]\n",
         "3:20: web.trusted_proxies: 'proxy.local' is not an IP address or network"),
        ("- 1\n", "1:1: the file must be a YAML mapping (key: value)"),
        ("version: 2\n", "1:10: version: unknown value 2 (allowed: 1)"),
        ("version: 1\ndatabase:\n  url: sqllite:///station.db\n",
         "3:8: database.url: database 'sqllite' cannot be used: the station runs on sqlite "
         "(sqlite:///station.db) or postgresql+psycopg (postgresql+psycopg://user@host/db); did "
         "you mean 'sqlite'?"),
        ("version: 1\ndatabase: {url: 'postgresql://menjin@db/menjin'}\n",
         "2:17: database.url: database 'postgresql' cannot be used: the station runs on sqlite "
         "(sqlite:///station.db) or postgresql+psycopg (postgresql+psycopg://user@host/db); did "
         "you mean 'postgresql+psycopg'? (menjin installs the psycopg driver; postgresql:// "
         "alone means psycopg2)"),
        ("version: 1\ndatabase: {url: station.db}\n",
         "2:17: database.url: 'station.db' is not a database URL; write sqlite:///station.db or "
         "postgresql+psycopg://user@host/db"),
        ("version: 1\nweb:\n  bind: 0.0.0.0\n  login: false\n",
         "4:10: web.login: sign-in can be off (login: false) only when web.bind is loopback "
         "(127.0.0.1), not 0.0.0.0: anyone reaching the page would see the passages; keep "
         "login: true and create accounts with `menjin station user add`"),
    ],
)
def test_problems_are_reported_with_their_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, problem: str,
) -> None:
    monkeypatch.setenv("MENJIN_TEST_PORT", "abc")
    monkeypatch.delenv("MENJIN_TEST_UNSET", raising=False)
    path = tmp_path / "station.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    assert caught.value.problems == [f"{path}:{problem}".replace("{path}", str(path))]


def test_a_duplicated_key_does_not_hide_the_files_other_problems(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("version: 1\nmqtt:\n  host: a\nmqtt:\n  host: b\nmqtt_x: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    assert caught.value.problems == [
        f"{path}:4:1: mqtt: key 'mqtt' appears twice, first at line 2, column 1 (each key may "
        "appear once: delete or merge one of them)",
        f"{path}:6:1: mqtt_x: unknown key 'mqtt_x'; did you mean 'mqtt'?",
    ]


def test_a_public_web_page_needs_sign_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "station.yaml"
    path.write_text("version: 1\nweb: {bind: 127.0.0.1, login: false}\n")
    check_web_config(load_station_config(path).web)
    path.write_text("version: 1\nweb: {bind: 0.0.0.0}\n")
    check_web_config(load_station_config(path).web)
    path.write_text("version: 1\nweb: {bind: 0.0.0.0, login: false, enabled: false}\n")
    public = load_station_config(path).web.model_copy(update={"enabled": True})
    with pytest.raises(WebConfigError, match=r"sign-in can be off \(login: false\) only when "
                       r"web\.bind is loopback \(127\.0\.0\.1\), not 0\.0\.0\.0"):
        check_web_config(public)  # a config built in code is refused by the page too


def test_relative_paths_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not to the config's folder: `menjin station keygen` writes to the working directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    path = tmp_path / "etc" / "station.yaml"
    path.parent.mkdir()
    path.write_text("version: 1\n")
    config = load_station_config(path)
    assert config.database.url == f"sqlite:///{work / 'station.db'}"
    assert (config.portraits_dir, config.signing_key) == (
        work / "portraits", work / "station_key.pem")
    assert (config.mqtt.prefix, config.web.bind) == ("menjin", "127.0.0.1")


def test_environment_values_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MENJIN_TEST_PORT", "8883")
    monkeypatch.delenv("MENJIN_TEST_UNSET", raising=False)
    path = tmp_path / "station.yaml"
    path.write_text("version: 1\nmqtt:\n  port: ${MENJIN_TEST_PORT:-1883}\n"
                    "  host: ${MENJIN_TEST_UNSET:-broker.local}\n"
                    "signing_key: ${MENJIN_TEST_UNSET:-keys}/station_key.pem\n")
    config = load_station_config(path)
    assert (config.mqtt.port, config.mqtt.host) == (8883, "broker.local")
    assert config.signing_key == tmp_path / "keys" / "station_key.pem"


# ------------------------------------------------------------ the files station.yaml names
def check(tmp_path: Path, text: str) -> tuple[list[str], list[str]]:
    """(problems, warnings) of ``text`` as ``station run`` would open it, without the path."""
    path = tmp_path / "station.yaml"
    path.write_text(text)
    try:
        _, warnings = check_station_config(path)
    except ConfigError as exc:
        return [p.removeprefix(f"{path}:") for p in exc.problems], []
    return [], [w.removeprefix(f"{path}:") for w in warnings]


def test_a_missing_signing_key_is_a_warning_saying_what_will_not_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    key = tmp_path / "station_key.pem"
    assert check(tmp_path, "version: 1\n") == ([], [
        f"1:1: warning: signing_key: no signing key at {key}: the station receives, stores and "
        "shows events but sends no command: open, mode, sync, enrol and resend (page and "
        "command line) are refused, and missing events are not asked for again; create it with "
        f"`menjin station keygen -o {key}`"])
    keygen(key)
    assert check(tmp_path, "version: 1\n") == ([], [])


def test_a_missing_signing_key_is_an_error_when_gates_wait_for_their_face_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "station.kek").write_text("ab" * 32 + "\n")
    key = tmp_path / "keys" / "station.pem"
    assert check(tmp_path, "version: 1\nkey_encryption_key: station.kek\n"
                           "signing_key: keys/station.pem\n") == ([
        f"3:14: signing_key: no signing key at {key}: with key_encryption_key set, the station "
        "answers the gates' key requests with signed commands, and without them no face opens "
        f"a door; create it with `menjin station keygen -o {key}`"], [])


def test_every_file_the_station_opens_is_checked_where_it_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "station_key.pem").write_text("not a key")
    (tmp_path / "password").write_text("\n")
    (tmp_path / "site-card.key").write_text("abc")
    (tmp_path / "station.kek").write_text("abcd")
    problems, _ = check(tmp_path, (
        "version: 1\n"
        "mqtt:\n  password_file: password\n  tls: {ca_file: ca.crt}\n"
        "database: {url: 'sqlite:///no-such-folder/station.db'}\n"
        "card_hash_key_file: site-card.key\n"
        "key_encryption_key: station.kek\n"))
    assert problems == [
        f"1:1: signing_key: {tmp_path / 'station_key.pem'} is not an Ed25519 private key in PEM "
        "form (the file `menjin station keygen` writes)",
        f"3:18: mqtt.password_file: {tmp_path / 'password'} is empty; write the broker password "
        "in it",
        f"4:18: mqtt.tls.ca_file: file not found: {tmp_path / 'ca.crt'}",
        f"5:17: database.url: the folder {tmp_path / 'no-such-folder'} does not exist: create "
        "it, or put the database somewhere that exists (SQLite creates the file, not its folder)",
        f"6:21: card_hash_key_file: {tmp_path / 'site-card.key'}: expected 32 raw bytes or 64 "
        "hex characters (a gate exports it: menjin keys card-key --export FILE)",
        f"7:21: key_encryption_key: {tmp_path / 'station.kek'}: expected 64 hex characters "
        "(menjin station kek writes one)",
    ]


def test_station_run_stops_on_a_config_problem_with_its_line_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "station.yaml"
    for text, line in [
        ("version: 1\ndatabase:\n  url: sqllite:///station.db\n", "3:8: database.url: "),
        ("version: 1\nweb:\n  bind: 0.0.0.0\n  login: false\n", "4:10: web.login: "),
    ]:
        path.write_text(text)
        result = CliRunner().invoke(app, ["station", "run", "-c", str(path)])
        assert result.exit_code == 78, result.output
        assert result.output.startswith(f"{path}:{line}")
        assert result.output.endswith("1 problem(s) found\n")
        assert not (tmp_path / "station.db").exists()  # nothing opened before the check
        result = CliRunner().invoke(app, ["station", "check-config", str(path)])
        assert result.exit_code == 78 and result.output.startswith(f"{path}:{line}")


def test_station_check_config_prints_the_warnings_then_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "station.yaml"
    path.write_text("version: 1\n")
    result = CliRunner().invoke(app, ["station", "check-config", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{path}:1:1: warning: signing_key: no signing key at ")
    assert lines[1] == (f"{path}: OK: broker 127.0.0.1:1883, signing key "
                        f"{tmp_path / 'station_key.pem'}, web page 127.0.0.1:8080")
    result = CliRunner().invoke(app, ["station", "check-config", "--no-file-checks", str(path)])
    assert result.output.endswith("web page 127.0.0.1:8080 (files not checked)\n")
