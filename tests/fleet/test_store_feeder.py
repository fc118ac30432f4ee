"""StoreFeeder: bounded queue, batched transactions, nothing lost when the database fails."""

from __future__ import annotations

import asyncio

import pytest
from clinical_world import T0
from fleet_world import bare_tracker

from vitalcore.errors import StorageError, UsageError
from vitalcore.fleet import StatusReading, StoreFeeder

S = 1_000_000


def readings(n, start=0):
    return [StatusReading(7, T0 + (start + i) * 10 * S, (start + i) * 10, ((2, "B", i),))
            for i in range(n)]


def test_drain_batches_and_sums():
    tracker = bare_tracker()
    feeder = StoreFeeder(tracker, max_batch=7)
    feeder.put(readings(30))
    report = feeder.drain()
    assert (report.readings, feeder.pending, feeder.ingested) == (30, 0, 30)
    assert report.unknown_devices == 30  # device 7 is in no registry: counted, tracked
    assert tracker.asset("battery", "B").hours == pytest.approx(29 / 3600)
    assert feeder.drain().readings == 0


def test_a_failed_drain_keeps_the_readings():
    tracker = bare_tracker()
    feeder = StoreFeeder(tracker, max_batch=10)
    feeder.put(readings(25))
    good = tracker.ingest
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise StorageError("disk full")
        return good(batch)

    tracker.ingest = flaky
    with pytest.raises(StorageError):
        feeder.drain()
    assert feeder.pending == 15 and feeder.ingested == 10
    tracker.ingest = good
    assert feeder.drain().readings == 15
    assert tracker.asset("battery", "B").hours == pytest.approx(24 / 3600)


def test_overflow_drops_the_oldest_and_says_which():
    feeder = StoreFeeder(bare_tracker(), max_pending=5)
    feeder.put(readings(8))
    assert (feeder.pending, feeder.dropped) == (5, 3)
    assert feeder.dropped_range == (T0, T0 + 20 * S)
    with pytest.raises(UsageError):
        StoreFeeder(bare_tracker(), max_batch=0)


def test_run_drains_periodically_and_survives_a_failure():
    tracker = bare_tracker()
    feeder = StoreFeeder(tracker)
    good, fails = tracker.ingest, [1]

    def flaky(batch):
        if fails:
            fails.pop()
            raise StorageError("database restarting")
        return good(batch)

    tracker.ingest = flaky

    async def main():
        task = asyncio.create_task(feeder.run(0.01))
        feeder.put(readings(3))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if feeder.ingested == 3:
                break
        feeder.put(readings(2, start=3))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert (feeder.errors, feeder.ingested, feeder.pending) == (1, 5, 0)


def test_unknown_device_frames_are_counted_across_batches():
    tracker = bare_tracker()
    feeder = StoreFeeder(tracker, max_batch=4)
    feeder.put(readings(10))
    feeder.drain()
    with tracker.db.transaction(write=False) as tx:
        row = tx.one("SELECT first_seen_us, last_seen_us, frames FROM fleet_unknown")
    assert row == (T0, T0 + 90 * S, 10)
    assert len(tracker.events(kinds={"unknown_device"})) == 1
