"""A cheap in-process load: simulated wearables' frames straight into the store.

For hundreds of patients on a small machine (the central-view benchmark): no MQTT, no
device sessions; every ``period_s`` each :class:`~vitalcore.sim.wearable.ScenarioWearable`
encodes the frames due by the wall clock and they go through ``Store.feed``/``commit``,
so the decoder, live buffers, alarm engine and the live fan-out see them as from the
server. Commands (BP) are not delivered (no device session: NOT_CONNECTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

__all__ = ["FrameFeeder"]

log = logging.getLogger("vcdash")


class FrameFeeder:
    """Feed ``wearables`` into ``store`` every ``period_s`` (s) on the running loop."""

    def __init__(self, wearables, store, period_s: float = 0.25) -> None:
        self.wearables = list(wearables)
        self.store = store
        self.period_s = period_s
        self.frames = 0
        self.busy_s = 0.0  #: time spent encoding and committing, s
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="frame-feeder")

    async def _run(self) -> None:
        nxt = time.monotonic()
        while True:
            t0 = time.perf_counter()
            now_us = time.time_ns() // 1000
            frames = [f for w in self.wearables for f in w.frames_until(now_us)]
            if frames:
                try:
                    self.store.feed(b"".join(frames))
                    self.store.commit()
                    self.frames += len(frames)
                except Exception:  # back-pressure or a closed store: say so, keep going
                    log.exception("frame feeder: store refused a batch")
            self.busy_s += time.perf_counter() - t0
            nxt += self.period_s
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
