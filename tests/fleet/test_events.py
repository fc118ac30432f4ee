"""Event delivery: listeners contained, subscriptions bounded, nothing lost in the table."""

from __future__ import annotations

import asyncio

import pytest
from clinical_world import DEVICES, T0
from fleet_world import HOUR

from vitalcore import protocol as P
from vitalcore.errors import UsageError
from vitalcore.fleet import EventKind, StatusReading

BAT = int(P.AccessoryKind.BATTERY)


def readings(n):
    return [StatusReading(DEVICES[0], T0 + i * 10**7, 100 + i * 10,
                          ((BAT, f"B{i}", 4380 * HOUR),)) for i in range(n)]


def test_a_failing_listener_breaks_nothing(sqlite_world):
    _, tracker = sqlite_world
    got = []

    def bad(_event):
        raise RuntimeError("listener bug")

    tracker.add_listener(bad)
    tracker.add_listener(got.append)
    report = tracker.ingest(readings(3))
    assert report.events == len(got) == 7  # terminal first_seen + 3 x (first_seen, over)
    assert tracker.hub.listener_errors == 7
    tracker.remove_listener(bad)
    with pytest.raises(UsageError):
        tracker.remove_listener(bad)
    assert [e.event_id for e in tracker.events()] == [e.event_id for e in got]


def test_a_full_subscription_drops_and_the_table_has_everything(sqlite_world):
    _, tracker = sqlite_world

    async def main():
        sub = tracker.subscribe({EventKind.OVER_LIMIT}, maxsize=2)
        await asyncio.get_running_loop().run_in_executor(None, tracker.ingest, readings(5))
        await asyncio.sleep(0)
        first = [await sub.get(timeout=5), await sub.get(timeout=5)]
        sub.close()
        return sub.dropped, first

    dropped, first = asyncio.run(main())
    assert dropped == 3 and [e.serial for e in first] == ["B0", "B1"]
    missed = tracker.events(since_id=first[-1].event_id, kinds={"over_limit"})
    assert [e.serial for e in missed] == ["B2", "B3", "B4"]
    with pytest.raises(UsageError):
        tracker.events(limit=0)
