"""Door liveness policy: check-config and the start-up log say plainly when a photo may open a
door; a door cannot require more liveness than the gate provides."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daemon.configfile import ConfigError, load_config
from daemon.liveness import liveness_warnings, provided
from menjin.cli import app

REPO = Path(__file__).resolve().parents[2]
BASE = """\
version: 1
state_dir: state
gate: {id: g1, site: Test compound}
doors:
  front:
    lock: {pin: 17}
    access: ACCESS
    LIVENESS
camera:
  source: /dev/video0
  door: front
  NIR
vision:
  detector: {kind: yunet, path: det.onnx}
  embedder: {kind: mobilefacenet_paddlex, path: emb.onnx}
  LIVE_MODELS
"""
MODELS = "liveness: {paths: [2.7_80x80_MiniFASNetV2.onnx, 4_0_0_80x80_MiniFASNetV1SE.onnx]}"
NIR = "nir: {source: /dev/video2}"
RGB_WARNING = (
    "door front: face-only entry with only RGB passive liveness: a printed or on-screen photo "
    "may open this door; use card_and_face or add an NIR camera"
)


def config_text(*, access: str = "card_or_face", liveness: str | None = None, nir: bool = False,
                models: bool = True) -> str:
    return (BASE.replace("ACCESS", access)
            .replace("LIVENESS", f"liveness: {liveness}" if liveness else "")
            .replace("NIR", NIR if nir else "")
            .replace("LIVE_MODELS", MODELS if models else ""))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = write(tmp_path, text)
    result = CliRunner().invoke(app, ["check-config", "--no-file-checks", str(path)])
    return result.exit_code, result.output


def test_rgb_only_face_entry_is_warned_about(tmp_path: Path) -> None:
    code, output = check(tmp_path, config_text())
    assert code == 0
    assert f"{tmp_path / 'gate.yaml'}: warning: {RGB_WARNING}" in output


def test_no_liveness_at_all_is_warned_about(tmp_path: Path) -> None:
    code, output = check(tmp_path, config_text(models=False))
    assert code == 0
    assert ("warning: door front: face-only entry without any liveness check: a printed or "
            "on-screen photo opens this door; use card_and_face or add an NIR camera") in output


@pytest.mark.parametrize("variant", [{"access": "card_and_face"}, {"access": "card"},
                                     {"nir": True, "liveness": "nir"}])
def test_safe_doors_are_not_warned_about(tmp_path: Path, variant: dict[str, object]) -> None:
    code, output = check(tmp_path, config_text(**variant))  # type: ignore[arg-type]
    assert code == 0
    assert "may open this door" not in output and "opens this door" not in output


def test_nir_without_calibration_is_warned_about(tmp_path: Path) -> None:
    code, output = check(tmp_path, config_text(nir=True, liveness="nir"))
    assert code == 0
    assert (f"warning: camera.nir: no calibration at {tmp_path / 'state' / 'nir_calibration.json'} "
            "yet: faces are refused until `menjin camera calibrate` has run") in output


def test_a_door_cannot_require_more_than_the_gate_provides(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(liveness="nir"))
    with pytest.raises(ConfigError) as info:
        load_config(path, check_files=False)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:8:15: doors.front.liveness: requires nir liveness but the gate provides rgb: "
        "add camera.nir (an NIR camera) on the camera watching this door"
    ]
    path = write(tmp_path, config_text(liveness="rgb", models=False))
    with pytest.raises(ConfigError) as info:
        load_config(path, check_files=False)
    assert [str(p).split(": ", 2)[2] for p in info.value.problems] == [
        "requires rgb liveness but the gate provides none: add vision.liveness (the MiniFASNet "
        "models)"
    ]


@pytest.mark.parametrize(
    ("old", "new", "missing"),
    [
        (f"camera:\n  source: /dev/video0\n  door: front\n  {NIR}\nvision:\n",
         "vision:\n  enabled: false\n",  # (vision on without a camera is a problem of its own)
         "add a camera with camera.door: front and camera.nir (an NIR camera)"),
        ("doors:\n", "doors:\n  back: {lock: {pin: 5}}\n",
         "the camera watches door 'back', not this one"),
        (f"  {MODELS}\n", f"  {MODELS}\n  enabled: false\n", "face recognition is off (vision)"),
    ],
)
def test_the_liveness_problem_names_what_is_missing(
    tmp_path: Path, old: str, new: str, missing: str,
) -> None:
    text = config_text(liveness="nir", nir=True)
    if "back" in new:  # and the camera watches it
        text = text.replace("  door: front", "  door: back")
    assert old in text
    path = write(tmp_path, text.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_config(path, check_files=False)
    assert [str(p).split(": ", 2)[2] for p in info.value.problems if "liveness" in p.path] == [
        f"requires nir liveness but the gate provides none: {missing}"
    ]


def test_the_example_config_is_safe() -> None:
    config = load_config(REPO / "config" / "example.yaml", check_files=False)
    assert provided(config, "front") == "nir"
    assert config.doors["front"].liveness == "nir"
    assert [w for w in liveness_warnings(config) if "photo" in w] == []


def test_the_start_up_log_says_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """daemon.app.main logs the warning right after the effective config (this board has no GPIO
    backend, so the gate then stops with exit 78: the warning came first)."""
    from daemon.app import main

    path = write(tmp_path, config_text())
    for name in ("det.onnx", "emb.onnx", *MODELS.split("[")[1].rstrip("]}").split(", ")):
        (tmp_path / name).write_bytes(b"")  # only their existence is checked before the log
    assert main(path) == 78
    err = capsys.readouterr().err
    assert f"WARNING daemon.app: {RGB_WARNING}" in err
    assert err.index("effective config") < err.index(RGB_WARNING)
