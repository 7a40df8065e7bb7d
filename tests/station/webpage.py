"""Shared pieces of the web page tests: a station config, accounts, a served page, a signed-in
HTTP client, and events as a gate would upload them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import cv2
import numpy as np
from aiohttp import web
from sqlalchemy import update
from yarl import URL

from station.accounts import Accounts
from station.config import StationConfig, load_station_config
from station.messages import EventRow
from station.store import Store
from station.web import create_app
from tests.broker import free_port

PASSWORD = "correct horse battery"
#: 2026-09-21 22:13:20 in Asia/Shanghai
BASE_MS = 1_790_000_000_000
USERS = {"viewer1": "viewer", "duty": "operator", "chief": "admin"}


def station_config(tmp_path: Path, *, page_size: int = 200, extra: str = "",
                   broker_port: int = 1, web_keys: str = "") -> StationConfig:
    """``extra``: more top-level YAML; ``web_keys``: more keys of ``web`` (", key: value")."""
    path = tmp_path / "station.yaml"
    path.write_text(  # absolute paths: relative ones resolve against the working directory
        f"version: 1\nmqtt: {{port: {broker_port}}}\nsigning_key: {tmp_path / 'station_key.pem'}\n"
        f"database: {{url: 'sqlite:///{tmp_path / 'station.db'}'}}\n"
        f"web: {{port: {free_port()}, page_size: {page_size}, timezone: Asia/Shanghai{web_keys}}}\n"
        f"{extra}")
    return load_station_config(path)


def add_users(store: Store) -> None:
    accounts = Accounts(store)
    for name, role in USERS.items():
        accounts.add(name, role, PASSWORD)


def event(gate: str, seq: int, type_: str = "access.granted", *, person: str | None = None,
          ts_ms: int | None = None, door: str = "front", ref: str | None = None,
          kind: str | None = None, reason: str | None = None) -> EventRow:
    return EventRow(id=str(uuid.uuid4()), gate=gate, seq=seq,
                    ts_ms=BASE_MS + seq * 1000 if ts_ms is None else ts_ms, type=type_,
                    door=door, reader=None, credential_kind=kind or ("face" if person else None),
                    credential_ref=ref, person=person, reason=reason, data={})


def portrait_jpeg(shade: int) -> bytes:
    """A real 96x96 JPEG (a gradient), as a gate's camera would upload."""
    image = np.zeros((96, 96, 3), np.uint8)
    image[:, :, 1] = np.linspace(0, 255, 96, dtype=np.uint8)
    image[:, :, 2] = shade
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


@asynccontextmanager
async def serving(store: Store, config: StationConfig) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(store, config, live_poll_seconds=0.2))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.web.port).start()
    try:
        yield f"http://127.0.0.1:{config.web.port}"
    finally:
        await runner.cleanup()


def client(source: str | None = None) -> aiohttp.ClientSession:
    """A browser-like HTTP client; ``source``: the loopback address it connects from (127.0.0.2,
    ...), so the page sees distinct clients."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
    # unsafe=True: keep cookies of an IP-address host such as 127.0.0.1
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector)


def settle(store: Store) -> None:
    """Make every stored event look received a minute ago: gaps count only settled events."""
    events = store.t["events"]
    with store.engine.begin() as conn:
        conn.execute(update(events).values(received_ms=events.c.received_ms - 60_000))


def csrf_of(http: aiohttp.ClientSession, url: str) -> str:
    return http.cookie_jar.filter_cookies(URL(url))["menjin_csrf"].value


async def sign_in(http: aiohttp.ClientSession, url: str, user: str) -> None:
    async with http.get(f"{url}/login") as response:
        assert response.status == 200
    async with http.post(f"{url}/login", data={
            "user": user, "password": PASSWORD, "csrf": csrf_of(http, url), "next": "/passages"},
            allow_redirects=False) as response:
        assert response.status == 303, await response.text()
