"""The access decision: every reason code, validity to the second, two factors, passback, duress."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.access import (
    AccessController,
    AccessIndex,
    AccessState,
    Credential,
    Decision,
    DoorPolicy,
    Group,
    Kind,
    PassageMemory,
    Person,
    Reason,
    decide,
    decision_events,
    face_only_warnings,
    hash_pin,
    verify_pin,
)
from daemon.config import AccessRule
from daemon.schedule import parse_schedule

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI)
MONDAY_20 = datetime(2026, 11, 30, 20, 0, tzinfo=SHANGHAI)
CONSENT = date(2026, 11, 1)
PIN_HASH = hash_pin("1234")
DURESS_PIN_HASH = hash_pin("4321")

GROUPS = [
    Group("residents", ("front", "vehicle"), parse_schedule("always")),
    Group("office", ("front",), parse_schedule("mon-fri 08:00-18:00")),
    Group("garage", ("garage",), parse_schedule("always")),
]
PERSONS = [
    Person("res", "Wang Fang", groups=("residents",), cards=("1001",), duress_cards=("9001",),
           pin_hash=PIN_HASH, duress_pin_hash=DURESS_PIN_HASH, face_consent=True,
           face_consent_date=CONSENT, face_consent_source="form 1"),
    Person("off", "Li Lei", enabled=False, groups=("residents",), cards=("1002",)),
    Person("vis", "Zhao Min", kind=Kind.VISITOR, groups=("residents",), cards=("1003",),
           valid_from=datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI),
           valid_until=datetime(2026, 11, 30, 18, 0, tzinfo=SHANGHAI)),
    Person("staff", "Chen Jie", kind=Kind.STAFF, groups=("office",), cards=("1004",)),
    Person("garage", "Sun Li", groups=("garage",), cards=("1005",)),
    Person("noface", "Zhou Yu", groups=("residents",), cards=("1006",)),
    Person("lost", "Wu Hao", groups=("residents",), cards=("1007",)),
    Person("child", "Wang Xiao", groups=("residents",), under_14=True, face_consent=True,
           face_consent_date=CONSENT, face_consent_source="form 2"),
]
INDEX = AccessIndex.build(PERSONS, GROUPS, revoked=["1007", "7777"], zone=SHANGHAI)

FRONT = DoorPolicy("front")
CARD_ONLY = DoorPolicy("front", rule=AccessRule.CARD)
FACE_ONLY = DoorPolicy("front", rule=AccessRule.FACE)
BOTH = DoorPolicy("front", rule=AccessRule.CARD_AND_FACE, multi_factor_seconds=10)
WITH_PIN = DoorPolicy("front", rule=AccessRule.CARD, pin_required=True)
APB = DoorPolicy("vehicle", entry_reader="in", exit_reader="out")


def card(value: str, reader: str | None = None, pin: str | None = None) -> Credential:
    return Credential("card", value, reader, pin)


def face(person: str, live: bool = True) -> Credential:
    return Credential("face", person, live=live)


#: A situation in which "res" already passed the vehicle gate inwards.
INSIDE = "inside"
GUESSED = "guessed"  # three wrong PINs for 'res' just before
UNTRUSTED = "untrusted"  # the gate's clock is not trusted (policy always_only)
# (credential, door, now, lockdown or INSIDE, granted, reason, person, duress)
TABLE = [
    (card("1001"), FRONT, MONDAY_10, False, True, Reason.GRANTED, "res", False),
    (face("res"), FRONT, MONDAY_10, False, True, Reason.GRANTED, "res", False),
    (card("1001"), FRONT, MONDAY_10, True, False, Reason.LOCKDOWN, None, False),
    (card("1234567"), FRONT, MONDAY_10, False, False, Reason.UNKNOWN_CREDENTIAL, None, False),
    (face("nobody"), FRONT, MONDAY_10, False, False, Reason.UNKNOWN_CREDENTIAL, None, False),
    (card("1002"), FRONT, MONDAY_10, False, False, Reason.DISABLED, "off", False),
    (card("1003"), FRONT, MONDAY_10 - timedelta(hours=2), False, False, Reason.NOT_YET_VALID,
     "vis", False),
    (card("1003"), FRONT, MONDAY_20, False, False, Reason.EXPIRED, "vis", False),
    (card("1007"), FRONT, MONDAY_10, False, False, Reason.REVOKED, "lost", False),
    (card("7777"), FRONT, MONDAY_10, False, False, Reason.REVOKED, None, False),
    (card("1004"), FRONT, MONDAY_20, False, False, Reason.OUTSIDE_SCHEDULE, "staff", False),
    (card("1004"), FRONT, MONDAY_10, False, True, Reason.GRANTED, "staff", False),
    (card("1004"), DoorPolicy("vehicle"), MONDAY_10, False, False, Reason.NOT_ALLOWED_AT_DOOR,
     "staff", False),
    (card("1005"), FRONT, MONDAY_10, False, False, Reason.NOT_ALLOWED_AT_DOOR, "garage", False),
    (card("1001"), FACE_ONLY, MONDAY_10, False, False, Reason.CREDENTIAL_NOT_ACCEPTED, "res",
     False),
    (face("res"), CARD_ONLY, MONDAY_10, False, False, Reason.CREDENTIAL_NOT_ACCEPTED, "res",
     False),
    (card("1001", "in"), APB, MONDAY_10, INSIDE, False, Reason.ANTI_PASSBACK, "res", False),
    (card("1001", "out"), APB, MONDAY_10, INSIDE, True, Reason.GRANTED, "res", False),
    (card("1001"), BOTH, MONDAY_10, False, False, Reason.SECOND_FACTOR_REQUIRED, "res", False),
    (face("res"), BOTH, MONDAY_10, False, False, Reason.SECOND_FACTOR_REQUIRED, "res", False),
    (face("noface"), FRONT, MONDAY_10, False, False, Reason.FACE_NOT_CONSENTED, "noface", False),
    (face("child"), FRONT, MONDAY_10, False, False, Reason.FACE_NOT_CONSENTED, "child", False),
    (face("res", live=False), FRONT, MONDAY_10, False, False, Reason.LIVENESS_FAILED, "res", False),
    (card("1001"), WITH_PIN, MONDAY_10, False, False, Reason.SECOND_FACTOR_REQUIRED, "res", False),
    (card("1001", pin="0000"), WITH_PIN, MONDAY_10, False, False, Reason.WRONG_PIN, "res", False),
    (card("1001", pin="1234"), WITH_PIN, MONDAY_10, False, True, Reason.GRANTED, "res", False),
    (card("1001", pin="4321"), WITH_PIN, MONDAY_10, False, True, Reason.GRANTED, "res", True),
    (card("1001", pin="1234"), WITH_PIN, MONDAY_10, GUESSED, False, Reason.PIN_LOCKED, "res",
     False),
    (card("1001", pin="4321"), WITH_PIN, MONDAY_10, GUESSED, True, Reason.GRANTED, "res", True),
    (card("9001"), FRONT, MONDAY_10, False, True, Reason.GRANTED, "res", True),
    (card("9001"), BOTH, MONDAY_10, False, True, Reason.GRANTED, "res", True),
    (card("9001"), DoorPolicy("garage"), MONDAY_10, False, False, Reason.NOT_ALLOWED_AT_DOOR,
     "res", True),
    # untrusted time: 'always' groups keep working, time-restricted ones are refused
    (card("1001"), FRONT, MONDAY_10, UNTRUSTED, True, Reason.GRANTED, "res", False),
    (card("1004"), FRONT, MONDAY_10, UNTRUSTED, False, Reason.TIME_UNTRUSTED, "staff", False),
]


@pytest.mark.parametrize(
    ("credential", "door", "now", "lockdown", "granted", "reason", "person", "duress"), TABLE
)
def test_decision_table(credential: Credential, door: DoorPolicy, now: datetime,
                        lockdown: bool | str, granted: bool, reason: Reason, person: str | None,
                        duress: bool) -> None:
    memory = PassageMemory()
    if lockdown == INSIDE:
        memory.sides[("vehicle", "res")] = "entry"
    if lockdown == GUESSED:
        memory.wrong_pins["res"] = [now.timestamp() - 1] * 3
    decision = decide(credential, door, now, AccessState(
        INDEX, memory, lockdown is True, time_trusted=lockdown != UNTRUSTED))
    assert (decision.granted, decision.reason, decision.person, decision.duress) == (
        granted, reason, person, duress)
    assert decision.door == door.door
    assert decision.credential_kind == credential.kind


def test_every_reason_code_is_in_the_table() -> None:
    assert {row[5] for row in TABLE} == set(Reason)


def test_the_decision_is_pure_and_deterministic() -> None:
    memory = PassageMemory()
    state = AccessState(INDEX, memory)
    first = decide(card("1001", "in"), APB, MONDAY_10, state)
    again = decide(card("1001", "in"), APB, MONDAY_10, state)
    assert first == again
    assert memory == PassageMemory()


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (timedelta(microseconds=-1), Reason.NOT_YET_VALID),
        (timedelta(0), Reason.GRANTED),
        (timedelta(hours=9) - timedelta(microseconds=1), Reason.GRANTED),
        (timedelta(hours=9), Reason.EXPIRED),
    ],
)
def test_visitor_validity_to_the_second(offset: timedelta, reason: Reason) -> None:
    start = datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI)
    controller = AccessController(INDEX, {"front": FRONT})
    assert controller.decide_card("front", "1003", start + offset).reason is reason


def test_validity_is_an_instant_whatever_the_clock_zone() -> None:
    controller = AccessController(INDEX, {"front": FRONT})
    until_utc = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # 18:00 in Shanghai
    assert controller.decide_card("front", "1003", until_utc - timedelta(seconds=1)).granted
    assert controller.decide_card("front", "1003", until_utc).reason is Reason.EXPIRED


def test_naive_clock_is_refused() -> None:
    controller = AccessController(INDEX, {"front": FRONT})
    with pytest.raises(ValueError, match="timezone-aware"):
        controller.decide_card("front", "1001", datetime(2026, 11, 30, 10, 0))


@pytest.mark.parametrize(
    ("first", "gap_seconds", "granted"),
    [("card", 0, True), ("card", 10, True), ("card", 10.5, False),
     ("face", 3, True), ("face", 11, False)],
)
def test_card_and_face_within_the_window(first: str, gap_seconds: float, granted: bool) -> None:
    controller = AccessController(INDEX, {"front": BOTH})
    if first == "card":
        waiting = controller.decide_card("front", "1001", MONDAY_10)
        assert waiting.awaiting == "face"
        second = controller.decide_face("front", "res", MONDAY_10 + timedelta(seconds=gap_seconds))
    else:
        waiting = controller.decide_face("front", "res", MONDAY_10)
        assert waiting.awaiting == "card"
        second = controller.decide_card("front", "1001", MONDAY_10 + timedelta(seconds=gap_seconds))
    assert waiting.reason is Reason.SECOND_FACTOR_REQUIRED
    assert second.granted is granted
    assert second.reason is (Reason.GRANTED if granted else Reason.SECOND_FACTOR_REQUIRED)


def test_a_used_pair_does_not_open_twice() -> None:
    controller = AccessController(INDEX, {"front": BOTH})
    controller.decide_card("front", "1001", MONDAY_10)
    assert controller.decide_face("front", "res", MONDAY_10 + timedelta(seconds=1)).granted
    again = controller.decide_face("front", "res", MONDAY_10 + timedelta(seconds=2))
    assert again.reason is Reason.SECOND_FACTOR_REQUIRED


def test_factors_of_two_people_do_not_combine() -> None:
    index = AccessIndex.build(
        [*PERSONS, Person("res2", "Ma Tao", groups=("residents",), cards=("2001",))], GROUPS)
    controller = AccessController(index, {"front": BOTH})
    controller.decide_card("front", "2001", MONDAY_10)
    assert not controller.decide_face("front", "res", MONDAY_10).granted


def test_anti_passback_alternates_entry_and_exit() -> None:
    controller = AccessController(INDEX, {"vehicle": APB})
    t = MONDAY_10
    entry = controller.decide_card("vehicle", "1001", t, reader="in")
    assert (entry.granted, entry.direction) == (True, "entry")
    twice = controller.decide_card("vehicle", "1001", t + timedelta(seconds=5), reader="in")
    assert (twice.granted, twice.reason) == (False, Reason.ANTI_PASSBACK)
    out = controller.decide_card("vehicle", "1001", t + timedelta(seconds=9), reader="out")
    assert (out.granted, out.direction) == (True, "exit")
    out_again = controller.decide_card("vehicle", "1001", t + timedelta(seconds=12), reader="out")
    assert out_again.reason is Reason.ANTI_PASSBACK
    assert controller.decide_card("vehicle", "1001", t + timedelta(seconds=20), reader="in").granted


def test_anti_passback_counts_a_face_as_an_entry() -> None:
    controller = AccessController(INDEX, {"vehicle": APB})
    assert controller.decide_card("vehicle", "1001", MONDAY_10, reader="in").granted
    assert controller.decide_face("vehicle", "res", MONDAY_10).reason is Reason.ANTI_PASSBACK


def test_duress_grants_despite_anti_passback_and_raises_the_alarm() -> None:
    controller = AccessController(INDEX, {"vehicle": APB})
    assert controller.decide_card("vehicle", "1001", MONDAY_10, reader="in").granted
    forced = controller.decide_card("vehicle", "9001", MONDAY_10, reader="in")
    assert (forced.granted, forced.duress) == (True, True)
    events = decision_events(forced, reader="in", credential_ref="9001")
    assert [e.type for e in events] == ["access.granted", "access.duress"]
    assert events[1].is_alarm
    assert events[1].person == "res"
    assert events[1].reader == "in"


def test_duress_pin_with_the_normal_card() -> None:
    controller = AccessController(INDEX, {"front": WITH_PIN})
    decision = controller.decide_card("front", "1001", MONDAY_10, pin="4321")
    assert (decision.granted, decision.duress) == (True, True)


def test_pin_guessing_locks_the_card_and_pin_but_never_the_duress_pin() -> None:
    controller = AccessController(INDEX, {"front": WITH_PIN})
    reasons = [controller.decide_card("front", "1001", MONDAY_10 + timedelta(seconds=i),
                                      pin=guess).reason
               for i, guess in enumerate(["0000", "1111", "2222", "1234"])]
    assert reasons == [Reason.WRONG_PIN] * 3 + [Reason.PIN_LOCKED]  # the right PIN, too late
    duress = controller.decide_card("front", "1001", MONDAY_10 + timedelta(seconds=5), pin="4321")
    assert (duress.granted, duress.duress) == (True, True)
    later = controller.decide_card("front", "1001", MONDAY_10 + timedelta(seconds=400), pin="1234")
    assert later.granted


def test_events_of_a_denial_carry_the_reason_and_the_missing_factor() -> None:
    decision = Decision(False, Reason.SECOND_FACTOR_REQUIRED, "front", "card", "res",
                        awaiting="face")
    (event,) = decision_events(decision, reader="front-card", credential_ref="1001")
    assert event.type == "access.denied"
    assert event.reason == "second_factor_required"
    assert event.data == {"awaiting": "face"}
    assert event.credential_kind == "card"


def test_replace_swaps_the_whole_index_at_once() -> None:
    controller = AccessController(INDEX, {"front": FRONT})
    assert controller.decide_card("front", "1001", MONDAY_10).granted
    controller.replace(AccessIndex.build([], GROUPS, version=2))
    assert controller.decide_card("front", "1001", MONDAY_10).reason is Reason.UNKNOWN_CREDENTIAL
    assert controller.index.version == 2


def test_card_keying_is_applied_before_the_lookup() -> None:
    index = AccessIndex.build(
        [Person("h", "Hashed", groups=("residents",), cards=("key-of-1001",))], GROUPS)
    controller = AccessController(index, {"front": FRONT}, card_key=lambda c: f"key-of-{c}")
    assert controller.decide_card("front", "1001", MONDAY_10).person == "h"
    assert controller.card_ref("1001") == "key-of-1001"


def test_pin_hashes_are_salted_and_verified() -> None:
    assert hash_pin("1234") != PIN_HASH
    assert verify_pin("1234", PIN_HASH)
    assert not verify_pin("1235", PIN_HASH)
    assert not verify_pin("1234", None)
    assert not verify_pin("1234", "md5$abc")


@given(st.lists(st.sampled_from(["in", "out"]), min_size=1, max_size=30))
def test_anti_passback_grants_strictly_alternate(readers: list[str]) -> None:
    controller = AccessController(INDEX, {"vehicle": APB})
    sides = []
    for i, reader in enumerate(readers):
        decision = controller.decide_card("vehicle", "1001", MONDAY_10 + timedelta(seconds=i),
                                          reader=reader)
        if decision.granted:
            sides.append(decision.direction)
        else:
            assert decision.reason is Reason.ANTI_PASSBACK
    assert all(a != b for a, b in itertools.pairwise(sides))
    assert sides[0] == readers[0].replace("in", "entry").replace("out", "exit")


def test_face_only_warnings_name_persons_without_a_card() -> None:
    """Issue 16, finding 6: face + PIN and no card has no working non-face way in."""
    face_only = Person("f1", "Face Only", face_consent=True, face_consent_date=CONSENT,
                       face_consent_source="form 3")
    with_pin = Person("f2", "Pin", pin_hash=PIN_HASH, face_consent=True, face_consent_date=CONSENT,
                      face_consent_source="form 4")
    no_consent = Person("f3", "No Face")
    expected = ["f1: enrolled for face entry without a card (a PIN only works with a card; a "
                "non-face credential must remain an alternative)"]
    assert face_only_warnings([face_only, with_pin, no_consent, PERSONS[0]]) == [
        expected[0], expected[0].replace("f1", "f2")]
    assert face_only_warnings([face_only, no_consent], enrolled={"f3"}) == [
        expected[0].replace("f1", "f3")]
    assert face_only_warnings([face_only], enrolled=set()) == []


async def test_card_and_pin_checked_off_the_loop_decide_the_same() -> None:
    controller = AccessController(INDEX, {"front": WITH_PIN})
    right = await controller.decide_card_pin("front", "1001", "1234", MONDAY_10)
    duress = await controller.decide_card_pin("front", "1001", "4321", MONDAY_10)
    wrong = await controller.decide_card_pin("front", "1001", "0000", MONDAY_10)
    unknown = await controller.decide_card_pin("front", "999999", "1234", MONDAY_10)
    assert (right.granted, right.duress) == (True, False)
    assert (duress.granted, duress.duress) == (True, True)
    assert wrong.reason is Reason.WRONG_PIN
    assert unknown.reason is Reason.UNKNOWN_CREDENTIAL


@pytest.mark.parametrize("groups", [("office", "residents"), ("residents", "office")])
def test_an_always_group_opens_at_any_hour_whatever_else_the_person_belongs_to(
        groups: tuple[str, ...]) -> None:
    both = AccessIndex.build([Person("p", "Both", groups=groups, cards=("2001",)),
                              Person("o", "Office", groups=("office",), cards=("2002",))],
                             GROUPS, zone=SHANGHAI)
    controller = AccessController(both, {"front": FRONT})
    sunday_3 = datetime(2026, 12, 6, 3, 0, tzinfo=SHANGHAI)
    for now in (MONDAY_10, MONDAY_20, sunday_3):
        assert controller.decide_card("front", "2001", now).granted
    assert controller.decide_card("front", "2002", MONDAY_10).granted
    assert controller.decide_card("front", "2002", MONDAY_20).reason is Reason.OUTSIDE_SCHEDULE
    assert controller.decide_card("front", "2002", sunday_3).reason is Reason.OUTSIDE_SCHEDULE


def test_lockdown_and_a_replaced_index_both_reach_the_next_decision() -> None:
    controller = AccessController(INDEX, {"front": FRONT})
    assert controller.decide_card("front", "1001", MONDAY_10, lockdown=True).reason \
        is Reason.LOCKDOWN
    assert controller.decide_card("front", "1001", MONDAY_10).granted
    controller.replace(AccessIndex.build(
        [Person("new", "New", groups=("residents",), cards=("3001",))], GROUPS, zone=SHANGHAI))
    assert controller.decide_card("front", "3001", MONDAY_10, lockdown=True).reason \
        is Reason.LOCKDOWN
    assert controller.decide_card("front", "3001", MONDAY_10).granted
    assert controller.decide_card("front", "1001", MONDAY_10).reason \
        is Reason.UNKNOWN_CREDENTIAL


def test_decisions_and_credentials_are_immutable() -> None:
    decision = AccessController(INDEX, {"front": FRONT}).decide_card("front", "1001", MONDAY_10)
    with pytest.raises(AttributeError):
        decision.granted = False  # type: ignore[misc]
    with pytest.raises(AttributeError):
        card("1001").value = "1002"  # type: ignore[misc]


def test_the_decision_lookup_agrees_with_the_card_table() -> None:
    """``card_entries``/``duress`` (what a decision reads) say what ``cards`` says."""
    assert set(INDEX.card_entries) == set(INDEX.cards)
    for key, (person, duress) in INDEX.cards.items():
        entry = INDEX.card_entries[key]
        assert entry.id == person and entry.person.id == person
        assert entry.enabled == entry.person.enabled
        assert (key in INDEX.duress) is duress
    assert INDEX.duress == {"9001"}


def test_a_card_listed_twice_belongs_to_its_last_holder() -> None:
    first = Person("a", "A", groups=("residents",), duress_cards=("5555",))
    last = Person("b", "B", groups=("garage",), cards=("5555",))
    index = AccessIndex.build([first, last], GROUPS, zone=SHANGHAI)
    assert index.cards["5555"] == ("b", False)
    assert index.duress == frozenset()
    decision = AccessController(index, {}).decide_card("front", "5555", MONDAY_10)
    assert (decision.reason, decision.person, decision.duress) == (
        Reason.NOT_ALLOWED_AT_DOOR, "b", False)
