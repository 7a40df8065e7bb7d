"""A `menjin run` child process whose state directory a test prepares (or damages) first.

Simulate mode, a pty card reader, no broker unless the config names one; the gate is observed
through its control socket and its journal file, as an installer would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from daemon import control
from daemon.configfile import load_config
from daemon.journal import read_events
from daemon.keyring import Keyring, open_gate_store
from daemon.store import parse_group, parse_person

REPO = Path(__file__).resolve().parents[2]
RESIDENT, RESIDENT_CARD = "p-0101", "12345678"
START_TIMEOUT_SECONDS = 60.0
WAIT_SECONDS = 30.0

CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: robust-gate, site: test}}
hardware: {{gpio_backend: mock}}
doors:
  front: {{lock: {{pin: 17}}, contact: {{pin: 27}}, access: card, unlock_seconds: 0.2}}
readers:
  front-card: {{type: em4100, door: front, port: /dev/menjin-reader-front, repeat_window_ms: 0}}
control: {{socket: {state}/control.sock}}
"""


def menjin(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from menjin.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def seed_resident(config: Path) -> None:
    """The resident and their card in the gate's sealed store, under the gate's own keys."""
    zone = ZoneInfo("Asia/Shanghai")
    with open_gate_store(config) as store:
        store.upsert(
            [parse_person({"id": RESIDENT, "name": "Wang Fang", "groups": ["residents"],
                           "cards": [RESIDENT_CARD]}, zone=zone)],
            groups=[parse_group({"id": "residents", "doors": ["front"], "schedule": "always"})],
        )


def count(events: list[dict[str, Any]], event_type: str, reason: str | None = None) -> int:
    return sum(1 for e in events if e["type"] == event_type
               and (reason is None or e.get("reason") == reason))


class Gate:
    """Prepare ``base/state`` (config written, resident seeded), then :meth:`start`."""

    def __init__(self, base: Path, extra: str = "", *, seed: bool = True) -> None:
        self.base = base
        self.state, self.config = base / "state", base / "gate.yaml"
        self.config.write_text(CONFIG.format(state=self.state) + extra)
        if seed:
            seed_resident(self.config)
        self.log = base / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> Gate:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from menjin.cli import main; main()", "run", "-c",
                 str(self.config)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                env=dict(os.environ, **(env or {})))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            assert self.proc.poll() is None, self.log_text()
            assert time.monotonic() < deadline, self.log_text()
            try:
                if self.call("status"):
                    return self
            except control.ControlError:
                time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def call(self, cmd: str, **args: Any) -> Any:
        return asyncio.run(control.call(self.state / "control.sock", cmd, args))

    def events(self) -> list[dict[str, Any]]:
        """The journal's events, unsealed with the gate's own journal key."""
        cfg = load_config(self.config, check_files=False)
        return read_events(self.state / "journal.db", Keyring(cfg).local().journal)

    def wait_for(self, what: str, predicate: Any, timeout: float = WAIT_SECONDS) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.running, self.log_text()
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; events: "
                             f"{[e['type'] for e in self.events()]}\n{self.log_text()}")

    def swipe(self, card: str = RESIDENT_CARD) -> None:
        self.call("sim.swipe", reader="front-card", card=card)

    def swipe_opens(self) -> None:
        """One resident card on the locked door: a new grant and the door unlocked for it."""
        def locked() -> bool:
            events = self.events()
            return count(events, "door.locked") >= count(events, "door.unlocked")

        self.wait_for("the door to relock", locked)
        before = count(self.events(), "door.unlocked")
        self.swipe()
        self.wait_for("the door to unlock",
                      lambda: count(self.events(), "door.unlocked") > before)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
