"""A gate's missing events as the page and the CLI show them, and the ``resend`` asking for them.

The receiver asks for every gap by itself (:mod:`station.receiver`), but backs off to once an hour
while a gap stays open; an operator who knows the gate is reachable again asks at once, from the
gates view or ``menjin station resend GATE FROM TO``.  Both go through :func:`resend_args`: a gate
the station never heard of is refused before anything is sent, and a range typed by hand is
bounded, so a typo cannot make a gate publish its whole journal again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from protocol.envelope import RESEND_MAX_EVENTS
from station.commands import CommandError, unknown_gate
from station.receiver import DEFAULT_SETTLE_MS
from station.store import Range, Store, now_ms

#: Open gaps listed per gate (lowest first); the rest are counted.
MAX_GAPS_SHOWN = 20
#: Ranges the gate no longer holds listed per gate (the highest ones).
MAX_LOST_SHOWN = 10
#: A range that is not within an open gap spans at most this many seqs (what a gate re-sends per
#: command); an open gap of any size may be asked for as it is (the receiver asks for the rest).
MAX_RANGE_EVENTS = RESEND_MAX_EVENTS
MAX_SEQ = 2**53


@dataclass(frozen=True)
class GateGaps:
    """What the station misses of one gate: ``open`` gaps (inclusive, lowest first, at most
    :data:`MAX_GAPS_SHOWN`), ``more`` open gaps not listed, and ``lost`` ranges the gate said it no
    longer holds (the highest :data:`MAX_LOST_SHOWN`)."""

    open: list[Range]
    more: int
    lost: list[Range]


def gate_gaps(store: Store, gate: str) -> GateGaps:
    """The gaps of ``gate`` now; events younger than the receiver's settle time do not count
    (another receiver may still hold the batch that fills them).  Read-only (blocks: a thread)."""
    gaps = store.gaps(gate, settled_before_ms=now_ms() - DEFAULT_SETTLE_MS, remember=False)
    return GateGaps(open=gaps[:MAX_GAPS_SHOWN], more=max(0, len(gaps) - MAX_GAPS_SHOWN),
                    lost=store.lost_ranges(gate)[-MAX_LOST_SHOWN:])


def parse_seq(text: str, field: str) -> int:
    """A seq number typed in a form; :class:`CommandError` for anything else."""
    text = text.strip()
    if not text.isdigit() or len(text) > len(str(MAX_SEQ)) or not 1 <= int(text) <= MAX_SEQ:
        raise CommandError("%(field)s: a seq number from 1 to 2^53 is required, not %(text)s",
                           field=field, text=repr(text))
    return int(text)


def resend_args(store: Store, gate: str, low: int, high: int) -> dict[str, int]:
    """The arguments of a ``resend`` of ``low..high`` (inclusive) to ``gate``, checked against
    what the station knows; :class:`CommandError` (at once) for an unknown gate, an empty or
    reversed range, or a range over :data:`MAX_RANGE_EVENTS` that is not within an open gap."""
    gates = store.t["gates"]
    with store.engine.connect() as conn:
        known = conn.scalar(select(gates.c.gate).where(gates.c.gate == gate))
    if known is None:
        raise unknown_gate(gate)
    if not 1 <= low <= MAX_SEQ or not 1 <= high <= MAX_SEQ:
        raise CommandError("seq numbers run from 1 to 2^53")
    if high < low:
        raise CommandError("seq %(low)s-%(high)s: the end is below the start", low=low, high=high)
    if high - low + 1 > MAX_RANGE_EVENTS and not any(
            g_low <= low and high <= g_high for g_low, g_high in store.gaps(gate, remember=False)):
        raise CommandError(
            "seq %(low)s-%(high)s is %(count)s events and not a gap the station misses: ask for "
            "at most %(most)s at once", low=low, high=high, count=high - low + 1,
            most=MAX_RANGE_EVENTS)
    return {"from": low, "to": high}
