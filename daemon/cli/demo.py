"""`menjin demo`: the example gate, simulated, playing a scripted scenario on the real daemon.

The demo is what a newcomer runs first, so it runs the real thing: `menjin run` as a child process
on a derived copy of ``config/example.yaml`` (simulate mode: MockFactory pins, a pty card reader, a
synthetic camera fed with the test photos when the face models are present; short door timings so
that a held-open door shows within seconds), in a temporary state folder.  The scenario is played
through the daemon's control socket with the same `sim` commands an installer would type, and what
happens is shown live from the daemon's own event stream, with a table of the doors.  When
mosquitto is installed, a private broker is started and what the station receives is shown too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from ruamel.yaml import YAML

from daemon import control
from daemon.cli.demoseed import DemoPeople, seed
from daemon.cli.run import format_event

REPO = Path(__file__).resolve().parents[2]
#: Package data (a link to config/example.yaml in the source tree), so a plain pip install has it.
EXAMPLE_CONFIG = resources.files("daemon") / "data" / "config" / "example.yaml"
MODELS_PLACEHOLDER = re.compile(r"\$\{MENJIN_MODELS(?::-[^}]*)?\}")
MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto")
START_TIMEOUT_SECONDS = 60.0
STEP_TIMEOUT_SECONDS = 20.0
#: Face models load and the pipeline agrees over several frames: slower on a busy machine.
FACE_TIMEOUT_SECONDS = 60.0
#: Frames the vision pipeline must process of the shown face (agreement, liveness, capture).
DEMO_FACE_FRAMES = 12
STOP_TIMEOUT_SECONDS = 10.0
#: Short door timings so a held-open door and its alarm show within seconds.
DEMO_UNLOCK_SECONDS = 2
DEMO_HELD_OPEN_SECONDS = 3
EVENT_STYLES = {
    "access.granted": "bold green",
    "access.denied": "bold yellow",
    "door.forced": "bold red",
    "door.held": "bold red",
    "tamper": "bold red",
    "reader.attack": "bold red",
    "capture": "magenta",
}


def models_dir() -> Path | None:
    """The face models: $MENJIN_MODELS, else ../shared/models next to the repository."""
    path = Path(os.environ.get("MENJIN_MODELS", REPO.parent / "shared" / "models"))
    return path if any(path.glob("*.onnx")) else None


def faces_dir() -> Path | None:
    """The test photos: $MENJIN_FACES, else ../shared/faces next to the repository."""
    path = Path(os.environ.get("MENJIN_FACES", REPO.parent / "shared" / "faces"))
    return path if (path / "enrol").is_dir() else None


def face_skip_reason(models: Path | None, faces: Path | None) -> str:
    """Why the demo skips its face step, and what to set to run it."""
    missing = []
    if models is None:
        missing.append("no face models (.onnx) in $MENJIN_MODELS "
                       f"({os.environ.get('MENJIN_MODELS', 'not set')})")
    if faces is None:
        missing.append("no test photos (an enrol/ folder) in $MENJIN_FACES "
                       f"({os.environ.get('MENJIN_FACES', 'not set')})")
    return ("step 4, face-scan entry, is skipped: " + " and ".join(missing)
            + "; set MENJIN_MODELS and MENJIN_FACES to run it")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mosquitto() -> str | None:
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def derive_config(workdir: Path, *, broker_port: int | None, models: Path | None) -> Path:
    """config/example.yaml with demo timings, a temporary state folder and the demo broker."""
    yaml = YAML(typ="rt")
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    if models is not None:
        text = MODELS_PLACEHOLDER.sub(str(models).replace("\\", "/"), text)
    data = yaml.load(text)
    data["state_dir"] = str(workdir / "state")
    for door in data["doors"].values():
        door["unlock_seconds"] = DEMO_UNLOCK_SECONDS
        door["held_open_seconds"] = DEMO_HELD_OPEN_SECONDS
        door["held_reminder_seconds"] = 60
    if broker_port is None:
        data["uplink"]["enabled"] = False
    else:
        data["uplink"]["host"] = "127.0.0.1"
        data["uplink"]["port"] = broker_port
        data["uplink"]["health_seconds"] = 30
    if models is None:
        for key in ("camera", "vision"):
            data.pop(key, None)
    elif "camera" in data:
        # The simulated scene has no infrared twin: the demo runs face entry on RGB liveness
        # only (the start-up log says what that means).
        data["camera"].pop("nir", None)
        for door in data["doors"].values():
            door.pop("liveness", None)
    data["control"]["socket"] = str(workdir / "control.sock")
    data["logging"]["level"] = "INFO"
    path = workdir / "gate.yaml"
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(data, fh)
    return path


@dataclass
class EventLog:
    """Everything the daemon reported, and a way to wait for what a step expects."""

    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, event: dict[str, Any]) -> None:
        async with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def after(self, seq: int, event_type: str, **fields: Any) -> dict[str, Any] | None:
        """The first recorded event of ``event_type`` (with ``fields``) numbered after ``seq``."""
        for event in self.events:
            if event.get("seq", 0) > seq and event.get("type") == event_type and all(
                event.get(k) == v for k, v in fields.items()
            ):
                return event
        return None

    async def expect(self, seq: int, event_type: str, *,
                     within_seconds: float = STEP_TIMEOUT_SECONDS,
                     **fields: Any) -> dict[str, Any]:
        """Wait for :meth:`after`; TimeoutError names what did not happen."""
        try:
            async with asyncio.timeout(within_seconds), self.changed:
                await self.changed.wait_for(lambda: self.after(seq, event_type, **fields))
        except TimeoutError:
            raise TimeoutError(
                f"no {event_type} {fields or ''} within {within_seconds:g} s") from None
        event = self.after(seq, event_type, **fields)
        assert event is not None
        return event


@dataclass
class StepResult:
    title: str
    ok: bool
    detail: str = ""


class Demo:
    """One demo run: broker, daemon, scenario, summary."""

    def __init__(self, console: Console, *, forever: bool, keep: bool) -> None:
        self.console = console
        self.forever = forever
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix="menjin-demo-"))
        self.socket = self.workdir / "control.sock"
        self.log = EventLog()
        self.results: list[StepResult] = []
        self.station: Counter[str] = Counter()
        self.models = models_dir()
        self.faces = faces_dir()
        self.people: DemoPeople | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._status: dict[str, Any] = {}

    # ------------------------------------------------------------------ processes
    def _start_broker(self) -> int | None:
        binary = _mosquitto()
        if binary is None:
            self.console.print("[dim]mosquitto is not installed: no station broker in this demo "
                               "(apt-get install mosquitto to see what the station receives)[/]")
            return None
        port = _free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self._procs.append(subprocess.Popen([binary, "-c", str(conf)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return port

    def _spawn_daemon(self, config: Path) -> subprocess.Popen[bytes]:
        """`menjin run` as a child process, its log in the work folder."""
        env = dict(os.environ)
        if self.models is not None:
            env["MENJIN_MODELS"] = str(self.models)
        env.pop("NOTIFY_SOCKET", None)
        with (self.workdir / "daemon.log").open("wb") as logfile:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from menjin.cli import main; main()", "run", "-c",
                 str(config)],
                stdout=logfile, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
            )
        self._procs.append(proc)
        return proc

    async def _daemon(self, config: Path) -> subprocess.Popen[bytes]:
        """Start the daemon and wait until its control socket answers."""
        proc = self._spawn_daemon(config)
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_SECONDS
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with status {proc.returncode}; see "
                                   f"{self.workdir / 'daemon.log'}")
            with contextlib.suppress(control.ControlError):
                self._status = await control.call(self.socket, "status")
                return proc
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("the daemon did not come up in time")
            await asyncio.sleep(0.2)

    async def _station(self, port: int) -> None:
        """What the station receives, via mosquitto_sub (the demo itself speaks no MQTT).

        Two subscribers: JSON topics (status, events, health) print their payload; portraits are
        JPEG bytes, so only their size and content type are shown.
        """
        sub = shutil.which("mosquitto_sub")
        if sub is None:
            return
        base = [sub, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5"]
        await asyncio.gather(
            self._subscriber([*base, "-t", "menjin/+/status", "-t", "menjin/+/events",
                              "-t", "menjin/+/health", "-F", "%t\t%p"], self._station_json),
            self._subscriber([*base, "-t", "menjin/+/captures/+", "-F", "%t\t%l\t%C"],
                             self._station_capture),
        )

    async def _subscriber(self, argv: list[str], show: Callable[[list[str]], None]) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                show(line.decode(errors="replace").rstrip("\n").split("\t"))
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await proc.wait()

    def _station_json(self, fields: list[str]) -> None:
        topic, payload = [*fields, ""][:2]
        kind = topic.split("/")[-1]
        self.station[kind] += 1
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        if kind == "status":
            basis = f", legal basis: {msg['legal_basis'][:60]}..." if "legal_basis" in msg else ""
            self.console.print(f"  [blue]station ← status {msg.get('state')} (portraits "
                               f"{msg.get('portraits')}{basis})[/]", highlight=False)
        elif kind == "health":
            self.console.print(f"  [blue]station ← health: backlog {msg.get('queue_depth')}, "
                               f"readers {msg.get('readers')}, camera {msg.get('camera')}[/]",
                               highlight=False)
        else:
            self.console.print(f"  [dim blue]station ← event #{msg.get('seq')} "
                               f"{msg.get('type')}[/]", highlight=False)

    def _station_capture(self, fields: list[str]) -> None:
        topic, length, content_type = [*fields, "", ""][:3]
        self.station["captures"] += 1
        self.console.print(f"  [magenta]station ← {topic} ({length} bytes {content_type})[/]",
                           highlight=False)

    # ------------------------------------------------------------------ display
    def _print_event(self, event: dict[str, Any]) -> None:
        style = EVENT_STYLES.get(str(event.get("type")), "cyan" if str(
            event.get("type", "")).startswith("door.") else "white")
        self.console.print(f"  [{style}]{format_event(event)}[/]", highlight=False)

    def doors_table(self) -> Table:
        table = Table("door", "state", "relay", "contact", "alarms", title="Doors")
        for door_id, door in self._status.get("doors", {}).items():
            table.add_row(door_id, str(door.get("state")), str(door.get("relay")),
                          str(door.get("contact")), ", ".join(door.get("alarms", [])) or "-")
        return table

    async def _events(self) -> None:
        with contextlib.suppress(control.DaemonStoppedError):  # the demo's end stops it
            async for event in control.follow(self.socket, "events",
                                              {"follow": True, "count": 0}):
                self._print_event(event)
                await self.log.add(event)

    async def _refresh(self, live: Live) -> None:
        while True:
            with contextlib.suppress(control.ControlError):
                self._status = await control.call(self.socket, "status")
                live.update(self.doors_table())
            await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ scenario
    async def sim(self, cmd: str, **args: Any) -> None:
        await control.call(self.socket, cmd, args)

    async def settle(self) -> int:
        """Wait until every door is shut and locked again; returns the last event's seq."""
        async with asyncio.timeout(STEP_TIMEOUT_SECONDS):
            while True:
                status = await control.call(self.socket, "status")
                if all(d.get("state") == "locked" for d in status["doors"].values()):
                    return int(status["journal"]["last_seq"])
                await asyncio.sleep(0.2)

    async def step(self, title: str, body: Callable[[int], Awaitable[str]]) -> None:
        self.console.rule(f"[bold]{title}")
        try:
            detail = await body(await self.settle())
        except (TimeoutError, control.ControlError) as exc:
            detail = f"expected event did not happen: {exc or 'timeout'}"
            self.results.append(StepResult(title, False, detail))
            self.console.print(f"  [red]✗ {detail}[/]")
            return
        self.results.append(StepResult(title, True, detail))
        self.console.print(f"  [green]✓ {detail}[/]")

    async def _pass_through(self, door: str) -> None:
        """Someone walks through: the door opens, then shuts behind them."""
        await self.sim("sim.door", door=door, position="open")
        await asyncio.sleep(0.5)
        await self.sim("sim.door", door=door, position="close")

    async def scenario(self) -> None:
        people = self.people
        assert people is not None
        log = self.log

        async def resident_card(mark: int) -> str:
            await self.sim("sim.swipe", reader="front-card", card=people.resident_card)
            granted = await log.expect(mark, "access.granted", door="front")
            unlocked = await log.expect(granted["seq"], "door.unlocked", door="front")
            await self._pass_through("front")
            await log.expect(unlocked["seq"], "door.closed", door="front")
            return f"resident {granted.get('person')} let in at the front gate"

        async def unknown_card(mark: int) -> str:
            await self.sim("sim.swipe", reader="front-card", card=people.unknown_card)
            denied = await log.expect(mark, "access.denied", door="front")
            return f"unknown card refused (reason: {denied.get('reason')})"

        async def expired_visitor(mark: int) -> str:
            await self.sim("sim.swipe", reader="vehicle-card", card=people.visitor_card)
            denied = await log.expect(mark, "access.denied", door="vehicle")
            return f"visitor {denied.get('person')} refused (reason: {denied.get('reason')})"

        async def face_entry(mark: int) -> str:
            assert people.face_photo is not None
            # Until the pipeline processed enough frames, not 3 s of wall time: a starved
            # vision process on a loaded board may handle no frame in 3 s.
            await self.sim("sim.face", door="front", photo=base64_file(people.face_photo),
                           name=people.face_photo.name, seconds=3.0, frames=DEMO_FACE_FRAMES,
                           max_seconds=FACE_TIMEOUT_SECONDS - STEP_TIMEOUT_SECONDS)
            granted = await log.expect(mark, "access.granted", door="front",
                                       credential_kind="face", within_seconds=FACE_TIMEOUT_SECONDS)
            unlocked = await log.expect(granted["seq"], "door.unlocked", door="front")
            await self._pass_through("front")
            await log.expect(unlocked["seq"], "door.closed", door="front")
            capture = await log.expect(mark, "capture", door="front",
                                       within_seconds=FACE_TIMEOUT_SECONDS)
            portrait = "with" if capture.get("data", {}).get("portrait") else "without"
            return (f"{granted.get('person')} recognised by face, door opened; capture "
                    f"{portrait} portrait (privacy.portraits)")

        async def exit_button(mark: int) -> str:
            await self.sim("sim.press", door="front")
            unlocked = await log.expect(mark, "door.unlocked", door="front")
            await self._pass_through("front")
            closed = await log.expect(unlocked["seq"], "door.closed", door="front")
            if log.after(mark, "door.forced", door="front") is not None:
                raise TimeoutError(f"an exit-button egress raised door.forced (#{closed['seq']})")
            return "exit button unlocked the door for egress, no alarm"

        async def held_open(mark: int) -> str:
            await self.sim("sim.swipe", reader="front-card", card=people.resident_card)
            unlocked = await log.expect(mark, "door.unlocked", door="front")
            await self.sim("sim.door", door="front", position="open")
            held = await log.expect(unlocked["seq"], "door.held", door="front",
                                    within_seconds=DEMO_HELD_OPEN_SECONDS + STEP_TIMEOUT_SECONDS)
            await self.sim("sim.door", door="front", position="close")
            await log.expect(held["seq"], "door.held.cleared", door="front")
            return f"door.held after {DEMO_HELD_OPEN_SECONDS} s open, cleared when closed"

        async def forced(mark: int) -> str:
            await self.sim("sim.door", door="vehicle", position="open")
            alarm = await log.expect(mark, "door.forced", door="vehicle")
            await self.sim("sim.door", door="vehicle", position="close")
            await log.expect(alarm["seq"], "door.closed", door="vehicle")
            return "vehicle gate opened while locked: door.forced alarm"

        async def tamper(mark: int) -> str:
            await self.sim("sim.tamper", door="front")
            alarm = await log.expect(mark, "tamper", door="front")
            await self.sim("sim.tamper", door="front", clear=True)
            await log.expect(alarm["seq"], "tamper.cleared", door="front")
            return "reader housing opened: tamper alarm, then cleared"

        await self.step("1. A resident's valid card", resident_card)
        await self.step("2. An unknown card", unknown_card)
        await self.step("3. An expired visitor's card (vehicle gate, Wiegand)", expired_visitor)
        if people.face_photo is not None:
            await self.step("4. Face-scan entry (opted-in resident)", face_entry)
        else:
            self.console.rule("[bold]4. Face-scan entry")
            self.console.print(f"  [yellow]{face_skip_reason(self.models, self.faces)}[/]")
        await self.step("5. Exit button (egress)", exit_button)
        await self.step("6. Door held open too long", held_open)
        await self.step("7. Forced door", forced)
        await self.step("8. Tamper switch", tamper)

    # ------------------------------------------------------------------ summary
    def summary(self) -> Table:
        table = Table("step", "result", title="menjin demo: summary")
        for result in self.results:
            mark = "[green]ok[/]" if result.ok else "[red]FAILED[/]"
            table.add_row(result.title, f"{mark} {result.detail}")
        counts = Counter(str(e.get("type")) for e in self.log.events)
        table.add_row("events recorded", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if self.station:
            table.add_row("station received",
                          ", ".join(f"{k} {v}" for k, v in sorted(self.station.items())))
        return table

    # ------------------------------------------------------------------ run
    async def run(self) -> int:
        """Play the demo; 0 when every step did what it should and the daemon stopped cleanly."""
        con = self.console
        face_ok = self.models is not None and self.faces is not None
        con.print(f"[bold]menjin demo[/]: simulated gate from {EXAMPLE_CONFIG.name}, "
                  f"state in {self.workdir}")
        if not face_ok:
            con.print(f"[yellow]{face_skip_reason(self.models, self.faces)}[/]")
        try:
            return await self._play(face_ok)
        except RuntimeError as exc:  # the daemon did not come up
            con.print(f"[red]demo stopped: {exc}[/]")
            log_file = self.workdir / "daemon.log"
            if log_file.exists():
                con.print("".join(log_file.read_text(errors="replace").splitlines(True)[-15:]),
                          highlight=False, markup=False)
            return 1
        finally:
            self._stop_all()

    async def _play(self, face_ok: bool) -> int:
        con = self.console
        port = self._start_broker()
        config = derive_config(self.workdir, broker_port=port,
                               models=self.models if face_ok else None)
        self.people = await asyncio.to_thread(seed, config, self.faces if face_ok else None)
        proc = await self._daemon(config)
        async with asyncio.TaskGroup() as tasks:
            watchers = [tasks.create_task(self._events(), name="demo:events")]
            if port is not None:
                watchers.append(tasks.create_task(self._station(port), name="demo:station"))
            with Live(self.doors_table(), console=con, refresh_per_second=4) as live:
                watchers.append(tasks.create_task(self._refresh(live), name="demo:status"))
                await asyncio.sleep(0.5)
                await self.scenario()
                await asyncio.sleep(1.0)  # let the station see the last events
                if self.forever:
                    con.print(f"[bold]--forever[/]: the gate keeps running; drive it with "
                              f"`menjin sim ... --socket {self.socket}`; Ctrl-C ends")
                    await self._interrupted()
            for task in watchers:
                task.cancel()
        code = await asyncio.to_thread(self._stop_daemon, proc)
        con.print()
        con.print(self.summary())
        if code != 0:
            con.print(f"[red]the daemon exited with status {code}[/]")
            return 1
        return 1 if any(not r.ok for r in self.results) else 0

    @staticmethod
    async def _interrupted() -> None:
        """Wait for Ctrl-C (or SIGTERM); the summary and the clean-up still run after it."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    @staticmethod
    def _stop_daemon(proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM, as systemd stops it; its exit status (0 = relays idle, journal closed)."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def _stop_all(self) -> None:
        """Every child process this demo started (daemon first), then the temporary folder."""
        for proc in reversed(self._procs):  # the daemon was started after the broker
            self._stop_daemon(proc)
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def base64_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def demo(
    forever: Annotated[bool, typer.Option("--forever", help="Keep the gate running after the "
                                          "scenario, for manual play with `menjin sim`.")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary state folder "
                                       "(journal, daemon log) for inspection.")] = False,
) -> None:
    """Run a simulated two-door gate through a scripted scenario and show what happens.

    Cards (valid, unknown, expired), face-scan entry (when the models are present), exit button,
    door held open, forced door and tamper, on the real daemon in simulate mode.

    \b
    Example:
      menjin demo --forever
    """
    console = Console()
    runner = Demo(console, forever=forever, keep=keep)
    try:
        code = asyncio.run(runner.run())
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)

