"""`menjin enrol --at-door` against a running daemon in simulate mode: photos are shown to the
synthetic camera of the vision process (`sim face`), the burst comes through the control socket
and the vision process, the templates are stored; a face already enrolled under another id and an
empty scene are refused with a clear message."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from daemon.configfile import load_config
from daemon.faces import template_store
from daemon.keyring import Keyring
from daemon.store import parse_person
from tests.daemon.test_app_privacy import RESIDENT, VISION, Daemon

OTHER = "p-0102"


def show(daemon: Daemon, image: bytes, seconds: float) -> None:
    daemon.call("sim.face", door="front", name="photo", seconds=seconds,
                photo=base64.b64encode(image).decode())


@pytest.mark.timeout(300)
def test_enrolment_at_the_door_through_the_running_daemon(
    tmp_path: Path, models_dir: Path, faces_dir: Path
) -> None:
    daemon = Daemon(tmp_path, VISION.format(models=models_dir))
    config = str(tmp_path / "gate.yaml")
    try:
        photo = (faces_dir / "probe" / "obama1.jpg").read_bytes()
        show(daemon, photo, 120.0)  # the resident stays in front of the camera
        before = daemon.call("status")["vision"]["pid"]
        enrolled = daemon.cli("enrol", "--person", RESIDENT, "--at-door", "front", "-c", config)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        assert f"enrolled {RESIDENT}: 3 frame(s) kept, 0 rejected, 3 template(s) stored" in \
            enrolled.stdout
        cfg = load_config(Path(config))
        assert cfg.vision is not None
        keyring = Keyring(cfg)
        assert template_store(cfg.vision, keyring.template_key()).load()[RESIDENT].shape == (3, 128)

        with keyring.open_store(cfg) as residents:
            residents.upsert([parse_person(
                {"id": OTHER, "name": "Li Lei", "groups": ["residents"], "cards": ["87654321"],
                 "face_consent": {"date": "2026-10-01", "source": "form 18"}},
                zone=ZoneInfo("Asia/Shanghai"))])
        # The enrolment made the daemon reload the templates: a new vision process, whose
        # simulated camera starts with an empty scene. The resident steps up again.
        deadline = time.monotonic() + 120
        while not (daemon.call("status")["vision"]["pid"] != before
                   and daemon.call("status")["vision"]["state"] == "ok"):
            assert time.monotonic() < deadline, "the vision process did not come back"
            time.sleep(0.2)
        show(daemon, photo, 120.0)
        duplicate = daemon.cli("enrol", "--person", OTHER, "--at-door", "front", "-c", config)
        assert duplicate.returncode == 1
        assert f"matches already enrolled person {RESIDENT}" in duplicate.stderr
        assert f"not {OTHER}; check the person id" in duplicate.stderr

        _ok, empty = cv2.imencode(".png", np.full((480, 640, 3), 128, np.uint8))
        show(daemon, empty.tobytes(), 120.0)  # nobody at the camera
        nobody = daemon.cli("enrol", "--person", OTHER, "--at-door", "front", "-c", config)
        assert nobody.returncode == 1
        assert (f"refused: {OTHER}: 0 of 10 frames showed one clear face, 3 needed "
                "(no face in 10)") in nobody.stderr

        wrong = daemon.cli("enrol", "--person", OTHER, "--at-door", "back", "-c", config)
        assert wrong.returncode == 1
        assert "error: no door 'back' (doors: front)" in wrong.stderr
    finally:
        daemon.stop()
    stopped = daemon.cli("enrol", "--person", OTHER, "--at-door", "front", "-c", config)
    assert stopped.returncode == 1
    assert ("error: simulate mode: the synthetic camera lives in the running daemon; start it "
            "(menjin run) and show the resident with menjin sim face") in stopped.stderr
