"""`--json` on the control-socket tools: door test and readers watch print JSON objects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from daemon.control import ControlServer, Request
from menjin.cli import app

runner = CliRunner()


async def test_door_test_and_readers_watch_json(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "control.sock")

    async def door_test(req: Request) -> dict[str, Any]:
        return {"door": req.args["door"], "seconds": req.args["seconds"], "note": "click"}

    async def watch(req: Request) -> AsyncIterator[dict[str, Any]]:
        yield {"reader": "front-card", "kind": "card", "text": "0004567890"}

    server.command("door.test", door_test)
    server.stream("readers.watch", watch)
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    sock = str(tmp_path / "control.sock")
    try:
        door = await asyncio.to_thread(runner.invoke, app, ["door", "test", "front", "--json",
                                                            "--socket", sock])
        text = await asyncio.to_thread(runner.invoke, app, ["door", "test", "front",
                                                            "--socket", sock])
        watched = await asyncio.to_thread(runner.invoke, app, ["readers", "watch", "--json",
                                                               "--socket", sock])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert json.loads(door.stdout) == {"door": "front", "seconds": 1.0, "note": "click"}
    assert text.stdout == "door front: relay pulsed for 1 s (click)\n"
    assert json.loads(watched.stdout) == {"reader": "front-card", "kind": "card",
                                          "text": "0004567890"}
    assert watched.exit_code == 0
