"""Key providers: file, tpm2 (systemd-creds), rpi-otp (vcmailbox), station (signed unwrap).

``systemd-creds`` and ``vcmailbox`` are replaced by executables on PATH that behave like the
real tools at their seam (same arguments, same output format); the "TPM" and the "OTP" live
outside the gate's state directory, as the real ones live outside the SD card.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.commands import CommandProcessor
from daemon.config import GateConfig
from daemon.configfile import load_config
from daemon.events import Event
from daemon.journal import Journal
from daemon.keyring import Keyring
from daemon.keys import (
    KEY_BYTES,
    NONCE_BYTES,
    FileProvider,
    KeyProviderError,
    KeyUnavailableError,
    RpiOtpProvider,
    StationProvider,
    Tpm2Provider,
    derive,
    import_card_key,
    load_local,
    seal,
    unseal,
)
from daemon.station_key import StationKeyExchange
from protocol.envelope import new_command
from station.keyservice import KeyServiceError, answer, wrap_new_key
from tests.protocol.test_entropy import first_in_child

OTP_KEY = "0123456789abcdef" * 4

FAKE_SYSTEMD_CREDS = f"""#!{sys.executable}
# systemd-creds encrypt --with-key=tpm2 --name=N - OUT | decrypt --name=N IN -
import os, secrets, sys
from pathlib import Path
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
tpm = Path(os.environ["FAKE_TPM"])  # the chip's secret: not on the SD card
args = sys.argv[1:]
name = next(a.split("=", 1)[1] for a in args if a.startswith("--name="))
if not tpm.exists():
    tpm.write_bytes(secrets.token_bytes(32))
aead = AESGCM(tpm.read_bytes())
if args[0] == "encrypt":
    assert "--with-key=tpm2" in args and args[-2:] == ["-", "-"], args
    nonce = secrets.token_bytes(12)
    sys.stdout.buffer.write(b"TPM2" + nonce + aead.encrypt(nonce, sys.stdin.buffer.read(),
                                                           name.encode()))
elif args[0] == "decrypt":
    blob = Path(args[-2]).read_bytes()
    try:
        sys.stdout.buffer.write(aead.decrypt(blob[4:16], blob[16:], name.encode()))
    except Exception:
        print("Failed to decrypt: TPM2 unseal failed", file=sys.stderr)
        sys.exit(1)
"""


def fake_vcmailbox(header: str, key_hex: str) -> str:
    words = " ".join("0x" + key_hex[i:i + 8] for i in range(0, 64, 8))
    return textwrap.dedent(f"""\
        #!{sys.executable}
        import sys
        # exactly the call of Raspberry Pi's rpi-otp-private-key
        assert sys.argv[1:] == ["0x00030081", "40", "40", "0", "8"] + ["0"] * 8, sys.argv
        print("{header} {words} 0x00000000")
        """)


OTP_OK_HEADER = "0x00000040 0x80000000 0x00030081 0x00000028 0x80000028 0x00000000 0x00000008"


def tool(directory: Path, name: str, text: str) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_tpm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    tool(bindir, "systemd-creds", FAKE_SYSTEMD_CREDS)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    chip = tmp_path / "chip" / "tpm-secret"
    chip.parent.mkdir()
    monkeypatch.setenv("FAKE_TPM", str(chip))
    return chip


def test_file_provider_makes_a_private_key_once(tmp_path: Path) -> None:
    provider = FileProvider(tmp_path / "keys" / "root.key")
    key = provider.root_key()
    assert len(key) == KEY_BYTES and FileProvider(provider.path).root_key() == key
    assert stat.S_IMODE(provider.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(provider.path.parent.stat().st_mode) == 0o700


def test_each_purpose_has_its_own_key() -> None:
    root = bytes(range(32))
    keys = {derive(root, p) for p in ("templates", "pseudonyms", "store", "journal")}
    assert len(keys) == 4 and root not in keys
    with pytest.raises(ValueError, match="unknown key purpose 'x'"):
        derive(root, "x")


def test_tpm2_seals_the_root_key_and_a_copy_without_the_chip_is_useless(
    tmp_path: Path, fake_tpm: Path
) -> None:
    credential = tmp_path / "state" / "keys" / "root.cred"
    key = Tpm2Provider(credential).root_key()
    assert Tpm2Provider(credential).root_key() == key  # a restart: unsealed again, same key
    assert key not in credential.read_bytes()
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    fake_tpm.write_bytes(os.urandom(32))  # the SD card in another board
    with pytest.raises(KeyProviderError, match=r"systemd-creds decrypt failed .*unseal failed"):
        Tpm2Provider(credential).root_key()


def test_tpm2_uses_the_credential_systemd_decrypted_for_the_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "run-credentials"
    creds.mkdir()
    (creds / "menjin-root").write_bytes(b"k" * 32)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # no systemd-creds needed
    assert Tpm2Provider(tmp_path / "root.cred").root_key() == b"k" * 32


def test_tpm2_without_systemd_creds_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(KeyProviderError, match="systemd-creds not found"):
        Tpm2Provider(tmp_path / "root.cred").root_key()


@pytest.mark.parametrize(
    ("header", "key_hex", "message"),
    [
        (OTP_OK_HEADER, OTP_KEY, None),
        (OTP_OK_HEADER, "0" * 64, "OTP private key of this board is not programmed"),
        ("0x00000040 0x80000001 0x00030081 0x00000028 0x80000028 0x00000000 0x00000008",
         OTP_KEY, "did not return the OTP private key"),
    ],
)
def test_rpi_otp_reads_the_customer_private_key_through_the_mailbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header: str, key_hex: str,
    message: str | None,
) -> None:
    tool(tmp_path / "bin", "vcmailbox", fake_vcmailbox(header, key_hex))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    if message is None:
        assert RpiOtpProvider().root_key() == bytes.fromhex(OTP_KEY)
    else:
        with pytest.raises(KeyProviderError, match=message):
            RpiOtpProvider().root_key()


def test_the_card_key_is_sealed_once_and_can_be_imported(tmp_path: Path) -> None:
    provider = FileProvider(tmp_path / "keys" / "root.key")
    first = load_local(provider, tmp_path / "keys")
    assert load_local(provider, tmp_path / "keys").card == first.card
    assert first.card not in (tmp_path / "keys" / "card.sealed").read_bytes()
    site = bytes(range(32))  # the site key the station and the first gate use
    import_card_key(provider, tmp_path / "keys", site)
    assert load_local(provider, tmp_path / "keys").card == site


def gate_config(tmp_path: Path, keys: str, uplink: str = "") -> GateConfig:
    path = tmp_path / "gate.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        state_dir: state
        gate: {{id: g1, site: Test}}
        doors: {{front: {{lock: {{pin: 17}}}}}}
        keys: {keys}
        """) + uplink)
    return load_config(path, check_files=False)


def test_station_provider_needs_a_card_provider(tmp_path: Path) -> None:
    from daemon.configfile import ConfigError

    with pytest.raises(ConfigError) as info:
        gate_config(tmp_path, "{provider: station}")
    assert ("keys.card_provider: provider station needs card_provider (tpm2, rpi-otp or file): "
            "cards must work before the station answers") in str(info.value)


STATION_KEY = Ed25519PrivateKey.generate()


async def test_station_provider_unwraps_through_a_signed_command(tmp_path: Path) -> None:
    """Boot: keys.request event → the station's answer → signed `unwrap` → face key in memory."""
    kek = os.urandom(32)
    provider = StationProvider(tmp_path / "keys" / "station.wrapped")
    provider.wrapped.parent.mkdir()
    provider.wrapped.write_bytes(wrap_new_key(kek, "g1"))
    with pytest.raises(KeyUnavailableError, match="waiting for the station"):
        provider.root_key()
    events: list[Event] = []
    unlocked: list[bool] = []

    async def on_unlock() -> None:
        unlocked.append(True)

    exchange = StationKeyExchange(provider, gate="g1", emit=events.append, unlocked=on_unlock)
    exchange.request()
    request = events[-1]
    assert request.type == "keys.request" and set(request.data) == {"gate_public", "wrapped"}
    journal = Journal(tmp_path / "journal.db", gate="g1")
    processor = CommandProcessor(gate="g1", station_key=STATION_KEY.public_key(),
                                 remember_nonce=journal.remember_nonce, emit=events.append,
                                 handlers={"unwrap": exchange.unwrap})
    args = answer(kek, "g1", dict(request.data))
    assert base64.b64decode(args["sealed"]) != provider.wrapped.read_bytes()
    envelope = new_command("unwrap", "g1", args, STATION_KEY)
    outcome = await processor.process("unwrap", json.dumps(envelope).encode())
    assert outcome.result["ok"] is True, outcome.result
    assert unlocked == [True]
    first_boot = provider.root_key()
    assert len(first_boot) == KEY_BYTES

    # the next boot gets the same data key, and an old answer is refused by the new boot
    again = StationProvider(provider.wrapped)
    second = StationKeyExchange(again, gate="g1", emit=events.append, unlocked=on_unlock)
    with pytest.raises(ValueError, match="answers another request"):
        await second.unwrap(args)
    second.request()
    await second.unwrap(answer(kek, "g1", dict(events[-1].data)))
    assert again.root_key() == first_boot
    # an unsigned (or otherwise forged) answer never reaches the handler
    forged = dict(envelope, sig=base64.b64encode(b"x" * 64).decode())
    refused = await processor.process("unwrap", json.dumps(forged).encode())
    assert refused.result["ok"] is False
    journal.close()


def test_the_station_refuses_a_blob_of_another_gate() -> None:
    kek = os.urandom(32)
    blob = wrap_new_key(kek, "g2")
    with pytest.raises(KeyServiceError, match="gate g1: cannot unwrap its key"):
        answer(kek, "g1", {"wrapped": base64.b64encode(blob).decode(),
                           "gate_public": base64.b64encode(bytes(32)).decode()})


def test_keyring_with_station_faces_and_file_cards(tmp_path: Path) -> None:
    (tmp_path / "station.pub.pem").write_bytes(b"")
    cfg = gate_config(tmp_path, "{provider: station, card_provider: file}",
                      "uplink: {host: 127.0.0.1, station_public_key_file: station.pub.pem}\n")
    keyring = Keyring(cfg)
    assert keyring.station is not None and not keyring.face_ready()
    assert len(keyring.local().card) == KEY_BYTES  # cards work before the station answers
    with pytest.raises(KeyUnavailableError):
        keyring.template_key()
    keyring.station.offer(bytes(32))
    assert keyring.face_ready() and len(keyring.template_key()) == KEY_BYTES


def test_card_key_export_then_import_on_a_second_gate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from menjin.cli import app

    first, second = tmp_path / "one", tmp_path / "two"
    configs = []
    for base in (first, second):
        base.mkdir()
        configs.append(gate_config(base, "{provider: file}"))
    runner = CliRunner()
    exported = tmp_path / "site-card.key"
    out = runner.invoke(app, ["keys", "card-key", "--export", str(exported),
                              "-c", str(first / "gate.yaml")])
    assert out.exit_code == 0, out.output
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    out = runner.invoke(app, ["keys", "card-key", "--import", str(exported),
                              "-c", str(second / "gate.yaml")])
    assert out.exit_code == 0, out.output
    one, two = Keyring(configs[0]), Keyring(configs[1])
    assert one.card_hash("0004567890") == two.card_hash("0004567890")
    assert one.local().store != two.local().store  # only the site key is shared


def test_sealed_blobs_never_share_a_nonce_and_draw_them_in_blocks() -> None:
    """Nonces come from the OS a block at a time (a system call per sealed row let another
    thread take the GIL each time); every blob still has its own, and every blob opens."""
    key = derive(b"\x01" * 32, "journal")
    with mock.patch("protocol.entropy.os.urandom", wraps=os.urandom) as urandom:
        blobs = [seal(key, f"row {i}".encode(), b"ctx") for i in range(1000)]
    assert 1 <= urandom.call_count <= 1000 // 256 + 1
    assert len({blob[:NONCE_BYTES] for blob in blobs}) == 1000
    assert [unseal(key, blob, b"ctx") for blob in blobs] == [
        f"row {i}".encode() for i in range(1000)]


def test_a_forked_child_never_reuses_the_nonces_its_parent_has_left() -> None:
    key = derive(b"\x01" * 32, "journal")
    seal(key, b"x", b"ctx")  # the parent holds a block it has started
    child = first_in_child(lambda: seal(key, b"x", b"ctx")[:NONCE_BYTES], NONCE_BYTES)
    assert len(child) == NONCE_BYTES
    assert child != seal(key, b"x", b"ctx")[:NONCE_BYTES]
