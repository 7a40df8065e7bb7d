"""A small read-only page for the duty officer: recent passages, alarms, portraits, gate states.

Read-only on purpose (commands need the signing key and the CLI).  It shows personal data, so it
listens on loopback unless configured otherwise, and a non-loopback bind without a password is a
start-up error rather than a warning.  Pages are rendered on the server from a template with every
value escaped; the database is read in worker threads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import html
import string
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from station.config import FACE_FILING_THRESHOLD_PERSONS, WebConfig
from station.messages import SAFE_NAME
from station.store import GateView, Store

FILTERS = ("gate", "door", "person", "since", "until")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebConfigError(Exception):
    """The page would expose personal data without a password."""


def web_password(config: WebConfig) -> str | None:
    """The basic-auth password, required (and checked here) when not bound to loopback."""
    if config.password_file is not None:
        try:
            password = config.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise WebConfigError(f"web.password_file: cannot read: {exc}") from None
        if not password:
            raise WebConfigError(f"web.password_file: {config.password_file} is empty")
        return password
    if not config.is_loopback:
        raise WebConfigError(
            f"web.bind is {config.bind}, not loopback: set web.password_file (HTTP basic auth) "
            "or bind to 127.0.0.1")
    return None


def _template(name: str) -> string.Template:
    text = resources.files("station").joinpath("templates", name).read_text("utf-8")
    return string.Template(text)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


class Page:
    """Renders the page for one request from the store."""

    def __init__(self, store: Store, config: WebConfig, face_persons_warn_at: int) -> None:
        self.store = store
        self.config = config
        self.zone = ZoneInfo(config.timezone)
        self.face_persons_warn_at = face_persons_warn_at
        self.template = _template("index.html")

    def _time(self, ts_ms: int | None) -> str:
        if ts_ms is None:
            return ""
        return datetime.fromtimestamp(ts_ms / 1000, self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def _parse_time(self, text: str, field: str) -> int | None:
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise web.HTTPBadRequest(text=f"{field}: not a date and time ({text!r})") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return int(moment.timestamp() * 1000)

    def query(self, params: dict[str, str]) -> dict[str, Any]:
        return {
            "gate": params.get("gate") or None,
            "door": params.get("door") or None,
            "person": params.get("person") or None,
            "since_ms": self._parse_time(params.get("since", ""), "since"),
            "until_ms": self._parse_time(params.get("until", ""), "until"),
            "alarms_only": params.get("alarms") == "1",
            "limit": self.config.page_size,
        }

    def render(self, params: dict[str, str]) -> str:
        """Blocking: reads the store; call from a worker thread."""
        events = self.store.recent_events(**self.query(params))
        gates = self.store.gates()
        face_persons = self.store.face_person_count()
        notice = ""
        if face_persons >= self.face_persons_warn_at:
            notice = (
                f'<p class="notice" id="face-notice">{face_persons} persons are enrolled for face '
                f"entry across all gates; filing is required at "
                f"{FACE_FILING_THRESHOLD_PERSONS}.</p>")
        return self.template.substitute(
            notice=notice,
            face_persons=face_persons,
            zone=_e(self.config.timezone),
            gate_rows="\n".join(self._gate_row(g) for g in gates) or
            '<tr><td colspan="8">no gate has reported yet</td></tr>',
            event_rows="\n".join(self._event_row(e) for e in events) or
            '<tr><td colspan="8">no passages match</td></tr>',
            count=len(events),
            **{f"f_{k}": _e(params.get(k, "")) for k in FILTERS},
            alarms_checked="checked" if params.get("alarms") == "1" else "",
        )

    def _gate_row(self, gate: GateView) -> str:
        status, health = gate.status, gate.health
        gaps = self.store.gaps(gate.gate, remember=False)
        gap_text = ", ".join(f"{lo}-{hi}" for lo, hi in gaps) or "none"
        age = health.get("oldest_undelivered_age_s")
        backlog = "" if gate.backlog is None else str(gate.backlog)
        if isinstance(age, int | float) and gate.backlog:
            backlog += f" (oldest {age:.0f} s)"
        policy = status.get("portraits", "")
        if status.get("legal_basis"):
            policy = f"{policy}: {status['legal_basis']}"
        link = urlencode({"gate": gate.gate})
        return (
            f'<tr class="gate {_e(gate.state)}" data-gate="{_e(gate.gate)}">'
            f'<td><a href="?{_e(link)}">{_e(gate.gate)}</a></td>'
            f'<td class="state">{_e(gate.state)}</td>'
            f"<td>{_e(status.get('version'))}</td>"
            f"<td>{_e(self._time(gate.status_ms))}</td>"
            f'<td class="backlog">{_e(backlog)}</td>'
            f"<td>{_e(self._time(gate.health_ms))}</td>"
            f'<td class="gaps">{_e(gap_text)}</td>'
            f"<td>{_e(policy)}</td></tr>"
        )

    def _event_row(self, event: dict[str, Any]) -> str:
        classes = "event alarm" if event["alarm"] else "event"
        thumb = ""
        if event["portrait"]:
            thumb = (f'<img class="thumb" src="portraits/{_e(event["id"])}" alt="portrait" '
                     'width="64" height="64">')
        credential = " ".join(str(v) for v in (event["credential_kind"], event["credential_ref"])
                              if v)
        return (
            f'<tr class="{classes}" data-id="{_e(event["id"])}">'
            f"<td>{_e(self._time(event['ts_ms']))}</td>"
            f"<td>{_e(event['gate'])} #{_e(event['seq'])}</td>"
            f"<td>{_e(event['door'])}</td>"
            f'<td class="type">{_e(event["type"])}</td>'
            f"<td>{_e(event['person'])}</td>"
            f"<td>{_e(credential)}</td>"
            f"<td>{_e(event['reason'])}</td>"
            f"<td>{thumb}</td></tr>"
        )


def _auth_middleware(username: str, password: str) -> Any:
    expected = f"{username}:{password}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        supplied = b""
        if header.startswith("Basic "):
            try:
                supplied = base64.b64decode(header[6:], validate=True)
            except (binascii.Error, ValueError):
                supplied = b""
        if not hmac.compare_digest(supplied, expected):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="menjin station"'})
        return await handler(request)

    return check


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def create_app(
    store: Store, config: WebConfig, *, password: str | None, face_persons_warn_at: int
) -> web.Application:
    """The aiohttp application; ``password`` turns on HTTP basic auth for every path."""
    middlewares = [_headers]
    if password is not None:
        middlewares.append(_auth_middleware(config.username, password))
    app = web.Application(middlewares=middlewares)
    page = Page(store, config, face_persons_warn_at)
    static_dir = Path(str(resources.files("station").joinpath("static")))

    async def index(request: web.Request) -> web.Response:
        params = {k: request.query.get(k, "") for k in (*FILTERS, "alarms")}
        body = await asyncio.to_thread(page.render, params)
        return web.Response(text=body, content_type="text/html", charset="utf-8")

    async def events_json(request: web.Request) -> web.Response:
        params = {k: request.query.get(k, "") for k in (*FILTERS, "alarms")}
        rows = await asyncio.to_thread(store.recent_events, **page.query(params))
        return web.json_response(rows)

    async def portrait(request: web.Request) -> web.FileResponse:
        event_id = request.match_info["event_id"]
        path = await asyncio.to_thread(store.portrait_file, event_id) if SAFE_NAME.match(
            event_id) else None
        if path is None:
            raise web.HTTPNotFound(text="no portrait for this event")
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})

    app.router.add_get("/", index)
    app.router.add_get("/api/events", events_json)
    app.router.add_get("/portraits/{event_id}", portrait)
    app.router.add_static("/static", static_dir)
    return app


async def serve(app: web.Application, config: WebConfig) -> None:
    """Serve until cancelled."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.bind, config.port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
