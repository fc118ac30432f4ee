"""The example's feeders: following a running Store, and simulated terminals."""

from __future__ import annotations

import asyncio

import pytest
from vclife.feeder import SimulatedFleet, follow_store

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore.clinical import Database, migrate
from vitalcore.fleet import open_fleet
from vitalcore.simulator import Accessory, VirtualWearable
from vitalcore.storage import Store

T0 = 1_764_115_200_000_000
S = 1_000_000


def tracker():
    db = Database.sqlite(":memory:")
    migrate(db)
    return open_fleet(db, clock=lambda: T0)


def test_follow_store_ingests_what_the_store_commits(tmp_path):
    fleet = tracker()
    store = Store(tmp_path / "s", flush_interval_s=0, sync="none")

    async def main():
        task = asyncio.create_task(follow_store(fleet, store, interval_s=0.02))
        await asyncio.sleep(0.05)  # attached
        for i in range(3):
            store.feed(codec.encode_status(0x42, i, T0 + i * 10 * S, powered_s=100 + 10 * i,
                                           accessories=[(P.AccessoryKind.BATTERY, "B-F", i)]))
            store.commit()
        for _ in range(300):
            await asyncio.sleep(0.02)
            if fleet.assets() and fleet.asset("battery", "B-F").hours > 0:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert fleet.asset("battery", "B-F").hours == pytest.approx(2 / 3600)
    assert store._commit_listeners == []  # detached on cancellation
    store.close()


def test_fast_forward_credits_the_skipped_time_with_the_next_frame(tmp_path):
    fleet = tracker()
    store = Store(tmp_path / "s", flush_interval_s=0, sync="none")
    w = VirtualWearable(0x43, T0, signal_s=4, powered_s=0,
                        accessories=[Accessory(P.AccessoryKind.LEAD_WIRE, "LW-F", 0)])
    sim = SimulatedFleet(fleet, store, [w])
    sim.advance_to(T0 + 60 * S)
    sim.fast_forward(T0 + 3600 * S)
    sim.advance_to(T0 + 3660 * S)
    assert fleet.asset("lead_wire", "LW-F").hours == pytest.approx((3600 + 50) / 3600)
    sim.close()
    store.close()
