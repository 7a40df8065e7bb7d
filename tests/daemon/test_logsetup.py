"""Logging set-up: a handler never outlives the stderr it was configured under."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from daemon import logsetup


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_a_closed_stderr_of_an_earlier_command_is_not_written_to(
    root_handlers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    earlier = io.StringIO()
    monkeypatch.setattr(sys, "stderr", earlier)
    logsetup.configure("INFO")  # e.g. `menjin run` invoked in-process by a test
    logging.getLogger("daemon.test").info("during")
    earlier.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    monkeypatch.setattr(logging, "raiseExceptions", True)
    logging.getLogger("daemon.test").warning("after")
    assert now.getvalue().endswith("WARNING daemon.test: after\n")
    assert "Logging error" not in now.getvalue()
