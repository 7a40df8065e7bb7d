"""`menjin doctor`: each check on real parts (MockFactory pins, ptys, mosquitto, temp folders)."""

from __future__ import annotations

import asyncio
import json
import os
import pty
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory
from typer.testing import CliRunner

from daemon import doctor
from daemon.configfile import load_config
from daemon.control import ControlServer, Request
from daemon.doctor import Context, Finding
from menjin.cli import app
from tests.broker import Broker, start_broker

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def gate(tmp_path: Path, *edits: tuple[str, str], name: str = "gate.yaml") -> Path:
    """config/example.yaml with a temporary state folder and textual ``edits``."""
    text = (REPO / "config" / "example.yaml").read_text(encoding="utf-8")
    text = text.replace("${STATE_DIRECTORY:-/tmp/menjin-example}", str(tmp_path / "state"))
    text = text.replace("${MENJIN_MODELS:-/usr/share/menjin/models}", str(tmp_path / "models"))
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def ctx(path: Path, **kwargs: Any) -> Context:
    return Context(path, config=load_config(path, check_files=False), **kwargs)


CARD_ONLY = (("vision:\n  enabled: true", "vision:\n  enabled: false"),
             ("access: card_or_face", "access: card"), ("    liveness: nir ", "    # nir "))
HARDWARE = (("gpio_backend: mock", "gpio_backend: lgpio"),)
NO_UPLINK = (("uplink:\n  enabled: true", "uplink:\n  enabled: false"),)


def test_config_problems_point_to_check_config(tmp_path: Path) -> None:
    path = gate(tmp_path, ("unlock_seconds: 5\n", "unlock_seconds: ten\n"))
    found = doctor.check_config(doctor.load(path))
    assert found[0].status == "fail"
    assert found[0].message.startswith(f"{path}:")
    assert found[0].fix == f"menjin check-config {path} lists every problem"
    ok = gate(tmp_path, *CARD_ONLY, name="ok.yaml")
    assert doctor.check_config(doctor.load(ok)) == [
        Finding("config", "ok", f"{ok}: gate xingfuli-north, 2 door(s), 2 reader(s)")]
    assert doctor.check_keys(doctor.load(tmp_path / "absent.yaml"))[0].status == "skip"


def test_models_missing_and_card_only(tmp_path: Path) -> None:
    found = doctor.check_models_present(ctx(gate(tmp_path)))
    assert [f.status for f in found] == ["fail"] * 4
    assert found[0].message == (f"face_detection_yunet_2026may.onnx: missing: {tmp_path}/models/"
                                "face_detection_yunet_2026may.onnx does not exist")
    assert found[0].fix == f"menjin models install FOLDER_OR_ARCHIVE -c {tmp_path}/gate.yaml"
    assert doctor.check_models_present(ctx(gate(tmp_path, *CARD_ONLY))) == [
        Finding("models", "skip", "vision disabled: a card-only gate needs no models")]


def test_keys_and_file_modes(tmp_path: Path) -> None:
    from daemon.keyring import Keyring

    c = ctx(gate(tmp_path))
    keys_dir = tmp_path / "state" / "keys"
    assert c.config is not None and c.config.keys.provider == "file"
    warn = Finding("keys", "warn", f"keys.provider file keeps the keys in {keys_dir} beside the "
                   "data they protect", "use tpm2 or rpi-otp on a gate (docs/privacy.md)")
    assert doctor.check_keys(c) == [warn]  # no keys yet: the first start makes them
    assert doctor.check_file_modes(c)[0].message == (
        f"state folder {tmp_path}/state does not exist")
    Keyring(c.config).local()  # the daemon's first start
    assert doctor.check_keys(c) == [warn]
    (keys_dir / "root.key").write_bytes(os.urandom(32))  # another board's root key
    found = doctor.check_keys(c)
    assert found[0].status == "fail" and "do not open with provider 'file'" in found[0].message
    (tmp_path / "state").chmod(0o777)
    card = keys_dir / "card.sealed"
    card.chmod(0o644)
    assert doctor.check_file_modes(c) == [
        Finding("file modes", "fail", f"state folder {tmp_path}/state is accessible to every user "
                "(mode 777)", f"chmod 700 {tmp_path}/state"),
        Finding("file modes", "fail", f"keys.dir sealed site card key: {card} is readable by "
                "others (mode 644)", f"chmod 600 {card}")]
    (tmp_path / "state").chmod(0o700)
    card.chmod(0o600)
    assert doctor.check_file_modes(c)[0].status == "ok"


def test_gpio_access(tmp_path: Path) -> None:
    assert doctor.check_gpio_access(ctx(gate(tmp_path)))[0].status == "warn"
    dev = tmp_path / "dev"
    dev.mkdir()
    hw = ctx(gate(tmp_path, *HARDWARE), dev=dev)
    assert doctor.check_gpio_access(hw) == [
        Finding("gpio", "fail", f"no GPIO chip in {dev}", "is this a Raspberry Pi? "
                "(ls /dev/gpiochip*)")]
    (dev / "gpiochip0").write_bytes(b"")
    assert doctor.check_gpio_access(hw) == [Finding("gpio", "ok", "1 GPIO chip(s) accessible")]


def test_pins_free_and_in_use(tmp_path: Path) -> None:
    factory = MockFactory()
    c = ctx(gate(tmp_path), pin_factory=factory)
    assert doctor.check_pins_free(c) == [Finding("pins", "ok", "11 pin(s) free")]
    holder = DigitalOutputDevice(17, pin_factory=factory)
    try:
        found = doctor.check_pins_free(c)
    finally:
        holder.close()
    assert len(found) == 1
    assert found[0].status == "fail"
    assert found[0].message.startswith("doors.front.lock: GPIO17 cannot be claimed: ")
    # The doctor's own reservations are released: the daemon can take the pins afterwards.
    DigitalOutputDevice(17, pin_factory=factory).close()


def test_serial_readers_present_and_missing(tmp_path: Path) -> None:
    controller, device = pty.openpty()
    try:
        port = os.ttyname(device)
        path = gate(tmp_path, *HARDWARE, ("port: /dev/menjin-reader-front", f"port: {port}"))
        assert doctor.check_serial(ctx(path)) == [
            Finding("serial", "ok", f"reader front-card: {port} opens")]
    finally:
        os.close(controller)
        os.close(device)
    found = doctor.check_serial(ctx(gate(tmp_path, *HARDWARE)))
    assert found[0].message == "reader front-card: /dev/menjin-reader-front does not exist"
    assert doctor.check_serial(ctx(gate(tmp_path)))[0].status == "skip"


def test_camera_opens_a_real_source(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "f1.jpg"), np.full((720, 1280, 3), 128, np.uint8))
    path = gate(tmp_path, *HARDWARE, ("source: /dev/video0 ", f"source: {folder} "))
    assert doctor.check_camera(ctx(path)) == [
        Finding("camera", "ok", f"{folder}: a 1280×720 frame")]
    missing = gate(tmp_path, *HARDWARE, ("source: /dev/video0 ", "source: /dev/video97 "))
    found = doctor.check_camera(ctx(missing))
    assert found[0].status == "fail"
    assert found[0].message.startswith("/dev/video97: ")


@pytest.fixture
def tls_broker(tmp_path: Path) -> Any:
    b = start_broker(tmp_path / "tlsbroker", tls=True)
    try:
        yield b
    finally:
        b.stop()


def test_broker_plain_tls_and_unreachable(tmp_path: Path, broker: Broker,
                                          tls_broker: Broker) -> None:
    plain = gate(tmp_path, ("${MENJIN_BROKER_PORT:-1883}", str(broker.port)),
                 ("${MENJIN_BROKER_HOST:-localhost}", "127.0.0.1"))
    assert doctor.check_broker(ctx(plain)) == [
        Finding("broker", "ok", f"127.0.0.1:{broker.port}: MQTT connect accepted, without TLS")]
    assert tls_broker.pki is not None
    tls = gate(tmp_path, ("${MENJIN_BROKER_PORT:-1883}", str(tls_broker.tls_port)),
               ("  # tls:                       # required for any broker off this board\n"
                "  #   ca_file: station-ca.crt",
                f"  tls:\n    ca_file: {tls_broker.pki.ca_cert}"), name="tls.yaml")
    assert doctor.check_broker(ctx(tls)) == [
        Finding("broker", "ok", f"localhost:{tls_broker.tls_port}: MQTT connect accepted over "
                "TLS")]
    # TLS against the plain port: the handshake fails and says what to check.
    wrong = gate(tmp_path, ("${MENJIN_BROKER_PORT:-1883}", str(broker.port)),
                 ("  # tls:                       # required for any broker off this board\n"
                  "  #   ca_file: station-ca.crt",
                  f"  tls:\n    ca_file: {tls_broker.pki.ca_cert}"), name="wrong.yaml")
    found = doctor.check_broker(ctx(wrong))
    assert found[0].status == "fail"
    assert found[0].message.startswith(f"localhost:{broker.port}: TLS failed: ")
    broker.stop()
    found = doctor.check_broker(ctx(plain))
    assert found[0].message == f"127.0.0.1:{broker.port}: cannot connect: Connection refused"
    assert doctor.check_broker(ctx(gate(tmp_path, *NO_UPLINK)))[0].status == "skip"


def test_station_key(tmp_path: Path) -> None:
    assert doctor.check_station_key(ctx(gate(tmp_path)))[0].status == "warn"
    pem = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "station.pub").write_bytes(pem)
    path = gate(tmp_path, ("  # station_public_key_file: station.pub",
                           "  station_public_key_file: station.pub"))
    assert doctor.check_station_key(ctx(path)) == [
        Finding("station key", "ok", f"{tmp_path}/station.pub: Ed25519 public key")]
    (tmp_path / "station.pub").write_text("not a key\n")
    assert doctor.check_station_key(ctx(path))[0].status == "fail"


def test_clock(tmp_path: Path) -> None:
    c = ctx(gate(tmp_path))
    assert doctor.check_clock(c, lambda: (True, "timedatectl")) == [
        Finding("clock", "ok", "clock synchronised (timedatectl)")]
    assert doctor.check_clock(c, lambda: (False, "adjtimex"))[0].message == (
        "clock not synchronised (adjtimex): untrusted time never unlocks a door")
    synced, how = doctor.clock_state()  # the real query answers one way or the other
    assert how in ("timedatectl", "adjtimex")
    assert synced in (True, False)


def test_disk(tmp_path: Path) -> None:
    c = ctx(gate(tmp_path))
    assert doctor.check_disk(c)[0].status == "ok"
    found = doctor.check_disk(c, headroom_mb=1 << 40)
    assert found[0].status == "fail"
    assert found[0].fix == "free space, or lower journal.quota_mb"


def test_systemd_unit_and_udev_rules(tmp_path: Path) -> None:
    c = ctx(gate(tmp_path), root=tmp_path / "root")
    assert [f.message for f in doctor.check_systemd(c)] == [
        "menjin.service is not installed", "udev rules 99-menjin-readers.rules not installed",
        "udev rules 60-menjin-gpio.rules not installed"]
    result = runner.invoke(app, ["system", "install", "--root", str(tmp_path / "root")])
    assert result.exit_code == 0, result.stderr
    assert doctor.check_systemd(c) == [Finding("systemd", "ok", "unit and udev rules installed")]


async def test_daemon_running_or_not(tmp_path: Path) -> None:
    c = ctx(gate(tmp_path))
    found = await asyncio.to_thread(doctor.check_daemon, c)
    assert found[0].status == "fail"
    assert found[0].message.startswith("not running: no menjin daemon at ")
    assert c.config is not None
    server = ControlServer(c.config.control.socket)

    async def status(req: Request) -> dict[str, Any]:
        return {"gate": "xingfuli-north", "uptime_s": 12,
                "readers": {"front-card": {"status": "ok"}, "vehicle-card": {"status": "fault"}}}

    server.command("status", status)
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    try:
        found = await asyncio.to_thread(doctor.check_daemon, c)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert found == [Finding("daemon", "warn", "running: gate xingfuli-north, up 12 s; not ok: "
                             "reader vehicle-card", "menjin status shows why")]


def test_cli_json_and_exit_status(tmp_path: Path) -> None:
    path = gate(tmp_path, *CARD_ONLY, *NO_UPLINK)
    result = runner.invoke(app, ["doctor", "-c", str(path), "--json"])
    rows = json.loads(result.stdout)
    assert result.exit_code == 1  # no daemon, no unit on this machine
    assert {r["check"] for r in rows} >= {"config", "models", "keys", "file modes", "gpio",
                                          "pins", "serial", "camera", "broker", "station key",
                                          "clock", "disk", "systemd", "daemon"}
    assert set(rows[0]) == {"check", "status", "message", "fix"}
    text = runner.invoke(app, ["doctor", "-c", str(path)]).stdout.splitlines()
    assert text[0] == f"ok    config: {path}: gate xingfuli-north, 2 door(s), 2 reader(s)"
    assert text[-1].endswith(" warning(s)")
