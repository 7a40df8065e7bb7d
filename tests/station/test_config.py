"""station.yaml: strict, with line-precise messages, relative paths resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.config import ConfigError, load_station_config
from station.web import WebConfigError, check_web_config

REPO = Path(__file__).resolve().parents[2]


def test_the_example_loads() -> None:
    config = load_station_config(REPO / "config" / "station.example.yaml")
    assert config.mqtt.share_group == "station"
    assert config.signing_key == REPO / "config" / "station_key.pem"
    assert config.database.url == f"sqlite:///{REPO / 'config' / 'station.db'}"
    assert config.web.login  # operator accounts by default


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: 1\nmqtt:\n  prot: 1883\n",
         "3:3: mqtt.prot: unknown key 'prot'; did you mean 'port'?"),
        ("version: 1\nmqtt:\n  port: 0\n",
         "3:9: mqtt.port: Input should be greater than or equal to 1"),
        ("mqtt: {}\n", "1:1: version: required key is missing"),
        ("version: 1\nversion: 1\n", "2:1: YAML syntax error: found duplicate key \"version\""),
        ("version: 1\nweb:\n  timezone: Mars/Olympus\n",
         "3:13: web.timezone: unknown time zone 'Mars/Olympus' (e.g. Asia/Shanghai, UTC)"),
        ("- 1\n", "1:1: the file must be a YAML mapping (key: value)"),
    ],
)
def test_problems_are_reported_with_their_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_station_config(path)
    assert caught.value.problems == [f"{path}:{problem}"]


def test_a_public_web_page_needs_sign_in(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("version: 1\nweb: {bind: 0.0.0.0, login: false}\n")
    with pytest.raises(WebConfigError, match=r"web\.bind is 0\.0\.0\.0, not loopback: "
                       r"web\.login: false is only allowed on 127\.0\.0\.1"):
        check_web_config(load_station_config(path).web)
    path.write_text("version: 1\nweb: {bind: 127.0.0.1, login: false}\n")
    check_web_config(load_station_config(path).web)
    path.write_text("version: 1\nweb: {bind: 0.0.0.0}\n")
    check_web_config(load_station_config(path).web)


def test_defaults_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("version: 1\n")
    config = load_station_config(path)
    assert config.database.url == f"sqlite:///{tmp_path / 'station.db'}"
    assert (config.portraits_dir, config.signing_key) == (
        tmp_path / "portraits", tmp_path / "station_key.pem")
    assert (config.mqtt.prefix, config.web.bind) == ("menjin", "127.0.0.1")
