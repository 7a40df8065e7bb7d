"""Station → gate resident sync at compound scale: 100,000 residents through a real mosquitto.

The gate is the real door daemon (``menjin run``, simulated board) in its own process; the
station is ``station.commands.sync`` in this one.  Measured:
- the snapshot: time from the first signed piece to the gate's answer that all of it is applied,
  and the number of pieces;
- a delta afterwards (1 % of the residents changed);
- the gate's peak RSS (``VmHWM``) before the sync (start-up, the baseline) and after it, so the
  increase is what receiving, checking and applying the list cost;
- the baseline time: the gate's resident store applying the same snapshot directly from memory
  in this process (no broker, no pieces, no signatures), so the ratio is the transfer's cost.

Usage: .venv/bin/python bench/station_sync.py [--quick] [--residents N]
The last line is JSON: residents, pieces, snapshot_s, delta_s, direct_apply_s,
ratio_vs_direct, gate_peak_rss_mb_before, gate_peak_rss_mb_after, gate_peak_rss_increase_mb,
baseline, machine, versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import with_machine  # noqa: E402
from daemon.store import Store as GateStore  # noqa: E402
from protocol.mqtt import MqttClient  # noqa: E402
from station.commands import keygen, signing_key, sync  # noqa: E402
from station.config import DatabaseConfig, MqttConfig, StationConfig  # noqa: E402
from station.residents import ResidentList, hash_pins, sync_args  # noqa: E402
from station.store import Store  # noqa: E402
from tests.broker import start_broker  # noqa: E402

PREFIX = "menjin"
GATE = "bench-gate"
ONLINE_TIMEOUT_SECONDS = 60
COMMAND_TIMEOUT_SECONDS = 300
CHANGED_SHARE = 0.01
KIB = 1024

GATE_CONFIG = """\
version: 1
state_dir: {state}
gate: {{id: {gate}, site: Sync benchmark}}
hardware: {{gpio_backend: mock}}
doors:
  front:
    lock: {{pin: 17, active_high: true}}
    unlock_seconds: 1
    access: card
uplink: {{host: 127.0.0.1, port: {port}, prefix: {prefix}, health_seconds: 60,
          station_public_key_file: {key}}}
control: {{socket: {socket}}}
"""


def residents(count: int, *, changed: int = 0) -> ResidentList:
    """``count`` residents with a card each, in a few buildings; ``changed`` of them renamed."""
    persons: dict[str, dict[str, Any]] = {}
    for i in range(count):
        name = f"Resident {i}" + (" (moved)" if i < changed else "")
        persons[f"p{i:06d}"] = {"id": f"p{i:06d}", "name": name,
                                "cards": [f"{1_000_000_000 + i:010d}"],
                                "groups": [f"building-{i % 40}"]}
    groups = {f"building-{b}": {"id": f"building-{b}", "doors": ["front"]} for b in range(40)}
    return ResidentList(persons=persons, groups=groups)


def start_gate(config: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """The real door daemon on a simulated board, logging to ``log_file``."""
    with log_file.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from menjin.cli import main; main()", "run", "-c",
             str(config)], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / KIB
    raise RuntimeError("no VmHWM in /proc (Linux only)")


async def wait_online(port: int) -> None:
    async with MqttClient("127.0.0.1", port, client_id="bench-sync-watch") as client:
        await client.subscribe(f"{PREFIX}/{GATE}/status")
        async with asyncio.timeout(ONLINE_TIMEOUT_SECONDS):
            async for message in client.messages():
                if json.loads(message.payload).get("state") == "online":
                    return


def direct_apply_seconds(workdir: Path, listing: ResidentList) -> float:
    """The baseline: the gate's store applying the snapshot from memory."""
    args = sync_args(hash_pins(listing, None), None, snapshot=True)
    store = GateStore(workdir / "direct" / "residents.db")
    try:
        started = time.perf_counter()
        store.apply_sync(args)
        return time.perf_counter() - started
    finally:
        store.close()


async def run(count: int, workdir: Path) -> dict[str, Any]:
    broker = start_broker(workdir / "broker")
    gate_dir = workdir / "gate"
    gate_dir.mkdir()
    public = keygen(workdir / "station_key.pem")
    (gate_dir / "gate.yaml").write_text(GATE_CONFIG.format(
        state=gate_dir / "state", gate=GATE, port=broker.port, prefix=PREFIX, key=public,
        socket=gate_dir / "control.sock"))
    log_file = gate_dir / "daemon.log"
    gate = start_gate(gate_dir / "gate.yaml", log_file)
    config = StationConfig(
        version=1, mqtt=MqttConfig(port=broker.port, prefix=PREFIX),
        database=DatabaseConfig(url=f"sqlite:///{workdir / 'station.db'}"),
        portraits_dir=workdir / "portraits", signing_key=workdir / "station_key.pem",
        command_timeout_seconds=COMMAND_TIMEOUT_SECONDS)
    store = Store(config.database.url, portraits_dir=config.portraits_dir)
    key = signing_key(config.signing_key)
    try:
        await wait_online(broker.port)
        before = peak_rss_mb(gate.pid)
        listing = residents(count)
        started = time.perf_counter()
        snapshot = await sync(config, GATE, listing, key=key, store=store, snapshot=True)
        snapshot_s = time.perf_counter() - started
        if snapshot.get("ok") is not True:
            raise RuntimeError(f"snapshot refused: {snapshot}")
        changed = max(1, int(count * CHANGED_SHARE))
        started = time.perf_counter()
        delta = await sync(config, GATE, residents(count, changed=changed), key=key, store=store)
        delta_s = time.perf_counter() - started
        if delta.get("ok") is not True:
            raise RuntimeError(f"delta refused: {delta}")
        after = peak_rss_mb(gate.pid)
    except BaseException:
        sys.stderr.write(log_file.read_text(errors="replace")[-3000:])
        raise
    finally:
        gate.terminate()
        try:
            gate.wait(30)
        except subprocess.TimeoutExpired:
            gate.kill()
        store.close()
        broker.stop()
    direct_s = direct_apply_seconds(workdir, listing)
    result = snapshot["result"]
    return {
        "residents": count,
        "gate_persons": result.get("persons"),
        "pieces": result.get("count", 1),
        "snapshot_s": round(snapshot_s, 2),
        "delta_changed": changed,
        "delta_s": round(delta_s, 2),
        "delta_upserted": delta["result"].get("upserted"),
        "direct_apply_s": round(direct_s, 2),
        "ratio_vs_direct": round(snapshot_s / direct_s, 2),
        "baseline": {"name": "the gate's resident store applying the same snapshot from memory "
                             "(no broker, pieces or signatures)",
                     "seconds": round(direct_s, 2)},
        "gate_peak_rss_mb_before": round(before, 1),
        "gate_peak_rss_mb_after": round(after, 1),
        "gate_peak_rss_increase_mb": round(after - before, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 residents, under a minute")
    parser.add_argument("--residents", type=int, default=None)
    args = parser.parse_args()
    count = args.residents or (10_000 if args.quick else 100_000)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="station-sync-") as tmp:
        result = asyncio.run(run(count, Path(tmp)))
    print(f"{result['residents']} residents in {result['pieces']} signed pieces: snapshot "
          f"{result['snapshot_s']} s (the store alone {result['direct_apply_s']} s), delta of "
          f"{result['delta_changed']} in {result['delta_s']} s; gate peak RSS "
          f"{result['gate_peak_rss_mb_before']} -> {result['gate_peak_rss_mb_after']} MiB")
    print(json.dumps(with_machine(result, libraries=("paho-mqtt", "sqlalchemy"))))


if __name__ == "__main__":
    main()
