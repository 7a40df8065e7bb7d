"""A real mosquitto broker for tests: free port, generated config, optional TLS and ACL.

Never relies on a broker that happens to run on the machine: each test gets its own process.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")


def mosquitto_binary() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pki:
    """A throw-away CA with a server certificate (127.0.0.1, localhost) and client certificates."""

    directory: Path
    ca_cert: Path = field(init=False)
    _ca_key: ec.EllipticCurvePrivateKey = field(init=False)
    _ca: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "menjin test CA")])
        now = dt.datetime.now(dt.UTC)
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_cert = self.directory / "ca.crt"
        self.ca_cert.write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, server: bool = False) -> tuple[Path, Path]:
        """Write ``<cn>.crt`` and ``<cn>.key``; returns their paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self._ca_key, hashes.SHA256())
        crt = self.directory / f"{common_name}.crt"
        pem = self.directory / f"{common_name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        pem.chmod(0o600)
        return crt, pem


@dataclass
class Broker:
    """A running mosquitto. ``port`` is plain TCP; ``tls_port`` is set when TLS was asked for."""

    directory: Path
    port: int
    tls_port: int | None = None
    pki: Pki | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def start(self) -> None:
        """(Re)start on the same ports and config, e.g. after :meth:`stop` in a reconnect test."""
        binary = mosquitto_binary()
        if binary is None:  # the Makefile installs it; a missing one is a set-up error
            raise RuntimeError(
                "mosquitto is not installed: run `make test` or apt-get install mosquitto"
            )
        self.process = subprocess.Popen(
            [binary, "-c", str(self.directory / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {self.log_text()}")


def start_broker(
    directory: Path,
    *,
    tls: bool = False,
    acl: str | None = None,
    passwords: dict[str, str] | None = None,
    require_certificate: bool = False,
    max_inflight_messages: int = 100,
) -> Broker:
    """Start mosquitto with a generated config in ``directory``.

    ``acl`` is the text of a mosquitto ACL file (it then applies to both listeners);
    ``passwords`` maps user names to passwords (hashed with ``mosquitto_passwd`` when present);
    ``max_inflight_messages`` bounds the unacknowledged QoS 1 messages sent to each client.
    The plain listener allows anonymous clients unless ``passwords`` is given.
    """
    directory.mkdir(parents=True, exist_ok=True)
    broker = Broker(directory=directory, port=free_port())
    lines = [
        "per_listener_settings false",
        f"log_dest file {directory / 'mosquitto.log'}",
        "log_type all",
        f"persistence_location {directory}/",
        "persistence false",
        f"max_inflight_messages {max_inflight_messages}",
        "max_queued_messages 100000",
        # Run as root, mosquitto drops to user "mosquitto", who cannot read the 0600 files here.
        "user root",
        f"listener {broker.port} 127.0.0.1",
    ]
    if passwords:
        pwfile = directory / "passwd"
        pwfile.write_text("".join(f"{u}:{p}\n" for u, p in passwords.items()))
        pwfile.chmod(0o600)
        subprocess.run(["mosquitto_passwd", "-U", str(pwfile)], check=True)
        lines += ["allow_anonymous false", f"password_file {pwfile}"]
    else:
        lines.append("allow_anonymous true")
    if acl is not None:
        aclfile = directory / "acl"
        aclfile.write_text(acl)
        lines.append(f"acl_file {aclfile}")
    if tls:
        broker.pki = Pki(directory / "pki")
        crt, key = broker.pki.issue("localhost", server=True)
        broker.tls_port = free_port()
        lines += [
            f"listener {broker.tls_port} 127.0.0.1",
            f"cafile {broker.pki.ca_cert}",
            f"certfile {crt}",
            f"keyfile {key}",
            f"require_certificate {'true' if require_certificate else 'false'}",
        ]
        if require_certificate:
            lines.append("use_identity_as_username true")
    (directory / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    broker.start()
    return broker
