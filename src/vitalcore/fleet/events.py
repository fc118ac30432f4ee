"""Delivering lifecycle events to subscribers: callbacks and async iterators.

Events are written to ``fleet_events`` in the transaction that caused them, and handed
to subscribers only after that transaction committed, so a subscriber never sees an
event that is not durable. Delivery is at most once per subscriber: a subscriber that
falls behind (a full queue) or starts late reads the missed events back with
:meth:`vitalcore.fleet.FleetTracker.events` ``(since_id=...)``; event ids increase.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable

from ..errors import UsageError
from .model import EventKind, LifecycleEvent

__all__ = ["EventHub", "EventSubscription"]

log = logging.getLogger("vitalcore.fleet")


class EventSubscription:
    """An async iterator of lifecycle events, bound to the event loop that created it.

    Get one from :meth:`vitalcore.fleet.FleetTracker.subscribe`; events published from
    any thread are put on its queue with ``loop.call_soon_threadsafe``.

    Attributes
    ----------
    dropped : int
        Events not queued because the queue was full (read them back with
        ``FleetTracker.events(since_id=...)``).
    """

    def __init__(self, hub: EventHub, kinds: frozenset[EventKind] | None, maxsize: int) -> None:
        self._hub = hub
        self._kinds = kinds
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[LifecycleEvent | None] = asyncio.Queue(maxsize)
        self.dropped = 0
        self._closed = False

    def _offer(self, event: LifecycleEvent) -> None:
        if self._kinds is None or event.kind in self._kinds:
            self._loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: LifecycleEvent | None) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    def close(self) -> None:
        """Stop receiving; the iterator ends after the events already queued."""
        if not self._closed:
            self._closed = True
            self._hub._subs.discard(self)
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> LifecycleEvent:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def get(self, timeout: float | None = None) -> LifecycleEvent:
        """The next event (``TimeoutError`` after ``timeout`` s; StopAsyncIteration when
        closed)."""
        return await asyncio.wait_for(self.__anext__(), timeout)


class EventHub:
    """Listeners and subscriptions of one tracker (thread-safe)."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[LifecycleEvent], None]] = []
        self._subs: set[EventSubscription] = set()
        self._lock = threading.Lock()
        self.listener_errors = 0

    def add_listener(self, callback: Callable[[LifecycleEvent], None]) -> None:
        if not callable(callback):
            raise UsageError(f"listener must be callable, got {callback!r}")
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[LifecycleEvent], None]) -> None:
        with self._lock:
            try:
                self._listeners.remove(callback)
            except ValueError:
                raise UsageError(f"{callback!r} is not a listener of this tracker") from None

    def subscribe(self, kinds: Iterable[EventKind | str] | None, maxsize: int) -> EventSubscription:
        if maxsize < 1:
            raise UsageError("maxsize must be >= 1")
        wanted = None if kinds is None else frozenset(EventKind(k) for k in kinds)
        sub = EventSubscription(self, wanted, maxsize)
        with self._lock:
            self._subs.add(sub)
        return sub

    def publish(self, events: Iterable[LifecycleEvent]) -> None:
        """Hand committed events to every listener and subscription; a listener's
        exception is logged and counted, never passed on."""
        with self._lock:
            listeners, subs = tuple(self._listeners), tuple(self._subs)
        for event in events:
            for cb in listeners:
                try:
                    cb(event)
                except Exception:
                    self.listener_errors += 1
                    n = self.listener_errors
                    if n & (n - 1) == 0:
                        log.exception("lifecycle listener %r failed (%d failures)", cb, n)
            for sub in subs:
                try:
                    sub._offer(event)
                except RuntimeError:  # its loop is closed: the subscriber is gone
                    self._subs.discard(sub)
