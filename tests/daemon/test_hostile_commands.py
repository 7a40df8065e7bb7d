"""Hostile messages on the command topic cost one refusal, never a task or the journal
(issue 14, finding 5).

The exact reproductions (an integer of more than 4,300 digits, ``"id": "\\ud800"``, a refusal
carrying ~1 MiB of the sender's text), then a fuzzer: 10^5 generated messages through the whole
command path (bounded parse, checks, refusal alarm, journal), with a real journal on a real file.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.commands import EXCERPT_CHARS, CommandProcessor, excerpt
from daemon.events import Event
from daemon.journal import Journal
from protocol.envelope import new_command

GATE = "fuzz-gate"
FUZZ_MESSAGES = 100_000
KEY = Ed25519PrivateKey.generate()


class Clock:
    """Wall clock that a test moves on (61 s a message lets every refusal become an alarm)."""

    def __init__(self) -> None:
        self.ms = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db", gate=GATE)
    try:
        yield j
    finally:
        j.close()


def processor(journal: Journal, clock: Clock) -> CommandProcessor:
    async def door(args: dict[str, Any]) -> dict[str, Any]:
        return {"door": str(args.get("door"))[:40]}

    return CommandProcessor(gate=GATE, station_key=KEY.public_key(),
                            remember_nonce=journal.remember_nonce, emit=journal.record,
                            handlers={"open": door, "mode": door}, clock=clock)


def signed(**fields: Any) -> bytes:
    envelope = new_command("open", GATE, {"door": "front"}, KEY)
    envelope.update(fields)
    return json.dumps(envelope).encode()  # "\ud800" travels as the six-character escape


def stored(journal: Journal) -> list[dict[str, Any]]:
    assert journal.flush(durable=True)
    return [json.loads(p.payload) for p in journal.pending(10_000)]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_an_integer_of_4301_digits_is_one_refusal(journal: Journal) -> None:
    proc = processor(journal, Clock())
    payload = signed().replace(b'"issued_at_ms": ', b'"issued_at_ms": ' + b"9" * 4301 + b", "
                               b'"x": ', 1)
    outcome = run(proc.process("open", payload))
    assert outcome.result["ok"] is False and outcome.result["reason"] == "malformed"
    assert outcome.result["result"]["detail"] == "number with more than 20 digits"
    refused = [e for e in stored(journal) if e["type"] == "command.refused"]
    assert refused[0]["data"]["detail"] == "number with more than 20 digits"


def test_a_lone_surrogate_id_never_wedges_the_journal(journal: Journal) -> None:
    proc = processor(journal, Clock())
    payload = signed(id="\ud800")
    assert b'"id": "\\ud800"' in payload
    outcome = run(proc.process("open", payload))
    assert outcome.result["reason"] == "malformed"
    assert outcome.result["result"]["detail"] == "string holds a lone UTF-16 surrogate escape"
    raw = payload.replace(b"\\ud800", b"\xed\xa0\x80")  # the same, encoded as bytes
    outcome = run(proc.process("open", raw))
    assert outcome.result["result"]["detail"].startswith("not valid UTF-8 at byte")
    json.dumps(outcome.result, ensure_ascii=False).encode()  # publishable as it is
    # The whole kind: whatever text reaches the journal, later writes still succeed.
    journal.record(Event("command.refused", data={"command_id": "\ud800", "x": "a\udfffb"}))
    journal.record(Event("door.forced", door="front"))
    events = stored(journal)
    assert [e["type"] for e in events][-2:] == ["command.refused", "door.forced"]
    assert events[-2]["data"] == {"command_id": "\ufffd", "x": "a\ufffdb"}


def test_a_refusal_carries_only_a_short_escaped_excerpt_of_a_megabyte(
        journal: Journal) -> None:
    proc = processor(journal, Clock())
    huge_id = "A" * (1024 * 1024 - 1000)  # fits the envelope limit, signature made up
    payload = signed(id=huge_id, sig="AAAA")
    assert len(payload) < 1024 * 1024
    outcome = run(proc.process("open", payload))
    assert outcome.result["reason"] == "bad_signature"
    refused = [e for e in stored(journal) if e["type"] == "command.refused"][-1]
    assert len(json.dumps(refused)) < 1024
    assert refused["data"]["command_id"].startswith("A" * 40)
    assert refused["data"]["command_id"].endswith(f"…(+{len(huge_id) - 64} chars)")
    gate = "g\n\x1b[31m" + "B" * 900_000
    outcome = run(proc.process("open", signed(gate=gate)))
    detail = outcome.result["result"]["detail"]
    assert len(detail) <= EXCERPT_CHARS + 20 and "\n" not in detail and "\x1b" not in detail


@pytest.mark.parametrize(("text", "want"), [
    ("plain", "plain"),
    ("a\nb", "a\\u000ab"),
    ("\ud800x", "\\ud800x"),
    ("x" * 200, "x" * EXCERPT_CHARS + "…(+80 chars)"),
])
def test_excerpt(text: str, want: str) -> None:
    assert excerpt(text) == want
    excerpt(text).encode("utf-8")


# ---------------------------------------------------------------------------------- the fuzzer
FRAGMENTS = [
    b"9" * 4400, b'"\\ud800"', b'"\\udc00\\ud800"', b"\xed\xa0\x80", b"\xff\xfe", b"[" * 5000,
    b"{" * 100, b"NaN", b"1e999", b"-0", b'"' + b"x" * 70_000 + b'"', b"\x00", b'"a":1,"a":2',
    b"true", b"null", b'\\"', b"\\u0000", b"]]]]", b"1" * 25, b"0.0000000000000000000000001",
]


def messages(seed: int) -> Iterator[tuple[str, bytes]]:
    """Generated (topic name, payload): random bytes, mutated signed envelopes, hostile
    fragments spliced in, random JSON, and a few validly signed odd commands."""
    rng = random.Random(seed)
    base = signed()
    names = ["open", "mode", "sync", "ping", "x" * 300, "\ud800", "open/../x", "", "config"]
    while True:
        kind = rng.random()
        name = rng.choice(names)
        if kind < 0.2:
            data = rng.randbytes(rng.randrange(0, 300))
        elif kind < 0.6:
            data = bytearray(base)
            for _ in range(rng.randrange(1, 6)):
                at = rng.randrange(len(data))
                data[at:at + rng.randrange(0, 4)] = rng.choice(
                    [rng.randbytes(rng.randrange(1, 8)), rng.choice(FRAGMENTS)])
            data = bytes(data)
        elif kind < 0.8:
            at = rng.randrange(len(base))
            data = base[:at] + rng.choice(FRAGMENTS) + base[at:]
        elif kind < 0.99:
            obj: Any = rng.choice([{}, [], "", 0, {"id": "\ud800"}, {"v": 1, "sig": ""}])
            for _ in range(rng.randrange(0, 6)):
                obj = {rng.choice(["id", "name", "args", "v", "\u00e9", "sig"]): obj}
            data = json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode("utf-8",
                                                                           "surrogatepass")
        else:
            args = {rng.choice(["door", "mode", "\u4e2d"]): rng.choice(
                ["front", "\u0000", "x" * 1000, 2**53 - 1, None, ["a"], {"b": 1}])}
            data = json.dumps(new_command(rng.choice(["open", "mode", "ping"]), GATE, args,
                                          KEY)).encode()
            name = json.loads(data)["name"]
        yield name, data


@pytest.mark.timeout(600)
def test_fuzz_the_whole_command_path(journal: Journal, tmp_path: Path) -> None:
    clock = Clock()
    proc = processor(journal, clock)

    async def drive() -> int:
        journal.start_writer(asyncio.get_running_loop())
        refused = 0
        for count, (name, data) in enumerate(messages(14)):
            if count == FUZZ_MESSAGES:
                break
            clock.ms += 61_000 if count % 50 == 0 else 1  # every 50th refusal is an alarm
            outcome = await proc.process(name, data)  # never raises
            json.dumps(outcome.result, ensure_ascii=False).encode()  # publishable
            refused += not outcome.result["ok"]
            if count % 1000 == 0:
                await asyncio.sleep(0)  # let the writer's listeners run
        return refused

    started = time.monotonic()
    refused = asyncio.run(drive())
    elapsed = time.monotonic() - started
    assert refused > FUZZ_MESSAGES * 0.9
    # The journal still accepts events, alarms and grants among them, and stored everything.
    last = journal.record(Event("door.forced", door="front"))
    assert journal.flush(durable=True)
    assert last["id"] in journal.all_ids()
    assert journal.stats.rejected == 0 and journal.stats.write_failures == 0
    assert journal.queue_depth() == journal.stats.recorded
    for event in journal.pending(journal.stats.recorded):
        body = json.loads(event.payload)
        assert len(event.payload) < 2048, body  # short excerpts only
    print(json.dumps({"fuzz_messages": FUZZ_MESSAGES, "seconds": round(elapsed, 1),
                      "journalled": journal.stats.recorded}))
