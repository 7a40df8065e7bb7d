"""Logging set-up for the daemon and the CLI: journald-friendly, level per component.

Under systemd (``JOURNAL_STREAM`` set) journald adds timestamps itself, so lines are plain
``LEVEL component: message key=value``; elsewhere a timestamp leads.  Every line loses the
credentials of any URL in it (:mod:`daemon.redact`), whichever module logged it.  Drivers and
vision never configure logging; only this module does, once, at start-up.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from daemon.redact import RedactUrls

JOURNALD_FORMAT = "%(levelname)s %(name)s: %(message)s"
TERMINAL_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def under_journald() -> bool:
    """True when stderr is connected to the systemd journal."""
    return bool(os.environ.get("JOURNAL_STREAM"))


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes to whatever ``sys.stderr`` is when a record is logged.

    Bound to the stream object of the moment instead, a handler outlives a replaced and closed
    stderr (a command run in-process by a test runner) and fails every later log call.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


def configure(level: str = "INFO", components: Mapping[str, str] | None = None) -> None:
    """Route all logging to stderr with the right format and per-component levels."""
    handler = StderrHandler()
    if under_journald():
        handler.setFormatter(logging.Formatter(JOURNALD_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(TERMINAL_FORMAT, DATE_FORMAT))
    handler.addFilter(RedactUrls())  # camera credentials never reach the journal
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, component_level in (components or {}).items():
        logging.getLogger(name).setLevel(component_level)

