"""First-person unlock on a running `menjin run`: the first card of the group holds the door open,
`menjin status` says so, the mode survives a restart of the daemon, an admin's mode ends it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.keyring import open_gate_store
from daemon.store import parse_group, parse_person
from tests.daemon.gate_rig import CONFIG, RESIDENT, RESIDENT_CARD, Gate, count, menjin

ZONE = ZoneInfo("Asia/Shanghai")
MANAGER, MANAGER_CARD = "p-0001", "87654321"


def window_around_now() -> str:
    """A daily window that began an hour ago and ends in two (across midnight if need be)."""
    now = datetime.now(ZONE)
    start, end = now - timedelta(hours=1), now + timedelta(hours=2)
    return f"daily {start:%H:%M}-{end:%H:%M}"


def gate_with_first_person(base: Path) -> Gate:
    gate = Gate(base, seed=False)
    door = "front: {lock: {pin: 17}, contact: {pin: 27}, access: card, unlock_seconds: 0.2}"
    assert door in gate.config.read_text()
    gate.config.write_text(CONFIG.format(state=gate.state).replace(door, (
        "front: {lock: {pin: 17}, contact: {pin: 27}, access: card, unlock_seconds: 0.2, "
        f'first_person: {{group: managers, schedule: "{window_around_now()}"}}}}')))
    with open_gate_store(gate.config) as store:
        store.upsert(
            [parse_person({"id": RESIDENT, "name": "Wang Fang", "groups": ["residents"],
                           "cards": [RESIDENT_CARD]}, zone=ZONE),
             parse_person({"id": MANAGER, "name": "Li Na", "groups": ["residents", "managers"],
                           "cards": [MANAGER_CARD]}, zone=ZONE)],
            groups=[parse_group({"id": "residents", "doors": ["front"], "schedule": "always"}),
                    parse_group({"id": "managers", "doors": [], "schedule": "always"})])
    return gate


@pytest.mark.timeout(240)
def test_the_first_managers_card_holds_the_gate_open_across_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # `menjin status` tables one row per line
    gate = gate_with_first_person(tmp_path).start()
    try:
        front = gate.call("status")["doors"]["front"]
        assert (front["mode"], front["first_person"]["state"]) == ("normal", "waiting")
        gate.swipe_opens()  # a resident: an ordinary passage
        assert gate.call("status")["doors"]["front"]["mode"] == "normal"
        gate.swipe(MANAGER_CARD)
        gate.wait_for("the first-person mode",
                      lambda: count(gate.events(), "door.mode", "first_person"))
        shown = menjin("status", "-c", str(gate.config))
        assert shown.returncode == 0, shown.stderr
        rule = gate.call("status")["doors"]["front"]["first_person"]
        until = datetime.fromtimestamp(rule["until_ms"] / 1000, ZONE)  # the window's end
        assert f"{until:%H:%M}" == rule["schedule"][-5:]
        assert f"hold_open (first_person, until {until:%Y-%m-%d %H:%M})" in shown.stdout
        assert (f"door front: first-person unlock (managers, {rule['schedule']}): held open by "
                f"{MANAGER} until {until:%Y-%m-%d %H:%M}") in shown.stdout
    finally:
        assert gate.stop() == 0
    gate.start()
    try:
        front = gate.call("status")["doors"]["front"]
        assert (front["mode"], front["mode_source"], front["lock"]) == (
            "hold_open", "first_person", "unlocked")
        restarted = gate.wait_for("gate.restarted", lambda: [
            e for e in gate.events() if e["type"] == "gate.restarted"])[-1]
        assert restarted["data"]["doors"]["front"]["mode_source"] == "first_person"
        done = menjin("door", "mode", "front", "schedule", "-c", str(gate.config))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "door front: normal (default)"
        front = gate.call("status")["doors"]["front"]
        assert (front["lock"], front["first_person"]["state"]) == ("locked", "cancelled")
        gate.swipe(MANAGER_CARD)  # not a first card any more: an ordinary passage
        gate.wait_for("the manager's passage",
                      lambda: count(gate.events(), "access.granted") >= 3)
        assert gate.call("status")["doors"]["front"]["mode"] == "normal"
    finally:
        assert gate.stop() == 0
