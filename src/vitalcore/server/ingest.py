"""The broker's ingest target and the commit coalescer that acknowledges after durability.

:class:`IngestSink` is what the broker needs from storage (:class:`vitalcore.storage.store.Store`
satisfies it). :class:`CommitBatcher` makes at most one ``commit()`` per event-loop
iteration for every uplink message fed during it, waits until that commit is durable,
and only then marks the messages' acknowledgements ready. :func:`tune_gc` keeps the
cyclic garbage collector's pauses off the ingest path.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..errors import BackPressureError

__all__ = ["IngestSink", "CommitBatcher", "GcStats", "tune_gc", "raise_fd_limit"]

log = logging.getLogger("vitalcore.server")


@runtime_checkable
class IngestSink(Protocol):
    """Where uplink payloads go (a :class:`~vitalcore.storage.store.Store`).

    A sink may also have a ``durable_lsn`` attribute (every LSN up to it is durable, as
    :attr:`Store.durable_lsn <vitalcore.storage.store.Store.durable_lsn>`): the
    :class:`CommitBatcher` then acknowledges commits as soon as it sees them durable,
    without waiting for the event loop to deliver :meth:`durable`'s result.
    """

    def feed(self, payload: Any, device_id: int) -> int:
        """Decode one binary message of ``device_id``; frames accepted.

        May raise :class:`~vitalcore.errors.BackPressureError` (nothing taken: retry).
        """

    def feed_json(self, document: Any, device_id: int) -> int:
        """:meth:`feed` for a JSON document."""

    def commit(self) -> int:
        """Log everything fed so far; return an LSN whose durability implies that of
        every frame fed before the call (0 if nothing was ever logged).

        May raise :class:`~vitalcore.errors.BackPressureError`: nothing fed is lost, it
        goes into the next commit (the batcher retries later).
        """

    async def durable(self, lsn: int) -> None:
        """Return once commit ``lsn`` is durable (StorageError if it cannot be)."""


class CommitBatcher:
    """Coalesces the commits of one event-loop iteration and reports durability.

    ``add(entry, nbytes)`` records an uplink fed to the sink; the first ``add`` of a
    batch schedules its commit ``interval_s`` later (``loop.call_soon`` if 0: at the end
    of the loop iteration); the commit is made at once when ``max_entries`` entries or
    ``max_bytes`` payload bytes wait, so that one long iteration under load does not
    grow one huge commit while nothing is acknowledged (measured before this bound: a
    19 s iteration at 4,000 devices grew a 41.8 MB commit, beyond the WAL's 16 MiB
    record limit, and every connection was closed). A commit has a fixed cost (~0.7 ms of the loop's time for the
    sequence check, live buffers and WAL hand-off, measured with 2,000 devices), so
    fewer, larger commits leave more of the loop for reading. When that commit's LSN
    is durable, ``on_durable(entries)`` runs on the loop with every entry of the
    commit, in the order added. If the commit or the wait fails,
    ``on_failed(entries, exc)`` runs instead: nothing of it may be acknowledged.

    A commit that adds nothing new (every frame a duplicate or rejected, or already
    committed by another transport sharing the store) gets the last LSN logged from the
    sink and waits for it: a duplicate may be the retransmission of a frame whose own
    commit is not durable yet, and its acknowledgement must not overtake it.

    A commit refused with :class:`~vitalcore.errors.BackPressureError` (the WAL's queue
    is full; the sink keeps what was fed for its next commit) is retried every
    ``retry_s`` seconds with the same entries, still unacknowledged, plus any added
    meanwhile (counted in :attr:`backpressure_retries`). Meanwhile the store refuses
    ``feed`` too, so the connections stop reading (back-pressure reaches TCP).
    """

    def __init__(self, sink: IngestSink, loop: asyncio.AbstractEventLoop,
                 on_durable: Callable[[list], None],
                 on_failed: Callable[[list, BaseException], None],
                 retry_s: float = 0.05, max_entries: int = 2048,
                 interval_s: float = 0.0, max_bytes: int = 4 << 20) -> None:
        self.sink = sink
        self.loop = loop
        self.on_durable = on_durable
        self.on_failed = on_failed
        self.retry_s = retry_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.interval_s = interval_s
        self._bytes = 0  # payload bytes of the entries waiting
        self._entries: list = []
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self._retrying = False  # the last commit was refused by back-pressure
        self._durable_lsn = 0
        self._waiting: deque[tuple[int, list]] = deque()  # commits awaiting durability
        self._tasks: set[asyncio.Task] = set()
        # A sink that tells its durable LSN (the Store does) lets add() settle commits
        # that became durable while the loop is busy reading, without waiting for the
        # loop to run the durable() result.
        self._peek = (lambda: sink.durable_lsn) if hasattr(sink, "durable_lsn") else None
        self.commits = 0
        self.backpressure_retries = 0

    def add(self, entry: Any, nbytes: int = 0) -> None:
        """Record an uplink (of ``nbytes`` payload bytes) fed to the sink.

        Commits ``interval_s`` after the first entry of a batch (at the end of this
        loop iteration if 0), or at once when ``max_entries`` entries or ``max_bytes``
        bytes are waiting (one loop iteration may read from thousands of connections;
        a WAL record holds at most 16 MiB).
        """
        entries = self._entries
        entries.append(entry)
        self._bytes += nbytes
        if ((len(entries) >= self.max_entries or self._bytes >= self.max_bytes)
                and not self._retrying):
            self._commit()
        elif self._scheduled is None:
            if self.interval_s:
                self._scheduled = self.loop.call_later(self.interval_s, self._commit)
            else:
                self._scheduled = self.loop.call_soon(self._commit)
        if self._waiting and self._peek is not None:
            lsn = self._peek()
            if lsn >= self._waiting[0][0]:
                self._settle(lsn)

    @property
    def pending(self) -> int:
        """Commits whose durability is awaited, plus 1 if a commit is scheduled."""
        return len(self._waiting) + (self._scheduled is not None)

    def _commit(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        entries, self._entries = self._entries, []
        nbytes, self._bytes = self._bytes, 0
        try:
            lsn = self.sink.commit()
        except BackPressureError:  # nothing lost, nothing acknowledged: try again later
            self._entries = entries + self._entries
            self._bytes += nbytes
            self.backpressure_retries += 1
            self._retrying = True
            self._scheduled = self.loop.call_later(self.retry_s, self._commit)
            return
        except Exception as exc:  # StorageError: the WAL refuses; nothing is acknowledged
            log.error("store commit failed: %s", exc)
            self.on_failed(entries, exc)
            return
        self._retrying = False
        self.commits += 1
        if lsn <= self._durable_lsn:  # also 0: nothing was ever logged (nothing waits)
            self.on_durable(entries)
            return
        self._waiting.append((lsn, entries))
        task = self.loop.create_task(self._wait(lsn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait(self, lsn: int) -> None:
        try:
            await self.sink.durable(lsn)
        except Exception as exc:
            log.error("commit %d did not become durable: %s", lsn, exc)
            waiting = self._waiting
            while waiting and waiting[0][0] <= lsn:
                self.on_failed(waiting.popleft()[1], exc)
            return
        self._settle(lsn)

    def _settle(self, lsn: int) -> None:
        """Every commit up to ``lsn`` is durable: acknowledge them, oldest first."""
        waiting = self._waiting
        if lsn > self._durable_lsn:
            self._durable_lsn = lsn
        while waiting and waiting[0][0] <= lsn:
            self.on_durable(waiting.popleft()[1])

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Commit what is pending and wait until every commit so far is settled.

        A commit still refused by back-pressure after ``timeout_s`` seconds is given
        up: its entries stay unacknowledged (their clients retransmit).
        """
        deadline = self.loop.time() + timeout_s
        while self._scheduled is not None or self._tasks:
            if self._scheduled is not None:
                if self.loop.time() >= deadline:
                    self._scheduled.cancel()
                    self._scheduled = None
                    log.error("%d uplink(s) not committed at shutdown: the store pushes back",
                              len(self._entries))
                    self._entries = []
                    break
                self._commit()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            elif self._scheduled is not None:
                await asyncio.sleep(self.retry_s)


GC_ENV = "VITALCORE_GC"  #: "default" leaves the collector as Python sets it (benchmarks)
GC_THRESHOLDS = (20_000, 20, 100)  #: gen-0 allocations, gen-1 and gen-2 collection ratios


class GcStats:
    """Pauses of the cyclic garbage collector, timed with :data:`gc.callbacks`.

    Attributes (read them, e.g. in :meth:`Broker.stats <vitalcore.server.broker.Broker.stats>`):
    ``collections`` per generation, ``pause_max_ms`` (ms) per generation, ``pauses_over_50ms``.
    """

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause_max_ms = [0.0, 0.0, 0.0]
        self.pauses_over_50ms = 0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        ms = (time.perf_counter() - self._t0) * 1e3
        g = info.get("generation", 2)
        self.collections[g] += 1
        if ms > self.pause_max_ms[g]:
            self.pause_max_ms[g] = ms
        if ms > 50.0:
            self.pauses_over_50ms += 1

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {"gc_pauses_over_50ms": self.pauses_over_50ms}
        for g in range(3):
            out[f"gc{g}_collections"] = self.collections[g]
            out[f"gc{g}_pause_max_ms"] = round(self.pause_max_ms[g], 1)
        return out


_gc_stats: GcStats | None = None


def tune_gc() -> GcStats:
    """Keep the cyclic GC's pauses short in a server process (idempotent); its pause stats.

    Once per process: collects, then :func:`gc.freeze` moves every object alive after
    start-up (modules, accounts, the opened store) into the permanent generation, which
    collections no longer scan, and raises the gen-0 threshold to
    ``GC_THRESHOLDS`` (20,000: the per-message objects of one event-loop iteration, which
    live until their commit is durable, die young instead of being promoted and making
    full collections frequent). Reference counting frees everything acyclic as before;
    only the collector's schedule changes. Environment ``VITALCORE_GC=default`` leaves
    the collector untouched (only the pauses are measured), for before/after benchmarks.
    """
    global _gc_stats
    if _gc_stats is None:
        _gc_stats = GcStats()
        if os.environ.get(GC_ENV, "") != "default":
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
        gc.callbacks.append(_gc_stats)
    return _gc_stats


def raise_fd_limit(wanted: int = 1 << 17) -> int:
    """Raise this process's open-file limit towards ``wanted``; returns the new soft limit.

    A server needs one descriptor per connection, and the send thread
    (:mod:`vitalcore.server.sendq`) a second one per device connection. The soft limit
    goes up to the hard limit; the hard limit too where the process may raise it
    (root, ``CAP_SYS_RESOURCE``). Never lowers anything.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):  # not allowed: the hard limit stays
            pass
    target = wanted if hard == resource.RLIM_INFINITY else min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
