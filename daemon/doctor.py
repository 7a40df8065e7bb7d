"""`menjin doctor`'s checks: one small function per thing a gate needs, each saying what to fix.

Every check takes a :class:`Context` and returns :class:`Finding` objects; none changes anything
on the board (no pin is driven, no file written, the broker sees one short connection under its
own client id so the running daemon is never disconnected).  The CLI (:mod:`daemon.cli.doctor`)
prints them.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import ipaddress
import os
import shutil
import socket
import ssl
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from daemon import control
from daemon.config import GateConfig
from daemon.configfile import ConfigError, load_config
from daemon.credentials import CredentialError, load_local_keys
from daemon.keys import CARD_SEALED_FILE, ROOT_FILE, STATION_WRAPPED_FILE, TPM2_CREDENTIAL_FILE
from daemon.modelfiles import check_models

Status = Literal["ok", "warn", "fail", "skip"]
#: Free space the state folder needs beyond the journal quota (portraits, stores, audit log).
DISK_HEADROOM_MB = 200
BROKER_TIMEOUT_SECONDS = 5.0
MQTT_CONNACK_REASONS = {
    1: "unacceptable protocol version", 2: "client id refused", 3: "broker unavailable",
    4: "user name or password refused", 5: "not authorised",
}
TIME_ERROR = 5  # adjtimex(2): the kernel clock is not synchronised


@dataclass(frozen=True)
class Finding:
    """One result: ``check`` name, ``status``, what was found, and what to do (empty when ok)."""

    check: str
    status: Status
    message: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Context:
    """What the checks look at; tests point ``root`` and ``dev`` at temporary folders."""

    config_path: Path
    config: GateConfig | None = None
    config_problems: list[str] = field(default_factory=list)
    root: Path = Path("/")
    dev: Path = Path("/dev")
    pin_factory: Any = None

    def under_root(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")


def load(config_path: Path, **kwargs: Any) -> Context:
    """A context with the config loaded (with file checks; without them when that fails)."""
    ctx = Context(config_path, **kwargs)
    try:
        ctx.config = load_config(config_path)
    except ConfigError as exc:
        ctx.config_problems = [str(p) for p in exc.problems]
        try:
            ctx.config = load_config(config_path, check_files=False)
        except ConfigError:
            ctx.config = None
    return ctx


def _no_config(check: str) -> Finding:
    return Finding(check, "skip", "the config could not be read")


# --------------------------------------------------------------------------- config and files
def check_config(ctx: Context) -> list[Finding]:
    if not ctx.config_problems:
        assert ctx.config is not None
        return [Finding("config", "ok", f"{ctx.config_path}: gate {ctx.config.gate.id}, "
                        f"{len(ctx.config.doors)} door(s), {len(ctx.config.readers)} reader(s)")]
    first = ctx.config_problems[0]
    more = f" (and {len(ctx.config_problems) - 1} more)" if len(ctx.config_problems) > 1 else ""
    return [Finding("config", "fail", f"{first}{more}",
                    f"menjin check-config {ctx.config_path} lists every problem")]


def check_models_present(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    if cfg is None:
        return [_no_config("models")]
    if cfg.vision is None or not cfg.vision.enabled:
        return [Finding("models", "skip", "vision disabled: a card-only gate needs no models")]
    bad = [c for c in check_models(cfg.vision) if c.status != "ok"]
    if not bad:
        return [Finding("models", "ok", "every configured model matches menjin's manifest")]
    return [Finding("models", "fail", f"{c.model.path.name}: {c.status}: {c.detail}",
                    f"menjin models install FOLDER_OR_ARCHIVE -c {ctx.config_path}")
            for c in bad]


def _key_files(cfg: GateConfig) -> Iterator[tuple[str, Path]]:
    """(what, path) of every key file the ``keys:`` section keeps in ``keys.dir``."""
    names = {ROOT_FILE: "root key (provider file)", TPM2_CREDENTIAL_FILE: "sealed root key (tpm2)",
             STATION_WRAPPED_FILE: "wrapped face key (station)",
             CARD_SEALED_FILE: "sealed site card key"}
    for name, what in names.items():
        yield f"keys.dir {what}", cfg.keys.dir / name


def check_keys(ctx: Context) -> list[Finding]:
    """The boot keys open with the configured provider, by the daemon's own loader."""
    cfg = ctx.config
    if cfg is None:
        return [_no_config("keys")]
    keys = cfg.keys
    local_kind = keys.card_provider or keys.provider
    findings = []
    if local_kind == "station":
        return [Finding("keys", "fail", "keys.provider station needs keys.card_provider",
                        f"menjin check-config {ctx.config_path} says which")]
    try:
        loaded = load_local_keys(local_kind, keys.dir)
    except CredentialError as exc:
        findings.append(Finding("keys", "fail", str(exc), "restore this board's keys folder "
                                "from its backup; without it the stored data cannot be read"))
        loaded = None
    if keys.provider == "station" and not (keys.dir / STATION_WRAPPED_FILE).exists():
        findings.append(Finding("keys", "fail", f"{keys.dir / STATION_WRAPPED_FILE} does not "
                                "exist: face entry cannot get its key",
                                "menjin station wrap GATE on the station; copy the file here"))
    if "file" in (keys.provider, local_kind):
        findings.append(Finding("keys", "warn", f"keys.provider file keeps the keys in "
                                f"{keys.dir} beside the data they protect",
                                "use tpm2 or rpi-otp on a gate (docs/privacy.md)"))
    if findings:
        return findings
    return [Finding("keys", "ok", f"keys open with provider {local_kind}" if loaded is not None
                    else "no keys yet: the first start creates them")]


def check_file_modes(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    if cfg is None:
        return [_no_config("file modes")]
    findings = []
    if not cfg.state_dir.is_dir():
        findings.append(Finding("file modes", "fail", f"state folder {cfg.state_dir} does not "
                                "exist", "sudo menjin system install (or mkdir -m 700 it, owned "
                                "by the service user)"))
    elif stat.S_IMODE(cfg.state_dir.stat().st_mode) & 0o007:
        mode = stat.S_IMODE(cfg.state_dir.stat().st_mode)
        findings.append(Finding("file modes", "fail", f"state folder {cfg.state_dir} is "
                                f"accessible to every user (mode {mode:o})",
                                f"chmod 700 {cfg.state_dir}"))
    for name, path in [("keys.dir", cfg.keys.dir), *_key_files(cfg)]:
        if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077:
            mode = stat.S_IMODE(path.stat().st_mode)
            findings.append(Finding("file modes", "fail", f"{name}: {path} is readable by "
                                    f"others (mode {mode:o})",
                                    f"chmod {700 if path.is_dir() else 600} {path}"))
    return findings or [Finding("file modes", "ok", f"{cfg.state_dir} and key files private")]


# --------------------------------------------------------------------------- hardware
def check_gpio_access(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    if cfg is None:
        return [_no_config("gpio")]
    if cfg.hardware.simulate:
        return [Finding("gpio", "warn", "hardware.gpio_backend is mock: simulate mode, no relay "
                        "moves", "set hardware.gpio_backend: lgpio on the board")]
    chips = sorted(ctx.dev.glob("gpiochip*"))
    if not chips:
        return [Finding("gpio", "fail", f"no GPIO chip in {ctx.dev}",
                        "is this a Raspberry Pi? (ls /dev/gpiochip*)")]
    closed = [c for c in chips if not os.access(c, os.R_OK | os.W_OK)]
    if closed:
        return [Finding("gpio", "fail", f"no read/write access to {', '.join(map(str, closed))}",
                        "add the service user to group gpio (sudo menjin system install)")]
    return [Finding("gpio", "ok", f"{len(chips)} GPIO chip(s) accessible")]


def _config_pins(cfg: GateConfig) -> list[tuple[str, int]]:
    """(owner, BCM pin) of every pin the config uses."""
    pins: list[tuple[str, int]] = []
    for door_id, door in cfg.doors.items():
        for part in ("lock", "contact", "exit_button", "tamper"):
            section = getattr(door, part, None)
            if section is not None:
                pins.append((f"doors.{door_id}.{part}", section.pin))
        if door.leds is not None:
            pins += [(f"doors.{door_id}.leds.{c}", p)
                     for c, p in door.leds.model_dump().items() if p is not None]
        if door.buzzer is not None:
            pins.append((f"doors.{door_id}.buzzer", door.buzzer))
    for reader_id, reader in cfg.readers.items():
        for key in ("d0_pin", "d1_pin"):
            pin = getattr(reader, key, None)
            if pin is not None:
                pins.append((f"readers.{reader_id}.{key}", pin))
    return pins


def _hardware_factory(backend: str) -> Any:
    """A pin factory of the configured GPIO library (imported only on the board)."""
    if backend == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    from gpiozero.pins.rpigpio import RPiGPIOFactory

    return RPiGPIOFactory()


class _Reservation:
    """The owner of the doctor's pin reservations (gpiozero keeps a weak reference to it)."""


def check_pins_free(ctx: Context) -> list[Finding]:
    """Each configured pin can be claimed, without driving it.

    On the board each pin is opened as an input without pull (lgpio claims the line; a line held
    by another program fails); in simulate mode the pins are reserved on a MockFactory.
    """
    from gpiozero.pins.mock import MockFactory

    cfg = ctx.config
    if cfg is None:
        return [_no_config("pins")]
    if daemon_answers(cfg):
        return [Finding("pins", "skip", "the running daemon holds the pins")]
    factory, own = ctx.pin_factory, ctx.pin_factory is None
    if own:
        try:
            factory = MockFactory() if cfg.hardware.simulate else _hardware_factory(
                cfg.hardware.gpio_backend)
        except Exception as exc:  # any GPIO library start-up error
            return [Finding("pins", "fail", f"GPIO library {cfg.hardware.gpio_backend}: {exc}",
                            "install it: sudo apt-get install python3-lgpio (Raspberry Pi OS), "
                            "or pip install 'menjin[pi]'")]
    findings = []
    token = _Reservation()
    pins = _config_pins(cfg)
    try:
        for owner, pin in pins:
            try:
                factory.reserve_pins(token, f"GPIO{pin}")
                if not isinstance(factory, MockFactory):
                    factory.pin(f"GPIO{pin}")
            except Exception as exc:  # GPIOPinInUse or the library's own error
                findings.append(Finding("pins", "fail", f"{owner}: GPIO{pin} cannot be "
                                        f"claimed: {exc}", "stop what holds it (gpioinfo shows "
                                        "the consumer), or choose another pin in the config"))
    finally:
        factory.release_all(token)
        if own:
            factory.close()
    return findings or [Finding("pins", "ok", f"{len(pins)} pin(s) free")]


def check_serial(ctx: Context) -> list[Finding]:
    import serial

    cfg = ctx.config
    if cfg is None:
        return [_no_config("serial")]
    ports = [(rid, r.port, r.baud) for rid, r in cfg.readers.items()
             if getattr(r, "port", None)]
    if not ports:
        return [Finding("serial", "skip", "no serial readers configured")]
    if cfg.hardware.simulate:
        return [Finding("serial", "skip", "simulate mode: readers are simulated ptys")]
    findings = []
    for reader_id, port, baud in ports:
        path = Path(str(port))
        if "://" not in str(port) and not path.exists():
            findings.append(Finding("serial", "fail", f"reader {reader_id}: {port} does not "
                                    "exist", "plug the reader in; check its name in "
                                    "/etc/udev/rules.d/99-menjin-readers.rules (udevadm info -a "
                                    "-n /dev/ttyUSB0)"))
            continue
        try:
            serial.serial_for_url(str(port), baudrate=baud, timeout=0).close()
        except (serial.SerialException, OSError) as exc:
            fix = ("add the service user to group dialout (sudo menjin system install)"
                   if isinstance(exc, PermissionError) or "ermission" in str(exc)
                   else "check the cable and that no other program uses the port")
            findings.append(Finding("serial", "fail", f"reader {reader_id}: {port}: {exc}", fix))
            continue
        findings.append(Finding("serial", "ok", f"reader {reader_id}: {port} opens"))
    return findings


def check_camera(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    if cfg is None:
        return [_no_config("camera")]
    if cfg.camera is None or cfg.vision is None or not cfg.vision.enabled:
        return [Finding("camera", "skip", "no camera or vision disabled")]
    if cfg.hardware.simulate:
        return [Finding("camera", "skip", "simulate mode: the camera is simulated")]
    if daemon_answers(cfg):
        return [Finding("camera", "skip", "the running daemon holds the camera")]
    from drivers.camera import CameraError, open_source

    source = open_source(cfg.camera.source, size=(cfg.camera.width, cfg.camera.height))
    try:
        source.open()
        frame = source.read()
    except (CameraError, OSError) as exc:
        return [Finding("camera", "fail", f"{cfg.camera.source}: {exc}",
                        "check the cable or URL; add the service user to group video")]
    finally:
        source.close()
    height, width = frame.shape[:2]
    return [Finding("camera", "ok", f"{cfg.camera.source}: a {width}×{height} frame")]


# --------------------------------------------------------------------------- network and keys
def _mqtt_connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keep-alive 10 s)."""
    def text(value: str) -> bytes:
        data = value.encode()
        return len(data).to_bytes(2, "big") + data

    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = text("MQTT") + bytes([4, flags]) + (10).to_bytes(2, "big") + text(client_id)
    if username is not None:
        body += text(username)
    if password is not None:
        body += text(password)
    length, encoded = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        encoded += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    return b"\x10" + encoded + body + b"\xe0\x00"  # CONNECT ... then DISCONNECT


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_broker(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    if cfg is None:
        return [_no_config("broker")]
    up = cfg.uplink
    if up is None or not up.enabled:
        return [Finding("broker", "skip", "uplink disabled")]
    where = f"{up.host}:{up.port}"
    password = None
    if up.password_file is not None and up.password_file.exists():
        password = up.password_file.read_text(encoding="utf-8").strip()
    elif up.password_env is not None:
        password = os.environ.get(up.password_env)
    try:
        raw = socket.create_connection((up.host, up.port), BROKER_TIMEOUT_SECONDS)
    except OSError as exc:
        return [Finding("broker", "fail", f"{where}: cannot connect: {exc.strerror or exc}",
                        "check uplink.host and uplink.port, the network, and the firewall")]
    conn: socket.socket = raw
    try:
        if up.tls is not None:
            try:
                context = ssl.create_default_context(cafile=str(up.tls.ca_file))
                if up.tls.cert_file is not None:
                    context.load_cert_chain(str(up.tls.cert_file),
                                            str(up.tls.key_file) if up.tls.key_file else None)
                conn = context.wrap_socket(raw, server_hostname=up.host)
            except OSError as exc:  # ssl.SSLError is an OSError; so is a reset handshake
                reason = getattr(exc, "reason", None) or exc.strerror or exc
                return [Finding("broker", "fail", f"{where}: TLS failed: {reason}",
                                "check that uplink.port is the broker's TLS port, that "
                                "uplink.tls.ca_file signed its certificate, and the clock")]
        conn.sendall(_mqtt_connect_packet(f"menjin-doctor-{cfg.gate.id}", up.username, password))
        connack = conn.recv(4)
    except OSError as exc:
        return [Finding("broker", "fail", f"{where}: connection lost: {exc.strerror or exc}",
                        "check uplink.port (8883 for TLS, 1883 plain)")]
    finally:
        conn.close()
    if len(connack) < 4 or connack[0] != 0x20:
        return [Finding("broker", "fail", f"{where}: no MQTT answer (is it an MQTT broker?)",
                        "check uplink.port (8883 for TLS, 1883 plain)")]
    if connack[3] != 0:
        reason = MQTT_CONNACK_REASONS.get(connack[3], f"code {connack[3]}")
        return [Finding("broker", "fail", f"{where}: the broker refused: {reason}",
                        "check uplink.username and the password file")]
    if up.tls is None:
        status: Status = "ok" if _loopback(up.host) else "warn"
        fix = "" if status == "ok" else "set uplink.tls (ca_file, and a client certificate)"
        return [Finding("broker", status, f"{where}: MQTT connect accepted, without TLS", fix)]
    return [Finding("broker", "ok", f"{where}: MQTT connect accepted over TLS")]


def check_station_key(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    if cfg is None:
        return [_no_config("station key")]
    if cfg.uplink is None or not cfg.uplink.enabled:
        return [Finding("station key", "skip", "uplink disabled")]
    path = cfg.uplink.station_public_key_file
    if path is None:
        return [Finding("station key", "warn", "no uplink.station_public_key_file: every "
                        "station command is refused", "copy the station's public key (PEM) to "
                        "the board and name it in uplink.station_public_key_file")]
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        return [Finding("station key", "fail", f"{path}: {exc}",
                        "copy the station's Ed25519 public key (PEM) again")]
    if not isinstance(key, Ed25519PublicKey):
        return [Finding("station key", "fail", f"{path}: not an Ed25519 public key",
                        "copy the station's Ed25519 public key (PEM) again")]
    return [Finding("station key", "ok", f"{path}: Ed25519 public key")]


# --------------------------------------------------------------------------- the system
def clock_state() -> tuple[bool | None, str]:
    """(synchronised or None when unknown, how it was found): timedatectl, else adjtimex(2)."""
    tool = shutil.which("timedatectl")
    if tool is not None:
        result = subprocess.run([tool, "show", "-p", "NTPSynchronized", "--value"],
                                capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip() in ("yes", "no"):
            return result.stdout.strip() == "yes", "timedatectl"
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None, "no timedatectl, no libc"
    libc = ctypes.CDLL(libc_name, use_errno=True)
    timex = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
    state = libc.adjtimex(timex)
    if state < 0:
        return None, f"adjtimex failed (errno {ctypes.get_errno()})"
    return state != TIME_ERROR, "adjtimex"


def check_clock(ctx: Context, state: Callable[[], tuple[bool | None, str]] = clock_state,
                ) -> list[Finding]:
    synced, how = state()
    if synced:
        return [Finding("clock", "ok", f"clock synchronised ({how})")]
    if synced is None:
        return [Finding("clock", "warn", f"clock state unknown ({how})",
                        "check NTP: timedatectl timesync-status")]
    return [Finding("clock", "fail", f"clock not synchronised ({how}): untrusted time never "
                    "unlocks a door", "enable NTP (sudo timedatectl set-ntp true) and check the "
                    "network, or fit an RTC")]


def check_disk(ctx: Context, headroom_mb: int = DISK_HEADROOM_MB) -> list[Finding]:
    cfg = ctx.config
    if cfg is None:
        return [_no_config("disk")]
    folder = cfg.state_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free_mb = shutil.disk_usage(folder).free // (1 << 20)
    need_mb = int(cfg.journal.quota_mb) + headroom_mb
    if free_mb < need_mb:
        return [Finding("disk", "fail", f"{free_mb} MB free at {folder}; the journal quota and "
                        f"headroom need {need_mb} MB", "free space, or lower journal.quota_mb")]
    return [Finding("disk", "ok", f"{free_mb} MB free at {folder} (needs {need_mb} MB)")]


def check_systemd(ctx: Context) -> list[Finding]:
    findings = []
    units = [ctx.under_root(p) for p in ("/etc/systemd/system/menjin.service",
                                          "/lib/systemd/system/menjin.service")]
    unit = next((u for u in units if u.exists()), None)
    if unit is None:
        findings.append(Finding("systemd", "fail", "menjin.service is not installed",
                                "sudo menjin system install"))
    else:
        exec_line = next((line for line in unit.read_text(encoding="utf-8").splitlines()
                          if line.startswith("ExecStart=")), "")
        program = Path(exec_line.removeprefix("ExecStart=").split(" ")[0])
        if not program.exists():
            findings.append(Finding("systemd", "fail", f"{unit.name} starts {program}, which "
                                    "does not exist", "sudo menjin system install (it points "
                                    "the unit at this menjin)"))
    for rules in ("99-menjin-readers.rules", "60-menjin-gpio.rules"):
        if not ctx.under_root(f"/etc/udev/rules.d/{rules}").exists():
            findings.append(Finding("systemd", "fail", f"udev rules {rules} not installed",
                                    "sudo menjin system install"))
    return findings or [Finding("systemd", "ok", "unit and udev rules installed")]


def daemon_answers(cfg: GateConfig) -> bool:
    try:
        asyncio.run(control.call(cfg.control.socket, "status"))
    except (control.ControlError, OSError):
        return False
    return True


def check_daemon(ctx: Context) -> list[Finding]:
    cfg = ctx.config
    if cfg is None:
        return [_no_config("daemon")]
    try:
        st = asyncio.run(control.call(cfg.control.socket, "status"))
    except (control.ControlError, OSError) as exc:
        return [Finding("daemon", "fail", f"not running: {exc}",
                        "sudo systemctl enable --now menjin; then journalctl -u menjin")]
    faulted = [f"reader {r}" for r, v in (st.get("readers") or {}).items()
               if v.get("status") not in ("ok", None)]
    message = f"running: gate {st.get('gate')}, up {st.get('uptime_s', 0)} s"
    if faulted:
        return [Finding("daemon", "warn", f"{message}; not ok: {', '.join(faulted)}",
                        "menjin status shows why")]
    return [Finding("daemon", "ok", message)]


CHECKS: tuple[Callable[[Context], list[Finding]], ...] = (
    check_config, check_models_present, check_keys, check_file_modes, check_gpio_access,
    check_pins_free, check_serial, check_camera, check_broker, check_station_key, check_clock,
    check_disk, check_systemd, check_daemon,
)


def run_checks(ctx: Context) -> list[Finding]:
    """Every check in order; a check that crashes becomes a failed finding, never a traceback."""
    findings: list[Finding] = []
    for check in CHECKS:
        try:
            findings += check(ctx)
        except Exception as exc:  # one broken check must not hide the others
            name = check.__name__.removeprefix("check_").replace("_", " ")
            findings.append(Finding(name, "fail", f"the check itself failed: {exc!r}",
                                    "report this to the menjin maintainers"))
    return findings
