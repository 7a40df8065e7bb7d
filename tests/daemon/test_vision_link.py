"""The daemon's side of the vision wire: bounded lines, checked fields, one bad message = a restart.

Fed through a real asyncio StreamReader, as the socket to the vision process would feed it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from pathlib import Path

import pytest

from daemon.events import Event
from daemon.vision_link import VisionEndedError, VisionLink
from daemon.vision_wire import MAX_MESSAGE_BYTES, MAX_TEXT, WireError, decode, encode
from tests.daemon.test_passage import rig


def link(events: list[Event]) -> VisionLink:
    passage, _door, _factory = rig(events)
    return VisionLink(config_path=Path("gate.yaml"), passage=passage, emit=events.append,
                      capture=lambda event, jpeg: events.append(event),
                      template_key=lambda: bytes(32))


async def listen(vision: VisionLink, *lines: bytes) -> None:
    reader = asyncio.StreamReader(limit=MAX_MESSAGE_BYTES)
    for line in lines:
        reader.feed_data(line)
    reader.feed_eof()
    await vision._listen(reader, "front")


def line(message: dict[str, object]) -> bytes:
    return json.dumps(message).encode() + b"\n"


async def test_a_recognition_goes_to_the_passage_which_decides() -> None:
    events: list[Event] = []
    await listen(link(events), line({"type": "hello", "pid": 1}), line({"type": "ready"}),
                 line({"type": "observation", "kind": "refused", "person": None,
                       "reason": "unknown_face"}),
                 line({"type": "health", "frames": 30, "processed": 20, "dropped": 10,
                       "errors": 1, "last_error": "ValueError: bad frame"}))
    assert [(e.type, e.reason) for e in events] == [("access.denied", "unknown_face")]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"not json\n", "bad message: not a JSON line"),
        (line({"no": "type"}), "bad message: not a message object"),
        (line({"type": "observation", "kind": "opened_the_door"}), "unknown observation kind"),
        (line({"type": "observation", "kind": "recognised", "person": "p" * (MAX_TEXT + 1)}),
         f"person: a string of at most {MAX_TEXT} characters"),
        (line({"type": "health", "frames": -1}), "frames: a non-negative integer"),
        (line({"type": "health", "frames": 10**30}), "frames: a non-negative integer"),
        (line({"type": "capture", "portrait": "***"}), "bad message"),
        (line({"type": "grant", "door": "front"}), "unknown message type 'grant'"),
        (line({"type": "burst", "frames": "not a list"}),
         "frames: a list of base64 strings expected"),
        (line({"type": "burst", "frames": ["***"]}), "bad message"),
    ],
)
async def test_a_bad_message_ends_the_vision_process_and_decides_nothing(
        message: bytes, error: str) -> None:
    events: list[Event] = []
    with pytest.raises(VisionEndedError, match=error.replace("(", r"\(")):
        await listen(link(events), message)
    assert not any(e.type.startswith(("access.", "door.")) for e in events)


async def test_a_line_over_the_bound_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(VisionEndedError, match=f"message over {MAX_MESSAGE_BYTES} bytes"):
        await listen(link([]), b"x" * (MAX_MESSAGE_BYTES + 1) + b"\n")


def test_the_wire_refuses_to_send_an_oversized_message() -> None:
    with pytest.raises(WireError, match="exceeds"):
        encode({"type": "show", "photo": "x" * MAX_MESSAGE_BYTES})
    assert decode(encode({"type": "ready"})) == {"type": "ready"}


async def burst_rig(
    vision: VisionLink,
) -> tuple[asyncio.StreamReader, list[object]]:
    """The vision process's end of the socket, with the link ready to write to it (and the
    objects to keep alive while the test runs)."""
    ours, theirs = socket.socketpair()
    link_reader, vision._writer = await asyncio.open_unix_connection(sock=ours)
    vision.door = "front"
    vision._ready.set()
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    return reader, [link_reader, writer, ours, theirs]


async def test_an_enrolment_burst_is_asked_of_the_vision_process_and_its_frames_come_back(
) -> None:
    vision = link([])
    child, _alive = await burst_rig(vision)
    asked = asyncio.create_task(vision.burst("front", 2, 1.0))
    assert decode(await child.readline()) == {"type": "burst", "frames": 2, "seconds": 1.0}
    frames = [b"\xff\xd8\xff one", b"\xff\xd8\xff two"]
    await listen(vision, line({"type": "burst",
                               "frames": [base64.b64encode(f).decode() for f in frames]}))
    assert await asked == frames


async def test_a_refused_burst_and_a_door_without_camera_say_why() -> None:
    vision = link([])
    child, _alive = await burst_rig(vision)
    with pytest.raises(LookupError, match="door back has no camera with vision"):
        await vision.burst("back", 2, 1.0)
    asked = asyncio.create_task(vision.burst("front", 2, 1.0))
    await child.readline()  # the request went out: the refusal answers it
    await listen(vision, line({"type": "burst", "error": "frames: 1 to 12 expected"}))
    with pytest.raises(LookupError, match="the vision process refused the burst: frames: 1 to 12"):
        await asked


async def test_frames_nobody_waits_for_any_more_are_dropped() -> None:
    vision = link([])
    await listen(vision, line({"type": "burst", "frames": []}))  # no error, nothing to resolve


async def test_status_tells_a_door_refusing_faces_and_a_down_vision_is_no_absent_camera(
        ) -> None:
    events: list[Event] = []
    vision = link(events)
    reason = "no NIR calibration at /x/nir.json: run `menjin camera calibrate`"
    await listen(vision, line({"type": "ready"}),
                 line({"type": "health", "frames": 3, "processed": 3, "dropped": 0,
                       "errors": 0, "last_error": None, "faces_refused": reason}))
    status = vision.status()
    assert (status["state"], status["camera"], status["faces_refused"]) == ("ok", "ok", reason)
    vision._fault("front", "exit 1", 1.0)  # the process died: the camera is not "absent"
    status = vision.status()
    assert (status["state"], status["camera"], status["faces_refused"]) == (
        "fault", "fault", None)


async def test_a_stop_is_not_lost_when_a_line_arrives_with_it() -> None:
    # A heartbeat that arrives in the same loop turn as the cancellation of a stop or reload:
    # Python 3.11's wait_for returned the line and dropped the cancellation, and the link kept
    # listening (and the vision process running) forever.
    events: list[Event] = []
    reader = asyncio.StreamReader(limit=MAX_MESSAGE_BYTES)
    listening = asyncio.create_task(link(events)._listen(reader, "front"))
    await asyncio.sleep(0)  # waiting for a line
    reader.feed_data(line({"type": "health", "frames": 1, "processed": 1, "dropped": 0,
                           "errors": 0}))
    listening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listening
