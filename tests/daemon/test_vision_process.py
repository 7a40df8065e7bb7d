"""Vision runs in its own process: its crash, or models it cannot load, never stop a card.

`menjin run` in simulate mode with the real models; the vision process is killed with SIGKILL
while cards are swiped, or started on a detector file of garbage bytes that ONNX Runtime refuses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon.vision_process import LOW_NICE, VISION_OOM_SCORE_ADJ
from tests.daemon import test_app_privacy as privacy
from tests.daemon.test_app_privacy import RESIDENT_CARD, VISION, Daemon, count

REPO = Path(__file__).resolve().parents[2]

#: Short unlock pulses, so that every swipe opens (and relocks) the door on its own.
FAST_DOOR = privacy.CONFIG.replace(
    "front: {{lock: {{pin: 17}}, contact: {{pin: 27}}, access: card_or_face}}",
    "front: {{lock: {{pin: 17}}, contact: {{pin: 27}}, access: card_or_face, "
    "unlock_seconds: 0.2}}")
TIMEOUT_SECONDS = 60.0


def wait_until(what: str, predicate: Callable[[], Any], daemon: Daemon) -> Any:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert daemon.proc.poll() is None, daemon.log.read_text()[-3000:]
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; events: "
                         f"{[e['type'] for e in daemon.events()]}\n"
                         f"{daemon.log.read_text()[-3000:]}")


#: /proc/PID/task/TID/stat field 41 (after the command name): the scheduling policy.
SCHED_IDLE_POLICY = os.SCHED_IDLE


def threads_of(pid: int) -> dict[int, tuple[int, set[int]]]:
    """Every thread of a process: its scheduling policy and the CPUs it may run on, as the
    kernel has them in /proc."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        policy = int(stat[stat.rindex(")") + 2:].split()[38])
        allowed = next(line.split(":")[1].strip() for line in
                       (task / "status").read_text().splitlines()
                       if line.startswith("Cpus_allowed_list:"))
        cpus: set[int] = set()
        for part in allowed.split(","):
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
        out[int(task.name)] = (policy, cpus)
    return out


def assert_below_the_door_daemon(vision_pid: int, daemon_pid: int) -> None:
    """Every thread of the vision process (ONNX Runtime's and the camera's, started after the
    setting) runs at SCHED_IDLE and off CPU 0; the door daemon's threads do neither."""
    vision, daemon = threads_of(vision_pid), threads_of(daemon_pid)
    assert len(vision) > 3  # the loop, the camera, the pipeline, the executor: not only main
    assert {policy for policy, _ in vision.values()} == {SCHED_IDLE_POLICY}
    assert SCHED_IDLE_POLICY not in {policy for policy, _ in daemon.values()}
    if len(os.sched_getaffinity(0)) > 1:
        cpu0 = min(os.sched_getaffinity(0))
        assert all(cpu0 not in cpus and cpus for _, cpus in vision.values())
        assert all(cpu0 in cpus for _, cpus in daemon.values())


def swipe_opens_the_door(daemon: Daemon) -> None:
    """One card on a locked door: a new grant, and the door unlocked for it."""
    def locked() -> bool:
        events = daemon.events()
        return count(events, "door.locked") >= count(events, "door.unlocked")

    wait_until("the door to relock", locked, daemon)
    before = count(daemon.events(), "door.unlocked")
    daemon.swipe(RESIDENT_CARD)
    wait_until("the door to unlock", lambda: count(daemon.events(), "door.unlocked") > before,
               daemon)


@pytest.fixture
def fast_door(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privacy, "CONFIG", FAST_DOOR)


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("fast_door")
def test_sigkill_of_the_vision_process_never_stops_a_card(tmp_path: Path,
                                                          models_dir: Path) -> None:
    daemon = Daemon(tmp_path, VISION.format(models=models_dir))
    try:
        first = wait_until("vision ready", lambda: daemon.call("status")["vision"]
                           if daemon.call("status")["vision"]["state"] == "ok" else None, daemon)
        oom_score = Path(f"/proc/{first['pid']}/oom_score_adj").read_text()
        assert int(oom_score) == VISION_OOM_SCORE_ADJ  # the OOM killer's first choice
        assert_below_the_door_daemon(first["pid"], daemon.proc.pid)  # never ahead of a card
        swipes = 8
        for i in range(swipes):
            if i == 2:
                os.kill(first["pid"], signal.SIGKILL)  # mid-stream, as an OOM kill would
            swipe_opens_the_door(daemon)
        events = wait_until("vision.restored",
                            lambda: daemon.events() if count(daemon.events(), "vision.restored")
                            else None, daemon)
        assert count(events, "access.granted") == swipes
        assert count(events, "access.denied") == 0
        assert count(events, "vision.fault") == 1
        fault = next(e for e in events if e["type"] == "vision.fault")
        assert fault["door"] == "front" and "killed by SIGKILL" in fault["data"]["detail"]
        assert daemon.proc.poll() is None
        vision = daemon.call("status")["vision"]
        assert vision["state"] == "ok" and vision["restarts"] == 1
        assert vision["pid"] != first["pid"]
        assert_below_the_door_daemon(vision["pid"], daemon.proc.pid)  # the new one too
        shown = daemon.cli("status", "-c", str(daemon.config))
        assert shown.returncode == 0, shown.stderr
        assert f"vision: ok (pid {vision['pid']}, 1 restart(s)" in shown.stdout
    finally:
        daemon.stop()


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("fast_door")
def test_a_model_onnx_runtime_refuses_never_stops_the_door_daemon(tmp_path: Path,
                                                                  models_dir: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("face_detection_yunet_2026may.onnx", "mobilefacenet_paddlex_128d.onnx"):
        shutil.copy(models_dir / name, models / name)
    (models / "face_detection_yunet_2026may.onnx").write_bytes(b"\x00garbage, not ONNX\xff" * 64)
    daemon = Daemon(tmp_path, VISION.format(models=models))
    try:
        wait_until("two failed starts of vision", lambda: daemon.call("status")["vision"]
                   ["faults"] >= 2, daemon)
        for _ in range(3):
            swipe_opens_the_door(daemon)
        events = daemon.events()
        assert count(events, "vision.fault") == 1  # said once, not once per restart
        assert count(events, "access.granted") == 3
        status = daemon.call("status")
        assert status["vision"]["state"] in ("fault", "starting")
        assert "exited with status 1" in status["vision"]["last_error"] or \
            status["vision"]["state"] == "starting"
        # and what failed is ONNX Runtime refusing the model, not some other start-up error
        assert "INVALID_PROTOBUF" in daemon.log.read_text(errors="replace")
        assert daemon.proc.poll() is None  # the door daemon runs on
    finally:
        daemon.stop()


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("fast_door")
def test_a_hung_vision_process_is_killed_and_restarted(tmp_path: Path, models_dir: Path) -> None:
    daemon = Daemon(tmp_path, VISION.format(models=models_dir))
    try:
        first = wait_until("vision ready", lambda: daemon.call("status")["vision"]
                           if daemon.call("status")["vision"]["state"] == "ok" else None, daemon)
        os.kill(first["pid"], signal.SIGSTOP)  # alive but silent: a wedged driver or model
        swipe_opens_the_door(daemon)
        wait_until("vision.restored", lambda: count(daemon.events(), "vision.restored"), daemon)
        fault = next(e for e in daemon.events() if e["type"] == "vision.fault")
        assert fault["data"]["detail"].startswith("hung: no heartbeat for 10 s")
        swipe_opens_the_door(daemon)
        assert count(daemon.events(), "access.granted") == 2
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first["pid"], signal.SIGKILL)
        daemon.stop()


def settings_of_a_thread_started_after(*calls: str, cpus: list[int] | None = None) -> Any:
    """Run ``calls`` (from daemon.vision_process) in a fresh process (limited to ``cpus``),
    then start a thread and read back what the kernel gives it."""
    code = f"""
import json, os, threading
from daemon.vision_process import leave_cpus, lower_cpu_priority, model_threads
if {cpus!r} is not None:
    os.sched_setaffinity(0, {cpus!r})
results = [{", ".join(calls)}]
seen = {{}}
def probe():
    tid = threading.get_native_id()
    seen.update(nice=os.getpriority(os.PRIO_PROCESS, tid), policy=os.sched_getscheduler(tid),
                cpus=sorted(os.sched_getaffinity(tid)))
thread = threading.Thread(target=probe)
thread.start()
thread.join()
print(json.dumps({{"results": results, **seen}}))
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    return json.loads(run.stdout)


def test_low_priority_is_nice_19_for_every_later_thread() -> None:
    got = settings_of_a_thread_started_after('lower_cpu_priority("low")')
    assert (got["nice"], got["policy"]) == (LOW_NICE, os.SCHED_OTHER)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_vision_leaves_the_first_cpu_and_runs_no_more_threads_than_it_has_cpus() -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]
    got = settings_of_a_thread_started_after("leave_cpus(1)", "model_threads(8)",
                                             cpus=[first, second])
    assert got["results"] == [[second], 1]
    assert got["cpus"] == [second]  # inherited by a thread started afterwards
    alone = settings_of_a_thread_started_after("leave_cpus(1)", cpus=[first])
    assert alone["results"] == [[first]] and alone["cpus"] == [first]  # one CPU: vision keeps it
    untouched = settings_of_a_thread_started_after("leave_cpus(0)", "model_threads(1)",
                                                   cpus=[first, second])
    assert untouched["results"] == [[first, second], 1]
