"""Pick the gpiozero pin factory that a board's GPIO backend names.

Every GPIO driver (lock relay, door inputs, feedback, Wiegand) takes a ``pin_factory`` keyword,
so one factory chosen here is shared by all of them: real lines on a board, gpiozero
``MockFactory`` pins in simulate mode and tests.  A backend whose library is missing fails with
the exact install hint instead of gpiozero's silent fallback to another library (which on a Pi 5
would be one that cannot drive its pins).

There is no RPi.GPIO backend: its edge detection reports that an edge happened, not the level
after it, so a 5 ms contact glitch (two edges close together) could leave a door input believing
the wrong level and the next real opening produced no event.  lgpio reports every edge with its
level and runs on every Raspberry Pi model, old ones included.
"""

from __future__ import annotations

import logging
from typing import Final

from gpiozero import Factory
from gpiozero.pins.mock import MockFactory

log = logging.getLogger(__name__)

#: Backend names of the config, in the order an installer should prefer them.
BACKENDS: Final = ("lgpio", "mock")

INSTALL_HINTS: Final = {
    "lgpio": "gpio backend lgpio needs the lgpio module: apt install python3-lgpio "
    "(or pip install 'menjin[pi]')",
}


class GpioBackendError(RuntimeError):
    """The configured GPIO backend cannot be used here; the message says how to fix it."""


def check_backend(backend: str) -> None:
    """Raise :class:`GpioBackendError` when ``backend`` is unknown or its library is absent.

    Imports the library and opens no GPIO chip: safe while a daemon holds the pins.
    """
    if backend == "mock":
        return
    if backend not in INSTALL_HINTS:
        raise GpioBackendError(
            f"unknown gpio backend {backend!r} (use one of {', '.join(BACKENDS)})")
    try:
        import gpiozero.pins.lgpio  # noqa: F401  # needs the lgpio module itself
    except ImportError as exc:
        raise GpioBackendError(INSTALL_HINTS[backend]) from exc


def pin_factory(backend: str) -> Factory:
    """A new pin factory for ``backend`` ('lgpio' on any Raspberry Pi, 'mock' for simulation).

    Raises :class:`GpioBackendError` for an unknown name or a backend whose library is absent.
    """
    check_backend(backend)
    if backend == "mock":
        return MockFactory()
    from gpiozero.pins.lgpio import LGPIOFactory

    return LGPIOFactory()
