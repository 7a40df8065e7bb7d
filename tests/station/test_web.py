"""The station's page over HTTP: sign-in, roles, CSRF, escaping, masking, CSV, commands, CLI."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import hmac
import io
import json
import logging
import subprocess
import sys
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest

import station.web
from station.accounts import AccountError, Accounts
from station.commands import keygen
from station.queries import QueryError, read_card_key
from station.store import Store
from tests.broker import Broker, free_port
from tests.station.webpage import (
    PASSWORD,
    add_users,
    client,
    csrf_of,
    event,
    serving,
    settle,
    sign_in,
    station_config,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")
    add_users(s)
    s.add_events([
        event("g1", 1, person="p-0101", ref="12345678", kind="card"),
        event("g1", 2, "door.forced"),
        event("g2", 1, person="<script>alert(1)</script>"),
        event("g1", 3, "command.accepted"),
        event("g1", 4, "audit.residents.import"),
    ])
    s.set_sync_state("g1", 1, {"persons": {"p-0101": {"name": "王芳"}}, "groups": {}})
    return s


@pytest.mark.timeout(60)
async def test_every_page_needs_sign_in_and_a_session_cookie(store: Store, tmp_path: Path
                                                             ) -> None:
    config = station_config(tmp_path)
    async with serving(store, config) as url, client() as http:
        for path in ("/", "/passages", "/alarms", "/gates", "/people", "/admin",
                     "/passages.csv", "/portrait/x"):
            async with http.get(url + path, allow_redirects=False) as response:
                assert response.status == 303, path
                assert response.headers["Location"].startswith("/login?next="), path
        for path in ("/api/events", "/live"):
            async with http.get(url + path) as response:
                assert response.status == 401, path
        async with http.get(url + "/static/style.css") as response:
            assert response.status == 200 and "Noto Sans CJK SC" in await response.text()
        async with http.get(url + "/login") as response:
            assert response.status == 200
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        # a form without the CSRF token of its cookie is refused, whatever else it carries
        async with http.post(url + "/login", data={"user": "duty", "password": PASSWORD,
                                                   "csrf": "forged"}) as response:
            assert response.status == 403
        async with http.post(url + "/login", data={"user": "duty", "password": "wrong password",
                                                   "csrf": csrf_of(http, url)}) as response:
            assert response.status == 401 and 'id="login-failed"' in await response.text()
        async with http.post(url + "/login", data={
                "user": "duty", "password": PASSWORD, "csrf": csrf_of(http, url),
                "next": "//evil.example/"}, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/passages"
            cookie = response.cookies["menjin_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert not cookie["secure"]  # plain HTTP on loopback; Secure on any other bind
        async with http.get(url + "/passages") as response:
            assert response.status == 200 and 'id="who">duty' in await response.text()
        async with http.post(url + "/logout", data={"csrf": csrf_of(http, url)}) as response:
            assert response.url.path == "/login"
        async with http.get(url + "/passages", allow_redirects=False) as response:
            assert response.status == 303  # the session ended in the database too
    assert len(Accounts(store).list()) == 3


async def attempt(http: aiohttp.ClientSession, url: str, user: str, password: str, *,
                  forwarded: str | None = None) -> int:
    """One sign-in form sent (its CSRF cookie fetched first when missing); the status."""
    if "menjin_csrf" not in {c.key for c in http.cookie_jar}:
        async with http.get(url + "/login") as response:
            assert response.status == 200
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with http.post(url + "/login", data={
            "user": user, "password": password, "csrf": csrf_of(http, url)},
            headers=headers, allow_redirects=False) as response:
        return response.status


@pytest.mark.timeout(120)
async def test_failed_sign_ins_refuse_only_the_client_that_failed(store: Store, tmp_path: Path
                                                                  ) -> None:
    """Wrong passwords for the duty officer's name from one terminal do not lock the duty
    officer out of another; a terminal trying many names is refused whatever the name."""
    config = station_config(tmp_path)
    async with serving(store, config) as url:
        async with client("127.0.0.2") as attacker, client("127.0.0.3") as officer:
            guesses = [await attempt(attacker, url, "duty", "wrong password") for _ in range(5)]
            guesses.append(await attempt(attacker, url, "duty", PASSWORD))
            await sign_in(officer, url, "duty")
            async with officer.get(url + "/gates") as response:
                assert 'id="who">duty' in await response.text()
        async with client("127.0.0.4") as sprayer:
            spray = [await attempt(sprayer, url, f"name{n}", "wrong password")
                     for n in range(20)]
            spray.append(await attempt(sprayer, url, "chief", PASSWORD))
        async with client("127.0.0.5") as chief:
            await sign_in(chief, url, "chief")
    assert guesses == [401] * 5 + [429]  # the right password too, from the guessing client
    assert spray == [401] * 20 + [429]


@pytest.mark.timeout(60)
async def test_parallel_guesses_do_not_overtake_the_limit(store: Store, tmp_path: Path) -> None:
    async with serving(store, station_config(tmp_path)) as url, client() as http:
        await attempt(http, url, "chief", "wrong password")
        statuses = await asyncio.gather(*(attempt(http, url, "chief", "wrong password")
                                          for _ in range(12)))
    assert sorted(statuses) == [401] * 4 + [429] * 8


@pytest.mark.timeout(120)
async def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(
        store: Store, tmp_path: Path) -> None:
    async with serving(store, station_config(tmp_path)) as url, client() as http:
        # the header is the client's own say: changing it does not make a new client
        direct = [await attempt(http, url, "duty", "wrong password", forwarded=f"203.0.113.{n}")
                  for n in range(6)]
    proxied = station_config(tmp_path, web_keys=", trusted_proxies: [127.0.0.1]")
    async with serving(store, proxied) as url, client() as http:
        behind = [await attempt(http, url, "duty", "wrong password", forwarded="203.0.113.9")
                  for _ in range(6)]
        other = await attempt(http, url, "duty", PASSWORD, forwarded="203.0.113.10")
    assert direct == [401] * 5 + [429]
    assert behind == [401] * 5 + [429] and other == 303


@pytest.mark.timeout(60)
async def test_repeated_failed_sign_ins_lock_the_name_for_a_while(store: Store, tmp_path: Path
                                                                  ) -> None:
    config = station_config(tmp_path)
    async with serving(store, config) as url, client() as http:
        async with http.get(url + "/login"):
            pass
        statuses = []
        for password in ["wrong password"] * 5 + [PASSWORD]:
            async with http.post(url + "/login", data={
                    "user": "chief", "password": password, "csrf": csrf_of(http, url)},
                    allow_redirects=False) as response:
                statuses.append(response.status)
                page = await response.text()
        await sign_in(http, url, "duty")  # another name is not affected
    assert statuses == [401] * 5 + [429]
    assert 'id="login-locked">失败次数过多：请等待五分钟后再试。' in page


@pytest.mark.timeout(60)
async def test_roles_limit_what_a_user_may_do(store: Store, tmp_path: Path) -> None:
    config = station_config(tmp_path)
    async with serving(store, config) as url:
        async with client() as viewer:
            await sign_in(viewer, url, "viewer1")
            async with viewer.get(url + "/admin") as response:
                assert response.status == 403
            for path, data in (("/commands", {"gate": "g1", "door": "front", "action": "open"}),
                               ("/alarms/ack", {"alarm": "x"})):
                async with viewer.post(url + path, data={**data, "csrf": csrf_of(viewer, url)}
                                       ) as response:
                    assert response.status == 403, path
            async with viewer.get(url + "/gates") as response:
                assert "/commands" not in await response.text()  # no command buttons
        async with client() as chief:
            await sign_in(chief, url, "chief")
            async with chief.get(url + "/admin") as response:
                admin = await response.text()
    assert "command.accepted" in admin and "audit.residents.import" in admin
    assert 'data-action="login"' in admin


@pytest.mark.timeout(60)
async def test_passages_escape_mask_cards_and_keep_admin_rows_apart(store: Store, tmp_path: Path
                                                                    ) -> None:
    config = station_config(tmp_path)
    async with serving(store, config) as url, client() as http:
        await sign_in(http, url, "duty")
        async with http.get(url + "/passages") as response:
            page = await response.text()
        async with http.get(url + "/passages", params={"person": "王芳"}) as response:
            by_name = await response.text()
        async with http.get(url + "/api/events", params={"card": "12345678"}) as response:
            by_card = await response.json()
    assert page.count('class="event') == 3  # not the command and audit rows
    assert "command.accepted" not in page and "audit.residents" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "12345678" not in page and "****5678" in page
    assert '<html lang="zh-CN">' in page and "通行记录" in page
    assert "时间为 Asia/Shanghai 时区" in page
    assert "2026-09-21 22:13:21" in page  # seq 1 at BASE_MS + 1 s, in the station's zone
    assert by_name.count('class="event') == 1 and '<span class="name">王芳</span>' in by_name
    assert "共 1 条" in by_name
    assert [r["seq"] for r in by_card["rows"]] == [1] and by_card["total"] == 1


@pytest.mark.timeout(60)
async def test_face_filing_notice_appears_at_the_warning_count(store: Store, tmp_path: Path
                                                               ) -> None:
    config = station_config(tmp_path, extra="face_persons_warn_at: 1\n")
    async with serving(store, config) as url, client() as http:
        await sign_in(http, url, "viewer1")
        async with http.get(url + "/passages") as response:
            before = await response.text()
        store.record_command({"id": "c1", "gate": "g1", "name": "enrol", "issued_at_ms": 1,
                              "args": {"person": "p-0101"}})
        store.record_result("g1", {"id": "c1", "name": "enrol", "ok": True})
        async with http.get(url + "/passages") as response:
            after = await response.text()
        async with http.get(url + "/people") as response:
            people = await response.text()
    assert 'id="face-notice"' not in before
    assert '<p class="notice" id="face-notice">所有闸机共录入 1 人的人脸信息' in after
    assert "<td>王芳</td><td>p-0101</td><td>g1</td><td>已录入</td>" in people


@pytest.mark.timeout(60)
async def test_live_stream_sends_rendered_rows_and_ends_at_shutdown(store: Store, tmp_path: Path
                                                                    ) -> None:
    config = station_config(tmp_path)
    async with client() as http:
        async with serving(store, config) as url:
            await sign_in(http, url, "duty")
            stream = await http.get(url + "/live")
            assert stream.headers["Content-Type"] == "text/event-stream"
            assert await stream.content.readline() == b": live\n"
            await asyncio.sleep(0.5)  # the feed's first poll learns what is there
            forced = event("g1", 9, "door.forced")
            store.add_events([forced])
            lines: list[str] = []
            while len([x for x in lines if x.startswith("data: ")]) < 2:
                line = (await stream.content.readline()).decode()
                if line.strip():
                    lines.append(line.strip())
            stopped = time.monotonic()
        assert time.monotonic() - stopped < 10  # the open stream did not hold the shutdown up
        assert (await stream.content.read()).strip() == b""  # and it was ended
    kinds = [x.removeprefix("event: ") for x in lines if x.startswith("event: ")]
    data = [json.loads(x.removeprefix("data: ")) for x in lines if x.startswith("data: ")]
    assert sorted(kinds) == ["alarm", "passage"]
    passage = data[kinds.index("passage")]
    assert passage["id"] == forced.id and "门被强行打开" in passage["html"]
    assert f'value="event:{forced.id}"' in data[kinds.index("alarm")]["html"]


@pytest.mark.timeout(60)
async def test_cards_are_found_through_the_sites_card_hash_key(store: Store, tmp_path: Path
                                                               ) -> None:
    key = bytes(range(32))
    (tmp_path / "card.key").write_text(key.hex() + "\n")
    ref = hmac.new(key, b"4567890", hashlib.sha256).hexdigest()  # the gate hashes canonical cards
    store.add_events([event("g1", 7, ref=ref, kind="card")])
    config = station_config(tmp_path, extra=f"card_hash_key_file: {tmp_path / 'card.key'}\n")
    async with serving(store, config) as url, client() as http:
        await sign_in(http, url, "duty")
        async with http.get(url + "/passages", params={"card": "0004567890"}) as response:
            page = await response.text()
    assert page.count('class="event') == 1 and f"卡 #{ref[:8]}" in page and ref not in page
    (tmp_path / "card.key").write_text("not a key")
    with pytest.raises(QueryError, match=r"card\.key: expected 32 raw bytes or 64 hex"):
        read_card_key(tmp_path / "card.key")


@pytest.mark.timeout(60)
async def test_cards_are_found_with_the_card_key_a_gate_exported(store: Store, tmp_path: Path
                                                                  ) -> None:
    from typer.testing import CliRunner

    from daemon.configfile import load_config
    from daemon.keyring import Keyring
    from menjin.cli import app

    gate_yaml = tmp_path / "gate.yaml"
    gate_yaml.write_text("version: 1\nstate_dir: gate-state\ngate: {id: g1, site: Test}\n"
                         "doors:\n  front: {lock: {pin: 17}}\n")
    exported = tmp_path / "site-card.key"
    result = await asyncio.to_thread(CliRunner().invoke, app, [  # it audits with asyncio.run
        "keys", "card-key", "--export", str(exported), "-c", str(gate_yaml)])
    assert result.exit_code == 0, result.output
    cfg = load_config(gate_yaml, check_files=False)
    with Keyring(cfg).open_store(cfg) as gate_store:  # the reference the gate puts in events
        ref = gate_store.card_ref("0004567890")
    store.add_events([event("g1", 8, ref=ref, kind="card")])
    config = station_config(tmp_path, extra=f"card_hash_key_file: {exported}\n")
    async with serving(store, config) as url, client() as http:
        await sign_in(http, url, "duty")
        async with http.get(url + "/passages", params={"card": "4567890"}) as response:
            page = await response.text()
    assert page.count('class="event') == 1 and f"卡 #{ref[:8]}" in page


@pytest.mark.timeout(60)
async def test_csv_export_of_a_filtered_range(store: Store, tmp_path: Path) -> None:
    store.add_events([event("g1", seq, person="p-0101", ref="87654321", kind="card")
                      for seq in range(10, 20)])
    config = station_config(tmp_path)
    async with serving(store, config) as url, client() as http:
        await sign_in(http, url, "viewer1")
        async with http.get(url + "/passages.csv", params={
                "person": "王芳", "since": "2026-09-21T22:13:31",
                "until": "2026-09-21T22:13:35"}) as response:
            assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
            body = (await response.read()).decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.removeprefix("\ufeff"))))
    assert rows[0] == ["time", "gate", "seq", "door", "type", "person", "name", "credential",
                       "reason"]
    assert [r[2] for r in rows[1:]] == ["11", "12", "13", "14", "15"]
    assert rows[1][0] == "2026-09-21 22:13:31" and rows[1][6] == "王芳"
    assert rows[1][7] == "card ****4321" and "87654321" not in body


@pytest.mark.timeout(60)
async def test_invisible_characters_from_a_gate_are_shown_not_obeyed(store: Store, tmp_path: Path
                                                                      ) -> None:
    """A bidi override in a door, a reason and a name is shown as [U+202E] on the page, in the
    alarm and in the CSV (where a formula is also kept as text); the JSON API keeps it as sent."""
    forced = event("g1", 30, "door.forced", door="门\u202e1号", reason="x\u2066y\u200b")
    formula = event("g1", 31, person="p-evil", door='=HYPERLINK("http://x","1号门")')
    store.add_events([forced, formula])
    store.set_sync_state("g1", 2, {"persons": {"p-evil": {"name": "-2+3\u200f王"}}, "groups": {}})
    config = station_config(tmp_path)
    async with serving(store, config) as url, client() as http:
        await sign_in(http, url, "duty")
        async with http.get(url + "/passages") as response:
            page = await response.text()
        async with http.get(url + "/alarms") as response:
            alarms = await response.text()
        async with http.get(url + "/passages.csv", params={"gate": "g1"}) as response:
            body = (await response.read()).decode("utf-8")
        async with http.get(url + "/api/events", params={"gate": "g1"}) as response:
            api = await response.json()
    assert "<td>门[U+202E]1号</td>" in page
    assert 'title="x[U+2066]y[U+200B]">x[U+2066]y[U+200B]</td>' in page
    assert '<span class="name">-2+3[U+200F]王</span>' in page
    assert '<span class="where">g1 / 门[U+202E]1号</span>' in alarms
    assert '<span class="detail">x[U+2066]y[U+200B]</span>' in alarms
    for text in (page, alarms, body.removeprefix("\ufeff")):
        assert not [c for c in text if unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\r"]
    rows = {r[2]: r for r in csv.reader(io.StringIO(body.removeprefix("\ufeff")))}
    assert (rows["30"][3], rows["30"][8]) == ("门[U+202E]1号", "x[U+2066]y[U+200B]")
    assert (rows["31"][3], rows["31"][6]) == ("'=HYPERLINK(\"http://x\",\"1号门\")",
                                              "'-2+3[U+200F]王")
    assert {r["seq"]: r["door"] for r in api["rows"]}[30] == "门\u202e1号"


@pytest.mark.timeout(60)
async def test_unknown_gates_and_doors_are_refused_at_once(store: Store, tmp_path: Path) -> None:
    config = station_config(tmp_path, broker_port=free_port())  # nothing listens there
    async with serving(store, config) as url, client() as http:
        await sign_in(http, url, "duty")
        answers = []
        for gate, door in (("nowhere", "front"), ("g1", "back")):
            started = time.monotonic()
            async with http.post(url + "/commands", data={
                    "gate": gate, "door": door, "action": "open",
                    "csrf": csrf_of(http, url)}) as response:
                answers.append(await response.text())
            assert time.monotonic() - started < 5  # not the 30 s command timeout
    assert "未发送：未知闸机 &#39;nowhere&#39;：本站从未收到过它的消息" in answers[0]
    assert "未发送：闸机 g1 没有门 &#39;back&#39;（已知的门：front）" in answers[1]


@pytest.mark.timeout(90)
async def test_an_operator_opens_a_door_from_the_page(broker: Broker, tmp_path: Path) -> None:
    """The page signs like the CLI; a gate's answer is shown as a sentence, not JSON."""
    keygen(tmp_path / "station_key.pem")
    store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")
    add_users(store)
    store.add_events([event("g1", 1)])
    config = station_config(tmp_path, broker_port=broker.port)
    received: list[dict[str, Any]] = []
    ready = asyncio.Event()
    async with serving(store, config) as url, client() as http, asyncio.TaskGroup() as tasks:
        responder = tasks.create_task(answering_gate(broker, ready, received))
        await ready.wait()
        await sign_in(http, url, "duty")
        async with http.get(url + "/gates") as response:
            before = await response.text()
        async with http.post(url + "/commands", data={
                "gate": "g1", "door": "front", "action": "open",
                "csrf": csrf_of(http, url)}) as response:
            opened = await response.text()
        async with http.post(url + "/commands", data={
                "gate": "g1", "door": "front", "action": "mode", "mode": "hold_open",
                "csrf": csrf_of(http, url)}) as response:
            refused = await response.text()
        async with http.post(url + "/commands", data={
                "gate": "g1", "door": "front", "action": "mode", "mode": "lockdown",
                "csrf": csrf_of(http, url)}) as response:
            locked = await response.text()
        responder.cancel()
    # a door only seen in events is listed with its commands before the gate reports its state
    assert '<tr class="door" data-door="front">' in before and 'value="open">开门' in before
    assert '<td class="mode mode-lockdown">封锁</td><td>管理站</td>' in locked
    assert 'id="command-result" class="ok">门 front 已开启。' in opened
    assert '<input type="hidden" name="next" value="/gates">' in opened  # not the POST's URL
    assert "被拒绝：闸机执行失败 (unknown mode &#39;x&#39;)" in refused
    assert "ValueError" not in refused
    assert [e["name"] for e in received] == ["open", "mode", "mode"]
    assert all(len(str(e["sig"])) > 40 for e in received)  # signed envelopes
    actions = store.t["operator_actions"]
    with store.engine.connect() as conn:
        done = [(r.operator, r.action, r.target) for r in conn.execute(actions.select())]
    assert ("duty", "command.open", "g1/front") in done
    assert ("duty", "command.mode", "g1/front") in done


@pytest.mark.timeout(90)
async def test_gaps_are_listed_and_only_operators_may_ask_for_them(store: Store, tmp_path: Path
                                                                   ) -> None:
    store.add_events([event("g1", 8), event("g1", 13), event("g1", 30_000)])
    store.record_lost("g1", [(9, 12)])  # the gate said it no longer holds them
    settle(store)
    config = station_config(tmp_path, broker_port=free_port())  # nothing listens there
    keygen(tmp_path / "station_key.pem")
    async with serving(store, config) as url:
        async with client() as viewer:
            await sign_in(viewer, url, "viewer1")
            async with viewer.get(url + "/gates") as response:
                seen_by_viewer = await response.text()
            async with viewer.post(url + "/commands/resend", data={
                    "gate": "g1", "from": "5", "to": "7", "csrf": csrf_of(viewer, url)}
                    ) as response:
                assert response.status == 403
        async with client() as http:
            await sign_in(http, url, "duty")
            async with http.get(url + "/gates") as response:
                seen_by_operator = await response.text()
            async with http.post(url + "/commands/resend", data={
                    "gate": "g1", "from": "5", "to": "7"}) as response:
                assert response.status == 403  # no CSRF token
            answers = []
            for gate, low, high in (("nowhere", "5", "7"), ("g1", "abc", "7"),
                                    ("g1", "7", "5"), ("g1", "1", "20000"),
                                    ("g1", "14", "29999")):
                started = time.monotonic()
                async with http.post(url + "/commands/resend", data={
                        "gate": gate, "from": low, "to": high, "csrf": csrf_of(http, url)}
                        ) as response:
                    answers.append(await response.text())
                assert time.monotonic() - started < 5  # not the 30 s command timeout
    assert '<tr class="gap" data-from="5" data-to="7"><td>5</td><td>7</td><td>3</td>' \
        in seen_by_viewer
    assert '<tr class="gap" data-from="14" data-to="29999">' in seen_by_viewer
    assert '<p class="lost">闸机已不再保存（已丢失）： 9–12</p>' in seen_by_viewer
    assert "/commands/resend" not in seen_by_viewer
    # two gaps of g1 and a range form per gate (g1, g2)
    assert seen_by_operator.count('action="/commands/resend"') == 4
    assert '<button class="resend">向闸机重新索取</button>' in seen_by_operator
    assert "未发送：未知闸机 &#39;nowhere&#39;：本站从未收到过它的消息" in answers[0]
    assert "未发送：from：需要 1 到 2^53 之间的序号，而不是 &#39;abc&#39;" in answers[1]
    assert "未发送：序号 7-5：结束序号小于起始序号" in answers[2]
    assert ("未发送：序号 1-20000 共 20000 条，且不在本站缺失的区间内：每次最多请求 10000 条"
            in answers[3])
    # a whole open gap may be asked for at once: this one got as far as the (absent) broker
    assert f"未发送：消息服务器 127.0.0.1:{config.mqtt.port}：" in answers[4]
    actions = store.t["operator_actions"]
    with store.engine.connect() as conn:
        sent = [(r.operator, r.target, r.detail) for r in conn.execute(
            actions.select().where(actions.c.action == "command.resend"))]
    assert sent == [("duty", "g1", '{"from": 14, "to": 29999}')]


async def answering_gate(broker: Broker, ready: asyncio.Event,
                         received: list[dict[str, Any]]) -> None:
    """Gate g1's command side: open, lockdown and resend accepted, hold_open failing with a
    Python error."""
    async with aiomqtt.Client(broker.host, broker.port,
                              protocol=aiomqtt.ProtocolVersion.V5) as mqtt:
        await mqtt.subscribe("menjin/g1/cmd/+", qos=1)
        ready.set()
        async for message in mqtt.messages:
            envelope = json.loads(message.payload)  # type: ignore[arg-type]
            received.append(envelope)
            args = envelope["args"]
            answer: dict[str, Any] = {
                "ok": False, "reason": "failed", "detail": "ValueError: unknown mode 'x'"}
            if envelope["name"] == "open":
                answer = {"ok": True, "result": {"door": args["door"], "opened": True}}
            elif envelope["name"] == "resend":  # seq 5 was pruned
                answer = {"ok": True, "result": {"from": args["from"], "to": args["to"],
                                                 "resent": args["to"] - args["from"],
                                                 "missing": [[5, 5]], "next": None}}
            elif args.get("mode") == "lockdown":
                answer = {"ok": True, "result": {"door": args["door"], "mode": "lockdown",
                                                 "previous": "normal"}}
            await mqtt.publish(f"menjin/g1/cmd/{envelope['name']}/result", json.dumps(
                {"v": 1, "gate": "g1", "id": envelope["id"], "name": envelope["name"],
                 **answer}), qos=1)


@pytest.mark.timeout(120)
async def test_cli_results_in_words_and_raw_with_json(broker: Broker, tmp_path: Path) -> None:
    keygen(tmp_path / "station_key.pem")
    config = tmp_path / "station.yaml"
    config.write_text(f"version: 1\nmqtt: {{port: {broker.port}}}\n")
    store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "p")
    store.add_events([event("g1", 1)])
    received: list[dict[str, Any]] = []
    ready = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        responder = tasks.create_task(answering_gate(broker, ready, received))
        await ready.wait()
        c = ("-c", str(config))
        words = await asyncio.to_thread(_menjin, "open", "g1", "front", *c, cwd=tmp_path)
        raw = await asyncio.to_thread(_menjin, "open", "g1", "front", "--json", *c, cwd=tmp_path)
        failed = await asyncio.to_thread(_menjin, "mode", "g1", "front", "hold_open", *c,
                                         cwd=tmp_path)
        responder.cancel()
    assert (words.returncode, words.stdout) == (0, "Door front opened.\n")
    assert json.loads(raw.stdout)["result"] == {"door": "front", "opened": True}
    assert failed.returncode == 1
    assert failed.stdout == "Refused: the gate could not carry it out (unknown mode 'x')\n"


@pytest.mark.timeout(120)
async def test_cli_resend_in_words_and_raw_with_json(broker: Broker, tmp_path: Path) -> None:
    keygen(tmp_path / "station_key.pem")
    config = tmp_path / "station.yaml"
    config.write_text(f"version: 1\nmqtt: {{port: {broker.port}}}\n")
    store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "p")
    store.add_events([event("g1", 1), event("g1", 9)])
    received: list[dict[str, Any]] = []
    ready = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        responder = tasks.create_task(answering_gate(broker, ready, received))
        await ready.wait()
        c = ("-c", str(config))
        words = await asyncio.to_thread(_menjin, "resend", "g1", "2", "8", *c, cwd=tmp_path)
        raw = await asyncio.to_thread(_menjin, "resend", "g1", "2", "8", "--json", *c,
                                      cwd=tmp_path)
        responder.cancel()
    unknown = await asyncio.to_thread(_menjin, "resend", "nowhere", "2", "8", *c, cwd=tmp_path)
    too_many = await asyncio.to_thread(_menjin, "resend", "g1", "10", "10010", *c, cwd=tmp_path)
    assert (words.returncode, words.stdout) == (0, (
        "The gate is sending seq 2–8 again (6 queued). No longer held by the gate: seq 5.\n"))
    assert json.loads(raw.stdout)["result"] == {"from": 2, "to": 8, "resent": 6,
                                                "missing": [[5, 5]], "next": None}
    assert [(e["name"], e["args"]) for e in received] == [("resend", {"from": 2, "to": 8})] * 2
    assert unknown.returncode == 1
    assert "unknown gate 'nowhere': the station has never heard from it" in unknown.stderr
    assert too_many.returncode == 1
    assert ("seq 10-10010 is 10001 events and not a gap the station misses: ask for at most "
            "10000 at once") in too_many.stderr


def _menjin(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    """`menjin station ...` run in ``cwd``: relative paths of a station config resolve there."""
    return subprocess.run(
        [sys.executable, "-c", "from menjin.cli import main; main()", "station", *args],
        input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_user_add_remove_passwd_from_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text("version: 1\n")
    c = ("-c", str(config))
    added = _menjin("user", "add", "wangfang", "--role", "operator", *c, stdin=PASSWORD + "\n",
                    cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "user wangfang added (operator)"
    again = _menjin("user", "add", "wangfang", *c, stdin=PASSWORD + "\n", cwd=tmp_path)
    assert again.returncode == 1
    assert "user 'wangfang' already exists (use passwd to change it)" in again.stderr
    short = _menjin("user", "add", "li", *c, stdin="short\n", cwd=tmp_path)
    assert "password too short: at least 10 characters" in short.stderr
    changed = _menjin("user", "passwd", "wangfang", *c, stdin="another long secret\n",
                      cwd=tmp_path)
    assert changed.stdout.strip() == "password of wangfang changed"
    store = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "p")
    accounts = Accounts(store)
    assert accounts.verify("wangfang", PASSWORD) is None
    user = accounts.verify("wangfang", "another long secret")
    assert user is not None and user.role == "operator"
    hashes = [r.password_hash for r in store.engine.connect().execute(store.t["users"].select())]
    assert hashes[0].startswith("$argon2id$") and "another" not in hashes[0]
    assert _menjin("user", "remove", "wangfang", *c, cwd=tmp_path).returncode == 0
    assert accounts.verify("wangfang", "another long secret") is None
    gone = _menjin("user", "remove", "wangfang", *c, cwd=tmp_path)
    assert gone.returncode == 1 and "no user 'wangfang'" in gone.stderr
    with pytest.raises(AccountError, match="role 'boss': one of viewer, operator, admin"):
        accounts.add("x", "boss", PASSWORD)


def test_cli_refuses_an_unknown_gate_at_once(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(f"version: 1\nmqtt: {{port: {free_port()}}}\n")
    started = time.monotonic()
    result = _menjin("open", "nowhere", "front", "-c", str(config), cwd=tmp_path)
    assert time.monotonic() - started < 20  # the interpreter's start-up, not a 30 s wait
    assert result.returncode == 1
    assert "unknown gate 'nowhere': the station has never heard from it" in result.stderr


def test_run_refuses_a_public_page_without_sign_in(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text("version: 1\nweb: {bind: 0.0.0.0, login: false}\n")
    result = _menjin("run", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 78
    assert result.stderr.startswith(
        f"{config}:2:29: web.login: sign-in can be off (login: false) only when web.bind is "
        "loopback (127.0.0.1), not 0.0.0.0")
    assert not (tmp_path / "station.db").exists()  # refused before the database is opened


@pytest.mark.timeout(90)
async def test_station_run_serves_the_page_and_stores_what_arrives(
    broker: Broker, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "station.yaml"
    config.write_text(f"version: 1\nmqtt: {{port: {broker.port}}}\n"
                      f"web: {{port: {port}, login: false}}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from menjin.cli import main; main()", "station", "run",
        "-c", str(config), stderr=asyncio.subprocess.PIPE, cwd=tmp_path)
    sent = {"v": 1, "id": str(uuid.uuid4()), "seq": 1, "gate": "g7", "ts_ms": 1_790_000_000_000,
            "type": "door.forced", "door": "front"}
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(60):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/passages") as response:
                            if response.status == 200:
                                break
                    await asyncio.sleep(0.2)
                async with aiomqtt.Client(broker.host, broker.port,
                                          protocol=aiomqtt.ProtocolVersion.V5) as gate:
                    await gate.publish("menjin/g7/events", json.dumps(sent), qos=1)
                while True:
                    async with http.get(f"http://127.0.0.1:{port}/api/events") as response:
                        rows = (await response.json())["rows"]
                    if rows:
                        break
                    await asyncio.sleep(0.2)
    finally:
        proc.terminate()
        _, err = await proc.communicate()
    assert [(r["id"], r["alarm"]) for r in rows] == [(sent["id"], True)]
    assert (tmp_path / "station.db").exists()
    assert b"station: web page on http://127.0.0.1:" in err


@pytest.mark.timeout(60)
async def test_a_browser_going_away_ends_the_live_stream_without_a_traceback(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every disconnect used to log TimeoutError / ClientConnectionResetError tracebacks."""
    monkeypatch.setattr(station.web, "SSE_KEEPALIVE_SECONDS", 0.1)  # the keep-alive write too
    caplog.set_level(logging.DEBUG)
    config = station_config(tmp_path)
    async with client() as http, serving(store, config) as url:
        await sign_in(http, url, "duty")
        for _ in range(2):
            stream = await http.get(url + "/live")
            assert await stream.content.readline() == b": live\n"
            stream.close()  # the browser tab closed
        store.add_events([event("g1", 9, "door.forced"), event("g1", 10)])
        deadline = time.monotonic() + 20
        while caplog.text.count("live stream: the client went away") < 2:
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.1)
        async with http.get(url + "/api/events") as response:  # the station goes on
            assert response.status == 200
    assert caplog.text.count("live stream: the client went away (ClientConnectionResetError)"
                             ) == 2
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
