"""The ``sync`` command's payload: the resident list a station pushes to a gate.

Pydantic models, strict about types (a JSON ``true`` is no version, ``"1"`` is no flag) and closed
(an unknown field is an error), so the gate refuses a malformed list before it touches its store;
the station validates what it builds with the same models.  Their JSON Schema is
``docs/schemas/sync.json`` (:func:`sync_schema`).  What needs the gate's configuration (its time
zone for validity bounds, its card hash key, schedule texts) is checked by the gate's store.

Shapes::

    {"mode": "snapshot", "version": 8, "persons": [PERSON, ...], "groups": [GROUP, ...],
     "holidays": ["2026-10-01", {"date": "2026-10-02", "name": "National Day"}, ...],
     "revoked": ["0004567890", ...]}
    {"mode": "delta", "base_version": 8, "version": 9, "upsert": [PERSON, ...],
     "delete": ["p17", ...], "groups": [GROUP, ...], "delete_groups": ["old"],
     "holidays": [...], "revoke": ["card", ...], "unrevoke": ["card", ...]}
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

PERSON_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
GROUP_ID_PATTERN = PERSON_ID_PATTERN
DOOR_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PIN_HASH_PATTERN = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[0-9a-f]+\$[0-9a-f]+$")
MAX_CARD_CHARS = 64
KINDS = ("resident", "visitor", "staff")


class SyncPayloadError(ValueError):
    """A payload that does not follow the models; one ``field.path: message`` per line."""


def _person_id(value: str) -> str:
    if not PERSON_ID_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a person id (letters, digits, _ - .; max 64)")
    return value


def _group_id(value: str) -> str:
    if not GROUP_ID_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a group id")
    return value


def _door_id(value: str) -> str:
    if not DOOR_ID_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a door id")
    return value


def _card(value: str) -> str:
    if not value:
        raise ValueError("a card number must not be empty")
    if len(value) > MAX_CARD_CHARS or not value.isprintable():
        raise ValueError(f"{value[-4:]!r}... is not a card number")
    return value


def _pin_hash(value: str) -> str:
    if not PIN_HASH_PATTERN.match(value):
        raise ValueError("expected an scrypt hash (scrypt$N$r$p$salt$hash), never a PIN")
    return value


def validity_bound(value: str | None, zone: tzinfo, *, end_of_day: bool) -> datetime | None:
    """A validity bound as an aware time: an ISO date is the start of that day (``valid_from``)
    or, with ``end_of_day``, the start of the next (``valid_until`` is exclusive); a date-time
    without an offset is in ``zone`` (the gate's).  ValueError for other text."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        if len(text) == len("2026-12-01"):
            day = date.fromisoformat(text)
            if end_of_day:
                day += timedelta(days=1)
            return datetime.combine(day, time(), zone)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a date or time: {value!r} (use 2026-12-01 or 2026-12-01T18:00:00)") from None
    except OverflowError:  # the day after 9999-12-31
        raise ValueError(f"{value!r} is past the last day there is (leave it empty for no "
                         "end)") from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _moment(value: str) -> str:
    if not value:
        raise ValueError("not a date or time: '' (use 2026-12-01 or 2026-12-01T18:00:00)")
    for end_of_day in (False, True):  # the gate reads it so, in its own zone
        validity_bound(value, UTC, end_of_day=end_of_day)
    return value


def _source(value: str) -> str:
    if not value.strip():
        raise ValueError("the form, record or witness must be given")
    return value.strip()


def _kind(value: str) -> str:
    if value not in KINDS:
        raise ValueError(f"{value!r} is not resident, visitor or staff")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


# Our validators give the messages; WithJsonSchema states the same rule in the JSON Schema.
PersonId = Annotated[StrictStr, AfterValidator(_person_id),
                     WithJsonSchema({"type": "string", "pattern": PERSON_ID_PATTERN.pattern})]
GroupId = Annotated[StrictStr, AfterValidator(_group_id),
                    WithJsonSchema({"type": "string", "pattern": GROUP_ID_PATTERN.pattern})]
DoorId = Annotated[StrictStr, AfterValidator(_door_id),
                   WithJsonSchema({"type": "string", "pattern": DOOR_ID_PATTERN.pattern})]
CardNumber = Annotated[StrictStr, AfterValidator(_card),
                       WithJsonSchema({"type": "string", "minLength": 1,
                                       "maxLength": MAX_CARD_CHARS})]
PinHash = Annotated[StrictStr, AfterValidator(_pin_hash),
                    WithJsonSchema({"type": "string", "pattern": PIN_HASH_PATTERN.pattern})]
Moment = Annotated[StrictStr, AfterValidator(_moment),
                   WithJsonSchema({"type": "string", "description": "ISO date or date-time."})]
Kind = Annotated[StrictStr, AfterValidator(_kind), WithJsonSchema({"enum": list(KINDS)})]
IsoDate = Annotated[date, Field(strict=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Consent(_Model):
    """A recorded consent: when, and the form, record or witness it rests on."""

    date: IsoDate = Field(description="Day the consent was given (YYYY-MM-DD).")
    source: Annotated[StrictStr, AfterValidator(_source)] = Field(
        description="The form, record or witness the consent rests on.")


class PersonRecord(_Model):
    """One person; only ``id`` and ``name`` are required."""

    id: PersonId = Field(description="Letters, digits, _ - .; at most 64 characters.")
    name: Annotated[StrictStr, AfterValidator(_not_blank)] = Field(description="Display name.")
    kind: Kind = Field(
        "resident", description="resident, visitor or staff.")
    enabled: StrictBool = Field(True, description="False refuses every credential of the person.")
    valid_from: Moment | None = Field(
        None, description="Inclusive; a date is the start of that day, gate time; a time "
        "without an offset is gate time; null = unbounded.")
    valid_until: Moment | None = Field(
        None, description="Exclusive; a date alone is the end of that day.")
    groups: list[GroupId] = Field(default_factory=list, description="Group ids.")
    cards: list[CardNumber] = Field(
        default_factory=list, description="Canonical card strings as the readers produce them.")
    duress_cards: list[CardNumber] = Field(
        default_factory=list, description="Cards that open and raise a silent access.duress.")
    pin_hash: PinHash | None = Field(
        None, description="scrypt$N$r$p$salt_hex$hash_hex; never a plain PIN.")
    duress_pin_hash: PinHash | None = Field(None, description="As pin_hash, for duress.")
    face_consent: Consent | None = Field(None, description="Null: no face-scan entry.")
    under_14: StrictBool = Field(False, description="A child: face consent needs a guardian's.")
    guardian_consent: Consent | None = Field(None, description="A guardian's consent.")

    @model_validator(mode="after")
    def _rules(self) -> PersonRecord:
        problems = person_rules(self.cards, self.duress_cards, under_14=self.under_14,
                                face_consent=self.face_consent is not None,
                                guardian_consent=self.guardian_consent is not None)
        if problems:
            raise ValueError(problems[0])
        return self


def person_rules(cards: Sequence[str], duress_cards: Sequence[str], *, under_14: bool,
                 face_consent: bool, guardian_consent: bool) -> list[str]:
    """The rules between fields of a person, as ``field: message`` lines (empty when kept).

    Separate from the model so a resident file can apply them to the fields of a row that were
    valid while others were not.  Cards are compared as given: pass canonical card strings.
    """
    problems = []
    if len(set(cards) | set(duress_cards)) != len(cards) + len(duress_cards):
        problems.append("cards: a card is listed twice")
    if under_14 and face_consent and not guardian_consent:
        problems.append("guardian_consent: face consent of a child under 14 needs a guardian's")
    return problems


def validity_problem(valid_from: str | None, valid_until: str | None,
                     zone: tzinfo | None) -> str | None:
    """``valid_until: ...`` when the period is empty, else None; both bounds already valid text.

    Without the gate's ``zone`` (the station) the order is judged only where no zone can change
    it: both bounds with an offset, or both without (the gate checks the rest).
    """
    if not valid_from or not valid_until:
        return None
    if zone is None:
        if _has_offset(valid_from) != _has_offset(valid_until):
            return None
        zone = UTC
    start = validity_bound(valid_from, zone, end_of_day=False)
    end = validity_bound(valid_until, zone, end_of_day=True)
    if start is not None and end is not None and end <= start:
        return "valid_until: must be later than valid_from"
    return None


def _has_offset(value: str) -> bool:
    text = value.strip()
    return len(text) != len("2026-12-01") and datetime.fromisoformat(text).tzinfo is not None


class GroupRecord(_Model):
    """A group: which doors its members may open, and when."""

    id: GroupId = Field(description="Group id.")
    name: StrictStr = Field("", description="Display name.")
    doors: list[DoorId] = Field(default_factory=list, description="Door ids.")
    schedule: StrictStr = Field("always", description="Schedule text (see docs), e.g. "
                                "'mon-fri 07:00-22:00'.")


class HolidayRecord(_Model):
    """A named holiday (a bare ISO date is a holiday without a name), or with ``workday`` a
    make-up working day (调休)."""

    date: IsoDate = Field(description="YYYY-MM-DD.")
    name: StrictStr = Field("", description="Name of the holiday.")
    workday: StrictBool = Field(
        False, description="A make-up working day (调休): a weekend day that is a working day "
        "(schedules give it a Monday's windows), not a holiday.")


Holiday = IsoDate | HolidayRecord


class Snapshot(_Model):
    """Everything: replaces the gate's persons, groups, revoked cards (and holidays if given)."""

    mode: Literal["snapshot"]
    version: StrictInt = Field(ge=1, description="Not lower than the gate's version.")
    persons: list[PersonRecord] = Field(default_factory=list)
    groups: list[GroupRecord] = Field(default_factory=list)
    holidays: list[Holiday] | None = Field(None, description="Absent: the calendar is kept.")
    revoked: list[CardNumber] = Field(default_factory=list)


class Delta(_Model):
    """Changes on top of exactly ``base_version``."""

    mode: Literal["delta"]
    base_version: StrictInt | None = Field(None, description="The version it applies to.")
    version: StrictInt = Field(ge=1, description="Greater than base_version.")
    upsert: list[PersonRecord] = Field(default_factory=list)
    delete: list[PersonId] = Field(default_factory=list)
    groups: list[GroupRecord] = Field(default_factory=list, description="Upserted.")
    delete_groups: list[GroupId] = Field(default_factory=list)
    holidays: list[Holiday] | None = Field(None, description="Present: replaces the calendar.")
    revoke: list[CardNumber] = Field(default_factory=list)
    unrevoke: list[CardNumber] = Field(default_factory=list)


SyncPayload = Annotated[Snapshot | Delta, Field(discriminator="mode")]
_FIELD_NAMES = frozenset(name for model in (PersonRecord, GroupRecord, Consent, HolidayRecord,
                                            Snapshot, Delta) for name in model.model_fields)
_SYNC: TypeAdapter[Snapshot | Delta] = TypeAdapter(SyncPayload)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(error: ValidationError, *, skip: int = 0, model_rules: bool = True) -> str:
    """``field.path: message`` lines of a pydantic error (``skip`` leading path parts); without
    ``model_rules`` only the fields' own errors (for callers that apply :func:`person_rules`
    themselves)."""
    lines = []
    for item in error.errors(include_url=False):
        loc = tuple(p for p in item["loc"][skip:]
                    if not (isinstance(p, str) and p.startswith("function-")))
        if not loc and not model_rules:
            continue
        where = _where(loc)
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), sorted(_FIELD_NAMES), n=1)
            message = "unknown field" + (f"; did you mean {close[0]!r}?" if close else "")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
        field, _, rest = message.partition(": ")
        if rest and field.isidentifier():  # a model rule names its own field
            lines.append(f"{where}.{message}" if where else message)
        else:
            lines.append(f"{where}: {message}" if where else message)
    return "\n".join(lines)


def parse_sync(obj: Any) -> Snapshot | Delta:
    """Validate a ``sync`` payload; raises :class:`SyncPayloadError`."""
    if not isinstance(obj, dict) or obj.get("mode") not in ("snapshot", "delta"):
        mode = obj.get("mode") if isinstance(obj, dict) else None
        raise SyncPayloadError(f"mode must be snapshot or delta, not {mode!r}")
    try:
        return _SYNC.validate_python(obj)
    except ValidationError as exc:
        raise SyncPayloadError(describe(exc, skip=1)) from None


def sync_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the payload, as in ``docs/schemas/sync.json``."""
    schema = _SYNC.json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://menjin.example/schemas/sync.json",
            "title": "menjin sync command arguments", **schema}
