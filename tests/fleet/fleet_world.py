"""The fleet tests' world: the clinical test organisation plus a tracker, and helpers
that drive simulated wearables into it."""

from __future__ import annotations

from clinical_world import LOG2_N, T0, build_world

from vitalcore import protocol as P
from vitalcore.clinical import ClinicalStore, Database, migrate, open_store
from vitalcore.fleet import FleetTracker, StoreFeeder, open_fleet
from vitalcore.sim.loopback import NO_WAVES
from vitalcore.simulator import Accessory, VirtualWearable

H_US = 3_600_000_000
HOUR = 3600


class Clock:
    """A settable clock, µs."""

    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def bare_tracker() -> FleetTracker:
    """A tracker on an empty in-memory clinical database (no organisation), its clock
    fixed at ``T0``: for what needs no registered devices or users."""
    db = Database.sqlite(":memory:")
    migrate(db)
    return open_fleet(db, clock=lambda: T0)


def make_world(target: str) -> tuple[ClinicalStore, FleetTracker]:
    clock = Clock(T0 + 10)
    store = open_store(target, log2_n=LOG2_N, clock=clock)
    build_world(store)
    tracker = open_fleet(store)
    return store, tracker


def wearable(device_id: int, start_us: int, *, powered_s: int = 0,
             accessories: list[tuple[int, str, int]] | None = None) -> VirtualWearable:
    """A simulated terminal; ``accessories`` as ``(AccessoryKind, serial, powered_s)``."""
    acc = [Accessory(k, s, h) for k, s, h in (accessories or [])] or [
        Accessory(P.AccessoryKind.LEAD_WIRE, f"LW-{device_id:x}", 0),
        Accessory(P.AccessoryKind.BATTERY, f"BAT-{device_id:x}", 0)]
    return VirtualWearable(device_id, start_us, signal_s=4, powered_s=powered_s,
                           accessories=acc)


def run(store, feeder: StoreFeeder, wearables, until_us: int, step_us: int = H_US // 2):
    """Drive ``wearables`` to device time ``until_us`` through ``store`` (a vitalcore
    Store) in steps, draining ``feeder`` after each; waveforms are not stored."""
    keep = NO_WAVES
    t = min(w.now_us for w in wearables)
    while t < until_us:
        t = min(until_us, t + step_us)
        for w in wearables:
            frames = [f for f in w.frames_until(t) if f[4] in keep]
            if frames:
                store.feed(b"".join(frames))
        store.commit()
        feeder.drain()
