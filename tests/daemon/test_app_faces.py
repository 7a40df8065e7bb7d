"""Station `enrol` / `remove` commands as the app carries them out (real models and photos)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from daemon.app import Gate
from daemon.configfile import load_config
from daemon.faces import template_store
from daemon.notify import Notifier
from daemon.store import parse_person
from vision.gallery import TemplateStore

CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: faces-gate, site: test}}
hardware: {{gpio_backend: mock}}
doors:
  front: {{lock: {{pin: 17}}, access: card_or_face}}
camera: {{source: /dev/video0, door: front}}
vision:
  detector: {{kind: yunet, path: {models}/face_detection_yunet_2026may.onnx,
             input_size: [640, 384], score_threshold: 0.8}}
  embedder: {{kind: mobilefacenet_paddlex, path: {models}/mobilefacenet_paddlex_128d.onnx}}
  threads: 1
control: {{socket: {state}/control.sock}}
"""


@pytest.fixture
def gate(tmp_path: Path, models_dir: Path) -> Gate:
    config = tmp_path / "gate.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", models=models_dir))
    g = Gate(config, load_config(config), Notifier(None))
    store = g.open_store()
    store.upsert([
        parse_person({"id": "p-obama", "name": "Obama", "cards": ["1"],
                      "face_consent": {"date": "2026-10-01", "source": "form 1"}}, zone=store.zone),
        parse_person({"id": "p-noconsent", "name": "No Consent", "cards": ["2"]}, zone=store.zone),
    ])
    return g


def photos(faces_dir: Path, person: str) -> list[str]:
    return [base64.b64encode(p.read_bytes()).decode() for p in
            sorted((faces_dir / "enrol" / person).glob("*.jpg"))]


def gate_templates(gate: Gate) -> TemplateStore:
    assert gate.config.vision is not None
    return template_store(gate.config.vision, gate.keyring.template_key())


@pytest.mark.timeout(120)
async def test_enrol_stores_templates_and_remove_deletes_them(gate: Gate, faces_dir: Path) -> None:
    assert gate.config.vision is not None
    try:
        result = await gate.station_commands.enrol({"person": "p-obama",
                                            "photos": photos(faces_dir, "obama")})
        assert result["templates"] >= 1
        assert "p-obama" in gate_templates(gate).load()
        removed = await gate.station_commands.remove({"person": "p-obama"})
        assert removed == {"person": "p-obama", "removed": True}
        assert "p-obama" not in gate_templates(gate).load()
    finally:
        assert gate.store is not None
        gate.store.close()


@pytest.mark.timeout(120)
async def test_enrol_without_recorded_consent_is_refused(gate: Gate, faces_dir: Path) -> None:
    try:
        with pytest.raises(ValueError, match="no face consent recorded for p-noconsent"):
            await gate.station_commands.enrol({"person": "p-noconsent",
                                       "photos": photos(faces_dir, "biden")})
        assert gate.config.vision is not None
        assert not gate_templates(gate).path.exists()  # nothing stored
    finally:
        assert gate.store is not None
        gate.store.close()


def camera_frames(photo: Path, count: int) -> list[bytes]:
    """What the door camera sends for a resident standing in front of it: the photo in a
    640x480 frame, moving a few pixels, as JPEG."""
    import cv2
    import numpy as np

    image = cv2.imread(str(photo))
    scale = 360 / image.shape[0]
    image = cv2.resize(image, None, fx=scale, fy=scale)
    frames = []
    for i in range(count):
        canvas = np.full((480, 640, 3), 110, np.uint8)
        x, y = 100 + 5 * i, 60
        width = min(image.shape[1], 640 - x)
        canvas[y:y + image.shape[0], x:x + width] = image[:, :width]
        frames.append(cv2.imencode(".jpg", canvas)[1].tobytes())
    return frames


@pytest.mark.timeout(120)
async def test_station_enrol_at_the_door_takes_a_burst_of_that_camera(
    gate: Gate, faces_dir: Path
) -> None:
    asked: list[tuple[str, int, float]] = []

    async def burst(door: str, frames: int, seconds: float) -> list[bytes]:
        asked.append((door, frames, seconds))
        return camera_frames(faces_dir / "probe" / "obama1.jpg", frames)

    gate.station_commands._burst = burst  # the vision process's camera, without the process
    try:
        result = await gate.station_commands.enrol({"person": "p-obama", "door": "front"})
        assert asked == [("front", 10, 2.0)]
        assert result["accepted"] == result["templates"] == 3
        assert gate.config.vision is not None
        templates = template_store(gate.config.vision, gate.keyring.template_key()).load()
        assert templates["p-obama"].shape == (3, 128)
        with pytest.raises(ValueError, match="door 'back': no such door with a camera"):
            await gate.station_commands.enrol({"person": "p-obama", "door": "back"})
    finally:
        assert gate.store is not None
        gate.store.close()
