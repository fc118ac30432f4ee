"""The broker's ingest target and the commit coalescer that acknowledges after durability.

:class:`IngestSink` is what the broker needs from storage (:class:`vitalcore.storage.store.Store`
satisfies it). :class:`CommitBatcher` makes at most one ``commit()`` per event-loop
iteration for every uplink message fed during it, waits until that commit is durable,
and only then marks the messages' acknowledgements ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["IngestSink", "CommitBatcher"]

log = logging.getLogger("vitalcore.server")


@runtime_checkable
class IngestSink(Protocol):
    """Where uplink payloads go (a :class:`~vitalcore.storage.store.Store`)."""

    def feed(self, payload: Any, device_id: int) -> int:
        """Decode one binary message of ``device_id``; frames accepted.

        May raise :class:`~vitalcore.errors.BackPressureError` (nothing taken: retry).
        """

    def feed_json(self, document: Any, device_id: int) -> int:
        """:meth:`feed` for a JSON document."""

    def commit(self) -> int:
        """Log everything fed so far; return an LSN whose durability implies that of
        every frame fed before the call (0 if nothing was ever logged)."""

    async def durable(self, lsn: int) -> None:
        """Return once commit ``lsn`` is durable (StorageError if it cannot be)."""


class CommitBatcher:
    """Coalesces the commits of one event-loop iteration and reports durability.

    ``add(entry)`` records an uplink fed to the sink; on the first ``add`` of an
    iteration, a commit is scheduled with ``loop.call_soon``. When that commit's LSN
    is durable, ``on_durable(entries)`` runs on the loop with every entry of the
    commit, in the order added. If the commit or the wait fails,
    ``on_failed(entries, exc)`` runs instead: nothing of it may be acknowledged.

    A commit that adds nothing new (every frame a duplicate or rejected, or already
    committed by another transport sharing the store) gets the last LSN logged from the
    sink and waits for it: a duplicate may be the retransmission of a frame whose own
    commit is not durable yet, and its acknowledgement must not overtake it.
    """

    def __init__(self, sink: IngestSink, loop: asyncio.AbstractEventLoop,
                 on_durable: Callable[[list], None],
                 on_failed: Callable[[list, BaseException], None]) -> None:
        self.sink = sink
        self.loop = loop
        self.on_durable = on_durable
        self.on_failed = on_failed
        self._entries: list = []
        self._scheduled: asyncio.Handle | None = None
        self._durable_lsn = 0
        self._tasks: set[asyncio.Task] = set()
        self.commits = 0

    def add(self, entry: Any) -> None:
        """Record an uplink fed to the sink in this iteration."""
        self._entries.append(entry)
        if self._scheduled is None:
            self._scheduled = self.loop.call_soon(self._commit)

    @property
    def pending(self) -> int:
        """Commits whose durability is awaited, plus 1 if a commit is scheduled."""
        return len(self._tasks) + (self._scheduled is not None)

    def _commit(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        entries, self._entries = self._entries, []
        try:
            lsn = self.sink.commit()
        except Exception as exc:  # StorageError: the WAL refuses; nothing is acknowledged
            log.error("store commit failed: %s", exc)
            self.on_failed(entries, exc)
            return
        self.commits += 1
        if lsn <= self._durable_lsn:  # also 0: nothing was ever logged
            self.on_durable(entries)
            return
        task = self.loop.create_task(self._wait(lsn, entries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait(self, lsn: int, entries: list) -> None:
        try:
            await self.sink.durable(lsn)
        except Exception as exc:
            log.error("commit %d did not become durable: %s", lsn, exc)
            self.on_failed(entries, exc)
            return
        self._durable_lsn = max(self._durable_lsn, lsn)
        self.on_durable(entries)

    async def drain(self) -> None:
        """Commit what is pending and wait until every commit so far is settled."""
        if self._scheduled is not None:
            self._commit()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
