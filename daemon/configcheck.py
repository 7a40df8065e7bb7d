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
from typing import Any, NamedTuple

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


class Issue(NamedTuple):
    """A problem at ``loc``; ``about`` names other values it follows from: when one of them has
    a problem of its own (or was left out as invalid), this one is only its echo and is not told.
    """

    loc: Loc
    message: str
    about: tuple[Loc, ...] = ()


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: Longest path of a UNIX socket (sun_path holds 108 bytes with the closing NUL).
MAX_SOCKET_PATH_BYTES = 107
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


def _owner(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


def _shared(used: Iterator[tuple[Loc, str | None]], what: str, why: str) -> Iterator[Issue]:
    """Each (location, resource) whose resource an earlier location already uses."""
    first: dict[str, Loc] = {}
    for loc, resource in used:
        if resource is None:
            continue
        if resource in first:
            yield Issue(loc, f"{what} {resource} is already used by {_owner(first[resource])} "
                             f"({why})")
        else:
            first[resource] = loc


def _serial_device(port: str | None) -> str | None:
    """What a serial port names, for telling two readers on one port (None: not exclusive)."""
    if port is None or not _plausible_port(port) or port.startswith("loop://"):
        return None  # loop:// is a new loopback for every reader that opens it
    return port if port.startswith(PYSERIAL_URL_SCHEMES) else os.path.normpath(port)


def _video_device(source: int | str) -> str | None:
    """The V4L2 device a camera source opens (None: a file, folder or stream, shareable)."""
    if isinstance(source, int):
        return f"/dev/video{source}"
    return os.path.normpath(source) if source.startswith("/dev/") else None


def _written_files(config: GateConfig) -> Iterator[tuple[Loc, str | None]]:
    """Every file the daemon writes, with where the config names it."""
    yield ("access", "db"), str(config.access.db)
    yield ("journal", "path"), str(config.journal.path)
    yield ("privacy", "audit_path"), str(config.privacy.audit_path)
    yield ("keys", "dir"), str(config.keys.dir)
    yield ("control", "socket"), str(config.control.socket)
    if config.vision is not None:
        yield ("vision", "templates"), str(config.vision.templates)
    if config.camera is not None and config.camera.nir is not None:
        yield ("camera", "nir", "calibration"), str(config.camera.nir.calibration)


def _exclusive_issues(config: GateConfig) -> Iterator[Issue]:
    """A pin, serial port, camera device or written file named twice: both users would fail."""
    yield from _shared(((loc, str(pin)) for loc, pin in _pins(config)), "GPIO",
                       "each pin has one job")
    yield from _shared(
        ((("readers", reader_id, "port"), _serial_device(reader.port))
         for reader_id, reader in config.readers.items() if reader.type in SERIAL_READERS),
        "serial port", "one reader per port: the second cannot open it, or both read garbage")
    camera = config.camera
    if camera is not None and camera.nir is not None:
        yield from _shared(
            iter([(("camera", "source"), _video_device(camera.source)),
                  (("camera", "nir", "source"), _video_device(camera.nir.source))]),
            "video device", "the NIR camera is a device of its own, e.g. /dev/video2")
    yield from _shared(_written_files(config), "file",
                       "each file menjin writes has one job; give this one its own name")


def _control_issues(config: GateConfig) -> Iterator[Issue]:
    size = len(os.fsencode(config.control.socket))
    if size > MAX_SOCKET_PATH_BYTES:
        yield Issue(("control", "socket"),
                    f"the control socket path {config.control.socket} is {size} bytes long; a "
                    f"UNIX socket path holds at most {MAX_SOCKET_PATH_BYTES}: give "
                    "control.socket a shorter absolute path (e.g. /run/menjin/control.sock)")


def _reader_issues(config: GateConfig, invalid: Collection[str]) -> Iterator[Issue]:
    for reader_id, reader in config.readers.items():
        base: Loc = ("readers", reader_id)
        if reader.door not in config.doors and reader.door not in invalid:
            yield Issue((*base, "door"), _unknown("door", reader.door, config.doors))
        if reader.type in SERIAL_READERS:
            if reader.port is None:
                yield Issue(
                    base,
                    f"a {reader.type} reader needs 'port' (e.g. /dev/menjin-reader-{reader_id})",
                )
            elif not _plausible_port(reader.port):
                yield Issue(
                    (*base, "port"),
                    (
                        f"{reader.port!r} cannot be a serial port "
                        "(use a /dev/... path or a pyserial URL such as socket://host:port)"
                    ),
                )
        if reader.type == "wiegand" and (reader.d0_pin is None or reader.d1_pin is None):
            yield Issue(base, "a wiegand reader needs both d0_pin and d1_pin")
        if reader.type != "ascii" and reader.pattern is not None:
            yield Issue((*base, "pattern"), "'pattern' applies only to ascii readers")
    keypads = {r.door for r in config.readers.values() if r.type in ("wiegand", "osdp")}
    for door_id, door in config.doors.items():
        if door.pin_required and door_id not in keypads:
            yield Issue(("doors", door_id, "pin_required"),
                        "card + PIN needs a keypad: no wiegand or osdp reader serves this door",
                        about=(("readers",),))


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
            yield Issue(
                (*base, "unlock_seconds"),
                (
                    f"unlock time {door.unlock_seconds:g} s is longer than the held-open limit "
                    f"{door.held_open_seconds:g} s (every normal passage would raise door.held)"
                ),
            )
        if door.access is AccessRule.FACE:
            yield Issue(
                (*base, "access"),
                (
                    "face may not be the only way in (PIPL; a card must remain an alternative): "
                    "use card_or_face or card_and_face"
                ),
            )
        if door.first_person is not None and door.first_person.faces \
                and door.access is AccessRule.CARD:
            yield Issue((*base, "first_person", "faces"),
                        "this door takes no face (access: card), so no face passage can count")
        needs_face = door.access in (AccessRule.CARD_AND_FACE,)
        if needs_face and door_id not in cameras:
            yield Issue((*base, "access"), "card_and_face needs a camera watching this door",
                        about=(("camera",),))
        elif needs_face and (config.vision is None or not config.vision.enabled):
            yield Issue(
                (*base, "access"),
                "card_and_face needs face recognition, but vision is off (no door would open)",
                about=(("vision",),),
            )
        if door.interlock_with is not None and door.interlock_with not in invalid and (
            door.interlock_with == door_id or door.interlock_with not in config.doors
        ):
            yield Issue(
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
                    yield Issue(
                        (*base, "anti_passback", side),
                        _unknown("reader", reader_id, config.readers),
                    )
                elif reader.door != door_id:
                    yield Issue(
                        (*base, "anti_passback", side),
                        f"reader {reader_id!r} serves door {reader.door!r}, not {door_id!r}",
                        about=(("readers", reader_id, "door"),),
                    )


def _vision_issues(config: GateConfig, invalid: Collection[str]) -> Iterator[Issue]:
    camera = config.camera
    if camera is not None and camera.door not in config.doors and camera.door not in invalid:
        yield Issue(("camera", "door"), _unknown("door", camera.door, config.doors))
    if config.vision is not None and config.vision.enabled and config.camera is None:
        yield Issue(("vision",), "vision is enabled but no camera is configured")


def _privacy_issues(config: GateConfig) -> Iterator[Issue]:
    privacy = config.privacy
    if privacy.portraits == "upload":
        if not privacy.legal_basis or not privacy.legal_basis.strip():
            yield Issue(
                ("privacy", "portraits"),
                (
                    "upload needs privacy.legal_basis naming the law, regulation or consent record "
                    "(PIPL art. 29; face images may not leave the device otherwise)"
                ),
                about=(("privacy", "legal_basis"),),
            )
        if privacy.retention_days is None:
            yield Issue(("privacy", "portraits"), "upload needs privacy.retention_days",
                        about=(("privacy", "retention_days"),))
    if privacy.portraits == "local" and privacy.retention_days is None:
        yield Issue(("privacy", "portraits"), "local needs privacy.retention_days",
                    about=(("privacy", "retention_days"),))
    if config.keys.provider == "station" and config.keys.card_provider is None:
        yield Issue(("keys", "card_provider"), "provider station needs card_provider (tpm2, "
                    "rpi-otp or file): cards must work before the station answers")
    if config.keys.provider == "station" and (config.uplink is None
                                              or config.uplink.station_public_key_file is None):
        yield Issue(("keys", "provider"), "provider station needs "
                    "uplink.station_public_key_file (the face key comes through the signed "
                    "command channel)", about=(("uplink",),))


def _uplink_issues(config: GateConfig) -> Iterator[Issue]:
    uplink = config.uplink
    if uplink is None or not uplink.enabled:
        return
    if uplink.password_file is not None and uplink.password_env is not None:
        yield Issue(
            ("uplink", "password_env"),
            "give the password either as password_file or password_env",
        )
    if uplink.password_env is not None and uplink.password_env not in os.environ:
        yield Issue(("uplink", "password_env"),
                    f"environment variable {uplink.password_env} is not set")
    if uplink.tls is None and uplink.host not in LOCAL_HOSTS:
        yield Issue(
            ("uplink", "tls"),
            (
                f"TLS is required for a broker off this board ({uplink.host}): "
                "add uplink.tls.ca_file"
            ),
        )
    if uplink.tls is not None and (uplink.tls.cert_file is None) != (uplink.tls.key_file is None):
        yield Issue(("uplink", "tls"), "cert_file and key_file go together")


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
        yield Issue(loc, f"file not found: {path} (put the model there, set MENJIN_MODELS to "
                         "the folder holding the models, or set vision.enabled: false)")
    for loc, load in _credential_loaders(config):
        try:
            load()
        except CredentialError as exc:
            yield Issue(loc, str(exc))


def semantic_problems(
    config: GateConfig, *, check_files: bool = True, invalid_ids: Collection[str] = (),
) -> list[Issue]:
    """Every cross-field problem of ``config`` (with the values each follows from).

    ``invalid_ids``: doors and readers written in the file but left out of ``config`` because
    they are invalid (already reported); references to them are not reported as unknown.
    ``check_files`` loads every model, key and certificate file as the daemon will.
    """
    issues = [
        *_exclusive_issues(config),
        *_control_issues(config),
        *_reader_issues(config, invalid_ids),
        *_door_issues(config, invalid_ids),
        *_vision_issues(config, invalid_ids),
        *(Issue(loc, message, about=(("camera",), ("vision",)))
          for loc, message in liveness_issues(config)),
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
