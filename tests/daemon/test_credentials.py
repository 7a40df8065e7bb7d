"""Key and certificate files: check-config loads each exactly as the daemon does (issue 14 #7)."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from daemon import builders, credentials, keyring, station_commands
from daemon.credentials import (
    CredentialError,
    load_osdp_key,
    load_station_key,
    read_password,
    tls_context,
)
from menjin.cli import app

CONFIG = """\
version: 1
state_dir: state
gate: {id: g1, site: Test compound}
doors:
  front: {lock: {pin: 17}}
uplink:
  host: localhost
  station_public_key_file: station.pub
"""


def pem_public(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def check(tmp_path: Path, config: str = CONFIG) -> tuple[int, list[str]]:
    path = tmp_path / "gate.yaml"
    # simulated pins: the GPIO library of a board is not what these tests are about
    path.write_text(textwrap.dedent(config) + "hardware: {gpio_backend: mock}\n")
    result = CliRunner().invoke(app, ["check-config", str(path)])
    return result.exit_code, [line.removeprefix(f"{path}:") for line in result.output.splitlines()]


def test_the_daemon_loads_keys_with_the_same_functions() -> None:
    assert station_commands.load_station_key is load_station_key
    assert builders.load_osdp_key is load_osdp_key
    assert credentials.load_local is keyring.load_local  # the boot keys, as the daemon opens them


def test_an_ed25519_station_key_passes(tmp_path: Path) -> None:
    (tmp_path / "station.pub").write_bytes(pem_public(ed25519.Ed25519PrivateKey.generate()))
    code, lines = check(tmp_path)
    assert code == 0, lines
    assert isinstance(load_station_key(tmp_path / "station.pub"), ed25519.Ed25519PublicKey)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: pem_public(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
         "holds a public key of type RSA, not Ed25519; the station signs with Ed25519 (menjin "
         "station keygen)"),
        (lambda: pem_public(ec.generate_private_key(ec.SECP256R1())),
         "holds a public key of type EC, not Ed25519; the station signs with Ed25519 (menjin "
         "station keygen)"),
        (lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
         "is not a PEM public key; copy station_key.pub.pem written by menjin station keygen"),
        (lambda: b"not a key at all\n",
         "is not a PEM public key; copy station_key.pub.pem written by menjin station keygen"),
    ],
    ids=["rsa", "ec", "private-key", "garbage"],
)
def test_a_station_key_the_daemon_cannot_use_fails_the_check(
    tmp_path: Path, content: object, message: str
) -> None:
    key = tmp_path / "station.pub"
    key.write_bytes(content())  # type: ignore[operator]
    code, lines = check(tmp_path)
    assert code == 78
    assert lines[0] == f"8:28: uplink.station_public_key_file: {key} {message}"
    with pytest.raises(CredentialError, match=r"Ed25519|PEM public key"):
        load_station_key(key)


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


TLS_CONFIG = """\
version: 1
state_dir: state
gate: {id: g1, site: Test compound}
doors:
  front: {lock: {pin: 17}}
uplink:
  host: station.example
  tls: {ca_file: ca.crt, cert_file: gate.crt, key_file: gate.key}
"""


def test_loadable_tls_files_pass(tmp_path: Path) -> None:
    _certificate(tmp_path, "ca")
    _certificate(tmp_path, "gate")
    code, lines = check(tmp_path, TLS_CONFIG)
    assert code == 0, lines
    tls_context(tmp_path / "ca.crt", tmp_path / "gate.crt", tmp_path / "gate.key")


def test_a_ca_file_that_is_no_certificate_fails_the_check(tmp_path: Path) -> None:
    _certificate(tmp_path, "gate")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nnonsense\n")
    code, lines = check(tmp_path, TLS_CONFIG)
    assert code == 78
    assert lines[0] == (f"8:18: uplink.tls.ca_file: {tmp_path / 'ca.crt'} is not a PEM CA "
                        "certificate (ask the station for its CA certificate)")


def test_a_client_key_of_another_certificate_fails_the_check(tmp_path: Path) -> None:
    _certificate(tmp_path, "ca")
    _certificate(tmp_path, "gate")
    _, other_key = _certificate(tmp_path, "other")
    other_key.replace(tmp_path / "gate.key")
    code, lines = check(tmp_path, TLS_CONFIG)
    assert code == 78
    assert lines[0].startswith(f"8:18: uplink.tls.ca_file: {tmp_path / 'gate.crt'} and "
                               f"{tmp_path / 'gate.key'} do not load as a client certificate "
                               "and its private key (")
    assert lines[0].endswith("); check that the key belongs to the certificate and is not "
                             "encrypted")


def test_other_secret_files_are_loaded_as_the_daemon_loads_them(tmp_path: Path) -> None:
    config = CONFIG.replace("  station_public_key_file: station.pub\n",
                            "  password_file: mqtt-password\n")
    config += ("readers:\n"
               "  r1: {type: osdp, door: front, port: /dev/ttyUSB0, osdp_key_file: sc.key}\n")
    (tmp_path / "mqtt-password").write_text("\n")
    (tmp_path / "sc.key").write_text("0011\n")
    code, lines = check(tmp_path, config)
    assert code == 78
    assert lines == [
        f"8:18: uplink.password_file: {tmp_path / 'mqtt-password'} is empty; write the broker "
        "password for this gate into it",
        f"10:68: readers.r1.osdp_key_file: {tmp_path / 'sc.key'}: an OSDP Secure Channel key is "
        "32 hex digits (16 bytes)",
        "2 problem(s) found",
    ]
    (tmp_path / "sc.key").write_text("00112233445566778899aabbccddeeff\n")
    assert load_osdp_key(tmp_path / "sc.key") == bytes.fromhex("00112233445566778899aabbccddeeff")
    (tmp_path / "mqtt-password").write_text(" s3cret \n")
    assert read_password(tmp_path / "mqtt-password") == "s3cret"


def test_keys_another_board_cannot_open_fail_the_check(tmp_path: Path) -> None:
    from daemon.configfile import load_config
    from daemon.keyring import Keyring

    config = CONFIG.replace("  station_public_key_file: station.pub\n", "")
    code, lines = check(tmp_path, config)
    assert code == 0, lines  # no keys yet: the daemon creates them at its first start
    Keyring(load_config(tmp_path / "gate.yaml", check_files=False)).local()
    assert check(tmp_path, config)[0] == 0
    (tmp_path / "state" / "keys" / "root.key").write_bytes(bytes(32))  # another board's root
    code, lines = check(tmp_path, config)
    assert code == 78
    assert lines[0].startswith("1:1: keys.provider: ")
    assert "do not open with provider 'file'" in lines[0]
