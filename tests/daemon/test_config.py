"""Installer configuration: the happy path, and broken files with their exact message and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daemon.cli.config import SCHEMA_FILE, schema_text
from daemon.configfile import ConfigError, load_config
from menjin.cli import app

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "example.yaml"

MINIMAL = """\
version: 1
state_dir: state
gate:
  id: g1
  site: Test compound
doors:
  front:
    lock: {pin: 17}
    contact: {pin: 27}
    exit_button: {pin: 22}
readers:
  r1:
    type: em4100
    door: front
    port: /dev/ttyUSB0
"""


def write(tmp_path: Path, text: str, name: str = "gate.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    prefix = f"{path}:"
    return [str(p).removeprefix(prefix) for p in info.value.problems]


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.gate.timezone == "Asia/Shanghai"
    assert cfg.hardware.gpio_backend == "lgpio"
    assert cfg.doors["front"].unlock_seconds == 5
    assert cfg.privacy.portraits == "off"  # the lawful default: no face image is kept
    # state files resolve against state_dir, which resolves against the config's folder
    assert cfg.journal.path == tmp_path / "state" / "journal.db"


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.setenv("MENJIN_MODELS", str(models_dir))
    cfg = load_config(EXAMPLE)
    assert set(cfg.doors) == {"front", "vehicle"}
    assert cfg.hardware.simulate
    assert cfg.vision is not None and cfg.vision.detector.kind == "yunet"


def test_example_points_editors_at_schema() -> None:
    assert EXAMPLE.read_text(encoding="utf-8").splitlines()[0] == (
        "# yaml-language-server: $schema=schema.json"
    )


def test_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "config/schema.json is stale: run `menjin config schema`"
    )


BROKEN = [
    (  # 1 unknown key with a suggestion
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    unlock_secs: 4"),
        ["9:5: doors.front.unlock_secs: unknown key 'unlock_secs'; did you mean 'unlock_seconds'?"],
    ),
    (  # 2 wrong type
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    unlock_seconds: soon"),
        [
            "9:21: doors.front.unlock_seconds: Input should be a valid number, unable to parse "
            "string as a number"
        ],
    ),
    (  # 3 out of range pin
        MINIMAL.replace("{pin: 27}", "{pin: 99}"),
        ["9:20: doors.front.contact.pin: Input should be less than or equal to 53"],
    ),
    (  # 4 the same pin twice
        MINIMAL.replace("{pin: 22}", "{pin: 17}"),
        [
            "10:24: doors.front.exit_button.pin: GPIO 17 is already used by doors.front.lock.pin "
            "(each pin has one job)"
        ],
    ),
    (  # 5 reader naming an unknown door
        MINIMAL.replace("    door: front", "    door: frnt"),
        ["14:11: readers.r1.door: unknown door 'frnt'; did you mean 'front'?"],
    ),
    (  # 6 missing required key
        MINIMAL.replace("  site: Test compound\n", ""),
        ["3:1: gate.site: required key is missing"],
    ),
    (  # 7 YAML syntax error
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17"),
        [
            "9:12: YAML syntax error: expected ',' or '}', but got ':' "
            "(while parsing a flow mapping "
            "that starts at 8:11)"
        ],
    ),
    (  # 8 duplicate key
        MINIMAL.replace("    contact: {pin: 27}", "    contact: {pin: 27}\n    contact: {pin: 26}"),
        ['10:5: YAML syntax error: found duplicate key "contact" (each key may appear once)'],
    ),
    (  # 9 serial port that cannot exist
        MINIMAL.replace("/dev/ttyUSB0", "COM3"),
        [
            "15:11: readers.r1.port: 'COM3' cannot be a serial port (use a /dev/... path or a "
            "pyserial URL such as socket://host:port)"
        ],
    ),
    (  # 10 unlock longer than the held-open limit
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    unlock_seconds: 40"),
        [
            "9:21: doors.front.unlock_seconds: unlock time 40 s is longer than the held-open limit "
            "30 s (every normal passage would raise door.held)"
        ],
    ),
    (  # 11 missing TLS CA file
        MINIMAL + "uplink:\n  host: station.example\n  tls:\n    ca_file: missing-ca.crt\n",
        ["19:14: uplink.tls.ca_file: file not found: {dir}/missing-ca.crt"],
    ),
    (  # 12 missing model file
        MINIMAL
        + textwrap.dedent("""\
            camera: {source: 0, door: front}
            vision:
              detector: {kind: yunet, path: nothing.onnx}
              embedder: {kind: arcface, path: nothing2.onnx}
            """),
        [
            "18:33: vision.detector.path: file not found: {dir}/nothing.onnx",
            "19:35: vision.embedder.path: file not found: {dir}/nothing2.onnx",
        ],
    ),
    (  # 13 bad enum value
        MINIMAL.replace("{pin: 17}", "{pin: 17, fail_mode: sometimes}"),
        ["8:32: doors.front.lock.fail_mode: Input should be 'safe' or 'secure'"],
    ),
    (  # 14 bad baud rate
        MINIMAL + "    baud: 9601\n",
        ["16:11: readers.r1.baud: 9601 is not a standard baud rate (9600 for EM4100 readers)"],
    ),
    (  # 15 face as the only way in
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    access: face"),
        [
            "9:13: doors.front.access: face may not be the only way in "
            "(PIPL; a card must remain an "
            "alternative): use card_or_face or card_and_face"
        ],
    ),
    (  # 16 portraits uploaded without a legal basis
        MINIMAL + "privacy:\n  portraits: upload\n",
        [
            "17:14: privacy.portraits: upload needs privacy.legal_basis naming the law, regulation "
            "or consent record (PIPL art. 29; face images may not leave the device otherwise)",
            "17:14: privacy.portraits: upload needs privacy.retention_days",
        ],
    ),
    (  # 17 broker off the board without TLS
        MINIMAL + "uplink:\n  host: station.example\n",
        [
            "16:1: uplink.tls: TLS is required for a broker off this board (station.example): add "
            "uplink.tls.ca_file"
        ],
    ),
    (  # 18 unknown timezone
        MINIMAL.replace("  site: Test compound", "  site: Test compound\n  timezone: Asia/Beijing"),
        [
            "6:13: gate.timezone: unknown timezone 'Asia/Beijing' (use an IANA name such as "
            "Asia/Shanghai)"
        ],
    ),
    (  # 19 bad id
        MINIMAL.replace("  id: g1", "  id: Gate One"),
        ["4:7: gate.id: ids use lower-case letters, digits, '-' and '_' (at most 32 characters)"],
    ),
    (  # 20 wiegand reader without pins
        MINIMAL.replace("type: em4100", "type: wiegand").replace("    port: /dev/ttyUSB0\n", ""),
        ["12:3: readers.r1: a wiegand reader needs both d0_pin and d1_pin"],
    ),
    (  # 21 interlock naming an unknown door
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    interlock_with: back"),
        ["9:21: doors.front.interlock_with: unknown door 'back' (known: front)"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), BROKEN, ids=[f"broken{i + 1}" for i in range(len(BROKEN))]
)
def test_broken_configs_are_reported_by_line(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    assert problems(tmp_path, text) == [e.replace("{dir}", str(tmp_path)) for e in expected]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("{pin: 22}", "{pin: 17}").replace("    door: front", "    door: nowhere")
    found = problems(tmp_path, text)
    assert len(found) == 2
    assert found[0].startswith("10:24: doors.front.exit_button.pin")
    assert found[1].startswith("14:11: readers.r1.door")


def test_secret_from_unset_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MENJIN_TEST_UNSET", raising=False)
    text = MINIMAL + "uplink:\n  host: localhost\n  password_env: MENJIN_TEST_UNSET\n"
    assert problems(tmp_path, text) == [
        "18:17: uplink.password_env: environment variable MENJIN_TEST_UNSET is not set"
    ]


def test_check_config_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path, MINIMAL)
    result = runner.invoke(app, ["check-config", str(good)])
    assert result.exit_code == 0
    assert "OK: gate g1, 1 door(s), 1 reader(s)" in result.output
    bad = write(tmp_path, MINIMAL.replace("door: front", "door: frnt"), "bad.yaml")
    result = runner.invoke(app, ["check-config", str(bad)])
    assert result.exit_code == 78
    assert f"{bad}:14:11: readers.r1.door: unknown door 'frnt'" in result.output


def test_two_boards_with_the_same_client_id(tmp_path: Path) -> None:
    a = write(tmp_path, MINIMAL, "a.yaml")
    b = write(tmp_path, MINIMAL, "b.yaml")
    result = CliRunner().invoke(app, ["check-config", str(a), str(b)])
    assert result.exit_code == 78
    assert "gate id 'g1' is also used by" in result.output
    assert "MQTT client id 'menjin-g1' is also used by" in result.output


def test_imported_daemon_package_is_ours() -> None:
    """`daemon` is also python-daemon's import name: make sure the venv resolves to menjin's."""
    import daemon

    assert Path(daemon.__file__).resolve().parent == REPO / "daemon"


def test_check_config_warns_about_face_only_residents(tmp_path: Path) -> None:
    from daemon.keyring import open_gate_store

    good = write(tmp_path, MINIMAL)
    (tmp_path / "state").mkdir()
    with open_gate_store(good) as store:
        store.apply_sync({"mode": "snapshot", "version": 1, "persons": [
            {"id": "p1", "name": "Li", "face_consent": {"date": "2026-10-01", "source": "f1"}},
            {"id": "p2", "name": "Wang", "cards": ["1001"],
             "face_consent": {"date": "2026-10-01", "source": "f2"}},
        ]})
    result = CliRunner().invoke(app, ["check-config", str(good)])
    assert result.exit_code == 0
    assert (f"{good}: warning: p1: enrolled for face entry without a card or PIN "
            "(a non-face credential must remain an alternative)") in result.output
    assert "p2:" not in result.output
