"""Access decisions per second at 1k, 10k and 100k persons: menjin's index against an indexed
SQLite lookup making the same decision.

Each size is a real resident store (SQLite file in a temporary folder) filled by one station
snapshot: every person holds one card and belongs to one of a few groups whose schedules include
windows across midnight and a holiday calendar.  The index is loaded from the store as the daemon
does it, then :meth:`daemon.access.AccessController.decide_card` decides a fixed mix of
presentations (90 % known cards, 10 % unknown) at times spread over a week.

Why this baseline is the fair one: an access controller without menjin's in-memory index keeps its
persons in a database and asks it per presentation, and a competent one indexes the card.  The
baseline reads the same store file on its own connection: one prepared query per presentation
(``cards.card`` is the PRIMARY KEY; revoked cards by their PRIMARY KEY in the same statement)
returning the person's JSON row, which it parses (``json.loads``, validity bounds with the gate's
own ``protocol.sync.validity_bound``), then takes the same decision (disabled, validity, the door
tables of the person's groups built once, ``Schedule.is_open`` with the holidays).  Group and
holiday tables are small and cached, as anyone would.  Every presentation's outcome is checked to
agree with menjin's (``same_decisions``), so only the lookup differs.  The two contenders run in
interleaved rounds; figures are medians.  Each pass is timed by the wall clock and by this
process's CPU time: on a shared, loaded machine the wall rate mostly measures how often the
scheduler ran us, so the ratios, the target and the flatness use decisions per CPU second
(``decisions_per_cpu_s_*``); the wall rates are printed beside them.

Target: ≥ 200k decisions per CPU second at 100k persons, flat from 1k to 100k
(``flatness_100k_vs_1k``, per CPU second).
``rss_mb_100k`` is the resident memory of this process with the 100k-person store open and its
index loaded.

Usage: python bench/access_decision.py [--quick]
The last line is JSON: decisions_per_cpu_s_1k/10k/100k (and decisions_per_s_* by the wall
clock), sqlite_decisions_per_cpu_s_* and sqlite_decisions_per_s_*,
ratio_vs_sqlite_1k/10k/100k, flatness_100k_vs_1k, same_decisions, baseline, machine, versions.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import with_machine  # noqa: E402
from daemon.access import AccessController, DoorPolicy, Group, Reason  # noqa: E402
from daemon.schedule import Schedule, local_time  # noqa: E402
from daemon.store import Store  # noqa: E402
from protocol.sync import validity_bound  # noqa: E402

ZONE = ZoneInfo("Asia/Shanghai")
SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (100, 300, 1_000)
LABELS = ("1k", "10k", "100k")
DOORS = ("front", "vehicle", "garage")
GROUPS = [
    {"id": "residents", "doors": ["front", "vehicle"], "schedule": "always"},
    {"id": "office", "doors": ["front"], "schedule": "mon-fri 08:00-18:00; hol 09:00-12:00"},
    {"id": "night", "doors": ["front", "garage"], "schedule": "mon-fri 22:00-06:00"},
    {"id": "weekend", "doors": ["vehicle"], "schedule": "sat,sun 07:00-12:00,14:00-20:00"},
]
HOLIDAYS = ["2026-10-01", "2026-10-02", "2026-12-02"]
UNKNOWN_SHARE = 0.1
REVOKED_SHARE = 0.01
DISABLED_SHARE = 0.02
RESIDENT_WEIGHT = 7  # most people at a compound gate are residents with round-the-clock access
ROUNDS = 7
QUICK_ROUNDS = 3
TARGET_DECISIONS_PER_S = 200_000
START = datetime(2026, 11, 30, tzinfo=ZONE)
BYTES_PER_MB = 1024 * 1024
PAGE_BYTES = 4096
#: One statement per presentation: the card's person row, and whether the card is revoked.
LOOKUP = ("SELECT p.data, r.card IS NOT NULL FROM cards c JOIN persons p ON p.id = c.person "
          "LEFT JOIN revoked r ON r.card = c.card WHERE c.card = ?")
REVOKED = "SELECT 1 FROM revoked WHERE card = ?"

Decide = Callable[[str, str, datetime], object]
Outcome = tuple[bool, str]


def card_of(i: int) -> str:
    return f"{i:010d}"


def snapshot(size: int) -> dict[str, object]:
    rng = random.Random(size)
    weights = [RESIDENT_WEIGHT] + [1] * (len(GROUPS) - 1)
    persons = [{"id": f"p{i}", "name": f"Person {i}",
                "groups": [rng.choices(GROUPS, weights)[0]["id"]],
                "enabled": rng.random() >= DISABLED_SHARE,
                "cards": [card_of(i)], "valid_until": "2027-12-31"} for i in range(size)]
    revoked = [card_of(i) for i in rng.sample(range(size), max(1, int(size * REVOKED_SHARE)))]
    return {"mode": "snapshot", "version": 1, "persons": persons, "groups": GROUPS,
            "holidays": HOLIDAYS, "revoked": revoked}


def presentations(size: int, count: int) -> list[tuple[str, str, datetime]]:
    rng = random.Random(count)
    out = []
    for _ in range(count):
        known = rng.random() >= UNKNOWN_SHARE
        card = card_of(rng.randrange(size)) if known else card_of(size + rng.randrange(size))
        when = START + timedelta(seconds=rng.randrange(7 * 86_400))
        out.append((rng.choice(DOORS), card, when))
    return out


class SqliteDecider:
    """The baseline (see the module docstring): an indexed query per presentation."""

    def __init__(self, path: Path, store: Store) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self.card_ref = store.card_ref
        self.holidays = frozenset(store.holidays())
        self.doors: dict[str, dict[str, list[Schedule]]] = {}
        for group in store.groups():
            self._add(group)

    def _add(self, group: Group) -> None:
        for door in group.doors:
            self.doors.setdefault(door, {}).setdefault(group.id, []).append(group.schedule)

    def decide(self, door: str, card: str, now: datetime) -> Outcome:
        row = self.db.execute(LOOKUP, (self.card_ref(card),)).fetchone()
        if row is None:  # a revoked card may have no holder left
            revoked = self.db.execute(REVOKED, (self.card_ref(card),)).fetchone()
            return False, (Reason.REVOKED if revoked else Reason.UNKNOWN_CREDENTIAL).value
        if row[1]:
            return False, Reason.REVOKED.value
        person = json.loads(row[0])
        if not person.get("enabled", True):
            return False, Reason.DISABLED.value
        local = local_time(now, ZONE)
        valid_from = validity_bound(person.get("valid_from"), ZONE, end_of_day=False)
        valid_until = validity_bound(person.get("valid_until"), ZONE, end_of_day=True)
        if valid_from is not None and now < valid_from:
            return False, Reason.NOT_YET_VALID.value
        if valid_until is not None and now >= valid_until:
            return False, Reason.EXPIRED.value
        tables = self.doors.get(door, {})
        schedules = [s for g in person.get("groups", ()) for s in tables.get(g, ())]
        if not schedules:
            return False, Reason.NOT_ALLOWED_AT_DOOR.value
        if any(s.is_open(local, self.holidays) for s in schedules):
            return True, Reason.GRANTED.value
        return False, Reason.OUTSIDE_SCHEDULE.value

    def close(self) -> None:
        self.db.close()


def one_pass(decide: Decide, work: Sequence[tuple[str, str, datetime]]) -> tuple[float, float]:
    """Decisions per wall-clock second and per CPU second of this process over ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for door, card, when in work:
        decide(door, card, when)
    return (len(work) / (time.perf_counter() - wall),
            len(work) / max(time.process_time() - cpu, 1e-9))


def rss_mb() -> float:
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * PAGE_BYTES / BYTES_PER_MB


def measure(size: int, folder: Path, decisions: int, rounds: int) -> dict[str, float | bool]:
    path = folder / f"residents-{size}.db"
    store = Store(path, zone=ZONE)
    baseline: SqliteDecider | None = None
    try:
        store.apply_sync(snapshot(size))
        started = time.perf_counter()
        index = store.load_index()
        load_s = time.perf_counter() - started
        memory = rss_mb()
        controller = AccessController(index, {d: DoorPolicy(d) for d in DOORS},
                                      card_key=store.card_ref)
        baseline = SqliteDecider(path, store)
        work = presentations(size, decisions)
        menjin: list[tuple[float, float]] = []
        sqlite: list[tuple[float, float]] = []
        for _ in range(rounds):  # interleaved: the machine's noise hits both
            menjin.append(one_pass(controller.decide_card, work))
            sqlite.append(one_pass(baseline.decide, work))
        same = True
        granted = 0
        for door, card, when in work:
            ours = controller.decide_card(door, card, when)
            granted += ours.granted
            same = same and (ours.granted, ours.reason.value) == baseline.decide(door, card, when)
    finally:
        if baseline is not None:
            baseline.close()
        store.close()
    return {"rate": statistics.median(r[0] for r in menjin),
            "rate_cpu": statistics.median(r[1] for r in menjin),
            "sqlite": statistics.median(r[0] for r in sqlite),
            "sqlite_cpu": statistics.median(r[1] for r in sqlite),
            "load_s": load_s, "rss_mb": memory, "granted_share": granted / len(work),
            "same": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Tiny sizes, a few seconds (CI).")
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES
    decisions = 2_000 if args.quick else 20_000
    rounds = QUICK_ROUNDS if args.quick else ROUNDS
    results: dict[str, dict[str, float | bool]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size, label in zip(sizes, LABELS, strict=True):
            results[label] = r = measure(size, Path(tmp), decisions, rounds)
            gc.collect()
            print(f"{size:>7} persons: menjin {r['rate']:>8,.0f} decisions/s "
                  f"({r['rate_cpu']:>8,.0f} per CPU s), indexed SQLite {r['sqlite']:>8,.0f} "
                  f"({r['sqlite_cpu']:>8,.0f} per CPU s): {r['rate_cpu'] / r['sqlite_cpu']:,.1f}x, "
                  f"index load {r['load_s']:.2f} s, RSS {r['rss_mb']:.0f} MB, "
                  f"{r['granted_share']:.0%} granted, same decisions: {r['same']}")
    flat = results["100k"]["rate_cpu"] / results["1k"]["rate_cpu"]
    verdict = "meets" if results["100k"]["rate_cpu"] >= TARGET_DECISIONS_PER_S else "MISSES"
    print(f"largest/smallest rate ratio {flat:.2f} per CPU s (1.0 = flat); {verdict} the target "
          f"of {TARGET_DECISIONS_PER_S:,} decisions per CPU s at the largest size"
          f"{' (quick sizes)' if args.quick else ''}")
    out: dict[str, object] = {}
    for label in LABELS:
        r = results[label]
        out[f"decisions_per_s_{label}"] = round(r["rate"])
        out[f"decisions_per_cpu_s_{label}"] = round(r["rate_cpu"])
        out[f"sqlite_decisions_per_s_{label}"] = round(r["sqlite"])
        out[f"sqlite_decisions_per_cpu_s_{label}"] = round(r["sqlite_cpu"])
        out[f"ratio_vs_sqlite_{label}"] = round(r["rate_cpu"] / r["sqlite_cpu"], 2)
    out |= {
        "ratio": out["ratio_vs_sqlite_100k"],
        "baseline": {"name": "SQLite, card PRIMARY KEY, person JSON row parsed, same decision",
                     **{f"decisions_per_cpu_s_{k}": out[f"sqlite_decisions_per_cpu_s_{k}"]
                        for k in LABELS}},
        "same_decisions": all(bool(r["same"]) for r in results.values()),
        "flatness_100k_vs_1k": round(flat, 3),
        "target_decisions_per_cpu_s_100k": TARGET_DECISIONS_PER_S,
        "index_load_s_100k": round(results["100k"]["load_s"], 2),
        "rss_mb_100k": round(results["100k"]["rss_mb"], 1),
        "sizes": list(sizes),
        "rounds": rounds,
        "quick": args.quick,
    }
    print(json.dumps(with_machine(out, libraries=("pydantic",))))


if __name__ == "__main__":
    main()
