"""Feeding the tracker: from a running Store (commit listener) or from simulated wearables.

- In the process that runs the ingest (the embedded server or your own), attach a
  :class:`vitalcore.fleet.StoreFeeder` to its :class:`vitalcore.storage.Store` and drain
  it periodically: :func:`follow_store`.
- Without devices: :class:`SimulatedFleet` drives :class:`vitalcore.simulator.VirtualWearable`
  terminals on device time (as fast as the CPU allows, or paced), through a Store, into
  the tracker. Waveform frames are generated but not stored (only STATUS matters here).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from vitalcore import protocol as P
from vitalcore.fleet import FleetTracker, StoreFeeder
from vitalcore.simulator import Accessory, VirtualWearable
from vitalcore.storage import Store

__all__ = ["follow_store", "SimulatedFleet"]

_KEEP = frozenset({P.FrameType.STATUS, P.FrameType.NUMERICS, P.FrameType.ACK})


async def follow_store(tracker: FleetTracker, store: Store, interval_s: float = 2.0) -> None:
    """Ingest the STATUS frames of every commit of ``store`` until cancelled."""
    feeder = StoreFeeder(tracker)
    feeder.attach(store)
    try:
        await feeder.run(interval_s)
    finally:
        feeder.detach()


class SimulatedFleet:
    """Simulated terminals whose STATUS frames reach ``tracker`` through ``store``.

    Parameters
    ----------
    tracker : FleetTracker
    store : Store
        Receives the frames (STATUS, NUMERICS and ACK; waveforms are dropped).
    wearables : iterable of VirtualWearable
    """

    def __init__(self, tracker: FleetTracker, store: Store,
                 wearables: Iterable[VirtualWearable]) -> None:
        self.tracker = tracker
        self.store = store
        self.wearables = {w.device_id: w for w in wearables}
        self.feeder = StoreFeeder(tracker)
        self.feeder.attach(store)

    @property
    def now_us(self) -> int:
        """Device time reached by every wearable."""
        return min(w.now_us for w in self.wearables.values())

    def advance_to(self, t_us: int, step_us: int = 900_000_000) -> None:
        """Run every wearable to device time ``t_us`` in steps; drain after each."""
        t = self.now_us
        while t < t_us:
            t = min(t_us, t + step_us)
            for w in self.wearables.values():
                frames = [f for f in w.frames_until(t) if f[4] in _KEEP]
                if frames:
                    self.store.feed(b"".join(frames))
            self.store.commit()
            self.feeder.drain()

    def fast_forward(self, t_us: int) -> None:
        """Jump every wearable to device time ``t_us`` without sending frames, as if it
        ran unobserved (powered, offline): its counters advance by the time skipped,
        and the tracker credits the jump with the next STATUS frame (counters are
        cumulative), attributing it to the ward at that frame."""
        for dev, w in list(self.wearables.items()):
            if t_us <= w.now_us:
                continue
            skipped = (t_us - w.now_us) // 1_000_000
            elapsed = (w.now_us - w.start_us) // 1_000_000  # what its counters already hold
            self.wearables[dev] = VirtualWearable(
                dev, t_us, hr_bpm=w.hr_bpm, spo2=w.spo2, seed=w.seed, signal_s=w.signal_s,
                powered_s=w.powered_s + elapsed + skipped,
                accessories=[Accessory(a.kind, a.serial, a.powered_s + elapsed + skipped)
                             for a in w.accessories])

    def replace(self, wearable: VirtualWearable) -> None:
        """Swap in a new wearable object for a device id (a reboot, moved accessories)."""
        self.wearables[wearable.device_id] = wearable

    async def run(self, sim_s_per_s: float = 60.0, tick_s: float = 1.0) -> None:
        """Advance device time ``sim_s_per_s`` times faster than the wall clock until
        cancelled (the work runs in the default executor)."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(tick_s)
                target = self.now_us + int(sim_s_per_s * tick_s * 1e6)
                await loop.run_in_executor(None, self.advance_to, target)

    def close(self) -> None:
        self.feeder.detach()
