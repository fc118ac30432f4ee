"""Feeding the tracker from a running :class:`~vitalcore.storage.Store`.

:class:`StoreFeeder` listens to the store's commits (its listener only copies the STATUS
counters of the batch into a queue: quick, no database work on the ingest thread) and
:meth:`StoreFeeder.drain` hands them to :meth:`FleetTracker.ingest` in one transaction,
on whatever thread calls it; :meth:`StoreFeeder.run` drains periodically from an event
loop through an executor. :func:`catch_up` reads STATUS history back from the store,
e.g. after the tracker was down: the accounting ignores readings it has seen (stale), so
catching up over a window already ingested credits nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..batch import DecodedBatch
from ..errors import UsageError, VitalcoreError
from .ingest import IngestReport, StatusReading, readings_of

if TYPE_CHECKING:
    from ..storage.store import Store
    from .tracker import FleetTracker

__all__ = ["StoreFeeder", "catch_up", "readings_from_store"]

log = logging.getLogger("vitalcore.fleet")


class StoreFeeder:
    """Queue of STATUS readings from a store's commits, drained into a tracker.

    Parameters
    ----------
    tracker : FleetTracker
    max_pending : int
        Bound on queued readings. Beyond it the oldest are dropped and counted in
        :attr:`dropped` with the time range they covered (:attr:`dropped_range`), so a
        :func:`catch_up` over that range from the store recovers them.
    max_batch : int
        Readings per ingest transaction (a long transaction would hold the clinical
        database's write lock).
    """

    def __init__(self, tracker: FleetTracker, *, max_pending: int = 1_000_000,
                 max_batch: int = 5_000) -> None:
        if max_pending < 1 or max_batch < 1:
            raise UsageError("max_pending and max_batch must be >= 1")
        self.tracker = tracker
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.errors = 0
        self._queue: deque[StatusReading] = deque()
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._stores: list[Store] = []
        self.dropped = 0
        self.dropped_range: tuple[int, int] | None = None
        self.ingested = 0

    # -- sources --------------------------------------------------------------------------
    def attach(self, store: Store) -> None:
        """Start queuing the STATUS frames of every commit of ``store``."""
        store.add_commit_listener(self.on_batch)
        self._stores.append(store)

    def detach(self) -> None:
        """Stop listening to every attached store."""
        for store in self._stores:
            store.remove_commit_listener(self.on_batch)
        self._stores.clear()

    def on_batch(self, batch: DecodedBatch) -> None:
        """Queue the readings of ``batch`` (a store commit listener; also callable directly)."""
        if not len(batch.tables["status"]["ts_us"]):
            return
        self.put(readings_of(batch))

    def put(self, readings: Iterable[StatusReading]) -> None:
        """Queue readings (from any source: a simulator, a gateway)."""
        with self._lock:
            self._queue.extend(readings)
            while len(self._queue) > self.max_pending:
                r = self._queue.popleft()
                self.dropped += 1
                lo, hi = self.dropped_range or (r.ts_us, r.ts_us)
                self.dropped_range = (min(lo, r.ts_us), max(hi, r.ts_us))

    @property
    def pending(self) -> int:
        """Readings queued and not yet ingested."""
        return len(self._queue)

    # -- draining -------------------------------------------------------------------------
    def drain(self) -> IngestReport:
        """Ingest everything queued, ``max_batch`` readings per transaction; the summed
        report. If the tracker's database fails, the readings not ingested go back to
        the front of the queue and the error is raised."""
        total = IngestReport(*([0] * len(IngestReport._fields)))
        with self._drain_lock:
            while True:
                with self._lock:
                    batch = [self._queue.popleft()
                             for _ in range(min(self.max_batch, len(self._queue)))]
                if not batch:
                    return total
                try:
                    report = self.tracker.ingest(batch)
                except BaseException:
                    with self._lock:
                        self._queue.extendleft(reversed(batch))
                    raise
                self.ingested += report.readings
                total = IngestReport(*(a + b for a, b in zip(total, report, strict=True)))

    async def run(self, interval_s: float = 1.0) -> None:
        """Drain every ``interval_s`` seconds in the loop's default executor, until
        cancelled (a last drain runs on cancellation). A failed drain (database down,
        a conflict with another node) is logged and counted in :attr:`errors`; its
        readings stay queued for the next one."""
        if not interval_s > 0:
            raise UsageError("interval_s must be > 0")
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await loop.run_in_executor(None, self.drain)
                except VitalcoreError:
                    self.errors += 1
                    log.exception("lifecycle feeder: drain failed (%d so far); retrying",
                                  self.errors)
        finally:
            if self._queue:
                with contextlib.suppress(VitalcoreError):
                    await asyncio.shield(loop.run_in_executor(None, self.drain))


def readings_from_store(store: Store, device_ids: Iterable[int], t0_us: int,
                        t1_us: int) -> list[StatusReading]:
    """STATUS readings of ``device_ids`` in ``[t0_us, t1_us)`` read back from a store's
    history (flushed and pending)."""
    out: list[StatusReading] = []
    for dev in device_ids:
        st = store.read_status(dev, t0_us, t1_us)
        acc = store.read_accessories(dev, t0_us, t1_us)
        by_ts: dict[int, dict[tuple[int, str], int]] = {}
        for ts, kind, serial, raw in zip(acc["ts_us"].to_pylist(), acc["kind"].to_pylist(),
                                         acc["serial"].to_pylist(), acc["powered_s"].to_pylist(),
                                         strict=True):
            by_ts.setdefault(ts, {})[(kind, serial)] = raw
        for ts, raw in zip(st["ts_us"].to_pylist(), st["powered_s"].to_pylist(), strict=True):
            items = by_ts.get(ts, {})
            out.append(StatusReading(dev, ts, raw, tuple((k, s, h) for (k, s), h in items.items())))
    out.sort(key=lambda r: r.ts_us)
    return out


def catch_up(tracker: FleetTracker, store: Store, device_ids: Iterable[int], t0_us: int,
             t1_us: int) -> IngestReport:
    """Ingest the STATUS history of ``device_ids`` in ``[t0_us, t1_us)`` from ``store``.

    Readings the tracker has seen already are stale and credit nothing.
    """
    return tracker.ingest(readings_from_store(store, device_ids, t0_us, t1_us))
