"""Door commands from the page and the CLI: checked against what the station knows, then signed.

A gate the station has never heard of, or a door it has never reported, is refused at once with
a clear message instead of a 30 s wait for an answer that cannot come.  The known doors of a gate
are those in its health report (``doors``) and those its events named.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from station.commands import CommandError, mode_args, open_args, unknown_gate
from station.queries import Passages
from station.store import Store

MODES = ("normal", "hold_open", "lockdown")


def known_doors(store: Store, gate: str) -> set[str] | None:
    """The doors of ``gate`` the station knows, None when it does not know the gate."""
    gates = store.t["gates"]
    with store.engine.connect() as conn:
        row = conn.execute(select(gates.c.health).where(gates.c.gate == gate)).first()
    if row is None:
        return None
    doors = Passages(store).known_doors(gate)
    health = row.health or {}
    if isinstance(health.get("doors"), dict):
        doors |= {str(d) for d in health["doors"]}
    return doors


def check_target(store: Store, gate: str, door: str) -> None:
    """Raise :class:`CommandError` at once for a gate or door the station does not know."""
    doors = known_doors(store, gate)
    if doors is None:
        raise unknown_gate(gate)
    if not doors:
        raise CommandError("gate %(gate)s has reported no doors yet", gate=gate)
    if door not in doors:
        raise CommandError("gate %(gate)s has no door %(door)s (known doors: %(known)s)",
                           gate=gate, door=repr(door), known=", ".join(sorted(doors)))


def command_args(action: str, door: str, *, mode: str = "", seconds: float = 5.0
                 ) -> tuple[str, dict[str, Any]]:
    """The command name and arguments of a page action (``open`` or ``mode``)."""
    if action == "open":
        return "open", open_args(door, seconds)
    if action == "mode" and mode in MODES:
        return "mode", mode_args(door, mode)
    raise CommandError("unknown action %(action)s / mode %(mode)s", action=repr(action),
                       mode=repr(mode))
