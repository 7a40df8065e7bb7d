"""What the page reads: keyset pages, searches, alarms, gate health, result sentences, catalogs."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from jinja2 import Environment, PackageLoader

from daemon.access import Reason
from protocol.events import ALARM_TYPES, EVENT_TYPES
from station.accounts import Accounts, User
from station.alarms import Alarms, is_alarm_event
from station.gatehealth import gate_health
from station.i18n import translations
from station.live import LiveFeed
from station.queries import Filter, Passages, QueryError, cursor_of, mask_card
from station.results import describe
from station.store import Store
from tests.station.test_store import _postgres_schema
from tests.station.webpage import BASE_MS, event

REPO = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'station.db'}", portraits_dir=tmp_path / "portraits")
        yield s
        s.close()
        return
    for url, schema in _postgres_schema():
        s = Store(url, portraits_dir=tmp_path / "portraits", schema=schema)
        yield s
        s.close()


def test_keyset_pages_stay_put_while_events_arrive(store: Store) -> None:
    # 250 events, several in the same millisecond: the order is (time, id), never an offset
    store.add_events([event("g1", seq, ts_ms=BASE_MS + seq // 3 * 1000) for seq in range(1, 251)])
    passages = Passages(store)
    f = Filter()
    first = passages.page(f, limit=100)
    assert (first.total, first.newer, len(first.rows)) == (250, None, 100)
    store.add_events([event("g1", seq, ts_ms=BASE_MS + 10**6 + seq) for seq in range(251, 261)])
    seen = [r["id"] for r in first.rows]
    page = first
    while page.older:
        page = passages.page(f, limit=100, before=page.older)
        seen += [r["id"] for r in page.rows]
    assert len(seen) == len(set(seen)) == 250  # nothing twice, nothing skipped by the inserts
    assert page.total == 260 and len(page.rows) == 50
    back = passages.page(f, limit=100, after=page.newer or "")
    assert [r["id"] for r in back.rows] == seen[100:200]
    newest = passages.page(f, limit=100, after=cursor_of(first.rows[0]))
    assert len(newest.rows) == 10 and newest.newer is None  # the ten that arrived meanwhile
    with pytest.raises(QueryError, match="not a page position: '1; drop table'"):
        passages.page(f, limit=10, before="1; drop table")


def test_search_by_name_person_card_gate_door_type_and_time(store: Store) -> None:
    card_ref = hmac.new(KEY, b"12345678", hashlib.sha256).hexdigest()
    store.add_events([
        event("g1", 1, person="p-0101", ref=card_ref, kind="card"),
        event("g1", 2, person="p-0102"),
        event("g2", 1, person="p-0101", door="side"),
        event("g2", 2, "door.forced", door="side"),
        event("g2", 3, "command.accepted"),
    ])
    store.set_sync_state("g1", 1, {"persons": {"p-0101": {"name": "王芳"},
                                               "p-0102": {"name": "李_伟%"}}, "groups": {}})
    store.set_sync_state("g2", 4, {"persons": {"p-0101": {"name": "王芳"}}, "groups": {}})
    passages = Passages(store, card_key=KEY)

    def seqs(**kw: object) -> list[tuple[str, int]]:
        page = passages.page(Filter(**kw), limit=50)  # type: ignore[arg-type]
        assert page.total == len(page.rows)
        return sorted((r["gate"], r["seq"]) for r in page.rows)

    assert seqs(person="王芳") == [("g1", 1), ("g2", 1)]
    assert seqs(person="王") == [("g1", 1), ("g2", 1)]
    assert seqs(person="p-0102") == [("g1", 2)]
    assert seqs(person="_") == [("g1", 2)] and seqs(person="%") == [("g1", 2)]  # literal
    assert seqs(card="12345678") == [("g1", 1)] and seqs(card="1234567") == []
    assert seqs(gate="g2") == [("g2", 1), ("g2", 2)]
    assert seqs(door="side", type="door.forced") == [("g2", 2)]
    assert seqs(view="admin") == [("g2", 3)]
    assert seqs(since_ms=BASE_MS + 2000, until_ms=BASE_MS + 2000) == [("g1", 2), ("g2", 2)]
    assert seqs(alarms_only=True) == [("g2", 2)]
    names = {r["seq"]: r["name"] for r in passages.page(Filter(gate="g1"), limit=9).rows}
    assert names == {1: "王芳", 2: "李_伟%"}
    store.forget_person("g1", "p-0101", "ps-1")  # erasure drops the name with the id
    assert seqs(person="王芳") == []


@pytest.mark.parametrize(("ref", "shown"), [
    ("12345678", "****5678"),
    ("0012345678901", "****8901"),
    ("a" * 64, "#aaaaaaaa"),
    (None, ""),
])
def test_card_references_are_masked(ref: str | None, shown: str) -> None:
    assert mask_card(ref) == shown


def test_alarms_from_events_and_gate_health_are_raised_once_and_acknowledged(store: Store
                                                                             ) -> None:
    alarms = Alarms(store)
    forced = event("g1", 1, "door.forced")
    store.add_events([forced])
    alarms.raise_for_events(0)
    alarms.raise_for_events(0)
    store.set_status("g1", {"gate": "g1", "state": "offline"})
    store.set_health("g1", {"gate": "g1", "disk_free_bytes": 10_000_000, "tamper": True,
                            "clock": {"trusted": False}, "journal": "error", "cpu_temp_c": 85.2})
    alarms.raise_for_gates()
    alarms.raise_for_gates()
    kinds = sorted(a["kind"] for a in alarms.recent())
    assert kinds == ["clock.untrusted", "disk.low", "door.forced", "gate.offline",
                     "journal.fault", "tamper", "temperature.high"]
    forced_alarm = next(a for a in alarms.recent() if a["kind"] == "door.forced")
    assert forced_alarm["event_id"] == forced.id and forced_alarm["door"] == "front"
    assert alarms.acknowledge(forced_alarm["id"], "duty")
    assert not alarms.acknowledge(forced_alarm["id"], "chief")  # once, by the first
    acked = next(a for a in alarms.recent() if a["id"] == forced_alarm["id"])
    assert acked["ack_by"] == "duty" and acked["ack_ms"] > 0
    disk = next(a for a in alarms.recent() if a["kind"] == "disk.low")
    alarms.acknowledge(disk["id"], "duty")
    alarms.raise_for_gates()  # still low: acknowledged trouble that persists is raised again
    assert [a["kind"] for a in alarms.recent(unacknowledged=True)].count("disk.low") == 1


@pytest.mark.parametrize(("event_type", "alarm"), [
    ("door.forced", True), ("door.held", True), ("tamper", True), ("reader.attack", True),
    ("clock.untrusted", True), ("clock.jump", True), ("clock.trusted", False),
    ("journal.write_failed", True), ("disk.full", True), ("access.granted", False),
    ("access.denied", False),
    # damage found at start-up and failed parts (they raised nothing before)
    ("journal.recovered", True), ("store.recovered", True), ("audit.repaired", True),
    ("part.fault", True), ("vision.fault", True), ("camera.fault", True), ("reader.fault", True),
    ("clock.behind", True), ("part.restored", False), ("vision.restored", False),
    ("gate.restarted", False),
])
def test_alarm_event_types(event_type: str, alarm: bool) -> None:
    assert is_alarm_event(event_type) is alarm


def test_gate_health_reads_what_the_gate_reports(store: Store) -> None:
    store.set_status("north", {"gate": "north", "state": "online", "version": "0.3.0",
                               "site": "幸福里小区", "name": "北门", "portraits": "upload"})
    store.set_health("north", {
        "gate": "north", "queue_depth": 12, "oldest_undelivered_age_s": 90.4,
        "readers": {"front": "ok", "back": "fault"}, "camera": "ok",
        "vision": {"state": "fault", "restarts": 3, "last_error": "exit -9"},
        "cpu_temp_c": 51.5, "disk_free_bytes": 8 * 2**30, "clock": {"trusted": True},
        "doors": {"front": {"state": "closed", "mode": "lockdown", "mode_source": "station"},
                  "back": "garbage"}})
    store.set_status("old", {"gate": "old", "state": "online"})  # a gate that reports little
    north_view, old_view = store.gates()
    north, old = gate_health(north_view), gate_health(old_view)
    assert north.title == "幸福里小区 北门" and north.version == "0.3.0"
    assert [(d.door, d.state, d.mode, d.mode_source) for d in north.doors] == [
        ("back", "unknown", "unknown", ""), ("front", "closed", "lockdown", "station")]
    assert north.readers == {"front": "ok", "back": "fault"} and north.vision == "fault"
    assert (north.backlog, north.clock_trusted, north.problems) == (12, True, [])
    assert north.last_seen_ms is not None
    assert (old.title, old.doors, old.clock_trusted, old.camera) == ("old", [], None, "unknown")
    seen = gate_health(old_view, known_doors={"gate1"}, station_modes={"gate1": "hold_open"})
    assert [(d.door, d.state, d.mode, d.mode_source) for d in seen.doors] == [
        ("gate1", "unknown", "hold_open", "station")]
    reported = gate_health(north_view, station_modes={"front": "normal"})
    assert reported.doors[1].mode == "lockdown"  # what the gate reports wins


@pytest.mark.parametrize(("result", "en", "zh"), [
    ({"name": "open", "ok": True, "result": {"door": "front", "opened": True}},
     "Door front opened.", "门 front 已开启。"),
    ({"name": "mode", "ok": True, "result": {"door": "front", "mode": "lockdown"}},
     "Door front is now in mode lockdown.", "门 front 已切换为封锁模式。"),
    ({"name": "open", "ok": False, "reason": "failed",
      "detail": "ValueError: no running door 'back'"},
     "Refused: the gate could not carry it out (no running door 'back')",
     "被拒绝：闸机执行失败 (no running door 'back')"),
    ({"name": "open", "ok": False, "reason": "replayed"},
     "Refused: the command was already used", "被拒绝：该命令已被使用过"),
    ({"name": "open", "ok": True, "result": {"door": "front", "opened": False,
                                             "refusal": "lockdown"}},
     "Door front was not opened: lockdown", "门 front 未打开：lockdown"),
    ({"name": "resend", "ok": True, "result": {"from": 4, "to": 6, "resent": 3, "missing": [],
                                               "next": None}},
     "The gate is sending seq 4–6 again (3 queued).",
     "闸机正在重新发送序号 4–6 的记录（已排队 3 条）。"),
    ({"name": "resend", "ok": True, "result": {
        "from": 1, "to": 30000, "resent": 10000, "missing": [[1, 9], [12, 12]],
        "next": 10021}},
     "The gate is sending seq 1–30000 again (10000 queued). No longer held by the gate: seq "
     "1–9, 12. The station asks for the rest, from seq 10021, by itself.",
     "闸机正在重新发送序号 1–30000 的记录（已排队 10000 条）。闸机已不再保存序号 1–9, 12 的记录。"
     "其余记录（自序号 10021 起）由管理站自动继续索取。"),
    ({"name": "resend", "ok": False, "reason": "failed",
      "detail": "ValueError: to: must not be below from"},
     "Refused: the gate could not carry it out (to: must not be below from)",
     "被拒绝：闸机执行失败 (to: must not be below from)"),
])
def test_command_results_in_words(result: dict[str, object], en: str, zh: str) -> None:
    assert describe(result, translations("en").gettext) == en
    assert describe(result, translations("zh_CN").gettext) == zh


def test_every_page_text_has_a_chinese_translation() -> None:
    """What `make i18n` would extract is all in the committed Chinese catalog (the refusals of
    commands the page sends too: CommandError's literal messages)."""
    catalog = translations("zh_CN")
    method_map = [("station/templates/*.html", "jinja2.ext:babel_extract"),
                  ("station/**.py", "python")]
    options = {"station/templates/*.html": {"extensions": "jinja2.ext.i18n"}}
    messages = [message for _file, _line, message, _comments, _context in extract_from_dir(
        str(REPO), method_map, options,
        keywords={"_": None, "gettext": None, "CommandError": None})]
    assert len(messages) > 100  # the templates were read
    assert [m for m in messages if catalog.gettext(m) == m] == []


def test_every_event_type_and_access_reason_is_shown_in_words() -> None:
    """The duty officer reads 门已上锁 and 未知凭证, not door.locked and unknown_credential:
    every type of the contract and every reason of an access decision has its label."""
    env = Environment(loader=PackageLoader("station", "templates"), extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(translations("zh_CN"), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(card=mask_card, time=str)  # the macros' filters (not called here)
    fragments = env.get_template("fragments.html").module
    types = sorted(EVENT_TYPES | ALARM_TYPES)
    assert [t for t in types if str(fragments.type_label(t)) == t] == []  # type: ignore[attr-defined]
    reasons = [r.value for r in Reason]
    assert [r for r in reasons if str(fragments.reason_label(r)) == r] == []  # type: ignore[attr-defined]
    assert str(fragments.reason_label("unknown_credential")) == "未知凭证"  # type: ignore[attr-defined]
    assert str(fragments.type_label("door.locked")) == "门已上锁"  # type: ignore[attr-defined]


async def test_the_live_feed_pushes_new_passages_and_alarms_once(store: Store) -> None:
    store.add_events([event("g1", 1, "door.forced")])  # before the page started: raised, not pushed
    feed = LiveFeed(Passages(store), Alarms(store))
    with feed.client() as queue:
        await feed.tick()
        assert queue.empty()
        assert [a["kind"] for a in Alarms(store).recent()] == ["door.forced"]
        burst = [event("g1", seq) for seq in range(2, 102)]
        burst[0] = event("g1", 2, "tamper")
        store.add_events(burst)
        await feed.tick()
        await feed.tick()
        items = [queue.get_nowait() for _ in range(queue.qsize())]
    passages = [i.row["seq"] for i in items if i.kind == "passage"]
    assert passages == list(range(2, 102))  # oldest first, each once
    assert [i.row["kind"] for i in items if i.kind == "alarm"] == ["tamper"]
    # a burst larger than one poll shows: its newest end, oldest first
    assert [r["seq"] for r in Passages(store).since(0, limit=5)] == [97, 98, 99, 100, 101]


def test_accounts_and_sessions(store: Store) -> None:
    accounts = Accounts(store, session_hours=1)
    accounts.add("duty", "operator", "correct horse battery")
    user = accounts.verify("duty", "correct horse battery")
    assert user == User("duty", "operator") and user.may("viewer") and not user.may("admin")
    assert accounts.verify("duty", "wrong password!") is None
    assert accounts.verify("nobody", "correct horse battery") is None
    token = accounts.start_session(user)
    assert accounts.session_user(token) == user
    assert accounts.session_user(token + "x") is None
    with store.engine.connect() as conn:
        stored = conn.execute(store.t["sessions"].select()).one()
    assert stored.token_hash != token and token not in stored.token_hash  # only its hash
    accounts.passwd("duty", "another long secret")
    assert accounts.session_user(token) is None  # a new password ends the sessions
    expired = Accounts(store, session_hours=1e-9)
    old = expired.start_session(user)
    assert expired.session_user(old) is None


def test_gate_damage_and_part_faults_raise_alarms_a_crash_loop_only_one(store: Store) -> None:
    alarms = Alarms(store)
    damage = [event("g1", 1, "journal.recovered"), event("g1", 2, "store.recovered"),
              event("g1", 3, "audit.repaired")]
    loop = [event("g1", 4 + i, "vision.fault") for i in range(5)]  # restarted forever
    other = [event("g1", 10, "part.fault"), event("g2", 1, "vision.fault")]
    store.add_events(damage + loop + other)
    alarms.raise_for_events(0)
    raised = sorted((a["gate"], a["kind"], a["event_id"]) for a in alarms.recent())
    assert raised == sorted([("g1", "journal.recovered", damage[0].id),
                             ("g1", "store.recovered", damage[1].id),
                             ("g1", "audit.repaired", damage[2].id),
                             ("g1", "vision.fault", loop[0].id),
                             ("g1", "part.fault", other[0].id),
                             ("g2", "vision.fault", other[1].id)])
    first = next(a for a in alarms.recent() if a["event_id"] == loop[0].id)
    assert alarms.acknowledge(first["id"], "duty")
    alarms.raise_for_events(0)  # the repeats the operator saw raise nothing again
    assert not [a for a in alarms.recent(unacknowledged=True) if a["kind"] == "vision.fault"
                and a["gate"] == "g1"]
    acked = next(a for a in alarms.recent() if a["id"] == first["id"])["ack_ms"]
    again = event("g1", 20, "vision.fault", ts_ms=acked + 60_000)  # failing again
    store.add_events([again])
    alarms.raise_for_events(0)
    assert [a["event_id"] for a in alarms.recent(unacknowledged=True)
            if a["kind"] == "vision.fault" and a["gate"] == "g1"] == [again.id]
