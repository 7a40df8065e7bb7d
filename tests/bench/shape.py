"""The common tail every bench's JSON line ends with (``bench/machine.py``)."""

from __future__ import annotations

from typing import Any


def assert_common_tail(result: dict[str, Any], *libraries: str) -> None:
    """``machine`` names the cores and CPU; ``versions`` names each library with a version."""
    machine = result["machine"]
    assert isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert isinstance(machine["cpu_model"], str) and machine["cpu_model"]
    assert machine["arch"] and machine["python"]
    for library in ("menjin", *libraries):
        assert isinstance(result["versions"][library], str), library
