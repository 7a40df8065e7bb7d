"""Checks of meaning that no single field can make: shared pins, dangling references, files.

Kept apart from the models so that every problem is found in one pass and reported with the path
of the value at fault (a pydantic model validator stops at the first and can only blame the whole
model).  Pure except for the file-existence checks, which ``check_files=False`` turns off.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from daemon.config import AccessRule, DoorSection, GateConfig

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


def _reader_issues(config: GateConfig) -> Iterator[Issue]:
    for reader_id, reader in config.readers.items():
        base: Loc = ("readers", reader_id)
        if reader.door not in config.doors:
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


def _plausible_port(port: str) -> bool:
    if port.startswith(PYSERIAL_URL_SCHEMES):
        return True
    path = Path(port)
    return path.is_absolute() and path.parts[1:2] == ("dev",) and len(path.parts) > 2


def _unknown(what: str, name: str, known: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known) or 'none'})"
    return f"unknown {what} {name!r}{hint}"


def _door_issues(config: GateConfig) -> Iterator[Issue]:
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
        needs_face = door.access in (AccessRule.CARD_AND_FACE,)
        if needs_face and door_id not in cameras:
            yield (*base, "access"), "card_and_face needs a camera watching this door"
        if door.interlock_with is not None and (
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


def _vision_issues(config: GateConfig) -> Iterator[Issue]:
    if config.camera is not None and config.camera.door not in config.doors:
        yield ("camera", "door"), _unknown("door", config.camera.door, config.doors)
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


def _file_issues(config: GateConfig) -> Iterator[Issue]:
    files: list[tuple[Loc, Path | None]] = []
    if config.vision is not None and config.vision.enabled:
        files += [
            (("vision", "detector", "path"), config.vision.detector.path),
            (("vision", "embedder", "path"), config.vision.embedder.path),
        ]
        if config.vision.liveness is not None:
            files += [
                (("vision", "liveness", "paths", i), p)
                for i, p in enumerate(config.vision.liveness.paths)
            ]
    if config.uplink is not None and config.uplink.enabled:
        if config.uplink.tls is not None:
            tls = config.uplink.tls
            files += [
                (("uplink", "tls", "ca_file"), tls.ca_file),
                (("uplink", "tls", "cert_file"), tls.cert_file),
                (("uplink", "tls", "key_file"), tls.key_file),
            ]
        files += [
            (("uplink", "password_file"), config.uplink.password_file),
            (("uplink", "station_public_key_file"), config.uplink.station_public_key_file),
        ]
    files += [
        (("readers", rid, "osdp_key_file"), r.osdp_key_file) for rid, r in config.readers.items()
    ]
    for loc, path in files:
        if path is not None and not path.is_file():
            yield loc, f"file not found: {path}"


def semantic_problems(config: GateConfig, *, check_files: bool = True) -> list[Issue]:
    """Every cross-field problem of ``config`` as (location, message) pairs."""
    issues = [
        *_pin_issues(config),
        *_reader_issues(config),
        *_door_issues(config),
        *_vision_issues(config),
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
