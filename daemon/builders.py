"""Config → driver constructors: the one place that maps config sections to hardware objects.

Drivers take plain keyword arguments and never see a config model.  In simulate mode the builders
pick the simulated seams (MockFactory pins, reader ptys) of :mod:`daemon.simulate`; nothing else
in the daemon knows whether the hardware is real.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpiozero import Factory

from daemon.access import DoorPolicy
from daemon.config import DoorSection, GateConfig, ReaderSection
from daemon.credentials import load_osdp_key
from daemon.door import DoorController, LockRelay
from daemon.events import Emit
from daemon.redact import redact_urls
from daemon.simulate import SimulatedBoard
from drivers.feedback import Feedback, FeedbackFanout
from drivers.gpio import pin_factory
from drivers.inputs import DoorContact, ExitButton, TamperSwitch
from drivers.lock import Lock

SERIAL_READERS = frozenset({"em4100", "ascii", "osdp"})


def door_policies(config: GateConfig) -> dict[str, DoorPolicy]:
    """Each door's access rule, from its config section."""
    return {
        door_id: DoorPolicy(
            door_id, rule=door.access, multi_factor_seconds=door.multi_factor_seconds,
            entry_reader=door.anti_passback.entry_reader if door.anti_passback else None,
            exit_reader=door.anti_passback.exit_reader if door.anti_passback else None,
            pin_required=door.pin_required,
        )
        for door_id, door in config.doors.items()
    }


def pin_factory_for(backend: str, board: SimulatedBoard | None) -> Factory:
    """The gpiozero pin factory the config names (the simulated board's pins in simulate mode)."""
    if board is not None:
        return board.pin_factory
    return pin_factory(backend)


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of a file, None when it does not exist: a cheap "has it changed"."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def build_lock(s: DoorSection, *, pins: Factory) -> Lock:
    """The door's lock relay; its pin goes idle as it is claimed."""
    return Lock(s.lock.pin, active_high=s.lock.active_high, fail_mode=s.lock.fail_mode.value,
                pin_factory=pins)


def build_door(door_id: str, s: DoorSection, *, lock: LockRelay, pins: Factory, emit: Emit,
               interlock: Callable[[], bool] | None,
               feedback: FeedbackFanout) -> DoorController:
    """Inputs, feedback and the door's state machine on ``lock``; every device it opened is
    closed on failure.

    ``feedback`` is the door's fan-out: the GPIO LEDs and buzzer built here become its ``local``
    part, and the OSDP readers serving the door add their own LED/buzzer to it.
    """
    opened: list[Any] = []

    def claim(device: Any) -> Any:
        opened.append(device)
        return device

    try:  # the lock (claimed by the caller, who keeps it across reloads) is already idle
        contact = exit_button = tamper = None
        if s.contact is not None:
            contact = claim(DoorContact(s.contact.pin, wiring=s.contact.wiring.value,
                                        debounce_ms=s.contact.debounce_ms, pin_factory=pins))
        if s.exit_button is not None:
            exit_button = claim(ExitButton(s.exit_button.pin, wiring=s.exit_button.wiring.value,
                                           debounce_ms=s.exit_button.debounce_ms,
                                           pin_factory=pins))
        if s.tamper is not None:
            tamper = claim(TamperSwitch(s.tamper.pin, wiring=s.tamper.wiring.value,
                                        debounce_ms=s.tamper.debounce_ms, pin_factory=pins))
        if s.leds.green is not None or s.leds.red is not None or s.buzzer is not None:
            feedback.local = claim(Feedback(green=s.leds.green, red=s.leds.red,
                                            buzzer=s.buzzer, pin_factory=pins))
        return DoorController(
            door_id, lock=lock, contact=contact, exit_button=exit_button, tamper=tamper,
            feedback=feedback, unlock_seconds=s.unlock_seconds,
            relock_on_close=s.relock_on_close, held_open_seconds=s.held_open_seconds,
            held_reminder_seconds=s.held_reminder_seconds, egress=s.egress, emit=emit,
            interlock=interlock,
        )
    except BaseException:
        for device in reversed(opened):  # the lock last: idle until the very end
            with contextlib.suppress(Exception):
                device.close()
        raise


def reader_port(reader_id: str, s: ReaderSection, board: SimulatedBoard | None) -> str | None:
    """The serial port a reader opens (a pty of the simulated board in simulate mode)."""
    if s.type in SERIAL_READERS and board is not None and s.type != "osdp":
        return board.serial_port(reader_id)
    return s.port


def build_reader(s: ReaderSection, *, port: str | None, pins: Factory,
                 callbacks: dict[str, Any], on_keys: Callable[[str], None]) -> Any:
    """The reader driver of ``s.type`` (EM4100, ASCII, Wiegand or OSDP) with its callbacks.

    ``on_keys(keys)`` receives what a Wiegand or OSDP keypad typed (never a card).
    """
    if s.type == "em4100":
        from drivers.em4100 import Em4100Reader

        assert port is not None
        return Em4100Reader(port, baud=s.baud, inter_char_timeout_ms=s.inter_char_timeout_ms,
                            **callbacks)
    if s.type == "ascii":
        from drivers.ascii_reader import AsciiReader

        assert port is not None
        return AsciiReader(port, baud=s.baud, number_base=s.number_base,
                           byte_order=s.byte_order, strip_prefix=s.strip_prefix,
                           strip_suffix=s.strip_suffix, pattern=s.pattern,
                           inter_char_timeout_ms=s.inter_char_timeout_ms, **callbacks)
    if s.type == "wiegand":
        from drivers.wiegand import WiegandReader

        return WiegandReader(s.d0_pin, s.d1_pin, formats=s.formats,  # type: ignore[arg-type]
                             raw_lengths=s.raw_lengths, frame_gap_ms=s.frame_gap_ms,
                             pin_factory=pins, on_key=on_keys, **callbacks)
    from drivers.osdp import OsdpReader  # fails with the install hint without the extra

    assert port is not None
    key = load_osdp_key(s.osdp_key_file) if s.osdp_key_file else None
    return OsdpReader(port, address=s.osdp_address, scbk=key, baud=s.baud,
                      formats=s.formats, on_keypad=on_keys, **callbacks)


def redacted(config: GateConfig) -> dict[str, Any]:
    """The config as JSON without secrets (credentials in camera URLs)."""
    data = config.model_dump(mode="json")
    camera = data.get("camera")
    if camera and isinstance(camera.get("source"), str):
        camera["source"] = redact_urls(camera["source"])
    return data
