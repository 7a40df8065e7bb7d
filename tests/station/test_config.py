"""station.yaml: strict, with line-precise messages, relative paths resolved, ${VAR} expanded."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.config import ConfigError, load_station_config
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
    path.write_text("version: 1\nweb: {bind: 0.0.0.0, login: false}\n")
    with pytest.raises(WebConfigError, match=r"web\.bind is 0\.0\.0\.0, not loopback: "
                       r"web\.login: false is only allowed on 127\.0\.0\.1"):
        check_web_config(load_station_config(path).web)
    path.write_text("version: 1\nweb: {bind: 127.0.0.1, login: false}\n")
    check_web_config(load_station_config(path).web)
    path.write_text("version: 1\nweb: {bind: 0.0.0.0}\n")
    check_web_config(load_station_config(path).web)


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
