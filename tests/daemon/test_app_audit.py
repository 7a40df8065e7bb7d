"""One audit chain, kernel-named actors, private file modes, masked cards: with the real daemon."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import control
from daemon.audit import AuditLog
from tests.daemon.test_app_privacy import RESIDENT, RESIDENT_CARD, Daemon, count

ME = f"uid:{os.getuid()}({pwd.getpwuid(os.getuid()).pw_name})"
RESIDENTS_CSV = """\
id,name,groups,cards
p-0200,Zhao Min,residents,0001112223
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    old = os.umask(0)  # the worst caller: everything it creates would be world-writable
    try:
        gate = Daemon(tmp_path_factory.mktemp("audit"))
    finally:
        os.umask(old)
    try:
        yield gate
    finally:
        gate.stop()


@pytest.mark.timeout(120)
def test_import_then_door_test_then_audit_verify_is_one_chain(
    daemon: Daemon, tmp_path: Path
) -> None:
    csv = tmp_path / "residents.csv"
    csv.write_text(RESIDENTS_CSV)
    imported = daemon.cli("residents", "import", str(csv), "-c", str(daemon.config))
    assert imported.returncode == 0, imported.stderr
    tested = daemon.cli("door", "test", "front", "-c", str(daemon.config))
    assert tested.returncode == 0, tested.stderr
    verified = daemon.cli("audit", "verify", "-c", str(daemon.config))
    assert verified.returncode == 0, verified.stderr
    assert "chain intact" in verified.stdout
    entries = AuditLog(daemon.state / "audit.log").entries()
    assert [(e["action"], e["actor"]) for e in entries[-2:]] == [
        ("residents.import", ME), ("door.test", ME)]
    # each entry goes to the station once, as an audit event
    events = daemon.wait_for(lambda ev: count(ev, "audit") >= len(entries))
    hashes = [e["data"]["hash"] for e in events if e["type"] == "audit"]
    assert sorted(hashes) == sorted({e["hash"] for e in entries})


@pytest.mark.timeout(120)
def test_the_actor_comes_from_the_kernel_not_from_the_client(daemon: Daemon) -> None:
    daemon.call("audit.record", action="residents.add", target="anon-x", details={},
                actor="station")
    daemon.call("door.test", door="front", seconds=0.2, actor="station")
    entries = AuditLog(daemon.state / "audit.log").entries()
    assert [e["actor"] for e in entries[-2:]] == [ME, ME]


@pytest.mark.timeout(60)
def test_every_file_the_gate_wrote_is_private_whatever_the_umask(daemon: Daemon) -> None:
    daemon.swipe(RESIDENT_CARD)
    daemon.wait_for(lambda ev: count(ev, "access.granted") >= 1)
    for path in daemon.state.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path}: {oct(mode)}"
        elif path.is_socket():
            assert mode == 0o660, f"{path}: {oct(mode)}"
        else:
            assert mode == 0o600, f"{path}: {oct(mode)}"


async def watch(daemon: Daemon, args: dict[str, Any], card: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []

    async def collect() -> None:
        async for item in control.follow(daemon.state / "control.sock", "readers.watch", args):
            items.append(item)
            if item["kind"] == "card":
                return

    task = asyncio.create_task(collect())
    await asyncio.sleep(0.5)
    await control.call(daemon.state / "control.sock", "sim.swipe",
                       {"reader": "front-card", "card": card})
    await asyncio.wait_for(task, 10)
    return items


@pytest.mark.timeout(60)
def test_readers_watch_masks_unless_show_cards_which_is_audited(daemon: Daemon) -> None:
    items = asyncio.run(watch(daemon, {}, "87654321"))
    text = json.dumps(items)
    assert "87654321" not in text and "****4321" in text
    before = len(AuditLog(daemon.state / "audit.log").entries())
    items = asyncio.run(watch(daemon, {"show_cards": True}, "87654321"))
    assert "87654321" in json.dumps(items)
    entries = AuditLog(daemon.state / "audit.log").entries()
    assert len(entries) == before + 1
    assert (entries[-1]["action"], entries[-1]["actor"]) == ("readers.show_cards", ME)


@pytest.mark.timeout(60)
def test_events_carry_hashed_and_masked_cards_never_the_number(daemon: Daemon) -> None:
    daemon.swipe("55550000")  # unknown: its number must not leave the board either
    daemon.swipe(RESIDENT_CARD)
    deadline = time.monotonic() + 30
    while True:
        shown = daemon.cli("events", "-n", "200", "--json", "-c", str(daemon.config)).stdout
        if "****0000" in shown or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "****0000" in shown and "****5678" in shown
    assert "55550000" not in shown and RESIDENT_CARD not in shown
    events = daemon.events()
    decisions = [e for e in events if e["type"].startswith("access.")
                 and e.get("credential_kind") == "card"]
    assert decisions and all(len(e["credential_ref"]) == 64 for e in decisions)
    assert not any("55550000" in json.dumps(e) or RESIDENT_CARD in json.dumps(e)
                   for e in events)
    assert any(e.get("person") == RESIDENT for e in decisions)
