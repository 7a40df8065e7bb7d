"""Checks of meaning that no single field can make: shared pins, dangling references, files.

Kept apart from the models so that every problem is found in one pass and reported with the path
of the value at fault (a pydantic model validator stops at the first and can only blame the whole
model).  Pure except for the file checks, which load every key and certificate exactly as the
daemon does (:mod:`daemon.credentials`) and which ``check_files=False`` turns off.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from daemon.config import AccessRule, DoorSection, GateConfig
from daemon.credentials import (
    CredentialError,
    load_local_keys,
    load_osdp_key,
    load_station_key,
    read_password,
    tls_context,
)
from daemon.liveness import liveness_issues

Loc = tuple[str | int, ...]
Issue = tuple[Loc, str]
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
PYSERIAL_URL_SCHEMES = ("socket://", "rfc2217://", "loop://", "spy://", "alt://", "hwgrep://")
SERIAL_READERS = frozenset({"em4100", "ascii", "osdp"})


def _door_pins(door_id: str, door: DoorSection) -> Iterator[tuple[Loc, int]]:
    base: Loc = ("doors", door_id)
    yield (*base, "lock", "pin"), door.lock.pin
    for name in ("contact", "exit_button", "tamper"):
        section = getattr(door, name)
        if section is not None:
            yield (*base, name, "pin"), section.pin
    for colour in ("green", "red"):
        pin = getattr(door.leds, colour)
        if pin is not None:
            yield (*base, "leds", colour), pin
    if door.buzzer is not None:
        yield (*base, "buzzer"), door.buzzer


def _pins(config: GateConfig) -> Iterator[tuple[Loc, int]]:
    for door_id, door in config.doors.items():
        yield from _door_pins(door_id, door)
    for reader_id, reader in config.readers.items():
        for name in ("d0_pin", "d1_pin"):
            pin = getattr(reader, name)
            if pin is not None:
                yield ("readers", reader_id, name), pin


def _pin_issues(config: GateConfig) -> Iterator[Issue]:
    first: dict[int, Loc] = {}
    for loc, pin in _pins(config):
        if pin in first:
            owner = ".".join(str(p) for p in first[pin])
            yield loc, f"GPIO {pin} is already used by {owner} (each pin has one job)"
        else:
            first[pin] = loc


def _reader_issues(config: GateConfig, invalid: Collection[str]) -> Iterator[Issue]:
    for reader_id, reader in config.readers.items():
        base: Loc = ("readers", reader_id)
        if reader.door not in config.doors and reader.door not in invalid:
            yield (*base, "door"), _unknown("door", reader.door, config.doors)
        if reader.type in SERIAL_READERS:
            if reader.port is None:
                yield (
                    base,
                    f"a {reader.type} reader needs 'port' (e.g. /dev/menjin-reader-{reader_id})",
                )
            elif not _plausible_port(reader.port):
                yield (
                    (*base, "port"),
                    (
                        f"{reader.port!r} cannot be a serial port "
                        "(use a /dev/... path or a pyserial URL such as socket://host:port)"
                    ),
                )
        if reader.type == "wiegand" and (reader.d0_pin is None or reader.d1_pin is None):
            yield base, "a wiegand reader needs both d0_pin and d1_pin"
        if reader.type != "ascii" and reader.pattern is not None:
            yield (*base, "pattern"), "'pattern' applies only to ascii readers"
    keypads = {r.door for r in config.readers.values() if r.type in ("wiegand", "osdp")}
    for door_id, door in config.doors.items():
        if door.pin_required and door_id not in keypads:
            yield (("doors", door_id, "pin_required"),
                   "card + PIN needs a keypad: no wiegand or osdp reader serves this door")


def _plausible_port(port: str) -> bool:
    if port.startswith(PYSERIAL_URL_SCHEMES):
        return True
    path = Path(port)
    return path.is_absolute() and path.parts[1:2] == ("dev",) and len(path.parts) > 2


def _unknown(what: str, name: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known) or 'none'})"
    return f"unknown {what} {name!r}{hint}"


def _door_issues(config: GateConfig, invalid: Collection[str]) -> Iterator[Issue]:
    cameras = {config.camera.door} if config.camera is not None else set()
    for door_id, door in config.doors.items():
        base: Loc = ("doors", door_id)
        if door.unlock_seconds > door.held_open_seconds:
            yield (
                (*base, "unlock_seconds"),
                (
                    f"unlock time {door.unlock_seconds:g} s is longer than the held-open limit "
                    f"{door.held_open_seconds:g} s (every normal passage would raise door.held)"
                ),
            )
        if door.access is AccessRule.FACE:
            yield (
                (*base, "access"),
                (
                    "face may not be the only way in (PIPL; a card must remain an alternative): "
                    "use card_or_face or card_and_face"
                ),
            )
        if door.first_person is not None and door.first_person.faces \
                and door.access is AccessRule.CARD:
            yield ((*base, "first_person", "faces"),
                   "this door takes no face (access: card), so no face passage can count")
        needs_face = door.access in (AccessRule.CARD_AND_FACE,)
        if needs_face and door_id not in cameras:
            yield (*base, "access"), "card_and_face needs a camera watching this door"
        elif needs_face and (config.vision is None or not config.vision.enabled):
            yield (
                (*base, "access"),
                "card_and_face needs face recognition, but vision is off (no door would open)",
            )
        if door.interlock_with is not None and door.interlock_with not in invalid and (
            door.interlock_with == door_id or door.interlock_with not in config.doors
        ):
            yield (
                (*base, "interlock_with"),
                (
                    "a door cannot interlock with itself"
                    if door.interlock_with == door_id
                    else _unknown("door", door.interlock_with, config.doors)
                ),
            )
        if door.anti_passback is not None:
            for side in ("entry_reader", "exit_reader"):
                reader_id = getattr(door.anti_passback, side)
                reader = config.readers.get(reader_id)
                if reader is None and reader_id in invalid:
                    continue
                if reader is None:
                    yield (
                        (*base, "anti_passback", side),
                        _unknown("reader", reader_id, config.readers),
                    )
                elif reader.door != door_id:
                    yield (
                        (*base, "anti_passback", side),
                        (f"reader {reader_id!r} serves door {reader.door!r}, not {door_id!r}"),
                    )


def _vision_issues(config: GateConfig, invalid: Collection[str]) -> Iterator[Issue]:
    camera = config.camera
    if camera is not None and camera.door not in config.doors and camera.door not in invalid:
        yield ("camera", "door"), _unknown("door", camera.door, config.doors)
    if config.vision is not None and config.vision.enabled and config.camera is None:
        yield ("vision",), "vision is enabled but no camera is configured"


def _privacy_issues(config: GateConfig) -> Iterator[Issue]:
    privacy = config.privacy
    if privacy.portraits == "upload":
        if not privacy.legal_basis or not privacy.legal_basis.strip():
            yield (
                ("privacy", "portraits"),
                (
                    "upload needs privacy.legal_basis naming the law, regulation or consent record "
                    "(PIPL art. 29; face images may not leave the device otherwise)"
                ),
            )
        if privacy.retention_days is None:
            yield ("privacy", "portraits"), "upload needs privacy.retention_days"
    if privacy.portraits == "local" and privacy.retention_days is None:
        yield ("privacy", "portraits"), "local needs privacy.retention_days"
    if config.keys.provider == "station" and config.keys.card_provider is None:
        yield (("keys", "card_provider"), "provider station needs card_provider (tpm2, rpi-otp "
               "or file): cards must work before the station answers")
    if config.keys.provider == "station" and (config.uplink is None
                                              or config.uplink.station_public_key_file is None):
        yield (("keys", "provider"), "provider station needs uplink.station_public_key_file "
               "(the face key comes through the signed command channel)")


def _uplink_issues(config: GateConfig) -> Iterator[Issue]:
    uplink = config.uplink
    if uplink is None or not uplink.enabled:
        return
    if uplink.password_file is not None and uplink.password_env is not None:
        yield (
            ("uplink", "password_env"),
            "give the password either as password_file or password_env",
        )
    if uplink.password_env is not None and uplink.password_env not in os.environ:
        yield ("uplink", "password_env"), f"environment variable {uplink.password_env} is not set"
    if uplink.tls is None and uplink.host not in LOCAL_HOSTS:
        yield (
            ("uplink", "tls"),
            (
                f"TLS is required for a broker off this board ({uplink.host}): "
                "add uplink.tls.ca_file"
            ),
        )
    if uplink.tls is not None and (uplink.tls.cert_file is None) != (uplink.tls.key_file is None):
        yield ("uplink", "tls"), "cert_file and key_file go together"


def _model_files(config: GateConfig) -> list[tuple[Loc, Path]]:
    vision = config.vision
    if vision is None or not vision.enabled:
        return []
    files: list[tuple[Loc, Path]] = [
        (("vision", "detector", "path"), vision.detector.path),
        (("vision", "embedder", "path"), vision.embedder.path),
    ]
    if vision.liveness is not None:
        files += [(("vision", "liveness", "paths", i), p)
                  for i, p in enumerate(vision.liveness.paths)]
    return files


def missing_model_files(config: GateConfig) -> list[tuple[Loc, Path]]:
    """The enabled vision's model files that are not there, as (location, path)."""
    return [(loc, path) for loc, path in _model_files(config) if not path.is_file()]


def _credential_loaders(config: GateConfig) -> Iterator[tuple[Loc, Callable[[], Any]]]:
    """Every key, certificate and password file, with the daemon's own loading function."""
    uplink = config.uplink
    if uplink is not None and uplink.enabled:
        tls = uplink.tls
        if tls is not None:
            yield ("uplink", "tls", "ca_file"), partial(
                tls_context, tls.ca_file, tls.cert_file, tls.key_file)
        if uplink.password_file is not None:
            yield ("uplink", "password_file"), partial(read_password, uplink.password_file)
        if uplink.station_public_key_file is not None:
            yield ("uplink", "station_public_key_file"), partial(
                load_station_key, uplink.station_public_key_file)
    local_kind = config.keys.card_provider or config.keys.provider
    if local_kind != "station":  # station without card_provider is reported by _privacy_issues
        yield ("keys", "card_provider" if config.keys.card_provider else "provider"), partial(
            load_local_keys, local_kind, config.keys.dir)
    for reader_id, reader in config.readers.items():
        if reader.osdp_key_file is not None:
            yield ("readers", reader_id, "osdp_key_file"), partial(
                load_osdp_key, reader.osdp_key_file)


def _file_issues(config: GateConfig) -> Iterator[Issue]:
    for loc, path in missing_model_files(config):
        yield loc, (f"file not found: {path} (put the model there, set MENJIN_MODELS to the "
                    "folder holding the models, or set vision.enabled: false)")
    for loc, load in _credential_loaders(config):
        try:
            load()
        except CredentialError as exc:
            yield loc, str(exc)


def semantic_problems(
    config: GateConfig, *, check_files: bool = True, invalid_ids: Collection[str] = (),
) -> list[Issue]:
    """Every cross-field problem of ``config`` as (location, message) pairs.

    ``invalid_ids``: doors and readers written in the file but left out of ``config`` because
    they are invalid (already reported); references to them are not reported as unknown.
    ``check_files`` loads every model, key and certificate file as the daemon will.
    """
    issues = [
        *_pin_issues(config),
        *_reader_issues(config, invalid_ids),
        *_door_issues(config, invalid_ids),
        *_vision_issues(config, invalid_ids),
        *liveness_issues(config),
        *_privacy_issues(config),
        *_uplink_issues(config),
    ]
    if check_files:
        issues += list(_file_issues(config))
    return issues


def client_id(config: GateConfig) -> str:
    """The MQTT client id the gate will use."""
    if config.uplink is not None and config.uplink.client_id:
        return config.uplink.client_id
    return f"menjin-{config.gate.id}"
