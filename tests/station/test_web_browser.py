"""The page in real headless Chromium: sign-in, language switch, 1,000 passages page by page, a
Chinese name search, a live forced door and its acknowledgement, a gate going offline, a recorded
portrait view, a gap asked for again from a real gate.  Each test saves a screenshot in its
temporary folder and checks that Chinese is drawn with real glyphs (not the boxes of a missing
font)."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import cv2
import pytest

from daemon.events import Event
from daemon.journal import Journal
from protocol.envelope import public_key_from_pem, signature_valid
from station.commands import keygen
from station.config import StationConfig
from station.receiver import Receiver
from station.store import Store
from tests.broker import Broker
from tests.station.gateside import gate_uplink
from tests.station.webpage import (
    BASE_MS,
    PASSWORD,
    add_users,
    event,
    portrait_jpeg,
    serving,
    station_config,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 20
#: Draws two different CJK characters: with a CJK font they differ, with boxes they are equal.
GLYPHS_DIFFER = """
const draw = (ch) => { const c = document.createElement('canvas'); c.width = 40; c.height = 40;
  const g = c.getContext('2d'); g.font = '32px ' + getComputedStyle(document.body).fontFamily;
  g.fillText(ch, 2, 34); return c.toDataURL(); };
return draw('王') !== draw('芳') && draw('王') !== draw(' ');
"""

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")
    add_users(s)
    yield s
    s.close()


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--lang=en-US",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                "--window-size=1280,900", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def sign_in(driver: Any, url: str, user: str, path: str = "/passages") -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + path)
    wait_for(driver, "form#login")
    driver.find_element(By.NAME, "user").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "sign-in").click()
    wait_for(driver, "#who")


def screenshot(driver: Any, path: Path) -> None:
    assert driver.save_screenshot(str(path))
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] == 1280 and image.std() > 10


def ids(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [row.get_attribute("id") for row in driver.find_elements(By.CSS_SELECTOR, "tr.event")]


@pytest.mark.timeout(120)
async def test_sign_in_and_switch_language(store: Store, tmp_path: Path) -> None:
    config = station_config(tmp_path)
    store.add_events([event("g1", 1, person="p-0101")])
    store.set_sync_state("g1", 1, {"persons": {"p-0101": {"name": "王芳"}}, "groups": {}})

    def browse(url: str) -> dict[str, Any]:
        from selenium.webdriver.common.by import By

        seen: dict[str, Any] = {}
        with chromium(tmp_path / "profile") as driver:
            driver.get(url + "/passages")
            wait_for(driver, "form#login")
            seen["login_lang"] = driver.find_element(By.TAG_NAME, "html").get_attribute("lang")
            seen["login_title"] = driver.title
            sign_in(driver, url, "duty")
            seen["nav_zh"] = driver.find_element(By.TAG_NAME, "nav").text
            seen["glyphs"] = driver.execute_script(GLYPHS_DIFFER)
            screenshot(driver, tmp_path / "passages-zh.png")
            driver.find_element(By.ID, "lang-en").click()
            wait_for(driver, "html[lang=en]")
            seen["nav_en"] = driver.find_element(By.TAG_NAME, "nav").text
            seen["type_en"] = driver.find_element(By.CSS_SELECTOR, "td.type").text
            screenshot(driver, tmp_path / "passages-en.png")
            driver.find_element(By.ID, "lang-zh_CN").click()
            wait_for(driver, "html[lang=zh-CN]")
            seen["type_zh"] = driver.find_element(By.CSS_SELECTOR, "td.type").text
        return seen

    async with serving(store, config) as url:
        seen = await asyncio.to_thread(browse, url)
    assert (seen["login_lang"], seen["login_title"]) == ("zh-CN", "门禁管理站")
    assert seen["nav_zh"].split() == ["通行记录", "报警", "闸机", "人员"]
    assert seen["nav_en"].split() == ["Passages", "Alarms", "Gates", "People"]
    assert (seen["type_en"], seen["type_zh"]) == ("access granted", "通行")
    assert seen["glyphs"] is True  # the CJK font is installed and used


@pytest.mark.timeout(300)
async def test_page_through_1000_passages(store: Store, tmp_path: Path) -> None:
    config = station_config(tmp_path, page_size=100)
    store.add_events([event(f"g{seq % 3}", seq, ts_ms=BASE_MS + seq * 500)
                      for seq in range(1, 1001)])

    def browse(url: str) -> dict[str, Any]:
        from selenium.webdriver.common.by import By

        pages: list[list[str]] = []
        with chromium(tmp_path / "profile") as driver:
            sign_in(driver, url, "viewer1")
            total = driver.find_element(By.ID, "total").text
            while True:
                pages.append(ids(driver))
                older = driver.find_elements(By.ID, "older")
                if not older:
                    break
                older[0].click()
                wait_for(driver, "#newer")
            screenshot(driver, tmp_path / "oldest-page.png")
            driver.find_element(By.ID, "newer").click()
            wait_for(driver, "#older")
            back = ids(driver)
        return {"pages": pages, "total": total, "back": back}

    async with serving(store, config) as url:
        seen = await asyncio.to_thread(browse, url)
    flat = [i for page in seen["pages"] for i in page]
    assert seen["total"] == "共 1000 条"
    assert [len(p) for p in seen["pages"]] == [100] * 10
    expected = [f"ev-{r['id']}" for r in sorted(
        store.recent_events(limit=2000), key=lambda r: (r["ts_ms"], r["id"]), reverse=True)]
    assert flat == expected  # every passage once, newest first
    assert seen["back"] == seen["pages"][8]


@pytest.mark.timeout(120)
async def test_search_by_a_chinese_name(store: Store, tmp_path: Path) -> None:
    config = station_config(tmp_path)
    names = {"p-0101": "王芳", "p-0102": "李伟", "p-0103": "张秀英"}
    store.add_events([event("north", seq, person=f"p-010{seq % 3 + 1}") for seq in range(1, 31)])
    store.set_sync_state("north", 1, {"persons": {p: {"name": n} for p, n in names.items()},
                                      "groups": {}})
    store.set_status("north", {"gate": "north", "state": "online", "site": "幸福里小区",
                               "name": "北门"})

    def browse(url: str) -> dict[str, Any]:
        from selenium.webdriver.common.by import By

        with chromium(tmp_path / "profile") as driver:
            sign_in(driver, url, "duty")
            field = driver.find_element(By.NAME, "person")
            field.send_keys("王芳")
            driver.find_element(By.ID, "search").click()
            wait_for(driver, "input[name=person][value='王芳']")
            found = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "tr.event .person")]
            total = driver.find_element(By.ID, "total").text
            glyphs = driver.execute_script(GLYPHS_DIFFER)
            screenshot(driver, tmp_path / "search-wangfang.png")
        return {"found": found, "total": total, "glyphs": glyphs}

    async with serving(store, config) as url:
        seen = await asyncio.to_thread(browse, url)
    assert seen["found"] == ["王芳 p-0101"] * 10 and seen["total"] == "共 10 条"
    assert seen["glyphs"] is True


@asynccontextmanager
async def live_station(store: Store, config: StationConfig, **receiver_options: Any
                       ) -> AsyncIterator[str]:
    """The page plus a real receiver on the test's mosquitto, as `menjin station run` has."""
    receiver = Receiver(config, store, **receiver_options)
    async with serving(store, config) as url, asyncio.TaskGroup() as tasks:
        task = tasks.create_task(receiver.run())
        await asyncio.wait_for(receiver.subscribed.wait(), WAIT_S)
        try:
            yield url
        finally:
            task.cancel()


async def publish(broker: Broker, topic: str, payload: dict[str, Any], *,
                  retain: bool = False) -> None:
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as gate:
        await gate.publish(topic, json.dumps(payload), qos=1, retain=retain)


def in_loop(loop: asyncio.AbstractEventLoop,
            make: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """A blocking call, for the browser's thread, that runs a coroutine on the test's loop."""
    return lambda: asyncio.run_coroutine_threadsafe(make(), loop).result(WAIT_S)


def sender(broker: Broker, topic: str, payload: dict[str, Any], *,
           retain: bool = False) -> Callable[[], None]:
    """A blocking call, for the browser's thread, that publishes as a gate would (made in the
    test, whose loop runs the publish)."""
    return in_loop(asyncio.get_running_loop(),
                   lambda: publish(broker, topic, payload, retain=retain))


def forced_event(door: str, **extra: Any) -> dict[str, Any]:
    """Gate north's `door.forced` at seq 2, five seconds after the stored passage at seq 1."""
    return {"v": 1, "id": str(uuid.uuid4()), "seq": 2, "gate": "north", "ts_ms": BASE_MS + 5000,
            "type": "door.forced", "door": door, **extra}


@pytest.mark.timeout(180)
async def test_a_forced_door_appears_live_and_is_acknowledged(
    store: Store, broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path, broker_port=broker.port)
    store.add_events([event("north", 1)])
    forced = forced_event("front")
    send = sender(broker, "menjin/north/events", forced)

    def browse(url: str) -> dict[str, Any]:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        seen: dict[str, Any] = {}
        with chromium(tmp_path / "profile") as driver:
            sign_in(driver, url, "duty")
            driver.execute_script("window.stillThisPage = true;")
            send()
            row = wait_for(driver, f"tr#ev-{forced['id']}")
            alarm = wait_for(driver, "#alarm-panel li[data-kind='door.forced']")
            seen["row"] = row.find_element(By.CSS_SELECTOR, "td.type").text
            seen["alarm"] = alarm.find_element(By.CSS_SELECTOR, ".kind").text
            seen["no_reload"] = driver.execute_script("return window.stillThisPage === true;")
            seen["total"] = driver.find_element(By.ID, "total").text
            seen["panel_shown"] = driver.find_element(By.ID, "alarm-panel").is_displayed()
            seen["tones"] = driver.execute_script("return document.body.dataset.tones || '0';")
            screenshot(driver, tmp_path / "live-forced.png")
            alarm.find_element(By.CSS_SELECTOR, "button.ack").click()
            WebDriverWait(driver, WAIT_S).until(
                lambda d: not d.execute_script("return window.stillThisPage === true;"))
            seen["left"] = len(driver.find_elements(
                By.CSS_SELECTOR, "#alarm-panel li[data-kind='door.forced']"))
            driver.get(url + "/alarms")
            seen["acked"] = wait_for(driver, "#alarms-all li.acknowledged .ack").text
            screenshot(driver, tmp_path / "acknowledged.png")
        return seen

    async with live_station(store, config) as url:
        seen = await asyncio.to_thread(browse, url)
    assert seen["row"] == "门被强行打开" and seen["alarm"] == "门被强行打开"
    assert seen["no_reload"] is True and seen["panel_shown"] is True
    assert seen["total"] == "共 2 条"  # counted up without a reload
    assert seen["tones"] == "1"  # the alarm tone was played once
    assert seen["left"] == 0
    assert seen["acked"].startswith("已由 duty 于 ")
    alarms = store.t["alarms"]
    with store.engine.connect() as conn:
        stored = conn.execute(alarms.select().where(alarms.c.event_id == forced["id"])).one()
    assert stored.ack_by == "duty" and stored.ack_ms is not None


@pytest.mark.timeout(180)
async def test_a_bidi_override_from_a_gate_is_shown_not_obeyed(
    store: Store, broker: Broker, tmp_path: Path
) -> None:
    """A gate names its door "门", U+202E, "1号": drawn as is it would read "门号1".  The live row,
    the alarm panel and the reloaded page show "门[U+202E]1号" instead."""
    config = station_config(tmp_path, broker_port=broker.port)
    store.add_events([event("north", 1)])
    forced = forced_event("门\u202e1号", reason="\u2067warning\u2069")
    send = sender(broker, "menjin/north/events", forced)

    def browse(url: str) -> dict[str, Any]:
        from selenium.webdriver.common.by import By

        seen: dict[str, Any] = {}
        with chromium(tmp_path / "profile") as driver:
            sign_in(driver, url, "duty")
            send()
            row = wait_for(driver, f"tr#ev-{forced['id']}")
            alarm = wait_for(driver, "#alarm-panel li[data-kind='door.forced']")
            seen["live_door"] = row.find_elements(By.TAG_NAME, "td")[2].text
            seen["alarm_where"] = alarm.find_element(By.CSS_SELECTOR, ".where").text
            seen["alarm_detail"] = alarm.find_element(By.CSS_SELECTOR, ".detail").text
            screenshot(driver, tmp_path / "bidi-live.png")
            driver.get(url + "/passages")
            row = wait_for(driver, f"tr#ev-{forced['id']}")
            seen["door"] = row.find_elements(By.TAG_NAME, "td")[2].text
            seen["reason"] = row.find_element(By.CSS_SELECTOR, "td.reason").text
        return seen

    async with live_station(store, config) as url:
        seen = await asyncio.to_thread(browse, url)
    assert seen == {"live_door": "门[U+202E]1号", "alarm_where": "north / 门[U+202E]1号",
                    "alarm_detail": "[U+2067]warning[U+2069]", "door": "门[U+202E]1号",
                    "reason": "[U+2067]warning[U+2069]"}
    events = store.t["events"]
    with store.engine.connect() as conn:  # stored as sent: only the display changes
        assert conn.execute(events.select().where(events.c.id == forced["id"])).one().door == (
            "门\u202e1号")


@pytest.mark.timeout(180)
async def test_a_gate_going_offline_raises_an_alarm(
    store: Store, broker: Broker, tmp_path: Path
) -> None:
    config = station_config(tmp_path, broker_port=broker.port)
    online = {"v": 1, "gate": "north", "state": "online", "version": "0.3.0",
              "site": "幸福里小区", "name": "北门"}
    await publish(broker, "menjin/north/status", online, retain=True)
    offline = {**online, "state": "offline"}
    send = sender(broker, "menjin/north/status", offline, retain=True)

    def browse(url: str) -> dict[str, Any]:
        from selenium.webdriver.common.by import By

        seen: dict[str, Any] = {}
        with chromium(tmp_path / "profile") as driver:
            sign_in(driver, url, "duty", "/gates")
            wait_for(driver, "article.gate.online")
            seen["title"] = driver.find_element(By.CSS_SELECTOR, "article.gate h3").text
            driver.execute_script("window.stillThisPage = true;")
            send()  # what the broker publishes as the gate's Last Will
            alarm = wait_for(driver, "#alarm-panel li[data-kind='gate.offline']")
            seen["alarm"] = alarm.text
            seen["no_reload"] = driver.execute_script("return window.stillThisPage === true;")
            screenshot(driver, tmp_path / "gate-offline.png")
            driver.refresh()
            seen["state"] = wait_for(driver, "article.gate.offline .state").text
        return seen

    async with live_station(store, config) as url:
        seen = await asyncio.to_thread(browse, url)
    assert seen["title"].startswith("幸福里小区 北门 north")
    assert "闸机离线" in seen["alarm"] and "north" in seen["alarm"]
    assert seen["no_reload"] is True and seen["state"] == "离线"


@pytest.mark.timeout(120)
async def test_a_portrait_view_is_recorded(store: Store, tmp_path: Path) -> None:
    config = station_config(tmp_path)
    face = event("north", 1, person="p-0101")
    store.add_events([face, event("north", 2)])
    store.add_portrait(event_id=face.id, gate="north", ts_ms=face.ts_ms, jpeg=portrait_jpeg(90))
    store.set_sync_state("north", 1, {"persons": {"p-0101": {"name": "王芳"}}, "groups": {}})

    def browse(url: str) -> dict[str, Any]:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        seen: dict[str, Any] = {}
        with chromium(tmp_path / "profile") as driver:
            sign_in(driver, url, "duty")
            seen["links"] = len(driver.find_elements(By.CSS_SELECTOR, "a.portrait"))
            seen["images_on_list"] = len(driver.find_elements(By.TAG_NAME, "img"))
            driver.find_element(By.CSS_SELECTOR, "a.portrait").click()
            image = wait_for(driver, "img#portrait")
            WebDriverWait(driver, WAIT_S).until(
                lambda d: d.execute_script("return arguments[0].complete", image))
            seen["width"] = driver.execute_script("return arguments[0].naturalWidth", image)
            seen["caption"] = driver.find_element(By.TAG_NAME, "figcaption").text
            screenshot(driver, tmp_path / "portrait.png")
        return seen

    async with serving(store, config) as url:
        seen = await asyncio.to_thread(browse, url)
    assert seen["links"] == 1 and seen["images_on_list"] == 0  # no faces until asked for
    assert seen["width"] == 96 and "王芳" in seen["caption"]
    actions = store.t["operator_actions"]
    with store.engine.connect() as conn:
        views = [(r.operator, r.target) for r in conn.execute(
            actions.select().where(actions.c.action == "portrait.view"))]
    assert views == [("duty", face.id)]


async def collect(broker: Broker, topic: str, into: list[dict[str, Any]],
                  listening: asyncio.Event) -> None:
    """Every message on ``topic``, as the gate receives it."""
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as mqtt:
        await mqtt.subscribe(topic, qos=1)
        listening.set()
        async for message in mqtt.messages:
            into.append(json.loads(message.payload))  # type: ignore[arg-type]


@pytest.mark.timeout(240)
async def test_an_operator_asks_a_gate_for_a_gap_again(
    store: Store, broker: Broker, tmp_path: Path
) -> None:
    """The gap is listed with its button; the click sends a ``resend`` signed like the CLI's to a
    real gate (journal, uplink, the daemon's command processor), whose answer is shown in words;
    the events it publishes again close the gap."""
    public = keygen(tmp_path / "station_key.pem")
    config = station_config(tmp_path, broker_port=broker.port)
    journal = Journal(tmp_path / "gate" / "journal.db", gate="north")
    for n in range(10):
        journal.record(Event("door.opened", door="front", data={"n": n}))
    journal.flush()
    # seq 4-6 were lost on the way: the gate holds them as delivered, the station never got them
    journal.mark_delivered([p.id for p in journal.pending(100) if 4 <= p.seq <= 6])
    envelopes: list[dict[str, Any]] = []

    def browse(url: str) -> dict[str, Any]:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        def reloaded_until(css: str) -> Callable[[Any], list[Any]]:
            return lambda d: d.refresh() or d.find_elements(By.CSS_SELECTOR, css)

        seen: dict[str, Any] = {}
        with chromium(tmp_path / "profile") as driver:
            sign_in(driver, url, "duty", "/gates")
            # a gap counts once the events after it have settled (2 s)
            gap = WebDriverWait(driver, WAIT_S).until(reloaded_until("tr.gap"))[0]
            seen["gap"] = gap.text
            screenshot(driver, tmp_path / "gap.png")
            gap.find_element(By.CSS_SELECTOR, "button.resend").click()
            result = wait_for(driver, "#command-result")
            seen["result"] = (result.text, result.get_attribute("class"))
            screenshot(driver, tmp_path / "resend-result.png")
            driver.get(url + "/gates")
            WebDriverWait(driver, WAIT_S).until(reloaded_until("p.no-gaps"))
            seen["gaps_after"] = len(driver.find_elements(By.CSS_SELECTOR, "tr.gap"))
        return seen

    listening = asyncio.Event()
    # no automatic gap repair during the test: the operator asks
    async with (live_station(store, config, gap_check_seconds=3600) as url,
                gate_uplink(broker, journal, public, gate="north"),
                asyncio.TaskGroup() as tasks):
        watcher = tasks.create_task(collect(broker, "menjin/north/cmd/resend", envelopes,
                                            listening))
        await asyncio.wait_for(listening.wait(), WAIT_S)
        async with asyncio.timeout(WAIT_S):
            while len(store.event_ids("north")) < 7:  # noqa: ASYNC110 (a database, no event)
                await asyncio.sleep(0.1)
        seen = await asyncio.to_thread(browse, url)
        watcher.cancel()
    journal.close()
    assert seen["gap"].split()[:3] == ["4", "6", "3"]
    assert seen["result"] == ("闸机正在重新发送序号 4–6 的记录（已排队 3 条）。", "ok")
    assert seen["gaps_after"] == 0 and store.gaps("north") == []
    [envelope] = envelopes
    assert (envelope["name"], envelope["gate"], envelope["args"]) == (
        "resend", "north", {"from": 4, "to": 6})
    assert signature_valid(envelope, public_key_from_pem(public.read_bytes()))
    assert store.command_result(envelope["id"])["ok"] is True  # type: ignore[index]
    actions = store.t["operator_actions"]
    with store.engine.connect() as conn:
        asked = [(r.operator, r.target, r.detail) for r in conn.execute(
            actions.select().where(actions.c.action == "command.resend"))]
    assert asked == [("duty", "north", '{"from": 4, "to": 6}')]
