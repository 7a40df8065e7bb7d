"""Who may pass which door when: the access decision, its in-memory index and its short memory.

The gate decides alone, in microseconds, and keeps deciding for days without the station.  So the
decision is a pure function of (credential, door, time, state) over an immutable
:class:`AccessIndex` in which every lookup is a dict or set probe (card → person, person → doors →
schedules shared per group set), never a scan.  A sync or an installer's change builds a new index
and :meth:`AccessController.replace` swaps it in with one assignment, so a decision sees either
the old or the new data, never a mix.

The few things a decision must remember between presentations (the first factor of
``card_and_face``, the side of the last passage for anti-passback) live in
:class:`PassageMemory`; :func:`decide` only reads it and :class:`AccessController` updates it
from the decision, which keeps :func:`decide` pure and table-testable.

Checks run in a fixed order and the first failing one names the reason::

    lockdown → revoked → unknown_credential → face_not_consented → liveness_failed → disabled →
    not_yet_valid → expired → not_allowed_at_door → time_untrusted → outside_schedule →
    credential_not_accepted →
    second_factor_required (PIN) / wrong_pin → anti_passback → second_factor_required (face/card)

A duress credential (a person's duress card, or their duress PIN) raises ``duress`` on the decision
whatever the outcome, so the silent ``access.duress`` alarm goes out even when the door stays shut;
when the person is otherwise valid it grants without waiting for a second factor and ignores
anti-passback: a person under threat must not be seen to be refused.

Time the gate cannot trust (:mod:`daemon.trusted_time`) never extends a validity period or opens
a schedule: validity is checked against the clock *and* the floor (not yet valid or expired by
either → refused), and while the clock is untrusted a door reached only through a time-restricted
schedule is refused with ``time_untrusted`` (policy ``always_only``, the default: groups with the
``always`` schedule keep working); policy ``clock`` evaluates schedules on the clock anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from functools import partial
from types import MappingProxyType
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from daemon.config import AccessRule
from daemon.events import Event
from daemon.schedule import DEFAULT_TIMEZONE, Schedule, local_time
from daemon.trusted_time import TimeView
from protocol.pins import hash_pin as hash_pin  # re-exported: the PIN hash is part of the contract
from protocol.pins import verify_pin

CredentialKind = Literal["card", "face"]
#: What schedules do while the clock is untrusted (config ``clock.untrusted_schedules``).
UntrustedPolicy = Literal["always_only", "clock"]
Direction = Literal["entry", "exit"]
#: PIN guessing lockout: this many wrong PINs for one person within PIN_LOCK_SECONDS block their
#: card + PIN at every door until the oldest of them is that old (a duress PIN still works).
PIN_MAX_WRONG = 3
PIN_LOCK_SECONDS = 300.0
NEVER = float("inf")
ALWAYS_VALID = float("-inf")


class Kind(StrEnum):
    RESIDENT = "resident"
    VISITOR = "visitor"
    STAFF = "staff"


class Reason(StrEnum):
    """Why a credential was granted or refused; goes into the event's ``reason``."""

    GRANTED = "granted"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    DISABLED = "disabled"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    OUTSIDE_SCHEDULE = "outside_schedule"
    NOT_ALLOWED_AT_DOOR = "not_allowed_at_door"
    SECOND_FACTOR_REQUIRED = "second_factor_required"
    WRONG_PIN = "wrong_pin"
    ANTI_PASSBACK = "anti_passback"
    LOCKDOWN = "lockdown"
    CREDENTIAL_NOT_ACCEPTED = "credential_not_accepted"
    FACE_NOT_CONSENTED = "face_not_consented"
    LIVENESS_FAILED = "liveness_failed"
    PIN_LOCKED = "pin_locked"
    TIME_UNTRUSTED = "time_untrusted"


#: Reading a member as ``Reason.X`` goes through the enum's metaclass (about 0.15 µs on Python
#: 3.11, as much as a dict lookup of the index); the decision path uses these names.
_GRANTED = Reason.GRANTED
_REVOKED = Reason.REVOKED
_UNKNOWN = Reason.UNKNOWN_CREDENTIAL
_DISABLED = Reason.DISABLED
_NOT_YET_VALID = Reason.NOT_YET_VALID
_EXPIRED = Reason.EXPIRED
_NOT_AT_DOOR = Reason.NOT_ALLOWED_AT_DOOR
_OUTSIDE_SCHEDULE = Reason.OUTSIDE_SCHEDULE
_NOT_ACCEPTED = Reason.CREDENTIAL_NOT_ACCEPTED
_WRONG_PIN = Reason.WRONG_PIN
_CARD_AND_FACE = AccessRule.CARD_AND_FACE


# --------------------------------------------------------------------------- model
@dataclass(frozen=True, slots=True)
class Person:
    """One person as the gate knows them (the JSON shape is documented in :mod:`daemon.store`).

    ``valid_from`` is inclusive and ``valid_until`` exclusive: a visitor valid until 18:00:00 is
    refused from 18:00:00.000 on.  ``cards`` and ``duress_cards`` hold card keys (the canonical
    card string, or its keyed hash when the gate hashes cards).
    """

    id: str
    name: str
    kind: Kind = Kind.RESIDENT
    enabled: bool = True
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    groups: tuple[str, ...] = ()
    cards: tuple[str, ...] = ()
    duress_cards: tuple[str, ...] = ()
    pin_hash: str | None = None
    duress_pin_hash: str | None = None
    face_consent: bool = False
    face_consent_date: date | None = None
    face_consent_source: str | None = None
    under_14: bool = False
    guardian_consent_date: date | None = None
    guardian_consent_source: str | None = None

    @property
    def may_use_face(self) -> bool:
        """Separate face consent recorded (and a guardian's, for a child under 14)."""
        if not self.face_consent:
            return False
        return not self.under_14 or self.guardian_consent_date is not None


@dataclass(frozen=True, slots=True)
class Group:
    """An access group: the doors its members may open, and when."""

    id: str
    doors: tuple[str, ...]
    schedule: Schedule
    name: str = ""


@dataclass(frozen=True, slots=True)
class DoorPolicy:
    """The access rules of one door, built by the app from the door's YAML section.

    Anti-passback applies when both readers are named: a presentation at ``exit_reader`` is an
    exit, anything else (the entry reader, the face camera) an entry; the same side twice in a row
    is refused.  ``pin_required`` asks for the person's PIN together with the card.
    """

    door: str
    rule: AccessRule = AccessRule.CARD_OR_FACE
    multi_factor_seconds: float = 10.0
    entry_reader: str | None = None
    exit_reader: str | None = None
    pin_required: bool = False
    #: Both readers are named (derived: a field, not a property, as every decision reads it).
    anti_passback: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "anti_passback",
                           self.entry_reader is not None and self.exit_reader is not None)

    def direction(self, reader: str | None) -> Direction:
        return "exit" if reader is not None and reader == self.exit_reader else "entry"


class Credential(NamedTuple):
    """What was presented: a card key (``value``) with an optional PIN, or a matched face.

    For a face, ``value`` is the person id the gallery matched and ``live`` the liveness verdict.
    Immutable; a named tuple rather than a frozen dataclass because one is built per presentation
    and a frozen dataclass costs a ``object.__setattr__`` per field (``bench/access_decision.py``).
    """

    kind: CredentialKind
    value: str
    reader: str | None = None
    pin: str | None = None
    live: bool = True
    #: ``pin`` already checked off the event loop: (person, matches pin_hash, matches
    #: duress_pin_hash); used only when the card still belongs to that person.
    pin_checked: tuple[str, bool, bool] | None = None


class Decision(NamedTuple):
    """The outcome of one presentation (immutable; a named tuple for the reason given at
    :class:`Credential`).

    ``awaiting`` names the factor still missing when the reason is ``second_factor_required``
    (``face``, ``card`` or ``pin``); ``direction`` is the anti-passback side of a granted passage.
    """

    granted: bool
    reason: Reason
    door: str
    credential_kind: CredentialKind
    person: str | None = None
    duress: bool = False
    awaiting: str | None = None
    direction: Direction | None = None


#: ``Decision(...)`` and ``Credential(...)`` run the named tuple's generated ``__new__`` (a Python
#: frame that fills in defaults: 0.15 µs, a twentieth of a decision); the hot path builds them
#: from all their fields in C.
_decision = partial(tuple.__new__, Decision)
_credential = partial(tuple.__new__, Credential)


def face_only_warnings(persons: Iterable[Person],
                       enrolled: Collection[str] | None = None) -> list[str]:
    """One line per person set up for face entry without a card to fall back on.

    Face scan may never be the only way in (PIPL; the 2025 face-recognition measures): every
    person with a face consent (or, when ``enrolled`` is given, with face templates) needs a
    non-face credential.  A PIN alone is none: PINs are a second factor after a card (a salted
    hash cannot identify who typed a PIN), so only a card counts.  ``residents list`` and
    ``check-config`` print these lines.
    """
    lines = []
    for person in persons:
        uses_face = person.id in enrolled if enrolled is not None else person.face_consent
        if uses_face and not person.cards:
            lines.append(f"{person.id}: enrolled for face entry without a card (a PIN only "
                         "works with a card; a non-face credential must remain an alternative)")
    return lines


# --------------------------------------------------------------------------- index
DoorSchedules = Mapping[str, tuple[Schedule, ...]]


@dataclass(frozen=True, slots=True)
class _Entry:
    """What a decision reads of one person, in one object: at 100k persons every further object
    a decision touches is a likely cache miss (``bench/access_decision.py``)."""

    person: Person
    id: str
    enabled: bool
    not_before: float
    not_after: float
    doors: DoorSchedules


@dataclass(frozen=True)
class AccessIndex:
    """Immutable lookup tables built from the store; replaced whole, never edited."""

    version: int
    persons: Mapping[str, _Entry]
    cards: Mapping[str, tuple[str, bool]]  # card key → (person id, is a duress card)
    revoked: frozenset[str]
    holidays: frozenset[date]
    zone: ZoneInfo
    groups: Mapping[str, Group] = field(default_factory=dict)
    #: card key → the holder's entry (the decision's lookup: one probe, no person-id hop)
    card_entries: Mapping[str, _Entry] = field(default_factory=dict)
    #: card keys that are duress cards
    duress: frozenset[str] = frozenset()
    #: make-up working days (调休): weekend dates that count as a working day
    workdays: frozenset[date] = frozenset()

    @classmethod
    def build(
        cls,
        persons: Iterable[Person],
        groups: Iterable[Group],
        *,
        holidays: Iterable[date] = (),
        workdays: Iterable[date] = (),
        revoked: Iterable[str] = (),
        version: int = 0,
        zone: ZoneInfo | None = None,
    ) -> AccessIndex:
        """Index ``persons``; persons sharing a set of groups share one door table."""
        group_map = {g.id: g for g in groups}
        shared: dict[tuple[str, ...], DoorSchedules] = {}
        entries: dict[str, _Entry] = {}
        cards: dict[str, tuple[str, bool]] = {}
        card_entries: dict[str, _Entry] = {}
        bounds: dict[float, float] = {}  # one float object per distinct bound: fewer to fetch
        for person in persons:
            key = tuple(sorted(set(person.groups)))
            doors = shared.get(key)
            if doors is None:
                doors = shared[key] = _door_table(group_map[g] for g in key if g in group_map)
            not_before = person.valid_from.timestamp() if person.valid_from else ALWAYS_VALID
            not_after = person.valid_until.timestamp() if person.valid_until else NEVER
            entry = entries[person.id] = _Entry(
                person, person.id, person.enabled, bounds.setdefault(not_before, not_before),
                bounds.setdefault(not_after, not_after), doors,
            )
            for card in person.cards:
                cards[card] = (person.id, False)
                card_entries[card] = entry
            for card in person.duress_cards:
                cards[card] = (person.id, True)
                card_entries[card] = entry
        return cls(
            version=version,
            persons=MappingProxyType(entries),
            cards=MappingProxyType(cards),
            revoked=frozenset(revoked),
            holidays=frozenset(holidays),
            zone=zone or ZoneInfo(DEFAULT_TIMEZONE),
            groups=MappingProxyType(group_map),
            card_entries=MappingProxyType(card_entries),
            duress=frozenset(c for c, (_, duress) in cards.items() if duress),
            workdays=frozenset(workdays),
        )

    def person(self, person_id: str) -> Person | None:
        entry = self.persons.get(person_id)
        return entry.person if entry else None


def _door_table(groups: Iterable[Group]) -> DoorSchedules:
    table: dict[str, list[Schedule]] = {}
    for group in groups:
        for door in group.doors:
            table.setdefault(door, []).append(group.schedule)
    # A door open always through one group needs no other schedule (and no clock: see _validity).
    return MappingProxyType({
        door: next(((x,) for x in s if x.always), tuple(s)) for door, s in table.items()})


EMPTY_INDEX = AccessIndex.build((), ())


# --------------------------------------------------------------------------- memory
@dataclass
class PassageMemory:
    """First factors waiting for their second (timestamps) and the last side of each passage."""

    cards: dict[tuple[str, str], float] = field(default_factory=dict)  # (door, person) → when
    faces: dict[tuple[str, str], float] = field(default_factory=dict)
    sides: dict[tuple[str, str], Direction] = field(default_factory=dict)
    wrong_pins: dict[str, list[float]] = field(default_factory=dict)  # person → when

    def pin_locked(self, person: str, ts: float) -> bool:
        """True while ``person`` made too many wrong PIN guesses (PIN guessing lockout)."""
        recent = [t for t in self.wrong_pins.get(person, ()) if 0 <= ts - t <= PIN_LOCK_SECONDS]
        return len(recent) >= PIN_MAX_WRONG


@dataclass(frozen=True, slots=True)
class AccessState:
    """Everything besides the credential, door and time that a decision depends on."""

    index: AccessIndex
    memory: PassageMemory
    lockdown: bool = False
    #: a lower bound of the true time (the floor), UTC milliseconds; None: the clock alone
    floor_ms: int | None = None
    time_trusted: bool = True
    untrusted_policy: UntrustedPolicy = "always_only"


# --------------------------------------------------------------------------- decision
def decide(credential: Credential, door: DoorPolicy, now: datetime, state: AccessState) -> Decision:
    """Grant or refuse ``credential`` at ``door`` at (aware) ``now``; reads state, never writes."""
    # Written for the hot path (``bench/access_decision.py``): refusals are built in place rather
    # than through a helper, and a key or timestamp is computed only on the branch that needs it.
    kind = credential.kind
    door_id = door.door
    if state.lockdown:
        return Decision(False, Reason.LOCKDOWN, door_id, kind)
    index = state.index
    value = credential.value
    duress = False
    if kind == "card":
        if value in index.revoked:
            return Decision(False, _REVOKED, door_id, kind,
                            index.cards.get(value, (None, False))[0])
        found = index.card_entries.get(value)
        if found is None:
            return _decision((False, _UNKNOWN, door_id, kind, None, False, None, None))
        entry = found
        person_id = entry.id
        if index.duress:
            duress = value in index.duress
    else:
        person_id = value
        face_entry = index.persons.get(person_id)
        if face_entry is None:
            return Decision(False, _UNKNOWN, door_id, kind)
        entry = face_entry
        if not entry.person.may_use_face:
            return Decision(False, Reason.FACE_NOT_CONSENTED, door_id, kind, person_id)
        if not credential.live:
            return Decision(False, Reason.LIVENESS_FAILED, door_id, kind, person_id)
    pin_ok = False
    if credential.pin is not None:
        pin_ok, duress_pin = _pin_matches(credential, entry.person)
        duress = duress or duress_pin
    refusal = _validity(entry, door_id, now, index, state)
    if refusal is not None:
        return _decision((False, refusal, door_id, kind, person_id, duress, None, None))
    rule = door.rule
    if kind not in _ACCEPTS[rule]:
        return Decision(False, _NOT_ACCEPTED, door_id, kind, person_id, duress)
    if kind == "card" and door.pin_required and not duress:
        if credential.pin is None:
            return Decision(False, Reason.SECOND_FACTOR_REQUIRED, door_id, kind, person_id,
                            False, "pin")
        if state.memory.pin_locked(person_id, now.timestamp()):
            return Decision(False, Reason.PIN_LOCKED, door_id, kind, person_id)
        if not pin_ok:
            return Decision(False, Reason.WRONG_PIN, door_id, kind, person_id)
    direction = door.direction(credential.reader) if door.anti_passback else None
    if duress:
        return Decision(True, _GRANTED, door_id, kind, person_id, True, None, direction)
    memory = state.memory
    if direction is not None and memory.sides.get((door_id, person_id)) == direction:
        return Decision(False, Reason.ANTI_PASSBACK, door_id, kind, person_id)
    if rule is _CARD_AND_FACE:
        other = memory.faces if kind == "card" else memory.cards
        first = other.get((door_id, person_id))
        if first is None or not 0 <= now.timestamp() - first <= door.multi_factor_seconds:
            return Decision(False, Reason.SECOND_FACTOR_REQUIRED, door_id, kind, person_id,
                            False, "face" if kind == "card" else "card")
    return _decision((True, _GRANTED, door_id, kind, person_id, False, None, direction))


def _pin_matches(credential: Credential, person: Person) -> tuple[bool, bool]:
    """(matches the PIN hash, matches the duress PIN hash) of the credential's PIN."""
    if credential.pin is None:
        return False, False
    checked = credential.pin_checked
    if checked is not None and checked[0] == person.id:
        return checked[1], checked[2]
    return pin_matches(credential.pin, person)


def pin_matches(pin: str, person: Person | None) -> tuple[bool, bool]:
    """Check ``pin`` against both PIN hashes of ``person`` (scrypt: run it off the loop)."""
    if person is None:
        return False, False
    return verify_pin(pin, person.pin_hash), verify_pin(pin, person.duress_pin_hash)


def _validity(entry: _Entry, door: str, now: datetime, index: AccessIndex,
              state: AccessState) -> Reason | None:
    if not entry.enabled:
        return _DISABLED
    if now.tzinfo is None:  # refuse a naive time before any comparison
        local_time(now, index.zone)
    ts = now.timestamp()
    # The true time is not earlier than the floor: expired (or not yet valid) by either the clock
    # or the floor is refused.
    if state.floor_ms is None:
        earliest = latest = ts
    else:
        floor = state.floor_ms / 1000
        earliest, latest = min(ts, floor), max(ts, floor)
    if earliest < entry.not_before:
        return _NOT_YET_VALID
    if latest >= entry.not_after:
        return _EXPIRED
    schedules = entry.doors.get(door)
    if not schedules:
        return _NOT_AT_DOOR
    if schedules[0].always:  # the door table keeps an always-open schedule alone
        return None
    if not state.time_trusted and state.untrusted_policy == "always_only":
        return Reason.TIME_UNTRUSTED
    local = local_time(now, index.zone)
    for schedule in schedules:
        if schedule.is_open(local, index.holidays, index.workdays):
            return None
    return _OUTSIDE_SCHEDULE


#: The credential kinds each door rule accepts on their own or as one of two factors.
_ACCEPTS: Mapping[AccessRule, frozenset[str]] = MappingProxyType({
    AccessRule.CARD: frozenset({"card"}),
    AccessRule.FACE: frozenset({"face"}),
    AccessRule.CARD_OR_FACE: frozenset({"card", "face"}),
    AccessRule.CARD_AND_FACE: frozenset({"card", "face"}),
})


def decision_events(decision: Decision, *, reader: str | None = None,
                    credential_ref: str | None = None) -> list[Event]:
    """The events of a decision: ``access.granted``/``access.denied``, then ``access.duress``."""
    def event(event_type: str, data: Mapping[str, str]) -> Event:
        return Event(event_type, door=decision.door, reader=reader,
                     credential_kind=decision.credential_kind, credential_ref=credential_ref,
                     person=decision.person, reason=decision.reason.value, data=data)

    main = event("access.granted" if decision.granted else "access.denied",
                 {"awaiting": decision.awaiting} if decision.awaiting else {})
    return [main, event("access.duress", {})] if decision.duress else [main]


# --------------------------------------------------------------------------- stateful wrapper
def _identity(card: str) -> str:
    return card


class AccessController:
    """What the app calls: the current index, the door policies and the passage memory.

    ``card_key`` turns a canonical card string into the key the store uses (identity, or the
    gate's keyed hash); decisions run on the event loop and take the time as a parameter.
    """

    def __init__(
        self,
        index: AccessIndex,
        policies: Mapping[str, DoorPolicy],
        *,
        card_key: Callable[[str], str] = _identity,
        time: Callable[[], TimeView] | None = None,
        untrusted_policy: UntrustedPolicy = "always_only",
    ) -> None:
        self._index = index
        self._time = time
        self.untrusted_policy: UntrustedPolicy = untrusted_policy
        self._policies = dict(policies)
        self._card_key = card_key
        self.memory = PassageMemory()
        self._states = self._build_states()

    def _build_states(self) -> tuple[AccessState, AccessState]:
        """The decision state without and with lockdown (built once: decisions are hot)."""
        return (AccessState(self._index, self.memory, False),
                AccessState(self._index, self.memory, True))

    @property
    def index(self) -> AccessIndex:
        return self._index

    def replace(self, index: AccessIndex) -> None:
        """Swap in a freshly built index (one assignment: atomic for every later decision)."""
        self._index = index
        self._states = self._build_states()

    def set_policies(self, policies: Mapping[str, DoorPolicy]) -> None:
        self._policies = dict(policies)

    def card_ref(self, card: str) -> str:
        """The key of ``card`` in the store (what events carry as ``credential_ref``)."""
        return self._card_key(card)

    def decide_card(self, door: str, card: str, now: datetime, *, reader: str | None = None,
                    pin: str | None = None, lockdown: bool = False) -> Decision:
        """Decide a card (canonical string) presented at ``door`` through ``reader``."""
        credential = _credential(("card", self._card_key(card), reader, pin, True, None))
        return self._decide(credential, door, now, lockdown)

    async def decide_card_pin(self, door: str, card: str, pin: str, now: datetime, *,
                              reader: str | None = None, lockdown: bool = False) -> Decision:
        """Card + PIN: the two scrypt checks (tens of ms and 16 MiB each on a Pi) run in a
        worker thread; the decision itself runs on the loop like every other one."""
        key = self._card_key(card)
        found = self._index.cards.get(key)
        entry = self._index.persons.get(found[0]) if found is not None else None
        person = entry.person if entry is not None else None
        pin_ok, duress = await asyncio.to_thread(pin_matches, pin, person)
        checked = (person.id, pin_ok, duress) if person is not None else None
        credential = Credential("card", key, reader, pin, pin_checked=checked)
        return self._decide(credential, door, now, lockdown)

    def decide_face(self, door: str, person: str, now: datetime, *, live: bool = True,
                    reader: str | None = None, lockdown: bool = False) -> Decision:
        """Decide a face the gallery matched to ``person`` at ``door``."""
        return self._decide(Credential("face", person, reader, live=live), door, now, lockdown)

    def _decide(self, credential: Credential, door: str, now: datetime, lockdown: bool) -> Decision:
        policy = self._policies.get(door) or DoorPolicy(door)
        state = self._states[lockdown]
        if self._time is not None:  # the trusted-time view of this moment
            view = self._time()
            state = AccessState(state.index, state.memory, lockdown, view.floor_ms, view.trusted,
                                self.untrusted_policy)
        decision = decide(credential, policy, now, state)
        self._remember(decision, policy, now)
        return decision

    def _remember(self, decision: Decision, policy: DoorPolicy, now: datetime) -> None:
        person = decision.person
        if person is None:
            return
        memory = self.memory
        if decision.reason is _WRONG_PIN:
            ts = now.timestamp()
            guesses = memory.wrong_pins.setdefault(person, [])
            guesses[:] = [t for t in guesses if 0 <= ts - t <= PIN_LOCK_SECONDS] + [ts]
        elif decision.granted and decision.credential_kind == "card" and policy.pin_required:
            memory.wrong_pins.pop(person, None)
        if decision.granted:
            # Most gates have no first factor waiting and no anti-passback: nothing to touch.
            if memory.cards:
                memory.cards.pop((decision.door, person), None)
            if memory.faces:
                memory.faces.pop((decision.door, person), None)
            if decision.direction is not None:
                memory.sides[(decision.door, person)] = decision.direction
        elif decision.awaiting in ("face", "card"):
            waiting = memory.cards if decision.credential_kind == "card" else memory.faces
            ts = now.timestamp()
            waiting[(decision.door, person)] = ts
            _forget_stale(waiting, ts, policy.multi_factor_seconds)


def _forget_stale(waiting: dict[tuple[str, str], float], ts: float, window_seconds: float) -> None:
    """Drop first factors too old to count, so the table stays as small as the live waits."""
    stale = [k for k, t in waiting.items() if ts - t > window_seconds]
    for key in stale:
        del waiting[key]
