"""Command results in words for the operator, in the page's language and in the CLI.

A gate answers ``{"id", "name", "ok", "reason", "result", "detail"}`` (docs/mqtt.md); the
operator reads "门 front 已开启 5 秒" or "refused: the gate has no door 'back'", not JSON and not
Python exception names.  ``menjin station ... --json`` keeps the raw form.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Gettext = Callable[[str], str]
#: "ValueError: no running door 'back'" -> "no running door 'back'"
EXCEPTION_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(Error|Exception): ")


def _reasons(_: Gettext) -> dict[str, str]:
    return {
        "oversized": _("the command was too large for the gate"),
        "malformed": _("the gate could not read the command"),
        "unsigned": _("the command was not signed"),
        "wrong_name": _("the command name did not match its topic"),
        "unknown_command": _("the gate does not know this command"),
        "wrong_gate": _("the command was meant for another gate"),
        "no_station_key": _("the gate has no station key configured"),
        "bad_signature": _("the signature did not verify (is the gate given this station's key?)"),
        "expired": _("the command expired before it arrived"),
        "future": _("the command is dated in the future (check the clocks)"),
        "replayed": _("the command was already used"),
        "unsupported": _("this gate cannot do that"),
        "failed": _("the gate could not carry it out"),
    }


def _modes(_: Gettext) -> dict[str, str]:
    return {"normal": _("normal"), "hold_open": _("held open"), "lockdown": _("lockdown")}


def _ranges(value: Any) -> str:
    """``[[5, 9], [12, 12]]`` -> ``5–9, 12``; anything else in the list is left out."""
    shown = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, list) and len(item) == 2:
            low, high = item
            shown.append(str(low) if low == high else f"{low}–{high}")
    return ", ".join(shown)


def _resent(answer: Mapping[str, Any], _: Gettext) -> str:
    """A gate's answer to ``resend``: what it queued, what it no longer holds, what follows."""
    low, high = answer.get("from"), answer.get("to")
    text = _("The gate is sending seq %(low)s–%(high)s again (%(count)s queued).") % {
        "low": low, "high": high, "count": answer.get("resent")}
    more = []
    if missing := _ranges(answer.get("missing")):
        more.append(_("No longer held by the gate: seq %(ranges)s.") % {"ranges": missing})
    if answer.get("next") is not None:
        more.append(_("The station asks for the rest, from seq %(next)s, by itself.") % {
            "next": answer.get("next")})
    for sentence in more:  # Chinese puts no space between sentences
        text = _("%(text)s %(sentence)s") % {"text": text, "sentence": sentence}
    return text


def describe(result: Mapping[str, Any], _: Gettext) -> str:
    """One sentence for the operator about a gate's command result."""
    name = str(result.get("name", ""))
    raw = result.get("result")
    answer: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    door = str(answer.get("door", ""))
    if result.get("ok") is True:
        if name == "open" and answer.get("opened") is False:
            refusal = str(answer.get("refusal") or "")
            return _("Door %(door)s was not opened: %(why)s") % {"door": door, "why": refusal}
        if name == "open":
            return _("Door %(door)s opened.") % {"door": door}
        if name == "mode":
            modes = _modes(_)
            mode = str(answer.get("mode", ""))
            return _("Door %(door)s is now in mode %(mode)s.") % {
                "door": door, "mode": modes.get(mode, mode)}
        if name == "resend":
            return _resent(answer, _)
        return _("The gate carried out %(name)s.") % {"name": name}
    reason = str(result.get("reason", ""))
    why = _reasons(_).get(reason, reason)
    detail = EXCEPTION_PREFIX.sub("", str(result.get("detail") or ""))
    if detail:
        why = f"{why} ({detail})"
    return _("Refused: %(why)s") % {"why": why}
