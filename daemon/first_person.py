"""First-person unlock (Hikvision "first card normal open", ZKTeco "first-card normal open").

A door with ``first_person: {group: managers, schedule: "mon-fri 07:00-09:00"}`` stays locked
in its windows until the first passage that counts; from then on it is held open (mode
``hold_open``, source ``first_person``) until that window ends.  A passage counts when

- the door carried it out: a grant the door refused (lockdown, interlock), a denial, an
  anti-passback refusal or a card still waiting for its PIN is no passage;
- it is no duress passage (a person under threat must not leave the door open behind them);
- it is no exit through the door's anti-passback exit reader (a night guard going home at
  07:05 does not open the door for the day);
- the person is a member of the group (an access group of the resident store);
- it was made with a card (card, card + PIN, card + face).  A face alone counts only with
  ``faces: true``: a face is recognised without its owner meaning to open anything (a manager
  walking past the camera), and a false match would hold the door open for everyone;
- the door follows its schedule: no mode set by the station or an admin is in force;
- the gate's clock is trusted.  An untrusted clock cannot say whether a window is open or when
  it ends, so it never starts a first-person unlock, and one already running is suspended (the
  door locked) until the clock is trusted again.

Only the first passage of a window counts: the run is kept (:mod:`daemon.door_modes`, the same
durable file as the modes) under the window's end time, so a restart inside the window keeps the
door open and a later card of the same window does not start it again, also not after the
station or an admin ended it.  Windows are those of :mod:`daemon.schedule`: on a holiday of the
gate's calendar only ``hol`` windows apply, a make-up working day has Monday's windows.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from daemon.access import Decision
from daemon.config import AccessRule, FirstPersonSection
from daemon.schedule import Schedule, parse_schedule


@dataclass(frozen=True, slots=True)
class FirstPersonRule:
    """A door's first-person rule, built from its ``first_person`` config section.

    ``card_and_face``: the door's rule asks for both factors, so a passage whose last factor
    was the face still involved the person's card.
    """

    group: str
    schedule: Schedule
    faces: bool = False
    card_and_face: bool = False

    @classmethod
    def from_config(cls, section: FirstPersonSection, access: AccessRule) -> FirstPersonRule:
        return cls(section.group, parse_schedule(section.schedule), section.faces,
                   access is AccessRule.CARD_AND_FACE)

    def counts(self, decision: Decision, groups: Collection[str]) -> bool:
        """Whether the passage ``decision`` (already carried out by the door) of a person in
        ``groups`` may start the door's first-person unlock (time and mode aside)."""
        if not decision.granted or decision.duress or decision.person is None \
                or decision.direction == "exit":
            return False
        if self.group not in groups:
            return False
        return (decision.credential_kind == "card" or self.faces or self.card_and_face)

    def window_end(self, local: datetime, holidays: frozenset[date],
                   workdays: frozenset[date]) -> datetime | None:
        """The end of the window ``local`` (the gate's wall-clock time) falls in, or None."""
        return self.schedule.window_end(local, holidays, workdays)

    def as_dict(self) -> dict[str, object]:
        return {"group": self.group, "schedule": self.schedule.text, "faces": self.faces}
