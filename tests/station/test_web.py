"""The station's read-only page: filters, escaping, password, thumbnails in headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import aiomqtt
import cv2
import numpy as np
import pytest
from aiohttp import web

from station.config import WebConfig
from station.messages import EventRow
from station.store import Store
from station.web import create_app
from tests.broker import Broker, free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def portrait_jpeg(shade: int) -> bytes:
    """A real 96x96 JPEG (a gradient), as a gate's camera would upload."""
    image = np.zeros((96, 96, 3), np.uint8)
    image[:, :, 1] = np.linspace(0, 255, 96, dtype=np.uint8)
    image[:, :, 2] = shade
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def event(gate: str, seq: int, type_: str, person: str | None, ts_ms: int) -> EventRow:
    return EventRow(id=str(uuid.uuid4()), gate=gate, seq=seq, ts_ms=ts_ms, type=type_,
                    door="front" if gate == "g1" else "side", reader=None,
                    credential_kind="face" if person else None, credential_ref=None,
                    person=person, reason=None, data={})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")
    base = 1_790_000_000_000
    rows = [
        event("g1", 1, "access.granted", "p-0101", base + 1000),
        event("g1", 2, "door.forced", None, base + 2000),
        event("g2", 1, "access.granted", "<script>alert(1)</script>", base + 3000),
        event("g2", 3, "access.granted", "p-0303", base + 4000),
    ]
    s.add_events(rows)
    for shade, r in enumerate((rows[0], rows[2], rows[3])):
        s.add_portrait(event_id=r.id, gate=r.gate, ts_ms=r.ts_ms, jpeg=portrait_jpeg(shade * 80))
    s.set_status("g1", {"gate": "g1", "state": "online", "version": "0.1.0",
                        "portraits": "upload", "legal_basis": "consent records 2026-10-01"})
    s.set_status("g2", {"gate": "g2", "state": "offline"})
    s.set_health("g1", {"gate": "g1", "queue_depth": 1234, "oldest_undelivered_age_s": 90})
    return s


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@asynccontextmanager
async def serving(store: Store, password: str | None = None) -> AsyncIterator[str]:
    config = WebConfig(port=free_port(), timezone="UTC")
    runner = web.AppRunner(create_app(store, config, password=password, face_persons_warn_at=1))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port).start()
    try:
        yield f"http://127.0.0.1:{config.port}/"
    finally:
        await runner.cleanup()


@pytest.mark.timeout(60)
async def test_page_lists_passages_filters_and_escapes(store: Store) -> None:
    async with serving(store) as url, aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            page = await response.text()
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        async with http.get(url, params={"gate": "g1"}) as response:
            only_g1 = await response.text()
        async with http.get(url + "api/events", params={"person": "p-0303"}) as response:
            by_person = await response.json()
        async with http.get(url + "api/events", params={
                "since": "2026-09-21T14:13:21", "until": "2026-09-21T14:13:21"}) as response:
            by_time = await response.json()
        async with http.get(url + "api/events", params={"since": "yesterday"}) as response:
            assert response.status == 400
        async with http.get(url, params={"alarms": "1"}) as response:
            alarms = await response.text()
    assert page.count('class="event') == 4
    assert page.count('class="event alarm"') == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert 'class="gate online"' in page and 'class="gate offline"' in page
    assert "1234 (oldest 90 s)" in page
    assert "upload: consent records 2026-10-01" in page
    assert '<td class="gaps">2-2</td>' in page  # g2 has seq 1 and 3
    assert 'id="face-notice"' not in page  # no one enrolled yet
    assert only_g1.count('class="event') == 2 and "p-0303" not in only_g1
    assert [e["seq"] for e in by_person] == [3]
    assert [(e["gate"], e["seq"]) for e in by_time] == [("g1", 1)]
    assert alarms.count('class="event') == 1 and "door.forced" in alarms


@pytest.mark.timeout(60)
async def test_portraits_are_served_and_unknown_ids_are_not(store: Store) -> None:
    with_portrait = store.recent_events(person="p-0101")[0]["id"]
    async with serving(store) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}portraits/{with_portrait}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "image/jpeg"
            assert (await response.read()).startswith(b"\xff\xd8")
        for bad in ("nope", "..x", "%2e%2e%2fstation.db"):
            async with http.get(f"{url}portraits/{bad}") as response:
                assert response.status == 404, bad


@pytest.mark.timeout(60)
async def test_password_protects_every_path(store: Store) -> None:
    async with serving(store, password="s3cret") as url, aiohttp.ClientSession() as http:
        for path in ("", "api/events", "static/style.css"):
            async with http.get(url + path) as response:
                assert response.status == 401, path
                assert response.headers["WWW-Authenticate"] == 'Basic realm="menjin station"'
        for password, status in (("wrong", 401), ("s3cret", 200)):
            header = {"Authorization": basic_auth("station", password)}
            async with http.get(url, headers=header) as response:
                assert response.status == status, password


def test_run_refuses_a_public_page_without_password(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text("version: 1\nweb: {bind: 0.0.0.0}\n")
    result = subprocess.run(
        [sys.executable, "-c", "from menjin.cli import main; main()", "station", "run",
         "-c", str(config)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 78
    assert "web.bind is 0.0.0.0, not loopback: set web.password_file" in result.stderr


def _browse(url: str, profile: Path, screenshot: Path) -> dict[str, object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        driver.get(url)
        thumbs = driver.find_elements(By.CSS_SELECTOR, "img.thumb")
        widths = [driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth", t) for t in thumbs]
        alarm = driver.find_element(By.CSS_SELECTOR, "tr.event.alarm")
        background = alarm.value_of_css_property("background-color")
        assert driver.save_screenshot(str(screenshot))
        return {"widths": widths, "alarm_background": background, "title": driver.title}
    finally:
        driver.quit()


@pytest.mark.timeout(120)
async def test_thumbnails_render_in_headless_chromium(store: Store, tmp_path: Path) -> None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium "
                    "chromium-driver)")
    screenshot = tmp_path / "station.png"
    async with serving(store) as url:
        seen = await asyncio.to_thread(_browse, url, tmp_path / "profile", screenshot)
    assert seen["title"] == "menjin station"
    assert seen["widths"] == [96, 96, 96]  # every portrait decoded at its real size
    assert seen["alarm_background"] == "rgba(253, 232, 232, 1)"
    image = cv2.imread(str(screenshot))
    assert image is not None and image.shape[1] == 1280
    assert image.std() > 10  # not a blank page


@pytest.mark.timeout(60)
async def test_face_filing_notice_appears_at_the_warning_count(store: Store) -> None:
    store.record_command({"id": "c1", "gate": "g1", "name": "enrol", "issued_at_ms": 1,
                          "args": {"person": "p-0101"}})
    store.record_result("g1", {"id": "c1", "name": "enrol", "ok": True})
    async with (serving(store) as url, aiohttp.ClientSession() as http,  # warns at 1 here
                http.get(url) as response):
        page = await response.text()
    assert '<p class="notice" id="face-notice">1 persons are enrolled for face entry' in page


@pytest.mark.timeout(90)
async def test_station_run_serves_the_page_and_stores_what_arrives(
    broker: Broker, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "station.yaml"
    config.write_text(f"version: 1\nmqtt: {{port: {broker.port}}}\nweb: {{port: {port}}}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from menjin.cli import main; main()", "station", "run",
        "-c", str(config), stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    event = {"v": 1, "id": str(uuid.uuid4()), "seq": 1, "gate": "g7", "ts_ms": 1_790_000_000_000,
             "type": "door.forced", "door": "front"}
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(60):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/") as response:
                            if response.status == 200:
                                break
                    await asyncio.sleep(0.2)
                async with aiomqtt.Client(broker.host, broker.port,
                                          protocol=aiomqtt.ProtocolVersion.V5) as gate:
                    await gate.publish("menjin/g7/events", json.dumps(event), qos=1)
                while True:
                    async with http.get(f"http://127.0.0.1:{port}/api/events") as response:
                        rows = await response.json()
                    if rows:
                        break
                    await asyncio.sleep(0.2)
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert [(r["id"], r["alarm"]) for r in rows] == [(event["id"], True)]
    assert (tmp_path / "station.db").exists()
    assert b"station: web page on http://127.0.0.1:" in err
