"""Motion gate: idle noisy frames are not motion; a person entering is."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.sim.gate_scene import GateScene
from vision.motion import MotionGate


def scene_with_block() -> GateScene:
    scene = GateScene((640, 480), fps=10, seconds=6, noise=2.0)
    block = np.full((200, 140, 3), 230, dtype=np.uint8)
    block[50:150, 30:110] = 20
    scene.add(block, start_s=2, duration_s=2, height_px=200)
    return scene


def test_first_frame_counts_as_motion() -> None:
    gate = MotionGate()
    assert gate.moved(scene_with_block().frame(0))


def test_idle_frames_with_sensor_noise_are_not_motion() -> None:
    scene = scene_with_block()
    gate = MotionGate()
    gate.moved(scene.frame(0))
    idle = [gate.moved(scene.frame(i)) for i in range(1, 19)]
    assert not any(idle)


def test_a_passage_is_motion_and_the_empty_scene_after_it_is_idle_again() -> None:
    scene = scene_with_block()
    gate = MotionGate()
    moved = {i: gate.moved(scene.frame(i)) for i in range(scene.frame_count)}
    during = [moved[i] for i in range(21, 40)]
    assert all(during), during
    assert not any(moved[i] for i in range(42, scene.frame_count))


def test_sample_is_tiny_whatever_the_frame_size() -> None:
    gate = MotionGate(sample_width_px=64)
    sample = gate.sample(np.zeros((1080, 1920, 3), dtype=np.uint8))
    assert sample.shape == (36, 64)


def test_reset_makes_the_next_frame_motion() -> None:
    scene = scene_with_block()
    gate = MotionGate()
    gate.moved(scene.frame(0))
    assert not gate.moved(scene.frame(1))
    gate.reset()
    assert gate.moved(scene.frame(2))


@pytest.mark.parametrize("width", [0, 7])
def test_too_small_sample_is_refused(width: int) -> None:
    with pytest.raises(ValueError, match="at least 8 px"):
        MotionGate(sample_width_px=width)
