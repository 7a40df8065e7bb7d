"""`menjin run`, and the installer's commands that talk to the running daemon over its socket.

`status`, `events`, `door test`, `readers watch` and, for a gate in simulate mode, `sim ...`
(swipe a card, press an exit button, open a door, trip a tamper switch, show a face to the
camera).  The daemon is found through its config file (``control.socket``), ``--socket`` or
``$MENJIN_SOCKET``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from daemon import control
from daemon.configfile import EX_CONFIG, ConfigError, load_config

DEFAULT_CONFIG = Path("/etc/menjin/gate.yaml")
DEFAULT_SOCKET = Path("/run/menjin/control.sock")
EX_UNAVAILABLE = 69  # sysexits.h: the daemon is not reachable
EX_REFUSED = 1

T = TypeVar("T")

ConfigOpt = typer.Option(
    None, "-c", "--config", envvar="MENJIN_CONFIG",
    help="Gate config file (finds the control socket); default /etc/menjin/gate.yaml.",
)
SocketOpt = typer.Option(
    None, "--socket", envvar="MENJIN_SOCKET", help="Control socket path (instead of -c)."
)
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON output.")

door_app = typer.Typer(help="Door wiring checks.", no_args_is_help=True)
readers_app = typer.Typer(help="Card reader wiring checks.", no_args_is_help=True)
sim_app = typer.Typer(
    help="Drive a gate running in simulate mode (training, demos, black-box tests).",
    no_args_is_help=True,
)


def socket_path(config: Path | None, sock: Path | None) -> Path:
    """Where the daemon listens: --socket, else the config's control.socket, else the default."""
    if sock is not None:
        return sock
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    if config is None:
        return DEFAULT_SOCKET
    try:
        return load_config(config, check_files=False).control.socket
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EX_CONFIG) from exc


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a client coroutine; daemon errors become one clear line and an exit status."""
    try:
        return asyncio.run(coro)
    except control.DaemonStoppedError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EX_UNAVAILABLE) from exc
    except control.ControlUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EX_UNAVAILABLE) from exc
    except control.ControlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EX_REFUSED) from exc
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _call(path: Path, cmd: str, args: dict[str, Any] | None = None) -> Any:
    return _run(control.call(path, cmd, args))


def _follow(path: Path, cmd: str, args: dict[str, Any], each: Callable[[Any], None]) -> None:
    async def consume() -> None:
        async for item in control.follow(path, cmd, args):
            each(item)

    _run(consume())


def run(
    config: Annotated[Path, typer.Option("-c", "--config", help="Gate config file (YAML).")],
) -> None:
    """Run the gate daemon in the foreground (systemd runs it like this).

    Exits 78 on a bad config.  SIGHUP reloads the config; SIGTERM stops it cleanly.

    \b
    Example:
      menjin run -c /etc/menjin/gate.yaml
    """
    from daemon.app import main as app_main  # the daemon's heavy imports only when it runs

    raise typer.Exit(app_main(config))


def vision(
    config: Annotated[Path, typer.Option("-c", "--config", help="Gate config file (YAML).")],
    fd: Annotated[int, typer.Option("--fd", help="Inherited UNIX socket to the door daemon.")],
) -> None:
    """Run the vision process (camera and face models) for the door daemon.

    `menjin run` starts it by itself as a child process holding one end of a UNIX socket pair,
    writes the template key (hex) to its standard input, and restarts it when it fails; by hand
    it is only useful to debug a camera or a model.

    \b
    Example:
      menjin vision -c /etc/menjin/gate.yaml --fd 3
    """
    from daemon.vision_process import main as vision_main

    raise typer.Exit(vision_main(config, fd))


def status(
    config: Path | None = ConfigOpt, sock: Path | None = SocketOpt, as_json: bool = JsonOpt
) -> None:
    """Show doors, relays, readers, camera, uplink and journal backlog of the running daemon.

    \b
    Example:
      menjin status -c /etc/menjin/gate.yaml --json
    """
    result = _call(socket_path(config, sock), "status")
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    render_status(result, Console())


def render_status(st: dict[str, Any], console: Console) -> None:
    """The status as tables a person at the gate can read."""
    mode = "simulate" if st.get("simulate") else "hardware"
    console.print(
        f"[bold]gate {st.get('gate')}[/] ({mode}), up {st.get('uptime_s', 0)} s, "
        f"portraits {st.get('portraits')}"
    )
    doors = Table("door", "state", "mode", "relay", "contact", "alarms", title="Doors")
    zone = st.get("timezone")
    for door_id, door in st.get("doors", {}).items():
        alarms = ", ".join(door.get("alarms", [])) or "-"
        doors.add_row(door_id, door.get("state", "?"), _mode_text(door, zone),
                      door.get("relay", "?"),
                      door.get("contact", "?"), f"[red]{alarms}[/]" if alarms != "-" else alarms)
    console.print(doors)
    for door_id, door in st.get("doors", {}).items():
        if door.get("first_person"):
            console.print(f"door {door_id}: {first_person_text(door['first_person'], zone)}")
    faulted = {name: part for name, part in st.get("parts", {}).items()
               if part.get("state") != "running"}
    if faulted:
        console.print("[red]parts not running:[/] " + "; ".join(
            f"{name} {part.get('state')} ({part.get('restarts', 0)} restart(s)"
            + (f", {part['last_error']}" if part.get("last_error") else "") + ")"
            for name, part in faulted.items()))
    readers = Table("reader", "door", "type", "status", title="Readers")
    for reader_id, reader in st.get("readers", {}).items():
        readers.add_row(reader_id, reader.get("door", "?"), reader.get("type", "?"),
                        reader_state(reader))
    console.print(readers)
    uplink = st.get("uplink", {})
    journal = st.get("journal", {})
    console.print(f"camera: {st.get('camera', 'absent')}   uplink: {uplink.get('state', '?')}   "
                  f"journal backlog: {journal.get('backlog', '?')}")
    vision = st.get("vision") or {}
    if vision.get("state", "absent") != "absent":
        error = f", last error: {vision['last_error']}" if vision.get("last_error") else ""
        console.print(f"vision: {vision['state']} (pid {vision.get('pid')}, "
                      f"{vision.get('restarts', 0)} restart(s), frames {vision.get('frames', 0)}, "
                      f"dropped {vision.get('dropped', 0)}, pipeline errors "
                      f"{vision.get('errors', 0)}{error})")
        if vision.get("faces_refused"):
            console.print(f"[red]faces refused[/] at door {vision.get('door')}: "
                          f"{vision['faces_refused']}")


def first_person_text(rule: dict[str, Any], zone: str | None = None) -> str:
    """``first-person unlock (managers, mon-fri 07:00-09:00): held open by m1 until
    2026-12-01 09:00`` (times in the gate's ``zone``)."""
    until = _clock_text(rule.get("until_ms"), zone)
    state = rule.get("state")
    what = {
        "waiting": f"waiting for the first card until {until}",
        "active": f"held open by {rule.get('person')} until {until}",
        "cancelled": f"opened by {rule.get('person')}, ended by a set mode; "
                     f"no new first card until {until}",
        "outside_window": "outside its windows",
        "clock_untrusted": "[yellow]not started and not holding: the clock is not trusted[/]",
    }.get(str(state), str(state))
    return f"first-person unlock ({rule.get('group')}, {rule.get('schedule')}): {what}"


def _clock_text(ms: Any, zone: str | None = None) -> str:
    """UTC ms as ``YYYY-MM-DD HH:MM`` in the gate's ``zone`` (an IANA name; None: the zone of
    the computer showing it); "?" when absent."""
    if not isinstance(ms, int):
        return "?"
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return (moment.astimezone(ZoneInfo(zone)) if zone else moment.astimezone()).strftime(
        "%Y-%m-%d %H:%M")


def reader_state(reader: dict[str, Any]) -> str:
    """A reader's status cell: ``lockout`` says for how long unknown cards are ignored."""
    lockout = reader.get("lockout")
    if not lockout:
        return str(reader.get("status", "?"))
    return (f"[yellow]lockout[/]: unknown cards ignored for {lockout['seconds_left']:.0f} s more "
            f"({lockout['ignored']} so far; card scanning suspected)")


def _text(value: Any) -> str:
    """A field value as a person reads it: lists joined, text with spaces quoted, no reprs."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value) or "-"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if (" " in value or not value) else value
    return str(value)


def _pairs(data: dict[str, Any], prefix: str = "") -> list[str]:
    """``key=value`` words; nested objects become dotted keys (``details.cards=1``)."""
    words: list[str] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict):
            words += _pairs(value, f"{prefix}{key}.")
        else:
            words.append(f"{prefix}{key}={_text(value)}")
    return words


def _mode_text(door: dict[str, Any], zone: str | None = None) -> str:
    """``lockdown (station, until 18:00)``: the door's mode and where it comes from."""
    mode, source = door.get("mode", "?"), door.get("mode_source")
    extra = [source] if source else []
    if door.get("mode_until_ms"):
        extra.append("until " + _clock_text(door["mode_until_ms"], zone))
    return f"{mode} ({', '.join(extra)})" if extra else str(mode)


def format_event(event: dict[str, Any]) -> str:
    """One readable line per event: `12:01:02 #42 access.granted door=front person=p1 ...`.

    An audit entry reads as a sentence: `#9 audit residents.add by cli:root on p12: cards=1`.
    """
    ts = dt.datetime.fromtimestamp(event.get("ts_ms", 0) / 1000).strftime("%H:%M:%S")
    seq = f"#{event['seq']} " if "seq" in event else ""
    data = event.get("data") or {}
    if event.get("type") == "audit" and "action" in data:
        target = f" on {data['target']}" if data.get("target") else ""
        details = ", ".join(_pairs(data.get("details") or {}))
        return (f"{ts} {seq}audit {data['action']} by {data.get('actor', '?')}{target}"
                f"{': ' + details if details else ''}")
    fields = [
        f"{key}={_text(event[key])}"
        for key in ("door", "reader", "credential_kind", "person", "reason")
        if event.get(key) is not None
    ]
    fields += _pairs(data)
    return f"{ts} {seq}{event.get('type')} {' '.join(fields)}".rstrip()


def events(
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new events."),
    count: int = typer.Option(20, "-n", "--count", help="How many recent events first."),
    as_json: bool = JsonOpt,
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
) -> None:
    """Print the gate's recent events (and, with --follow, new ones as they happen).

    \b
    Example:
      menjin events --follow --json -c /etc/menjin/gate.yaml
    """

    def show(event: dict[str, Any]) -> None:
        line = json.dumps(event, ensure_ascii=False) if as_json else format_event(event)
        typer.echo(line)

    _follow(socket_path(config, sock), "events", {"follow": follow, "count": count}, show)


@door_app.command("test")
def door_test(
    door: str = typer.Argument(..., help="Door id, as in the config."),
    seconds: float = typer.Option(1.0, "--seconds", min=0.1, max=10, help="Pulse length."),
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Pulse a door's lock relay to check the wiring (recorded in the audit log).

    \b
    Example:
      menjin door test front --seconds 2
    """
    result = _call(socket_path(config, sock), "door.test", {"door": door, "seconds": seconds})
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    typer.echo(f"door {door}: relay pulsed for {result['seconds']:g} s "
               f"({result.get('note', 'listen for the lock')})")


@door_app.command("mode")
def door_mode(
    door: str = typer.Argument(..., help="Door id, as in the config."),
    mode: str = typer.Argument(
        ..., help="lockdown, hold_open, normal, or schedule (cancel: back to the schedule)."),
    until: str | None = typer.Option(
        None, "--until", help="End time, local ISO 8601 (2026-12-01T18:00); default: until "
        "cancelled."),
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
) -> None:
    """Set a door's mode as a local admin; it survives restarts (recorded in the audit log).

    Precedence: lockdown > a mode set by the station or an admin > first-person unlock > the
    hold-open schedule > normal.  A hold_open during a lockdown is refused: lift the lockdown
    first.  Any mode set here ends a first-person unlock for the rest of its window.

    \b
    Example:
      menjin door mode front lockdown --until 2026-12-01T18:00
    """
    args: dict[str, Any] = {"door": door, "mode": mode}
    if until is not None:
        try:
            args["until_ms"] = int(dt.datetime.fromisoformat(until).timestamp() * 1000)
        except ValueError as exc:
            raise typer.BadParameter(f"--until: {exc}") from None
    result = _call(socket_path(config, sock), "door.mode", args)
    typer.echo(f"door {door}: {_mode_text(result)}")


@readers_app.command("watch")
def readers_watch(
    reader: str | None = typer.Argument(None, help="Only this reader (default: all)."),
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
    show_cards: bool = typer.Option(
        False, "--show-cards",
        help="Show whole card numbers and raw frames (recorded in the audit log)."),
    as_json: bool = JsonOpt,
) -> None:
    """Print what each reader sends (decoded card masked as ****5678, frame sizes) to check
    wiring and format; --show-cards shows the numbers and the raw bytes or bits too.

    \b
    Example:
      menjin readers watch front-card --show-cards
    """

    def show(item: dict[str, Any]) -> None:
        if as_json:
            typer.echo(json.dumps(item, ensure_ascii=False))
            return
        typer.echo(f"{item.get('reader')}: {item.get('kind')}: {item.get('text')}")

    _follow(socket_path(config, sock), "readers.watch",
            {"reader": reader, "show_cards": show_cards}, show)


def _sim(config: Path | None, sock: Path | None, cmd: str, args: dict[str, Any]) -> None:
    result = _call(socket_path(config, sock), cmd, args)
    typer.echo(result.get("message", "ok") if isinstance(result, dict) else "ok")


@sim_app.command("swipe")
def sim_swipe(
    reader: str = typer.Argument(..., help="Reader id."),
    card: str = typer.Argument(..., help="Card number as the reader reports it."),
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
) -> None:
    """Present a card at a simulated reader (sent through its pty or Wiegand pins).

    \b
    Example:
      menjin sim swipe front-card 0012345678
    """
    _sim(config, sock, "sim.swipe", {"reader": reader, "card": card})


@sim_app.command("press")
def sim_press(
    door: str = typer.Argument(..., help="Door id."),
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
) -> None:
    """Press and release a door's exit button.

    \b
    Example:
      menjin sim press front
    """
    _sim(config, sock, "sim.press", {"door": door})


@sim_app.command("door")
def sim_door(
    door: str = typer.Argument(..., help="Door id."),
    position: str = typer.Argument(..., help="open or close."),
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
) -> None:
    """Open or close a door (its contact input).

    \b
    Example:
      menjin sim door front open
    """
    if position not in ("open", "close"):
        raise typer.BadParameter("position must be 'open' or 'close'")
    _sim(config, sock, "sim.door", {"door": door, "position": position})


@sim_app.command("tamper")
def sim_tamper(
    door: str = typer.Argument(..., help="Door id."),
    clear: bool = typer.Option(False, "--clear", help="Close the housing again."),
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
) -> None:
    """Open (or, with --clear, close) the reader housing's tamper switch.

    \b
    Example:
      menjin sim tamper front
    """
    _sim(config, sock, "sim.tamper", {"door": door, "clear": clear})


@sim_app.command("camera")
def sim_camera(
    door: str = typer.Argument(..., help="Door id (its camera)."),
    unplug: bool = typer.Option(False, "--unplug/--plug", help="Pull the camera out, or back."),
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
) -> None:
    """Unplug (or plug back) a door's simulated camera, as a USB camera pulled out.

    \b
    Example:
      menjin sim camera front --unplug
    """
    _sim(config, sock, "sim.camera", {"door": door, "present": not unplug})


#: `sim face --frames`: the photo stays at most this long waiting for the frames.
SIM_FACE_FRAMES_MAX_SECONDS = 60.0


@sim_app.command("face")
def sim_face(
    door: Annotated[str, typer.Argument(help="Door id (its camera).")],
    photo: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JPEG/PNG photo.")
    ],
    seconds: float = typer.Option(2.0, "--seconds", min=0.1, max=30, help="How long it is shown."),
    frames: int = typer.Option(
        0, "--frames", min=0, max=1000,
        help="Then keep it until the face pipeline processed this many frames of it (at most "
             "60 s): a loaded board may process none in a few seconds."),
    config: Path | None = ConfigOpt,
    sock: Path | None = SocketOpt,
) -> None:
    """Show a photo to a door's simulated camera, as if the person stood in front of it.

    \b
    Example:
      menjin sim face front obama1.jpg --frames 12
    """
    data = base64.b64encode(photo.read_bytes()).decode("ascii")
    _sim(config, sock, "sim.face",
         {"door": door, "photo": data, "name": photo.name, "seconds": seconds, "frames": frames,
          "max_seconds": max(seconds, SIM_FACE_FRAMES_MAX_SECONDS) if frames else seconds})


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root `menjin` app."""
    app.command("run")(run)
    app.command("vision")(vision)
    app.command("status")(status)
    app.command("events")(events)
    app.add_typer(door_app, name="door")
    app.add_typer(readers_app, name="readers")
    app.add_typer(sim_app, name="sim")
    from daemon.cli.demo import demo  # demo imports this module's formatting helpers

    app.command("demo")(demo)
