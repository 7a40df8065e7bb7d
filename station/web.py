"""The station's web page for the duty officer: passages, live alarms, gates, people, commands.

Chinese first (``station.i18n``), rendered on the server from Jinja2 templates with autoescape on,
so no value reaches the page unescaped, and every value shown has its invisible characters (a
bidi override from a gate) made visible by :mod:`station.display`; the few lines of JavaScript in
``static/live.js`` only insert rows the server rendered and play the alarm tone.  Nothing is
fetched from another host.

Every page needs a signed-in operator account (``menjin station user add``); ``web.login: false``
is accepted only on a loopback bind and then gives read-only access.  Sessions live in the
database (the cookie holds a random token, HttpOnly, SameSite=Strict, Secure off loopback); every
form carries a CSRF token that must match its cookie.  The database is read in worker threads.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select

from station.accounts import Accounts, User
from station.alarms import Alarms
from station.commands import CommandError, send_command, signing_key
from station.config import FACE_FILING_THRESHOLD_PERSONS, StationConfig, WebConfig
from station.display import shown, spreadsheet_cell
from station.doorcontrol import MODES, check_target, command_args
from station.gaps import MAX_RANGE_EVENTS, GateGaps, gate_gaps, parse_seq, resend_args
from station.gatehealth import GateHealth, gate_health
from station.i18n import HTML_LANG, LANGUAGES, pick_language, translations
from station.live import DEFAULT_POLL_SECONDS, Item, LiveFeed
from station.messages import SAFE_NAME
from station.queries import (
    ADMIN_TYPE_PREFIXES,
    Filter,
    Page,
    Passages,
    QueryError,
    View,
    mask_card,
    read_card_key,
)
from station.results import describe
from station.store import Store, now_ms
from station.throttle import NAME_KEY_CHARS, SignInThrottle, client_key, parse_networks

log = logging.getLogger(__name__)

COOKIE_SESSION = "menjin_session"
COOKIE_CSRF = "menjin_csrf"
COOKIE_LANG = "menjin_lang"
ONE_YEAR_S = 365 * 24 * 3600
#: Paths served without signing in (the login page and what it needs).
PUBLIC_PATHS = ("/login", "/lang", "/static/")
FILTER_FIELDS = ("gate", "door", "person", "card", "type", "since", "until", "alarms")
SSE_KEEPALIVE_SECONDS = 15.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANONYMOUS = User("local", "viewer")


@dataclass(frozen=True)
class Visit:
    """Who asks, in which language, with which CSRF token (set by the session middleware)."""

    user: User | None
    token: str
    lang: str
    csrf: str


VISIT = web.RequestKey("visit", Visit)


class WebConfigError(Exception):
    """A web configuration that would expose personal data."""


def check_web_config(config: WebConfig) -> None:
    """Refuse a page without sign-in on anything but loopback (the config's own rule, kept here
    for a config built in code rather than read from a file)."""
    if config.exposure is not None:
        raise WebConfigError(config.exposure)


def _safe_next(target: str) -> str:
    """A local path to go back to after a form; anything else goes to the passages."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/passages"


def _csv_line(values: list[Any]) -> str:
    """One CSV line for a spreadsheet: no invisible characters, no text run as a formula."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(["" if v is None else spreadsheet_cell(v) for v in values])
    return buffer.getvalue()


class StationWeb:
    """The page's handlers and what they share; :meth:`app` builds the aiohttp application."""

    def __init__(self, store: Store, config: StationConfig, *,
                 live_poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        self.store = store
        self.config = config
        self.web = config.web
        self.zone = ZoneInfo(config.web.timezone)
        card_key = read_card_key(config.card_hash_key_file) if config.card_hash_key_file else None
        self.accounts = Accounts(store, session_hours=config.web.session_hours)
        self.passages = Passages(store, card_key=card_key)
        self.alarms = Alarms(store)
        self.live = LiveFeed(self.passages, self.alarms, poll_seconds=live_poll_seconds)
        self.envs = {lang: self._environment(lang) for lang in LANGUAGES}
        self.throttle = SignInThrottle()
        self.trusted_proxies = parse_networks(config.web.trusted_proxies)

    # -- rendering ------------------------------------------------------------------------------

    def _environment(self, lang: str) -> Environment:
        env = Environment(loader=PackageLoader("station", "templates"),
                          autoescape=select_autoescape(["html"]),
                          extensions=["jinja2.ext.i18n"], finalize=shown)
        env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
        env.filters["time"] = self.time
        env.filters["card"] = mask_card
        env.filters["mib"] = lambda b: "" if b is None else f"{b / 1048576:.0f} MiB"
        env.globals.update(languages=LANGUAGES, html_lang=HTML_LANG[lang], lang=lang,
                           zone=self.web.timezone, modes=MODES)
        return env

    def time(self, ts_ms: int | None) -> str:
        if ts_ms is None:
            return ""
        return datetime.fromtimestamp(ts_ms / 1000, self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def render(self, request: web.Request, name: str, status: int = 200, *,
               back: str | None = None, **values: Any) -> web.Response:
        """Render a template; ``back`` is where the page's forms return (default: this URL)."""
        env = self.envs[request[VISIT].lang]
        user: User | None = request[VISIT].user
        body = env.get_template(name).render(
            user=user, csrf=request[VISIT].csrf, path=back or request.path_qs, **values)
        response = web.Response(text=body, content_type="text/html", charset="utf-8",
                                status=status)
        self._cookies(request, response)
        return response

    def _cookies(self, request: web.Request, response: web.StreamResponse) -> None:
        """Hand out the CSRF cookie with the first response that needs it."""
        if request.cookies.get(COOKIE_CSRF) != request[VISIT].csrf:
            self._set_cookie(request, response, COOKIE_CSRF, request[VISIT].csrf)

    def _set_cookie(self, request: web.Request, response: web.StreamResponse, name: str,
                    value: str, max_age: int | None = None) -> None:
        secure = request.secure or not self.web.is_loopback
        response.set_cookie(name, value, httponly=True, samesite="Strict", secure=secure,
                            path="/", max_age=max_age)

    def _redirect(self, request: web.Request, target: str) -> web.Response:
        response = web.Response(status=303, headers={"Location": target})
        self._cookies(request, response)
        return response

    # -- middleware -----------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        return response

    @web.middleware
    async def _session(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.cookies.get(COOKIE_SESSION, "")
        user = await asyncio.to_thread(self.accounts.session_user, token) if token else None
        if user is None and not self.web.login:
            user = ANONYMOUS
        cookie_csrf = request.cookies.get(COOKIE_CSRF, "")
        request[VISIT] = Visit(user, token, pick_language(request.cookies.get(COOKIE_LANG)),
                               cookie_csrf or secrets.token_urlsafe(24))
        if request.method not in ("GET", "HEAD"):
            form = await request.post()
            supplied = str(form.get("csrf", ""))
            if not cookie_csrf or not hmac.compare_digest(supplied, cookie_csrf):
                raise web.HTTPForbidden(text="form expired or forged (CSRF check): reload the page")
        public = request.path.startswith(PUBLIC_PATHS)
        if user is None and not public:
            if request.path.startswith(("/api/", "/live")):
                raise web.HTTPUnauthorized(text="sign in first")
            return self._redirect(request, "/login?" + urlencode({"next": request.path_qs}))
        return await handler(request)

    # -- accounts -------------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.Response:
        return self.render(request, "login.html", next=_safe_next(request.query.get("next", "")))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        name, password = str(form.get("user", "")), str(form.get("password", ""))
        target = _safe_next(str(form.get("next", "")))
        client = client_key(request.remote, request.headers.get("X-Forwarded-For"),
                            self.trusted_proxies)
        if not self.throttle.attempt(client, name):
            return self.render(request, "login.html", status=429, next=target, locked=True)
        user = await asyncio.to_thread(self.accounts.verify, name, password)
        if user is None:
            log.warning("station web: failed sign-in for %r from %s", name[:NAME_KEY_CHARS],
                        client)
            return self.render(request, "login.html", status=401, next=target, failed=True)
        self.throttle.succeeded(client, name)
        token = await asyncio.to_thread(self.accounts.start_session, user)
        await self._record(user, "login", None, None)
        response = self._redirect(request, target)
        self._set_cookie(request, response, COOKIE_SESSION, token,
                         max_age=int(self.web.session_hours * 3600))
        return response

    async def logout(self, request: web.Request) -> web.Response:
        if request[VISIT].token:
            await asyncio.to_thread(self.accounts.end_session, request[VISIT].token)
        response = self._redirect(request, "/login")
        response.del_cookie(COOKIE_SESSION, path="/")
        return response

    async def language(self, request: web.Request) -> web.Response:
        form = await request.post()
        lang = str(form.get("lang", ""))
        response = self._redirect(request, _safe_next(str(form.get("next", ""))))
        if lang in LANGUAGES:
            self._set_cookie(request, response, COOKIE_LANG, lang, max_age=ONE_YEAR_S)
        return response

    async def _record(self, user: User, action: str, target: str | None,
                      detail: str | None) -> None:
        """Keep what an operator did (signing in, portrait views, commands, acknowledgements)."""
        table = self.store.t["operator_actions"]

        def write() -> None:
            with self.store.engine.begin() as conn:
                conn.execute(table.insert().values(ts_ms=now_ms(), operator=user.name,
                                                   action=action, target=target, detail=detail))

        await asyncio.to_thread(write)

    # -- passages -------------------------------------------------------------------------------

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

    def _filter(self, request: web.Request, view: View) -> Filter:
        q = request.query
        return Filter(
            view=view, gate=q.get("gate", "").strip(), door=q.get("door", "").strip(),
            person=q.get("person", "").strip(), card=q.get("card", "").strip(),
            type=q.get("type", "").strip(),
            since_ms=self._parse_time(q.get("since", ""), "since"),
            until_ms=self._parse_time(q.get("until", ""), "until"),
            alarms_only=q.get("alarms") == "1",
        )

    async def _page(self, request: web.Request, view: View) -> Page:
        f = self._filter(request, view)
        try:
            return await asyncio.to_thread(
                self.passages.page, f, limit=self.web.page_size,
                before=request.query.get("before", ""), after=request.query.get("after", ""))
        except QueryError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    def _links(self, request: web.Request, newer: str | None, older: str | None
               ) -> dict[str, Any]:
        base = {k: v for k in FILTER_FIELDS if (v := request.query.get(k, ""))}

        def link(key: str, cursor: str | None) -> str | None:
            return None if cursor is None else "?" + urlencode({**base, key: cursor})

        return {"newer": link("after", newer), "older": link("before", older),
                "csv": "?" + urlencode(base) if base else "", "filters": base}

    async def passages_view(self, request: web.Request) -> web.Response:
        page = await self._page(request, "passages")
        live = not request.query.get("before") and not request.query.get("after") and not any(
            request.query.get(k) for k in FILTER_FIELDS)
        face_persons = await asyncio.to_thread(self.store.face_person_count)
        return self.render(
            request, "passages.html", page=page, links=self._links(request, page.newer, page.older),
            live=live, view="passages", face_persons=face_persons,
            face_notice=face_persons >= self.config.face_persons_warn_at,
            filing_at=FACE_FILING_THRESHOLD_PERSONS, open_alarms=await self._open_alarms())

    async def admin_view(self, request: web.Request) -> web.Response:
        self._need(request, "admin")
        page = await self._page(request, "admin")
        commands, actions = await asyncio.to_thread(self._admin_tables)
        return self.render(
            request, "admin.html", page=page, links=self._links(request, page.newer, page.older),
            view="admin", commands=commands, actions=actions, open_alarms=await self._open_alarms())

    def _admin_tables(self) -> tuple[list[Any], list[Any]]:
        c, a = self.store.t["commands"], self.store.t["operator_actions"]
        with self.store.engine.connect() as conn:
            commands = conn.execute(select(c).order_by(c.c.issued_ms.desc()).limit(100)).all()
            actions = conn.execute(select(a).order_by(a.c.id.desc()).limit(200)).all()
        return list(commands), list(actions)

    async def csv_export(self, request: web.Request) -> web.StreamResponse:
        view: View = "admin" if request.query.get("view") == "admin" else "passages"
        if view == "admin":
            self._need(request, "admin")
        f = self._filter(request, view)
        await self._record(self._need(request), "export.csv", view, request.query_string[:256])
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="menjin-{view}.csv"'})
        await response.prepare(request)
        chunks = self.passages.export(f)
        header = ["time", "gate", "seq", "door", "type", "person", "name", "credential", "reason"]
        # the BOM makes spreadsheet programs read the Chinese names as UTF-8
        await response.write(("\ufeff" + _csv_line(header)).encode())
        while (rows := await asyncio.to_thread(next, chunks, None)) is not None:
            await response.write("".join(_csv_line([
                self.time(r["ts_ms"]), r["gate"], r["seq"], r["door"], r["type"], r["person"],
                r["name"], " ".join(x for x in (r["credential_kind"],
                                                mask_card(r["credential_ref"])) if x),
                r["reason"]]) for r in rows).encode())
        await response.write_eof()
        return response

    async def events_json(self, request: web.Request) -> web.Response:
        page = await self._page(request, "passages")
        return web.json_response({"rows": page.rows, "total": page.total, "newer": page.newer,
                                  "older": page.older})

    # -- alarms and live feed -------------------------------------------------------------------

    async def _open_alarms(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.alarms.recent, unacknowledged=True, limit=50)

    async def alarms_view(self, request: web.Request) -> web.Response:
        alarms = await asyncio.to_thread(self.alarms.recent)
        return self.render(request, "alarms.html", alarms=alarms, view="alarms",
                           open_alarms=await self._open_alarms())

    async def acknowledge(self, request: web.Request) -> web.Response:
        user = self._need(request, "operator")
        form = await request.post()
        alarm_id = str(form.get("alarm", ""))
        if await asyncio.to_thread(self.alarms.acknowledge, alarm_id, user.name):
            await self._record(user, "alarm.ack", alarm_id, None)
        return self._redirect(request, _safe_next(str(form.get("next", ""))))

    async def live_stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``passage`` and ``alarm``, each a row the page inserts.

        A browser closing the page or going away is the normal end of a stream, not an error:
        the write that finds the connection gone ends it quietly (no traceback)."""
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await response.write(b": live\n\n")
            await self._live_items(request, response)
        except ConnectionError as exc:  # aiohttp's ClientConnectionResetError is one
            log.debug("live stream: the client went away (%s)", type(exc).__name__)
        return response

    async def _live_items(self, request: web.Request, response: web.StreamResponse) -> None:
        env = self.envs[request[VISIT].lang]
        fragments = env.get_template("fragments.html").module
        user, csrf = request[VISIT].user, request[VISIT].csrf
        with self.live.client() as queue:
            while True:
                try:
                    item: Item = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item.kind == "end":
                    return
                if item.kind == "passage":
                    if item.row["type"].startswith(ADMIN_TYPE_PREFIXES):
                        continue
                    html = str(fragments.event_row(item.row))  # type: ignore[attr-defined]
                else:
                    html = str(fragments.alarm_item(  # type: ignore[attr-defined]
                        item.row, user, csrf, "/alarms"))
                data = json.dumps({"id": item.row["id"], "html": html}, ensure_ascii=False)
                await response.write(f"event: {item.kind}\ndata: {data}\n\n".encode())

    # -- gates, commands, people, portraits -----------------------------------------------------

    async def gates_view(self, request: web.Request, message: str = "", failed: bool = False
                         ) -> web.Response:
        gates, gaps = await asyncio.to_thread(self._gates)
        return self.render(request, "gates.html", back="/gates", gates=gates, gaps=gaps,
                           max_range=MAX_RANGE_EVENTS,
                           view="gates", message=message, failed=failed,
                           open_alarms=await self._open_alarms())

    def _gates(self) -> tuple[list[GateHealth], dict[str, GateGaps]]:
        """Every gate with its doors (reported, seen in events, and modes this station set), and
        what the station misses of each."""
        c = self.store.t["commands"]
        modes: dict[str, dict[str, str]] = {}
        with self.store.engine.connect() as conn:
            results = conn.execute(select(c.c.gate, c.c.result).where(
                c.c.name == "mode", c.c.ok.is_(True)).order_by(c.c.result_ms)).all()
        for gate, result in results:
            if isinstance(result, dict) and isinstance(result.get("mode"), str):
                modes.setdefault(gate, {})[str(result.get("door"))] = result["mode"]
        views = self.store.gates()
        return ([gate_health(v, known_doors=self.passages.known_doors(v.gate),
                             station_modes=modes.get(v.gate)) for v in views],
                {v.gate: gate_gaps(self.store, v.gate) for v in views})

    async def command(self, request: web.Request) -> web.Response:
        """Open a door or change its mode, signed like ``menjin station open/mode``."""
        user = self._need(request, "operator")
        form = await request.post()
        gate, door = str(form.get("gate", "")), str(form.get("door", ""))
        _ = translations(request[VISIT].lang).gettext
        try:
            name, args = command_args(str(form.get("action", "")), door,
                                      mode=str(form.get("mode", "")))
            await asyncio.to_thread(check_target, self.store, gate, door)
            key = await asyncio.to_thread(signing_key, self.config.signing_key)
            await self._record(user, f"command.{name}", f"{gate}/{door}",
                               json.dumps(args, ensure_ascii=False))
            result = await send_command(self.config, gate, name, args, key=key, store=self.store)
        except CommandError as exc:
            why = exc.say(_)
            return await self.gates_view(request, _("Not sent: %(why)s") % {"why": why}, True)
        return await self.gates_view(request, describe(result, _), result.get("ok") is not True)

    async def resend(self, request: web.Request) -> web.Response:
        """Ask a gate for a range of its events again, signed like ``menjin station resend``."""
        user = self._need(request, "operator")
        form = await request.post()
        gate = str(form.get("gate", ""))
        _ = translations(request[VISIT].lang).gettext
        try:
            low = parse_seq(str(form.get("from", "")), "from")
            high = parse_seq(str(form.get("to", "")), "to")
            args = await asyncio.to_thread(resend_args, self.store, gate, low, high)
            key = await asyncio.to_thread(signing_key, self.config.signing_key)
            await self._record(user, "command.resend", gate, json.dumps(args))
            result = await send_command(self.config, gate, "resend", args, key=key,
                                        store=self.store)
        except CommandError as exc:
            why = exc.say(_)
            return await self.gates_view(request, _("Not sent: %(why)s") % {"why": why}, True)
        return await self.gates_view(request, describe(result, _), result.get("ok") is not True)

    async def people_view(self, request: web.Request) -> web.Response:
        people = await asyncio.to_thread(self._people)
        return self.render(request, "people.html", people=people, view="people",
                           open_alarms=await self._open_alarms())

    def _people(self) -> list[dict[str, Any]]:
        n, faces = self.store.t["person_names"], self.store.t["face_persons"]
        enrolled = faces.c.person.is_not(None).label("face")
        query = (select(n.c.gate, n.c.person, n.c.name, enrolled)
                 .select_from(n.outerjoin(faces, (faces.c.gate == n.c.gate)
                                          & (faces.c.person == n.c.person)))
                 .order_by(n.c.name, n.c.gate))
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    async def portrait_page(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        row = await asyncio.to_thread(self.passages.one, event_id) if SAFE_NAME.match(
            event_id) else None
        if row is None or not row["portrait"]:
            raise web.HTTPNotFound(text="no portrait for this event")
        return self.render(request, "portrait.html", event=row, view="passages",
                           open_alarms=await self._open_alarms())

    async def portrait_image(self, request: web.Request) -> web.FileResponse:
        """The portrait itself; every fetch is recorded (operator, time, event)."""
        event_id = request.match_info["event_id"]
        path: Path | None = None
        if SAFE_NAME.match(event_id):
            path = await asyncio.to_thread(self.store.portrait_file, event_id)
        if path is None:
            raise web.HTTPNotFound(text="no portrait for this event")
        await self._record(self._need(request), "portrait.view", event_id, None)
        return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})

    @staticmethod
    def _need(request: web.Request, role: str = "viewer") -> User:
        """The signed-in user when their role includes ``role``, else 403."""
        user = request[VISIT].user
        if user is None or not user.may(role):
            raise web.HTTPForbidden(text=f"this needs the {role} role")
        return user

    # -- application ----------------------------------------------------------------------------

    async def _close_streams(self, _app: web.Application) -> None:
        """Open pages' event streams never end by themselves: end them so shutdown is quick."""
        self.live.end_streams()

    async def _live_task(self, _app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self.live.run(), name="station:live")
        yield
        task.cancel()

    async def _root(self, request: web.Request) -> web.Response:
        return self._redirect(request, "/passages")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._session])
        app.cleanup_ctx.append(self._live_task)
        app.on_shutdown.append(self._close_streams)
        r = app.router
        r.add_get("/", self._root)
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_post("/lang", self.language)
        r.add_get("/passages", self.passages_view)
        r.add_get("/passages.csv", self.csv_export)
        r.add_get("/admin", self.admin_view)
        r.add_get("/alarms", self.alarms_view)
        r.add_post("/alarms/ack", self.acknowledge)
        r.add_get("/live", self.live_stream)
        r.add_get("/gates", self.gates_view)
        r.add_post("/commands", self.command)
        r.add_post("/commands/resend", self.resend)
        r.add_get("/people", self.people_view)
        r.add_get("/portrait/{event_id}", self.portrait_page)
        r.add_get("/portraits/{event_id}.jpg", self.portrait_image)
        r.add_get("/api/events", self.events_json)
        r.add_static("/static", Path(__file__).parent / "static")
        return app


def create_app(store: Store, config: StationConfig, *,
               live_poll_seconds: float = DEFAULT_POLL_SECONDS) -> web.Application:
    """The aiohttp application of the page (raises :class:`WebConfigError` for an unsafe one)."""
    check_web_config(config.web)
    page = StationWeb(store, config, live_poll_seconds=live_poll_seconds)
    if config.web.login and not page.accounts.list():
        log.warning("station web: no operator account yet; create one with "
                    "`menjin station user add NAME --role admin`")
    return page.app()


async def serve(app: web.Application, config: WebConfig) -> None:
    """Serve until cancelled."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.bind, config.port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
