"""Access decisions per second with 1k, 10k and 100k persons, beside a naive linear scan.

Each size is a real resident store (SQLite file in a temporary folder) filled by one station
snapshot: every person holds one card and belongs to one of a few groups whose schedules include
windows across midnight and a holiday calendar.  The index is loaded from the store as the daemon
does it, then :meth:`daemon.access.AccessController.decide_card` decides a fixed mix of
presentations (90 % known cards, 10 % unknown) at times spread over a week.  The baseline finds
each card by scanning the list of persons (what a store without an index would do) and then
decides it the same way, so the difference is the lookup alone.

Figures are medians of several runs; ``rss_mb_100k`` is the resident memory of this process with
the 100k-person store open and its index loaded.

Usage: .venv/bin/python bench/access_decision.py [--quick]
The last line is JSON: decisions_per_s_1k, decisions_per_s_10k, decisions_per_s_100k,
speedup_vs_naive_100k, rss_mb_100k (and the naive rates, the flatness ratio and the sizes).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
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

from daemon.access import AccessController, DoorPolicy, Person  # noqa: E402
from daemon.store import Store  # noqa: E402

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
RESIDENT_WEIGHT = 7  # most people at a compound gate are residents with round-the-clock access
RUNS = 7
TARGET_DECISIONS_PER_S = 50_000
START = datetime(2026, 11, 30, tzinfo=ZONE)
BYTES_PER_MB = 1024 * 1024
PAGE_BYTES = 4096


def card_of(i: int) -> str:
    return f"{i:010d}"


def snapshot(size: int) -> dict[str, object]:
    rng = random.Random(size)
    weights = [RESIDENT_WEIGHT] + [1] * (len(GROUPS) - 1)
    persons = [{"id": f"p{i}", "name": f"Person {i}",
                "groups": [rng.choices(GROUPS, weights)[0]["id"]],
                "cards": [card_of(i)], "valid_until": "2027-12-31"} for i in range(size)]
    return {"mode": "snapshot", "version": 1, "persons": persons, "groups": GROUPS,
            "holidays": HOLIDAYS}


def presentations(size: int, count: int) -> list[tuple[str, str, datetime]]:
    rng = random.Random(count)
    out = []
    for _ in range(count):
        known = rng.random() >= UNKNOWN_SHARE
        card = card_of(rng.randrange(size)) if known else card_of(size + rng.randrange(size))
        when = START + timedelta(seconds=rng.randrange(7 * 86_400))
        out.append((rng.choice(DOORS), card, when))
    return out


def naive_decider(persons: list[Person],
                  controller: AccessController) -> Callable[[str, str, datetime], object]:
    """Find the card by scanning every person, then decide exactly as the indexed path does."""
    def decide(door: str, card: str, now: datetime) -> object:
        key = controller.card_ref(card)
        holder = next((p for p in persons if key in p.cards), None)
        return controller.decide_card(door, card, now) if holder is not None else None

    return decide


def rate(decide: Callable[[str, str, datetime], object],
         work: Sequence[tuple[str, str, datetime]]) -> float:
    """Median decisions per second over RUNS passes of ``work``."""
    rates = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for door, card, when in work:
            decide(door, card, when)
        rates.append(len(work) / (time.perf_counter() - start))
    return statistics.median(rates)


def rss_mb() -> float:
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * PAGE_BYTES / BYTES_PER_MB


def measure(size: int, folder: Path, decisions: int, naive_decisions: int) -> dict[str, float]:
    store = Store(folder / f"residents-{size}.db", zone=ZONE)
    try:
        store.apply_sync(snapshot(size))
        started = time.perf_counter()
        index = store.load_index()
        load_s = time.perf_counter() - started
        memory = rss_mb()
        policies = {d: DoorPolicy(d) for d in DOORS}
        controller = AccessController(index, policies, card_key=store.card_ref)
        work = presentations(size, decisions)
        indexed = rate(lambda d, c, t: controller.decide_card(d, c, t), work)
        persons = [entry.person for entry in index.persons.values()]
        naive = rate(naive_decider(persons, controller), work[:naive_decisions])
        granted = sum(controller.decide_card(d, c, t).granted for d, c, t in work)
    finally:
        store.close()
    return {"rate": indexed, "naive": naive, "load_s": load_s, "rss_mb": memory,
            "granted_share": granted / len(work)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Tiny sizes, a few seconds (CI).")
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else SIZES
    decisions = 2_000 if args.quick else 20_000
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size, label in zip(sizes, LABELS, strict=True):
            naive_decisions = max(20, min(decisions, 2_000_000 // size))
            results[label] = measure(size, Path(tmp), decisions, naive_decisions)
            gc.collect()
            r = results[label]
            print(f"{size:>7} persons: {r['rate']:>10,.0f} decisions/s indexed, "
                  f"{r['naive']:>10,.1f} naive ({r['rate'] / r['naive']:,.0f}x), index load "
                  f"{r['load_s']:.2f} s, RSS {r['rss_mb']:.0f} MB, "
                  f"{r['granted_share']:.0%} granted")
    flat = results["100k"]["rate"] / results["1k"]["rate"]
    verdict = "meets" if results["100k"]["rate"] >= TARGET_DECISIONS_PER_S else "MISSES"
    print(f"largest/smallest rate ratio {flat:.2f} (1.0 = flat); {verdict} the target of "
          f"{TARGET_DECISIONS_PER_S:,} decisions/s at the largest size"
          f"{' (quick sizes)' if args.quick else ''}")
    print(json.dumps({
        "decisions_per_s_1k": round(results["1k"]["rate"]),
        "decisions_per_s_10k": round(results["10k"]["rate"]),
        "decisions_per_s_100k": round(results["100k"]["rate"]),
        "naive_decisions_per_s_1k": round(results["1k"]["naive"], 1),
        "naive_decisions_per_s_100k": round(results["100k"]["naive"], 1),
        "speedup_vs_naive_100k": round(results["100k"]["rate"] / results["100k"]["naive"], 1),
        "flatness_100k_vs_1k": round(flat, 3),
        "index_load_s_100k": round(results["100k"]["load_s"], 2),
        "rss_mb_100k": round(results["100k"]["rss_mb"], 1),
        "sizes": list(sizes),
        "quick": args.quick,
    }))


if __name__ == "__main__":
    main()
