"""Commands from the station to one gate: sign, publish, and wait for the gate's answer.

The broker is not trusted to decide who may open a door: every command is an envelope signed with
the station's Ed25519 key (:mod:`protocol.envelope`), bound to one gate and one action, valid for a
short time.  The sender subscribes to the gate's result topic *before* publishing, so a fast gate
cannot answer before anyone listens, and matches the answer by command id.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.bounded_json import PayloadError, loads_bounded
from protocol.envelope import new_command, private_key_from_pem
from protocol.mqtt import QOS_AT_LEAST_ONCE, REASON_FAILURE, MqttClient, MqttError, reason_text
from protocol.sync_pieces import DEFAULT_PIECE_BYTES, new_transfer_id, piece_args, split_sync
from protocol.topics import GateTopics
from station.config import StationConfig
from station.mqtt import make_client
from station.residents import ResidentList, hash_pins, sync_args

if TYPE_CHECKING:
    from station.store import Store

log = logging.getLogger(__name__)

PRIVATE_KEY_MODE = 0o600
#: The gate refuses larger envelopes by default; photos are checked against it before sending.
GATE_MAX_ENVELOPE_BYTES = 1024 * 1024
ENVELOPE_OVERHEAD_BYTES = 1024
JPEG_MAGIC = b"\xff\xd8"


class CommandError(Exception):
    """A command that could not be built or got no answer; the text is for the operator.

    ``message`` is English with ``%(name)s`` fields filled from ``fields``.  The CLI prints
    ``str(error)``; the page shows :meth:`say` in its own language (a literal message is
    extracted into the catalog: ``CommandError`` is one of ``make i18n``'s keywords).
    """

    def __init__(self, message: str, **fields: object) -> None:
        self.message, self.fields = message, fields
        super().__init__(message % fields if fields else message)

    def say(self, gettext: Callable[[str], str]) -> str:
        """The message in the language of ``gettext``, fields filled in."""
        text = gettext(self.message)
        return text % self.fields if self.fields else text


def unknown_gate(gate: str) -> CommandError:
    """The refusal of a command to a gate the station has never heard from."""
    return CommandError("unknown gate %(gate)s: the station has never heard from it",
                        gate=repr(gate))


# -- keys ---------------------------------------------------------------------------------------


def keygen(private_path: Path, *, force: bool = False) -> Path:
    """Write a new Ed25519 pair: the private key (PEM, mode 0600) and ``<name>.pub.pem`` beside it.

    Returns the public key's path, the file to copy to every gate (``station_key`` in gate.yaml).
    """
    public_path = private_path.with_suffix(".pub.pem")
    if not force and (private_path.exists() or public_path.exists()):
        raise CommandError(
            "%(path)s already exists and the gates trust it (use --force to replace it)",
            path=str(private_path))
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.unlink(missing_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_KEY_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    public_path.write_bytes(public_pem)
    return public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM (PKCS#8) Ed25519 private key; ValueError naming ``path`` for anything else."""
    try:
        return private_key_from_pem(path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        return load_private_key(path)
    except FileNotFoundError:
        raise CommandError("%(path)s: no signing key; create one with `menjin station keygen`",
                           path=str(path)) from None
    except ValueError as exc:
        raise CommandError("%(path)s: not a usable Ed25519 private key (%(error)s)",
                           path=str(path), error=str(exc)) from None


# -- arguments ----------------------------------------------------------------------------------


def open_args(door: str, seconds: float) -> dict[str, Any]:
    return {"door": door, "seconds": seconds}


def mode_args(door: str, mode: str) -> dict[str, Any]:
    return {"door": door, "mode": mode}


def enrol_args(person: str, photos: list[Path]) -> dict[str, Any]:
    """Photos as base64 JPEG; refused here when the gate would refuse the envelope's size."""
    encoded = []
    for photo in photos:
        try:
            data = photo.read_bytes()
        except OSError as exc:
            raise CommandError("%(path)s: cannot read: %(error)s", path=str(photo),
                               error=str(exc.strerror)) from None
        if not data.startswith(JPEG_MAGIC):
            raise CommandError("%(path)s: not a JPEG file", path=str(photo))
        encoded.append(base64.b64encode(data).decode("ascii"))
    size = sum(len(e) for e in encoded) + ENVELOPE_OVERHEAD_BYTES
    if size > GATE_MAX_ENVELOPE_BYTES:
        raise CommandError(
            "photos too large: %(size)s bytes encoded; a gate accepts commands up to %(most)s "
            "bytes (send fewer or smaller photos)", size=size, most=GATE_MAX_ENVELOPE_BYTES)
    return {"person": person, "photos": encoded}


# -- sending ------------------------------------------------------------------------------------


async def send_command(
    config: StationConfig,
    gate: str,
    name: str,
    args: Mapping[str, Any],
    *,
    key: Ed25519PrivateKey,
    store: Store | None = None,
    client_factory: Callable[[], MqttClient] | None = None,
) -> dict[str, Any]:
    """Sign and publish one command, then return the gate's result (or raise on timeout)."""
    results = await send_commands(config, gate, name, [args], key=key, store=store,
                                  client_factory=client_factory)
    return results[0]


async def send_commands(
    config: StationConfig,
    gate: str,
    name: str,
    args_list: Sequence[Mapping[str, Any]],
    *,
    key: Ed25519PrivateKey,
    store: Store | None = None,
    client_factory: Callable[[], MqttClient] | None = None,
) -> list[dict[str, Any]]:
    """Several commands of one name to one gate over one connection, each sent once the previous
    one was answered; stops after the first refusal.  Returns the results received."""
    topics = GateTopics(config.mqtt.prefix, gate)
    factory = client_factory or (lambda: make_client(config.mqtt, "command"))
    timeout_s = config.command_timeout_seconds
    results: list[dict[str, Any]] = []
    envelope: dict[str, Any] = {"id": "-"}
    try:
        async with factory() as client:
            codes = await client.subscribe(topics.result(name), qos=QOS_AT_LEAST_ONCE)
            if max(codes, default=0) >= REASON_FAILURE:
                raise CommandError(
                    "broker refused the subscription to %(topic)s (%(reason)s); check its ACL",
                    topic=topics.result(name), reason=reason_text("SUBACK", max(codes)))
            for args in args_list:
                counter = (await asyncio.to_thread(store.next_command_counter)
                           if store is not None else None)
                envelope = new_command(name, gate, args, key, ttl_s=config.command_ttl_seconds,
                                       counter=counter)
                if store is not None:
                    await asyncio.to_thread(store.record_command, envelope)
                code = await client.publish(topics.command(name), json.dumps(envelope).encode())
                if code >= REASON_FAILURE:
                    raise CommandError(
                        "broker refused the command on %(topic)s (%(reason)s); check its ACL",
                        topic=topics.command(name), reason=reason_text("PUBACK", code))
                log.info("command %s %s sent to gate %s", name, envelope["id"], gate)
                async with asyncio.timeout(timeout_s):
                    result = await _answer(client, envelope["id"])
                if store is not None:
                    await asyncio.to_thread(store.record_result, gate, result)
                results.append(result)
                if result.get("ok") is not True:
                    break
    except TimeoutError:
        raise CommandError(
            "gate %(gate)s did not answer %(name)s %(id)s within %(seconds)s s (offline? check "
            "`menjin station run` and the gate's status)",
            gate=gate, name=name, id=envelope["id"], seconds=f"{timeout_s:g}") from None
    except MqttError as exc:
        raise CommandError("broker %(host)s:%(port)s: %(error)s", host=config.mqtt.host,
                           port=config.mqtt.port, error=str(exc)) from None
    return results


async def _answer(client: MqttClient, command_id: str) -> dict[str, Any]:
    async for message in client.messages():
        try:
            result = loads_bounded(message.payload)
        except PayloadError as exc:
            log.warning("ignoring a result that is not acceptable JSON on %s: %s",
                        message.topic, exc)
            continue
        if isinstance(result, dict) and result.get("id") == command_id:
            return result
    raise MqttError("disconnected before the gate answered")


async def sync(
    config: StationConfig,
    gate: str,
    residents: ResidentList,
    *,
    key: Ed25519PrivateKey,
    store: Store,
    snapshot: bool = False,
    client_factory: Callable[[], MqttClient] | None = None,
    piece_bytes: int = DEFAULT_PIECE_BYTES,
) -> dict[str, Any]:
    """Send the resident list; a refused delta (e.g. ``snapshot_required``) is sent again as
    a snapshot.  A list larger than ``piece_bytes`` of JSON goes in signed pieces
    (``sync_part``, :mod:`protocol.sync_pieces`) that the gate applies together.

    The list the gate acknowledged is remembered per gate, so the next sync is a delta.
    """
    state = await asyncio.to_thread(store.sync_state, gate)
    previous = (state[0], ResidentList.from_json(state[1])) if state is not None else None
    residents = await asyncio.to_thread(hash_pins, residents,
                                        previous[1] if previous is not None else None)
    args = sync_args(residents, previous, snapshot=snapshot)
    result = await _send_sync(config, gate, args, key=key, store=store,
                              client_factory=client_factory, piece_bytes=piece_bytes)
    if not result.get("ok") and args["mode"] == "delta":
        log.warning("gate %s refused the delta (%s); sending a snapshot",
                    gate, result.get("reason"))
        args = sync_args(residents, previous, snapshot=True)
        result = await _send_sync(config, gate, args, key=key, store=store,
                                  client_factory=client_factory, piece_bytes=piece_bytes)
    if result.get("ok"):
        await asyncio.to_thread(store.set_sync_state, gate, args["version"], residents.to_json())
    return result


async def erase(
    config: StationConfig,
    gates: list[str],
    name: str,
    person: str,
    *,
    key: Ed25519PrivateKey,
    store: Store,
    client_factory: Callable[[], MqttClient] | None = None,
) -> dict[str, dict[str, Any]]:
    """Send ``forget`` or ``remove`` of ``person`` to each gate at once; each gate's result.

    A gate that does not answer gets ``{"ok": false, "reason": "no_answer", "detail": ...}``;
    every command is recorded with its answer (:meth:`station.store.Store.erasures`), and an
    answer that comes later is recorded by the running receiver.
    """
    if name not in ("forget", "remove"):
        raise CommandError("not an erasure command: %(name)s", name=repr(name))
    if not person:
        raise CommandError("a person id is required")

    async def one(gate: str) -> dict[str, Any]:
        try:
            return await send_command(config, gate, name, {"person": person}, key=key,
                                      store=store, client_factory=client_factory)
        except CommandError as exc:
            return {"ok": False, "gate": gate, "name": name, "reason": "no_answer",
                    "detail": str(exc)}

    results = await asyncio.gather(*(one(gate) for gate in gates))
    return dict(zip(gates, results, strict=True))


async def _send_sync(
    config: StationConfig,
    gate: str,
    args: dict[str, Any],
    *,
    key: Ed25519PrivateKey,
    store: Store,
    client_factory: Callable[[], MqttClient] | None,
    piece_bytes: int,
) -> dict[str, Any]:
    """One ``sync``, or its pieces: the last answer (the gate's answer to the whole)."""
    pieces = split_sync(args, piece_bytes)
    if len(pieces) == 1:
        return await send_command(config, gate, "sync", args, key=key, store=store,
                                  client_factory=client_factory)
    transfer = new_transfer_id()
    log.info("sync to gate %s: %s %s in %d signed pieces (transfer %s)", gate, args["mode"],
             args["version"], len(pieces), transfer)
    results = await send_commands(
        config, gate, "sync_part",
        [piece_args(transfer, i, len(pieces), p) for i, p in enumerate(pieces)],
        key=key, store=store, client_factory=client_factory)
    last = results[-1]
    if last.get("ok") is True and last.get("result", {}).get("complete") is not True:
        raise CommandError("gate %(gate)s did not complete sync transfer %(transfer)s",
                           gate=gate, transfer=transfer)
    return last
