"""Installer configuration: the happy path, and broken files with their exact message and line."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from daemon.configfile import ConfigError, load_config
from daemon.configschema import SCHEMA_FILE, schema_text
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


def detector_line() -> int:
    """Line of the detector's model path in the example (where the vision warning points)."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if "face_detection_yunet" in line)


def test_example_points_editors_at_schema() -> None:
    assert EXAMPLE.read_text(encoding="utf-8").splitlines()[0] == (
        "# yaml-language-server: $schema=schema.json"
    )


def test_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "config/schema.json is stale: run `menjin config schema`"
    )

#: MINIMAL on simulated pins: check-config with file checks wants the GPIO library of a board.
SIMULATED = MINIMAL + "hardware: {gpio_backend: mock}\n"

WIEGAND = MINIMAL.replace("type: em4100", "type: wiegand").replace(
    "    port: /dev/ttyUSB0\n", "    d0_pin: 20\n    d1_pin: 21\n")

BROKEN = [
    (  # 1 unknown key with a suggestion
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    unlock_secs: 4"),
        ["9:5: doors.front.unlock_secs: unknown key 'unlock_secs'; did you mean 'unlock_seconds'?"],
    ),
    (  # 2 wrong type
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    unlock_seconds: soon"),
        [
            "9:21: doors.front.unlock_seconds: 'soon' is not a number; write the number of seconds "
            "alone, e.g. unlock_seconds: 5"
        ],
    ),
    (  # 3 out of range pin
        MINIMAL.replace("{pin: 27}", "{pin: 99}"),
        ["9:20: doors.front.contact.pin: Input should be less than or equal to 53 (got 99)"],
    ),
    (  # 4 the same pin twice
        MINIMAL.replace("{pin: 22}", "{pin: 17}"),
        [
            "10:24: doors.front.exit_button.pin: GPIO 17 is already used by doors.front.lock.pin "
            "(each pin has one job)"
        ],
    ),
    (  # 4b two serial readers on one port (the same device, however it is written)
        MINIMAL + "  r2: {type: ascii, door: front, port: /dev/./ttyUSB0}\n",
        ["16:40: readers.r2.port: serial port /dev/ttyUSB0 is already used by readers.r1.port "
         "(one reader per port: the second cannot open it, or both read garbage)"],
    ),
    (  # 4c the NIR camera on the colour camera's device
        MINIMAL + "camera:\n  source: 0\n  door: front\n  nir: {source: /dev/video0}\n",
        ["19:17: camera.nir.source: video device /dev/video0 is already used by camera.source "
         "(the NIR camera is a device of its own, e.g. /dev/video2)"],
    ),
    (  # 4d the journal written over the resident store
        MINIMAL + "journal: {path: residents.db}\n",
        ["16:17: journal.path: file {dir}/state/residents.db is already used by access.db "
         "(each file menjin writes has one job; give this one its own name)"],
    ),
    (  # 4e a control socket the kernel cannot bind (the control part would fail forever)
        MINIMAL + f"control: {{socket: {'s' * 100}.sock}}\n",
        ["16:19: control.socket: the control socket path {dir}/state/" + "s" * 100 + ".sock is "
         "{size} bytes long; a UNIX socket path holds at most 107: give control.socket a shorter "
         "absolute path (e.g. /run/menjin/control.sock)"],
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
            "8:11: YAML syntax error: the '{' opened here is not closed: expected ',' or '}' "
            "before line 9, column 12"
        ],
    ),
    (  # 8 duplicate key
        MINIMAL.replace("    contact: {pin: 27}", "    contact: {pin: 27}\n    contact: {pin: 26}"),
        [
            "10:5: doors.front.contact: key 'contact' appears twice, first at line 9, column 5 "
            "(each key may appear once: delete or merge one of them)"
        ],
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
        [
            "19:14: uplink.tls.ca_file: file not found: {dir}/missing-ca.crt (copy the CA "
            "certificate that signed the station broker's certificate)"
        ],
    ),
    (  # 13 bad enum value
        MINIMAL.replace("{pin: 17}", "{pin: 17, fail_mode: sometimes}"),
        ["8:32: doors.front.lock.fail_mode: unknown value 'sometimes' (allowed: safe, secure)"],
    ),
    (  # 13b a choice in the wrong case: the same words as an unknown key
        MINIMAL.replace("doors:", "hardware:\n  gpio_backend: Mock\ndoors:"),
        ["7:17: hardware.gpio_backend: unknown value 'Mock' (allowed: lgpio, mock; did you mean "
         "'mock'?)"],
    ),
    (  # 13c a misspelt enum value
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    access: card_or_fase"),
        ["9:13: doors.front.access: unknown value 'card_or_fase' (allowed: card, face, "
         "card_or_face, card_and_face; did you mean 'card_or_face'?)"],
    ),
    (  # 13d a number that is not one of the choices
        MINIMAL.replace("type: em4100", "type: ascii") + "    number_base: 12\n",
        ["16:18: readers.r1.number_base: unknown value 12 (allowed: 10, 16)"],
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
    (  # 22 the removed RPi.GPIO backend (issue 16, finding 8: it lost edges after a glitch)
        MINIMAL.replace("doors:", "hardware:\n  gpio_backend: rpigpio\ndoors:"),
        ["7:17: hardware.gpio_backend: rpigpio was removed: RPi.GPIO loses door-contact edges "
         "after a short glitch; use lgpio, which works on every Raspberry Pi"],
    ),
    (  # 26 card + PIN at a door whose only reader has no keypad
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    pin_required: true"),
        ["9:19: doors.front.pin_required: card + PIN needs a keypad: no wiegand or osdp reader "
         "serves this door"],
    ),
    (  # 23 raw as a catch-all format (issue 16: a lost pulse read as another resident)
        WIEGAND + "    formats: [h10301, 34bit, raw]\n",
        ["17:30: readers.r1.formats[2]: unknown value 'raw' (allowed: h10301, 32bit, 34bit, "
         "c1000_35, c15001, h10304, h10302, c1000_48)"],
    ),
    (  # 24 formats one bit apart
        WIEGAND + "    formats: [34bit, c1000_35]\n",
        ["12:3: readers.r1: formats 34bit (34 bits) and c1000_35 (35 bits) are 1 bit apart: a "
         "34-bit frame that lost or gained one pulse would be read as the other format; keep "
         "only the one your readers send"],
    ),
    (  # 25 raw length next to a parity-checked format
        WIEGAND + "    formats: [h10301]\n    raw_lengths: [25]\n",
        ["12:3: readers.r1: raw length 25 is 1 bit(s) from h10301 (26 bits): a h10301 frame "
         "with lost or extra pulses would pass unchecked as a raw number; raw lengths must be at "
         "least 3 bits away from every format listed"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), BROKEN, ids=[f"broken{i + 1}" for i in range(len(BROKEN))]
)
def test_broken_configs_are_reported_by_line(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    size = len(f"{tmp_path}/state/{'s' * 100}.sock")
    assert problems(tmp_path, text) == [
        e.replace("{dir}", str(tmp_path)).replace("{size}", str(size)) for e in expected]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (  # not also "doors.front.liveness: ... add camera.nir" (camera.nir is there)
            "  door: front\n  width: 1280", "  door: back\n  width: 1280",
            ["79:9: camera.door: unknown door 'back' (known: front, vehicle)"],
        ),
        (  # not also "upload needs privacy.retention_days" (it is set, to a wrong value)
            "  retention_days: 30\n  lockout", "  retention_days: 0\n  lockout",
            ["154:19: privacy.retention_days: Input should be greater than or equal to 1 (got 0)"],
        ),
        (
            "  legal_basis: >-", "  legal_basis: 3\n  x_legal_basis: >-",
            ["151:16: privacy.legal_basis: 3 is not text; put it in quotes, e.g. legal_basis: "
             "\"3\"",
             "152:3: privacy.x_legal_basis: unknown key 'x_legal_basis'; did you mean "
             "'legal_basis'?"],
        ),
    ],
)
def test_a_problem_is_told_once_not_echoed_by_the_checks_that_follow_from_it(
    tmp_path: Path, old: str, new: str, expected: list[str],
) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert text.count(old) == 1
    path = write(tmp_path, text.replace(old, new).replace("${STATE_DIRECTORY:-/tmp/menjin-example}",
                                                          "state"))
    with pytest.raises(ConfigError) as info:
        load_config(path, check_files=False)
    assert [str(p).removeprefix(f"{path}:") for p in info.value.problems] == expected


def test_loopback_ports_and_video_files_may_be_named_twice(tmp_path: Path) -> None:
    text = MINIMAL.replace("/dev/ttyUSB0", "loop://") + (
        "  r2: {type: ascii, door: front, port: 'loop://'}\n"
        "camera:\n  source: clip.mp4\n  door: front\n  nir: {source: clip.mp4}\n")
    assert len(load_config(write(tmp_path, text)).readers) == 2


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
    good = write(tmp_path, SIMULATED)
    result = runner.invoke(app, ["check-config", str(good)])
    assert result.exit_code == 0
    assert "OK: gate g1, 1 door(s), 1 reader(s)" in result.output
    bad = write(tmp_path, SIMULATED.replace("door: front", "door: frnt"), "bad.yaml")
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

    good = write(tmp_path, SIMULATED)
    (tmp_path / "state").mkdir()
    with open_gate_store(good) as store:
        store.apply_sync({"mode": "snapshot", "version": 1, "persons": [
            {"id": "p1", "name": "Li", "face_consent": {"date": "2026-10-01", "source": "f1"}},
            {"id": "p2", "name": "Wang", "cards": ["1001"],
             "face_consent": {"date": "2026-10-01", "source": "f2"}},
        ]})
    result = CliRunner().invoke(app, ["check-config", str(good)])
    assert result.exit_code == 0
    assert (f"{good}: warning: p1: enrolled for face entry without a card (a PIN only works "
            "with a card; a non-face credential must remain an alternative)") in result.output
    assert "p2:" not in result.output


def check_config(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["check-config", str(path)])
    return result.exit_code, [line.removeprefix(f"{path}:") for line in result.output.splitlines()]


def test_check_config_says_what_menjin_run_would_stop_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A board config on a machine without the GPIO library: `menjin run` exits 78 there."""
    monkeypatch.setitem(sys.modules, "gpiozero.pins.lgpio", None)  # the library is absent
    path = write(tmp_path, MINIMAL.replace("doors:", "hardware: {gpio_backend: lgpio}\ndoors:"))
    assert check_config(path) == (78, [
        "6:26: hardware.gpio_backend: gpio backend lgpio needs the lgpio module: apt install "
        "python3-lgpio (or pip install 'menjin[pi]')",
        "1 problem(s) found",
    ])
    result = CliRunner().invoke(app, ["check-config", "--no-file-checks", str(path)])
    assert result.exit_code == 0, result.output  # away from the board


def test_a_state_folder_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a folder")
    path = write(tmp_path, SIMULATED)
    assert check_config(path) == (78, [
        f"2:12: state_dir: {tmp_path / 'state'} is a file, not a folder",
        "1 problem(s) found",
    ])
    path = write(tmp_path, SIMULATED.replace("state_dir: state", "state_dir: state/gate"))
    assert check_config(path)[1][0] == (
        f"2:12: state_dir: {tmp_path / 'state' / 'gate'} cannot be created: "
        f"{tmp_path / 'state'} is a file, not a folder")


def test_a_state_folder_that_cannot_be_made_stops_menjin_run_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from daemon.app import main

    (tmp_path / "state").write_text("not a folder")
    assert main(write(tmp_path, SIMULATED)) == 78
    err = capsys.readouterr().err
    assert f"ERROR daemon.app: cannot start: state folder {tmp_path / 'state'}: File exists\n" \
        in err
    assert "Traceback" not in err


def test_a_damaged_resident_store_is_a_warning_as_menjin_run_recovers_it(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "residents.db").write_bytes(b"\x07" * 4096)
    code, lines = check_config(write(tmp_path, SIMULATED))
    assert code == 0, lines
    assert (f" warning: the resident store {tmp_path / 'state' / 'residents.db'} is damaged (file "
            "is not a database): `menjin run` will move it aside and run on an EMPTY store; sync "
            "the residents from the station or re-import them") in lines


def test_an_uplink_without_the_station_key_is_told_what_it_refuses(tmp_path: Path) -> None:
    code, lines = check_config(write(tmp_path, SIMULATED + "uplink: {host: localhost}\n"))
    assert code == 0, lines
    assert (" warning: uplink: no station_public_key_file: every station command (open, mode, "
            "sync, enrol, resend) is refused; copy station_key.pub.pem from the station (menjin "
            "station keygen) and name it there") in lines


# ---------------------------------------------------------------- issue 20: every problem at once
def test_schema_errors_and_cross_checks_are_reported_together(tmp_path: Path) -> None:
    """A key typo, an unknown door, a pin used twice and `unlock_seconds: ten`: all four."""
    text = (
        MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    unlok_seconds: 4\n"
                        "    unlock_seconds: ten")
        .replace("{pin: 22}", "{pin: 17}")
        .replace("    door: front", "    door: back")
    )
    assert problems(tmp_path, text) == [
        "9:5: doors.front.unlok_seconds: unknown key 'unlok_seconds'; did you mean "
        "'unlock_seconds'?",
        "10:21: doors.front.unlock_seconds: 'ten' is not a number; write the number of seconds "
        "alone, e.g. unlock_seconds: 5",
        "12:24: doors.front.exit_button.pin: GPIO 17 is already used by doors.front.lock.pin "
        "(each pin has one job)",
        "16:11: readers.r1.door: unknown door 'back' (known: front)",
    ]


def test_an_invalid_door_is_not_also_an_unknown_door(tmp_path: Path) -> None:
    """A door missing its lock is reported once; the reader naming it is not 'unknown door'."""
    text = (MINIMAL.replace("    lock: {pin: 17}\n", "").replace("port: /dev/ttyUSB0", "port: COM3")
            .replace("readers:", "  back:\n    lock: {pin: 5}\n    contact: {pin: 5}\nreaders:"))
    assert problems(tmp_path, text) == [
        "7:3: doors.front.lock: required key is missing",
        "12:20: doors.back.contact.pin: GPIO 5 is already used by doors.back.lock.pin (each pin "
        "has one job)",
        "17:11: readers.r1.port: 'COM3' cannot be a serial port (use a /dev/... path or a "
        "pyserial URL such as socket://host:port)",
    ]


def test_a_gate_section_in_error_still_lets_the_doors_be_checked(tmp_path: Path) -> None:
    text = MINIMAL.replace("  id: g1", "  id: G 1").replace("door: front", "door: frnt")
    assert problems(tmp_path, text) == [
        "4:7: gate.id: ids use lower-case letters, digits, '-' and '_' (at most 32 characters)",
        "14:11: readers.r1.door: unknown door 'frnt'; did you mean 'front'?",
    ]


# ---------------------------------------------------------------- issue 20: plain words
TYPED = [
    ("    unlock_seconds: 5s", "9:21: doors.front.unlock_seconds: '5s' is not a number; write "
     "the number of seconds alone, e.g. unlock_seconds: 5"),
    ("    held_open_seconds: 30 s", "9:24: doors.front.held_open_seconds: '30 s' is not a "
     "number; write the number of seconds alone, e.g. held_open_seconds: 30"),
    ("    buzzer: GPIO13", "9:13: doors.front.buzzer: 'GPIO13' is not a GPIO number; write the "
     "BCM number alone, e.g. buzzer: 13"),
    ("    leds: {green: pin5}", "9:19: doors.front.leds.green: 'pin5' is not a GPIO number; "
     "write the BCM number alone, e.g. green: 5"),
    ("    egress: maybe", "9:13: doors.front.egress: 'maybe' is not true or false; e.g. "
     "egress: true"),
    ("    tamper: {pin: 23, debounce_ms: 2.5}", "9:36: doors.front.tamper.debounce_ms: 2.5 is "
     "not a whole number; e.g. debounce_ms: 2"),
    ("    tamper: 23", "9:13: doors.front.tamper: expected 'key: value' settings under tamper, "
     "not 23 (indent them on the lines below tamper:)"),
    ("    name: 42", "9:11: doors.front.name: 42 is not text; put it in quotes, e.g. name: "
     "\"42\""),
]


@pytest.mark.parametrize(("line", "expected"), TYPED, ids=[t[0].strip() for t in TYPED])
def test_type_errors_echo_the_value_and_show_the_expected_form(
    tmp_path: Path, line: str, expected: str
) -> None:
    text = MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n" + line)
    assert problems(tmp_path, text) == [expected]


def test_a_lock_pin_written_as_gpio17(tmp_path: Path) -> None:
    assert problems(tmp_path, MINIMAL.replace("{pin: 17}", "{pin: GPIO17}")) == [
        "8:17: doors.front.lock.pin: 'GPIO17' is not a GPIO number; write the BCM number alone, "
        "e.g. pin: 17"
    ]


def test_a_bad_environment_value_names_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENJIN_BROKER_PORT", "abc")
    text = MINIMAL + "uplink:\n  host: localhost\n  port: ${MENJIN_BROKER_PORT:-1883}\n"
    assert problems(tmp_path, text) == [
        "18:9: uplink.port: 'abc' is not a whole number; e.g. port: 8883 (the value comes from "
        "the environment: MENJIN_BROKER_PORT=abc)"
    ]


def test_an_unset_variable_is_reported_where_it_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MENJIN_TEST_HOST", raising=False)
    text = MINIMAL + "uplink:\n  host: ${MENJIN_TEST_HOST}\n"
    assert problems(tmp_path, text) == [
        "17:9: uplink.host: environment variable MENJIN_TEST_HOST is not set (set it, or give a "
        "default: ${MENJIN_TEST_HOST:-value})"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "1:1: the file is empty: a gate config needs at least version: 1, gate: and doors: "
         "(start from config/example.yaml)"),
        ("# only a comment\n", "1:1: the file is empty: a gate config needs at least version: 1, "
         "gate: and doors: (start from config/example.yaml)"),
        ("- front\n", "1:1: the top level must be 'key: value' settings (version: 1, gate: ..., "
         "doors: ...), not a list"),
        ("front door\n", "1:1: the top level must be 'key: value' settings (version: 1, gate: "
         "..., doors: ...), not the single value 'front door'"),
    ],
    ids=["empty", "comments", "list", "scalar"],
)
def test_a_file_without_settings_says_so(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_a_station_config_is_recognised(tmp_path: Path) -> None:
    station = REPO / "config" / "station.example.yaml"
    result = CliRunner().invoke(app, ["check-config", str(station)])
    assert result.exit_code == 78
    assert result.output.splitlines()[0] == (
        f"{station}:1:1: this is a station config (it has database, mqtt, portraits_dir, "
        f"signing_key, web, no gate or doors): check it with menjin station check-config "
        f"{station}"
    )


def test_station_check_config_accepts_the_station_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from station.commands import keygen

    monkeypatch.chdir(tmp_path)
    keygen(tmp_path / "station_key.pem")  # where `menjin station keygen` writes it
    station = REPO / "config" / "station.example.yaml"
    result = CliRunner().invoke(app, ["station", "check-config", str(station)])
    assert result.exit_code == 0, result.output
    assert result.output == (f"{station}: OK: broker 127.0.0.1:1883, signing key "
                             f"{tmp_path / 'station_key.pem'}, web page 127.0.0.1:8080\n")


def test_a_missing_config_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "gate.yaml")
    assert str(info.value) == (
        f"{tmp_path / 'gate.yaml'}:1:1: cannot read: No such file or directory (check the path; "
        "to start a new one, copy config/example.yaml and run menjin check-config on it)"
    )


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("bad: \x00\n", "16:6: control character U+0000 (NUL) is not allowed in a config file; is "
         "the file damaged or not text? (save it as plain UTF-8 text)"),
        ("    baud: " + "9" * 5000 + "\n", "16:11: a number of 5000 digits is too long (at most "
         "30; quote it if it is text)"),
        ("x: " + "[" * 200 + "]" * 200 + "\n", "16:35: nested more than 32 levels deep (a config "
         "needs a few; is an indentation or a bracket wrong?)"),
    ],
    ids=["nul", "huge-number", "deep"],
)
def test_hostile_bytes_give_file_line_col(tmp_path: Path, tail: str, expected: str) -> None:
    assert problems(tmp_path, MINIMAL + tail) == [expected]


def test_two_boards_with_one_gate_id_are_reported_at_the_id(tmp_path: Path) -> None:
    a = write(tmp_path, MINIMAL, "a.yaml")
    b = write(tmp_path, "# the second board\n" + MINIMAL, "b.yaml")
    result = CliRunner().invoke(app, ["check-config", "--no-file-checks", str(a), str(b)])
    assert result.exit_code == 78
    assert result.output.splitlines() == [
        f"{b}:5:7: gate.id: gate id 'g1' is also used by {a}:4:7",
        f"{b}:5:7: gate.id: MQTT client id 'menjin-g1' is also used by {a}:4:7 (the broker "
        "would disconnect one of them)",
        "2 problem(s) found",
    ]


# ---------------------------------------------------------------- issue 20: the shipped example
def test_example_validates_against_the_schema_editors_use() -> None:
    import json

    import jsonschema
    from ruamel.yaml import YAML

    example = YAML(typ="safe").load(EXAMPLE.read_text(encoding="utf-8"))
    assert "${" in str(example["uplink"]["port"])  # as written, before the loader expands it
    jsonschema.validate(example, json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_schema_still_refuses_what_the_loader_refuses() -> None:
    import json

    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    base = {"version": 1, "gate": {"id": "g1", "site": "s"}, "doors": {"f": {"lock": {"pin": 1}}}}
    for bad_port in ("abc", "${NOT A VAR}", 70000):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**base, "uplink": {"host": "h", "port": bad_port}}, schema)


def test_example_runs_without_models_with_vision_off_and_one_line_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MENJIN_MODELS", str(tmp_path / "no-models-here"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    result = CliRunner().invoke(app, ["check-config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{EXAMPLE}:{detector_line()}:11: warning: vision.detector.path: face recognition "
        f"disabled: model file(s) not found in {tmp_path / 'no-models-here'}: "
        "face_detection_yunet_2026may.onnx, "
        "mobilefacenet_paddlex_128d.onnx, 2.7_80x80_MiniFASNetV2.onnx, "
        "4_0_0_80x80_MiniFASNetV1SE.onnx; to enable it, put the models there or set "
        "MENJIN_MODELS to the folder holding them (vision.enabled: false silences this)",
        f"{EXAMPLE}: warning: keys: provider 'file' keeps the keys in "
        f"{tmp_path / 'state' / 'keys'} beside the data they protect: a copied SD card yields "
        "names, card numbers and face templates; use tpm2 or rpi-otp on a gate (docs/privacy.md)",
        f"{EXAMPLE}: warning: uplink: no station_public_key_file: every station command (open, "
        "mode, sync, enrol, resend) is refused; copy station_key.pub.pem from the station "
        "(menjin station keygen) and name it there",
        f"{EXAMPLE}: OK: gate xingfuli-north, 2 door(s), 2 reader(s), camera yes, simulate "
        "mode, portraits upload, vision off",
    ]
    cfg = load_config(EXAMPLE)
    assert cfg.vision is not None and not cfg.vision.enabled


def test_example_with_models_from_a_relative_folder_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path
) -> None:
    """A relative MENJIN_MODELS is relative to the working directory, not to config/."""
    monkeypatch.chdir(models_dir.parent)
    monkeypatch.setenv("MENJIN_MODELS", models_dir.name)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    result = CliRunner().invoke(app, ["check-config", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.output.endswith("portraits upload, vision on\n")
    cfg = load_config(EXAMPLE)
    assert cfg.vision is not None
    assert cfg.vision.detector.path.resolve() == (
        models_dir / "face_detection_yunet_2026may.onnx").resolve()


def test_a_door_needing_a_face_cannot_run_without_models(tmp_path: Path) -> None:
    text = MINIMAL.replace("    lock: {pin: 17}", "    lock: {pin: 17}\n    access: card_and_face")
    text += "camera: {source: 0, door: front}\nvision:\n  detector: {kind: yunet, path: a.onnx}\n"
    text += "  embedder: {kind: arcface, path: b.onnx}\n"
    assert problems(tmp_path, text) == [
        "9:13: doors.front.access: card_and_face needs face recognition, but vision is off (no "
        "door would open)"
    ]


def test_no_file_checks_opens_no_file_but_the_config(tmp_path: Path) -> None:
    text = MINIMAL + "uplink:\n  host: station.example\n  tls: {ca_file: missing-ca.crt}\n"
    text += "  station_public_key_file: missing.pub\n"
    path = write(tmp_path, text)
    result = CliRunner().invoke(app, ["check-config", "--no-file-checks", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.endswith("portraits off, vision off (files not checked)\n")
    result = CliRunner().invoke(app, ["check-config", str(path)])
    assert result.exit_code == 78
    assert result.output.splitlines()[:2] == [
        f"{path}:18:18: uplink.tls.ca_file: file not found: {tmp_path}/missing-ca.crt (copy "
        "the CA certificate that signed the station broker's certificate)",
        f"{path}:19:28: uplink.station_public_key_file: file not found: {tmp_path}/missing.pub "
        "(copy station_key.pub.pem from the station: menjin station keygen)",
    ]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.integers(0, len(MINIMAL)),
    length=st.integers(0, 12),
    insert=st.text(alphabet=st.sampled_from(list("ab17:- \n{}[]'\"&*#${}x")), max_size=12),
)
def test_any_damaged_config_gives_problems_never_a_crash(
    tmp_path: Path, start: int, length: int, insert: str
) -> None:
    """Every edit of a valid file either loads or raises ConfigError with positioned lines."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(MINIMAL[:start] + insert + MINIMAL[start + length:], encoding="utf-8")
    try:
        load_config(path, check_files=False)
    except ConfigError as exc:
        assert exc.problems
        assert all(p.line >= 1 and p.column >= 1 and "a bug in menjin" not in p.message
                   for p in exc.problems), exc.problems


def test_a_value_fitting_no_allowed_type_is_one_line(tmp_path: Path) -> None:
    assert problems(tmp_path, MINIMAL + "camera: {source: [0], door: front}\n") == [
        "16:10: camera.source: [0] is not a whole number or text"
    ]


def test_a_duplicated_key_does_not_hide_the_files_other_problems(tmp_path: Path) -> None:
    """A duplicate used to stop the check: the unknown door below it went unreported."""
    twice = "    contact: {pin: 27}\n    contact: {pin: 26}"
    text = (MINIMAL.replace("    contact: {pin: 27}", twice)
            .replace("    door: front", "    door: back"))
    assert problems(tmp_path, text) == [
        "10:5: doors.front.contact: key 'contact' appears twice, first at line 9, column 5 "
        "(each key may appear once: delete or merge one of them)",
        "15:11: readers.r1.door: unknown door 'back' (known: front)",
    ]
