"""The station corrects a gate's untrusted timestamps with its clock.corrected event, in either
arrival order, once; keeps each station command counter increasing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from station import store as store_module
from station.messages import EventRow
from station.store import Store
from tests.station.test_store import store as store

T0 = 1_790_000_000_000
OFFSET = 3 * 86_400_000  # the gate's clock was three days behind


def event(seq: int, ts_ms: int, *, trusted: bool, type_: str = "access.granted",
          data: dict[str, object] | None = None) -> EventRow:
    return EventRow(id=str(uuid.uuid4()), gate="north", seq=seq, ts_ms=ts_ms, type=type_,
                    door="front", reader=None, credential_kind=None, credential_ref=None,
                    person=None, reason=None, data=data or {}, time_trusted=trusted)


def corrected(seq: int, lo: int, hi: int) -> EventRow:
    return event(seq, T0 + OFFSET + 10_000, trusted=True, type_="clock.corrected",
                 data={"offset_ms": OFFSET, "from_ms": lo, "to_ms": hi, "source": "kernel"})


def times(store: Store) -> dict[int, int]:
    return {e["seq"]: e["ts_ms"] for e in store.recent_events(gate="north")}


@pytest.fixture
def rows() -> Iterator[list[EventRow]]:
    yield [
        event(1, T0 - 5_000, trusted=True),  # before the power cut: already right
        event(2, T0 + 1, trusted=False),
        event(3, T0 + 2_000, trusted=False),
        corrected(4, T0 + 1, T0 + 2_000),
        event(5, T0 + OFFSET + 11_000, trusted=True),
    ]


def test_correction_after_the_events(store: Store, rows: list[EventRow]) -> None:
    store.add_events(rows)
    store.add_events(rows)  # at-least-once: the duplicate correction must not apply twice
    assert times(store) == {1: T0 - 5_000, 2: T0 + 1 + OFFSET, 3: T0 + 2_000 + OFFSET,
                            4: T0 + OFFSET + 10_000, 5: T0 + OFFSET + 11_000}
    assert [e["seq"] for e in store.recent_events(gate="north")] == [5, 4, 3, 2, 1]


def test_correction_before_a_late_event(store: Store, rows: list[EventRow]) -> None:
    store.add_events([rows[0], rows[3], rows[4]])  # the correction overtook seq 2 and 3
    store.add_events([rows[2]])
    store.add_events([rows[1]])
    assert times(store)[2] == T0 + 1 + OFFSET and times(store)[3] == T0 + 2_000 + OFFSET


def test_command_counters_increase_when_the_station_clock_goes_back(
        store: Store) -> None:
    first = store.next_command_counter()
    with mock.patch.object(store_module, "now_ms", autospec=True, return_value=0):
        second = store.next_command_counter()  # the station's clock went back to 1970
        third = store.next_command_counter()
    assert first < second < third
    assert first >= 1_700_000_000_000_000


def test_counter_kept_in_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'station.db'}"
    first = Store(url, portraits_dir=tmp_path / "p")
    issued = first.next_command_counter()
    first.close()
    with mock.patch.object(store_module, "now_ms", autospec=True, return_value=0):
        again = Store(url, portraits_dir=tmp_path / "p")
        assert again.next_command_counter() == issued + 1
        again.close()


def test_a_station_database_from_before_gets_the_time_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'station.db'}"
    old = Store(url, portraits_dir=tmp_path / "p")
    with old.engine.begin() as conn:  # the events table as earlier versions created it
        conn.exec_driver_sql("ALTER TABLE events DROP COLUMN time_trusted")
        conn.exec_driver_sql("ALTER TABLE events DROP COLUMN gate_ts_ms")
        conn.exec_driver_sql(
            "INSERT INTO events (id, gate, seq, ts_ms, type, alarm, data, received_ms) "
            "VALUES ('old-1', 'north', 1, 5, 'door.locked', 0, '{}', 5)")
    old.close()
    upgraded = Store(url, portraits_dir=tmp_path / "p")
    upgraded.add_events([event(2, T0 + 1, trusted=False), corrected(3, T0 + 1, T0 + 1)])
    assert times(upgraded) == {1: 5, 2: T0 + 1 + OFFSET, 3: T0 + OFFSET + 10_000}
    assert {e["id"]: e["time_trusted"] for e in upgraded.recent_events()}["old-1"] is True
    upgraded.close()
