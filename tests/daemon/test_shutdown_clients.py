"""Stopping the daemon: a following client says "daemon stopped" and exits 69; no tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MENJIN = [sys.executable, "-c", "from menjin.cli import main; main()"]


def card_only_gate(tmp_path: Path) -> Path:
    """config/example.yaml as a card-only simulated gate without uplink, state in tmp_path."""
    text = (REPO / "config" / "example.yaml").read_text(encoding="utf-8")
    for old, new in (("${STATE_DIRECTORY:-/tmp/menjin-example}", str(tmp_path / "state")),
                     ("vision:\n  enabled: true", "vision:\n  enabled: false"),
                     ("access: card_or_face", "access: card"),
                     ("    liveness: nir ", "    # nir "),
                     ("uplink:\n  enabled: true", "uplink:\n  enabled: false")):
        text = text.replace(old, new)
    path = tmp_path / "gate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.timeout(120)
def test_followers_hear_daemon_stopped_and_the_log_stays_clean(tmp_path: Path) -> None:
    cfg = card_only_gate(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen([*MENJIN, "run", "-c", str(cfg)], stdout=log,
                              stderr=subprocess.STDOUT, env=env)
    clients: list[subprocess.Popen[bytes]] = []
    try:
        sock = tmp_path / "state" / "control.sock"
        wait_for(sock.exists, 60, "the control socket")
        subprocess.run([*MENJIN, "sim", "press", "front", "-c", str(cfg)], env=env, check=True)
        for _ in range(2):
            client = subprocess.Popen([*MENJIN, "events", "--follow", "-n", "1", "-c", str(cfg)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            clients.append(client)
            assert client.stdout is not None
            # The newest recorded event arrives once the client is connected and following.
            assert client.stdout.readline()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        for client in clients:
            _, err = client.communicate(timeout=30)
            assert (client.returncode, err) == (69, b"daemon stopped\n")
    finally:
        for proc in (daemon, *clients):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.close()
    text = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in text
    assert "CancelledError" not in text
    assert "gate xingfuli-north stopped" in text
