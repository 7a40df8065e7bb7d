"""Privacy and abuse controls in a running daemon (`menjin run` in simulate mode, no broker).

Card-scanning lockout, erasure through the running daemon, the audit trail, and the default
portrait policy `off` leaving no image anywhere after a face-scan entry.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from daemon import control
from daemon.audit import AuditLog
from daemon.configfile import load_config
from daemon.journal import read_events
from daemon.keyring import Keyring, open_gate_store
from daemon.keys import unseal
from daemon.store import parse_group, parse_person
from drivers.card import mask

REPO = Path(__file__).resolve().parents[2]
RESIDENT, RESIDENT_CARD = "p-0101", "12345678"
TIMEOUT_SECONDS = 30.0

CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: privacy-gate, site: test}}
hardware: {{gpio_backend: mock}}
doors:
  front: {{lock: {{pin: 17}}, contact: {{pin: 27}}, access: card_or_face}}
readers:
  front-card: {{type: em4100, door: front, port: /dev/menjin-reader-front, repeat_window_ms: 0}}
control: {{socket: {state}/control.sock}}
"""
VISION = """\
camera: {{source: /dev/video0, door: front}}
vision:
  detector: {{kind: yunet, path: {models}/face_detection_yunet_2026may.onnx,
             input_size: [640, 384], score_threshold: 0.8}}
  embedder: {{kind: mobilefacenet_paddlex, path: {models}/mobilefacenet_paddlex_128d.onnx}}
  agree_frames: 2
  threads: 1
"""


class Daemon:
    def __init__(self, base: Path, extra: str = "") -> None:
        self.state, self.config = base / "state", base / "gate.yaml"
        self.config.write_text(CONFIG.format(state=self.state) + extra)
        zone = ZoneInfo("Asia/Shanghai")
        self.state.mkdir(parents=True)
        with open_gate_store(self.config) as store:
            store.upsert(
                [parse_person({"id": RESIDENT, "name": "Wang Fang", "groups": ["residents"],
                               "cards": [RESIDENT_CARD],
                               "face_consent": {"date": "2026-10-01", "source": "form 17"}},
                              zone=zone)],
                groups=[parse_group({"id": "residents", "doors": ["front"],
                                     "schedule": "always"})],
            )
        self.log = base / "daemon.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from menjin.cli import main; main()", "run", "-c",
                 str(self.config)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                env=dict(os.environ),
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            try:
                if self.call("status"):
                    break
            except control.ControlError:
                time.sleep(0.2)

    def call(self, cmd: str, **args: Any) -> Any:
        return asyncio.run(control.call(self.state / "control.sock", cmd, args))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from menjin.cli import main; main()", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=120)

    def events(self) -> list[dict[str, Any]]:
        cfg = load_config(self.config)
        return read_events(self.state / "journal.db", Keyring(cfg).local().journal)

    def wait_for(self, predicate: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            time.sleep(0.1)
        raise AssertionError(f"timed out; events: {[e['type'] for e in self.events()]}")

    def swipe(self, card: str) -> None:
        self.call("sim.swipe", reader="front-card", card=card)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path_factory.mktemp("privacy"))
    try:
        yield daemon
    finally:
        daemon.stop()


def count(events: list[dict[str, Any]], event_type: str, reason: str | None = None) -> int:
    return sum(1 for e in events if e["type"] == event_type
               and (reason is None or e.get("reason") == reason))


@pytest.mark.timeout(120)
def test_lockout_at_the_sixth_unknown_card_and_residents_still_get_in(gate: Daemon) -> None:
    for i in range(5):
        gate.swipe(f"9000000{i}")
        gate.wait_for(lambda ev, n=i + 1: count(ev, "access.denied", "unknown_credential") == n)
    assert count(gate.events(), "reader.attack") == 0  # the fifth is still tolerated
    gate.swipe("90000005")
    events = gate.wait_for(lambda ev: count(ev, "reader.attack") == 1)
    attack = next(e for e in events if e["type"] == "reader.attack")
    assert attack["reader"] == "front-card" and attack["reason"] == "card_scanning"
    events = gate.wait_for(lambda ev: count(ev, "reader.lockout_started") == 1)
    reader = gate.call("status")["readers"]["front-card"]
    assert reader["status"] == "lockout" and reader["lockout"]["ignored"] == 0
    gate.swipe("90000006")  # ignored during the cooldown: no decision, no feedback
    gate.swipe(RESIDENT_CARD)
    events = gate.wait_for(lambda ev: count(ev, "access.granted") == 1
                           and count(ev, "door.unlocked") == 1)  # batched after the decision
    assert count(events, "access.denied") == 6


@pytest.mark.timeout(120)
def test_forget_through_the_running_daemon(tmp_path: Path) -> None:
    gate = Daemon(tmp_path)
    try:
        _forget_and_check(gate)
    finally:
        gate.stop()


def _forget_and_check(gate: Daemon) -> None:
    gate.swipe(RESIDENT_CARD)
    gate.wait_for(lambda ev: count(ev, "access.granted") == 1)
    result = gate.cli("residents", "forget", RESIDENT, "-c", str(gate.config))
    assert result.returncode == 0, result.stdout + result.stderr
    erasure = json.loads(result.stdout)
    assert erasure["found"] and erasure["cards_removed"] == 1
    events = gate.wait_for(lambda ev: count(ev, "person.forgotten") == 1
                           and count(ev, "audit", "person.forget") == 1)
    forgotten = next(e for e in events if e["type"] == "person.forgotten")
    assert forgotten["person"] == erasure["pseudonym"] and forgotten["data"]["erase"] == RESIDENT
    others = [e for e in events if e["type"] not in ("person.forgotten",)]
    assert not any(e.get("person") == RESIDENT for e in others)
    assert not any(RESIDENT_CARD in json.dumps(e) for e in events)
    gate.swipe(RESIDENT_CARD)  # the running daemon's index forgot the card too
    gate.wait_for(lambda ev: count(ev, "access.denied", "unknown_credential") == 1)
    audit = AuditLog(gate.state / "audit.log")
    assert audit.verify().ok
    assert [e["action"] for e in audit.entries()][-1] == "person.forget"


@pytest.mark.timeout(240)
def test_portraits_off_leaves_no_image_after_a_face_entry(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    daemon = Daemon(tmp_path, VISION.format(models=models_dir))
    try:
        photos = sorted(str(p) for p in (faces_dir / "enrol" / "obama").glob("*.jpg"))
        enrol = daemon.cli("enrol", "--person", RESIDENT, *photos, "-c", str(daemon.config))
        assert enrol.returncode == 0, enrol.stdout + enrol.stderr
        daemon.proc.send_signal(1)  # SIGHUP: load the new templates
        daemon.wait_for(lambda ev: count(ev, "config.reloaded") == 1)
        photo = faces_dir / "probe" / "obama1.jpg"
        deadline = time.monotonic() + TIMEOUT_SECONDS * 3
        while not count(daemon.events(), "access.granted"):
            assert time.monotonic() < deadline, daemon.log.read_text()[-3000:]
            daemon.call("sim.face", door="front", name=photo.name, seconds=3.0,
                        photo=base64.b64encode(photo.read_bytes()).decode())
            time.sleep(3.5)
        granted = next(e for e in daemon.events() if e["type"] == "access.granted")
        assert granted["credential_kind"] == "face" and granted["person"] == RESIDENT
        daemon.stop()
        captures = [e for e in daemon.events() if e["type"] == "capture"]
        assert captures and not any(e["data"]["portrait"] for e in captures)
        images = [p for p in daemon.state.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")]
        assert images == []
        with sqlite3.connect(daemon.state / "journal.db") as db:
            assert db.execute("SELECT COUNT(*) FROM portraits").fetchone() == (0,)
    finally:
        daemon.stop()


RESIDENT_NAME = "Wang Fang"


@pytest.mark.timeout(300)
def test_forget_while_running_leaves_the_person_in_no_file_and_no_buffer(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    """Enrol, swipe, capture, then forget while the daemon runs: no file the gate wrote (store
    and journal with their free pages and -wal, templates, portraits, audit log, keys, the
    daemon's log) and no buffer (`menjin events`) holds the id, the name or the card number."""
    daemon = Daemon(tmp_path, VISION.format(models=models_dir)
                    + "privacy: {portraits: local, retention_days: 30}\n")
    try:
        photos = sorted(str(p) for p in (faces_dir / "enrol" / "obama").glob("*.jpg"))
        enrol = daemon.cli("enrol", "--person", RESIDENT, *photos, "-c", str(daemon.config))
        assert enrol.returncode == 0, enrol.stdout + enrol.stderr
        daemon.proc.send_signal(1)  # SIGHUP: load the new templates
        daemon.wait_for(lambda ev: count(ev, "config.reloaded") == 1)
        daemon.swipe(RESIDENT_CARD)
        daemon.wait_for(lambda ev: count(ev, "access.granted") == 1)
        photo = faces_dir / "probe" / "obama1.jpg"
        deadline = time.monotonic() + TIMEOUT_SECONDS * 3
        while count(daemon.events(), "access.granted") < 2:  # the card, then the face
            assert time.monotonic() < deadline, str([(e["type"], e.get("person"), e.get("data"))
                                                     for e in daemon.events()])[-3000:]
            daemon.call("sim.face", door="front", name=photo.name, seconds=3.0,
                        photo=base64.b64encode(photo.read_bytes()).decode())
            time.sleep(3.5)
        daemon.wait_for(lambda ev: any(e["type"] == "capture" and e.get("person") == RESIDENT
                                       for e in ev))  # the track ended: its best portrait
        assert list((daemon.state / "portraits").iterdir())  # a portrait was kept (sealed)
        shown = daemon.cli("events", "-n", "500", "--json", "-c", str(daemon.config))
        assert RESIDENT in shown.stdout  # the buffer named them before the erasure

        result = daemon.cli("residents", "forget", RESIDENT, "-c", str(daemon.config))
        assert result.returncode == 0, result.stdout + result.stderr
        alias = json.loads(result.stdout)["pseudonym"]

        cfg = load_config(daemon.config)
        # the card as events carry it: masked (``****5678``) and keyed (``credential_ref``)
        card_hash = Keyring(cfg).card_hash(RESIDENT_CARD)
        card_forms = (RESIDENT_CARD, mask(RESIDENT_CARD), card_hash)
        shown = daemon.cli("events", "-n", "500", "--json", "-c", str(daemon.config))
        assert shown.returncode == 0 and alias in shown.stdout
        for secret in (RESIDENT, RESIDENT_NAME, *card_forms):
            assert secret not in shown.stdout, f"{secret} still in `menjin events`"
        assert list((daemon.state / "portraits").iterdir()) == []
        wal = daemon.state / "residents.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0, "store -wal not truncated"
        keys = Keyring(cfg).local()
        with open_gate_store(daemon.config) as store:
            assert store.person(RESIDENT) is None
        for event in read_events(daemon.state / "journal.db", keys.journal):
            text = json.dumps(event, ensure_ascii=False)
            if event["type"] == "person.forgotten":  # kept sealed until the station has it
                text = text.replace(f'"erase": "{RESIDENT}"', "")
            # the card in each of its forms, not its last four digits alone: those turn up by
            # chance in the events' hex hashes
            for secret in (RESIDENT, *card_forms):
                assert secret not in text, text
        # every sealed body anywhere in the journal's bytes (live rows, free pages, old WAL
        # frames): none about them survives, only the erasure notice still for the station
        raw = b"".join(f.read_bytes() for f in daemon.state.glob("journal.db*"))
        bodies = [unseal(keys.journal, base64.b64decode(m + b"=" * (-len(m) % 4)),
                         b"menjin event").decode()
                  for m in re.findall(rb"sealed:([A-Za-z0-9+/]{40,})", raw)]
        assert bodies
        about = [b for b in bodies if RESIDENT in b]
        assert all('"type":"person.forgotten"' in b for b in about), about
        daemon.stop()
        written = [f for f in tmp_path.rglob("*") if f.is_file() and f.name != "gate.yaml"]
        assert any(f.name == "audit.log" for f in written)
        for file in written:
            data = file.read_bytes()
            # all but the masked card, which the daemon's log lines show by design (four
            # digits name no one; a log already handed to journald is not ours to rewrite)
            for secret in (RESIDENT, RESIDENT_NAME, RESIDENT_CARD, card_hash):
                assert secret.encode() not in data, f"{secret} found in {file}"
    finally:
        daemon.stop()
