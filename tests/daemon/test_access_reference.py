"""The index decides as a plain reading of the persons would (hypothesis): the index shares door
tables and rights between persons and copies card keys, and none of that may change a decision.

The reference below reads the :class:`Person` records directly, the way the module docstring
states the checks (revoked → unknown → disabled → validity → door → schedule), over persons
drawn with every state a card decision looks at: disabled, validity bounds on either side of the
presentation, duress cards, revoked cards, groups with a window across midnight and one with a
holiday window, and persons sharing a card.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.access import AccessController, AccessIndex, DoorPolicy, Group, Person, Reason
from daemon.schedule import parse_schedule

ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 9, 28, tzinfo=ZONE)  # a Monday; the week holds the holiday 2026-10-01
HOLIDAYS = frozenset({date(2026, 10, 1)})
DOORS = ("front", "vehicle", "garage")
GROUPS = [
    Group("residents", ("front", "vehicle"), parse_schedule("always")),
    Group("office", ("front",), parse_schedule("mon-fri 08:00-18:00; hol 09:00-12:00")),
    Group("night", ("front", "garage"), parse_schedule("mon-fri 22:00-06:00")),
    Group("weekend", ("vehicle",), parse_schedule("sat,sun 07:00-12:00,14:00-20:00")),
]
CARDS = [str(1000 + i) for i in range(12)]
#: validity bounds: none, or instants inside the drawn week (some on the hour, some not)
BOUNDS = st.one_of(st.none(), st.integers(0, 7 * 86_400).map(
    lambda s: START + timedelta(seconds=s)))


@st.composite
def persons(draw: st.DrawFn) -> list[Person]:
    out = []
    for i in range(draw(st.integers(1, 8))):
        cards = draw(st.lists(st.sampled_from(CARDS), max_size=2, unique=True))
        duress = draw(st.lists(st.sampled_from([c for c in CARDS if c not in cards]),
                               max_size=1))
        out.append(Person(
            f"p{i}", f"Person {i}", enabled=draw(st.booleans()),
            valid_from=draw(BOUNDS), valid_until=draw(BOUNDS),
            groups=tuple(draw(st.lists(st.sampled_from([g.id for g in GROUPS]), max_size=3))),
            cards=tuple(cards), duress_cards=tuple(duress)))
    return out


def reference(persons: list[Person], revoked: set[str], door: str, card: str,
              now: datetime) -> tuple[bool, Reason, str | None, bool]:
    """(granted, reason, person, duress) read off the records alone."""
    if card in revoked:
        holders = [p.id for p in persons if card in p.cards or card in p.duress_cards]
        return False, Reason.REVOKED, holders[-1] if holders else None, False
    listing = [(p, card in p.duress_cards) for p in persons
               if card in p.cards or card in p.duress_cards]
    if not listing:
        return False, Reason.UNKNOWN_CREDENTIAL, None, False
    person, duress = listing[-1]  # a card listed twice belongs to its last holder
    if not person.enabled:
        reason = Reason.DISABLED
    elif person.valid_from is not None and now < person.valid_from:
        reason = Reason.NOT_YET_VALID
    elif person.valid_until is not None and now >= person.valid_until:
        reason = Reason.EXPIRED
    else:
        schedules = [g.schedule for g in GROUPS if g.id in person.groups and door in g.doors]
        if not schedules:
            reason = Reason.NOT_ALLOWED_AT_DOOR
        elif any(s.is_open(now.astimezone(ZONE), HOLIDAYS) for s in schedules):
            return True, Reason.GRANTED, person.id, duress
        else:
            reason = Reason.OUTSIDE_SCHEDULE
    return False, reason, person.id, duress


@settings(max_examples=300)
@given(persons(), st.sets(st.sampled_from(CARDS), max_size=2),
       st.lists(st.tuples(st.sampled_from(DOORS), st.sampled_from([*CARDS, "99999"]),
                          st.integers(0, 7 * 86_400 - 1)), min_size=1, max_size=20))
def test_the_index_decides_as_the_records_say(
        people: list[Person], revoked: set[str], presentations: list[tuple[str, str, int]]) -> None:
    index = AccessIndex.build(people, GROUPS, holidays=HOLIDAYS, revoked=revoked, zone=ZONE)
    controller = AccessController(index, {d: DoorPolicy(d) for d in DOORS})
    for door, card, seconds in presentations:
        now = START + timedelta(seconds=seconds)
        decision = controller.decide_card(door, card, now)
        assert (decision.granted, decision.reason, decision.person, decision.duress) == \
            reference(people, revoked, door, card, now), (door, card, now.isoformat())
