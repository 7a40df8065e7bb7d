"""`menjin models`: list with licences, verify against the shipped manifest, install offline."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daemon.modelfiles import manifest
from menjin.cli import app

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("MENJIN_MODELS", REPO.parent / "shared" / "models"))
NEEDED = ("face_detection_yunet_2026may.onnx", "mobilefacenet_paddlex_128d.onnx",
          "2.7_80x80_MiniFASNetV2.onnx", "4_0_0_80x80_MiniFASNetV1SE.onnx")
needs_models = pytest.mark.skipif(
    not all((MODELS / n).is_file() for n in NEEDED),
    reason=f"face models not found in {MODELS} (set MENJIN_MODELS)")

runner = CliRunner()


def gate_config(tmp_path: Path, models: Path, vision: bool = True) -> Path:
    """The shipped example with its models folder pointed at ``models``."""
    text = (REPO / "config" / "example.yaml").read_text(encoding="utf-8")
    text = text.replace("${MENJIN_MODELS:-/usr/share/menjin/models}", str(models))
    text = text.replace("${STATE_DIRECTORY:-/tmp/menjin-example}", str(tmp_path / "state"))
    if not vision:
        text = text.replace("vision:\n  enabled: true", "vision:\n  enabled: false")
        text = text.replace("access: card_or_face", "access: card")
        text = text.replace("    liveness: nir ", "    # liveness: nir ")
    path = tmp_path / "gate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["models", *args])
    return result.exit_code, result.stdout, result.stderr


def test_manifest_ships_with_the_package_and_matches_the_licences() -> None:
    known = manifest()
    assert len(known) == 9
    assert known["det_500m.onnx"].licence == "InsightFace: non-commercial research only"
    assert known["face_detection_yunet_2026may.onnx"].licence == "MIT"
    assert known["mobilefacenet_paddlex_128d.onnx"].sha256 == (
        "6ced4e0c36abba9dd24b48d725f7dbb94089f75b3d3445d3d67b85157cb64743")


def test_list_names_missing_models_and_their_licences(tmp_path: Path) -> None:
    cfg = gate_config(tmp_path, tmp_path / "models")
    code, out, _ = run("list", "-c", str(cfg))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (f"missing  detector  yunet                  "
                        f"{tmp_path}/models/face_detection_yunet_2026may.onnx")
    assert lines[1] == (f"         licence: MIT; {tmp_path}/models/"
                        "face_detection_yunet_2026may.onnx does not exist")
    code, out, err = run("verify", "-c", str(cfg))
    assert code == 1
    assert err == ("4 model(s) not usable; install them with: menjin models install "
                   f"FOLDER_OR_ARCHIVE -c {cfg}\n")


def test_card_only_gate_needs_no_models(tmp_path: Path) -> None:
    cfg = gate_config(tmp_path, tmp_path / "models", vision=False)
    code, out, _ = run("verify", "-c", str(cfg))
    assert code == 0
    assert out == (f"{cfg}: vision is disabled (no vision section or vision.enabled: false): "
                   "a card-only gate needs no models\n")


@needs_models
def test_install_from_folder_then_verify(tmp_path: Path) -> None:
    cfg = gate_config(tmp_path, tmp_path / "models")
    code, out, _ = run("install", str(MODELS), "-c", str(cfg))
    assert code == 0, out
    assert out.splitlines()[-1] == "4 model(s) installed and verified"
    assert (tmp_path / "models" / "mobilefacenet_paddlex_128d.onnx").stat().st_mode & 0o777 == 0o644
    code, out, _ = run("verify", "-c", str(cfg), "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert rows[1]["licence"] == "Apache-2.0"
    # Idempotent: a second run finds everything in place.
    assert run("install", str(MODELS), "-c", str(cfg))[0] == 0


@needs_models
@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_install_from_archive(tmp_path: Path, kind: str) -> None:
    archive = tmp_path / f"models.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for name in NEEDED:
                zf.write(MODELS / name, f"menjin-models/{name}")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            for name in NEEDED:
                tf.add(MODELS / name, f"menjin-models/{name}")
    cfg = gate_config(tmp_path, tmp_path / "models")
    code, _, err = run("install", str(archive), "-c", str(cfg))
    assert code == 0, err
    assert run("verify", "-c", str(cfg))[0] == 0


@needs_models
def test_corrupted_copy_is_refused_and_reported(tmp_path: Path) -> None:
    source = tmp_path / "usb"
    source.mkdir()
    for name in NEEDED:
        shutil.copy(MODELS / name, source / name)
    damaged = source / "mobilefacenet_paddlex_128d.onnx"
    data = bytearray(damaged.read_bytes())
    data[1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    cfg = gate_config(tmp_path, tmp_path / "models")
    code, _, err = run("install", str(source), "-c", str(cfg))
    assert code == 1
    assert err.startswith("menjin models install: mobilefacenet_paddlex_128d.onnx: SHA-256 ")
    assert err.endswith("in the source differs from the manifest's 6ced4e0c36ab…: the copy is "
                        "damaged; nothing was installed\n")
    assert not (tmp_path / "models" / "mobilefacenet_paddlex_128d.onnx").exists()
    assert not list((tmp_path / "models").glob(".*"))  # no temporary file left
    # A damaged file already in place is reported by verify.
    shutil.copy(damaged, tmp_path / "models" / damaged.name)
    code, out, _ = run("verify", "-c", str(cfg))
    assert code == 1
    assert "corrupt  embedder  mobilefacenet_paddlex  " in out
    assert "differs from the manifest's 6ced4e0c36ab… (damaged or a different file)" in out


def test_install_names_what_the_source_lacks(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cfg = gate_config(tmp_path, tmp_path / "models")
    code, _, err = run("install", str(tmp_path / "empty"), "-c", str(cfg))
    assert code == 1
    assert err == (f"menjin models install: face_detection_yunet_2026may.onnx is not in "
                   f"{tmp_path}/empty; mobilefacenet_paddlex_128d.onnx is not in {tmp_path}/empty; "
                   f"2.7_80x80_MiniFASNetV2.onnx is not in {tmp_path}/empty; "
                   f"4_0_0_80x80_MiniFASNetV1SE.onnx is not in {tmp_path}/empty; nothing was "
                   "installed\n")
    code, _, err = run("install", str(tmp_path / "nope"), "-c", str(cfg))
    assert err == f"menjin models install: {tmp_path}/nope does not exist\n"
