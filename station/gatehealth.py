"""A gate's health as the page shows it, read from its retained status and periodic health report.

Every field is optional: a gate reports what it has (see docs/mqtt.md, "health"), and an older
gate that sends fewer fields shows them as unknown rather than breaking the view.  The conditions
that raise alarms (offline, tamper, low disk, untrusted clock, journal fault, heat) are decided
here, in one place, for the view and for :mod:`station.alarms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from station.store import GateView

#: Free space on the journal's file system below which a gate raises ``disk.low``.
DISK_LOW_BYTES = 200 * 1024 * 1024
#: CPU temperature from which a gate raises ``temperature.high`` (a Pi throttles at 80-85 °C).
TEMPERATURE_HIGH_C = 80.0


@dataclass(frozen=True)
class DoorHealth:
    door: str
    state: str  # closed, open, forced, held, unknown
    mode: str  # normal, hold_open, lockdown, unknown
    mode_source: str  # station, admin, first_person, schedule, default; "" when not reported


@dataclass(frozen=True)
class GateHealth:
    """One gate for the gates view; ``problems`` are alarm kinds active now."""

    gate: str
    title: str  # compound and gate name, e.g. "幸福里小区 北门", else the gate id
    state: str
    version: str
    last_seen_ms: int | None
    doors: list[DoorHealth]
    readers: dict[str, str]
    camera: str
    vision: str
    backlog: int | None
    oldest_undelivered_s: float | None
    disk_free_bytes: int | None
    temperature_c: float | None
    clock_trusted: bool | None
    journal: str
    portraits: str
    problems: list[str] = field(default_factory=list)


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _doors(raw: Any, known: set[str], station_modes: dict[str, str]) -> list[DoorHealth]:
    """The reported doors, plus doors only seen in events; a mode the gate does not report is
    the one the station last set, if any."""
    reported = raw if isinstance(raw, dict) else {}
    doors = []
    for door in sorted({str(d) for d in reported} | known):
        info = reported.get(door)
        info = info if isinstance(info, dict) else {}
        mode, source = _text(info.get("mode")), _text(info.get("mode_source"))
        if not mode and door in station_modes:
            mode, source = station_modes[door], "station"
        doors.append(DoorHealth(door, _text(info.get("state"), "unknown"), mode or "unknown",
                                source))
    return doors


def problems_of(state: str, health: dict[str, Any]) -> list[str]:
    """The alarm kinds a gate's state and health report show now."""
    found = []
    if state == "offline":
        found.append("gate.offline")
    if health.get("tamper") is True:
        found.append("tamper")
    disk = _number(health.get("disk_free_bytes"))
    if disk is not None and disk < DISK_LOW_BYTES:
        found.append("disk.low")
    clock = health.get("clock")
    if isinstance(clock, dict) and clock.get("trusted") is False:
        found.append("clock.untrusted")
    if _text(health.get("journal"), "ok") != "ok":
        found.append("journal.fault")
    temperature = _number(health.get("cpu_temp_c"))
    if temperature is not None and temperature >= TEMPERATURE_HIGH_C:
        found.append("temperature.high")
    return found


def gate_health(view: GateView, *, known_doors: set[str] | None = None,
                station_modes: dict[str, str] | None = None) -> GateHealth:
    """The view of one gate; ``known_doors`` are doors its events named, ``station_modes`` the
    modes the station's accepted ``mode`` commands set (door -> mode)."""
    status, health = view.status, view.health
    title = " ".join(t for t in (_text(status.get("site")), _text(status.get("name"))) if t)
    clock, vision = health.get("clock"), health.get("vision")
    readers = health.get("readers")
    backlog = view.backlog
    disk = _number(health.get("disk_free_bytes"))
    seen = [ms for ms in (view.status_ms, view.health_ms) if ms is not None]
    return GateHealth(
        gate=view.gate,
        title=title or view.gate,
        state=view.state,
        version=_text(status.get("version")),
        last_seen_ms=max(seen) if seen else None,
        doors=_doors(health.get("doors"), known_doors or set(), station_modes or {}),
        readers={str(k): str(v) for k, v in readers.items()} if isinstance(readers, dict) else {},
        camera=_text(health.get("camera"), "unknown"),
        vision=_text(vision.get("state"), "") if isinstance(vision, dict) else "",
        backlog=backlog,
        oldest_undelivered_s=_number(health.get("oldest_undelivered_age_s")),
        disk_free_bytes=None if disk is None else int(disk),
        temperature_c=_number(health.get("cpu_temp_c")),
        clock_trusted=clock.get("trusted") if isinstance(clock, dict) and isinstance(
            clock.get("trusted"), bool) else None,
        journal=_text(health.get("journal"), ""),
        portraits=_text(status.get("portraits")),
        problems=problems_of(view.state, health),
    )
