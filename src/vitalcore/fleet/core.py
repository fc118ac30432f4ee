"""The base of :class:`~vitalcore.fleet.FleetTracker`: database, rules, events (internal).

The tracker shares the clinical :class:`~vitalcore.clinical.Database` and its audited
operations (:class:`~vitalcore.clinical.core.StoreCore`): a user's change runs in one
transaction with its permission checks and an ``allowed`` audit record; a refused or
bad change leaves only its ``denied``/``error`` audit record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..clinical.core import StoreCore
from ..clinical.db import Database, Tx
from ..clinical.model import Resource
from ..errors import UsageError
from .events import EventHub, EventSubscription
from .model import DEFAULT_MODELS, HOUR_S, EventKind, Kind, LifecycleEvent, ModelSpec
from .rows import EVENT_COLUMNS, AssetRow, Rules, dev_key, event_row

__all__ = ["FleetCore", "EventBuffer"]


class EventBuffer:
    """Events written in one open transaction, published once it commits."""

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.events: list[LifecycleEvent] = []

    def add(self, at_us: int, kind: EventKind, asset: AssetRow | None = None,
            device_id: int | None = None, **detail: Any) -> LifecycleEvent:
        hours_s = None if asset is None else asset.counter.total_s
        text = json.dumps(detail, sort_keys=True)
        eid = self.tx.one(
            "INSERT INTO fleet_events (at_us, recorded_us, kind, asset_id, device_id, hours_s, "
            "detail) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (at_us, time.time_ns() // 1000, kind.value, None if asset is None else asset.id,
             dev_key(device_id), hours_s, text))
        event = LifecycleEvent(
            int(eid[0]) if eid else 0, at_us, kind, None if asset is None else asset.id,
            None if asset is None else asset.kind, None if asset is None else asset.serial,
            device_id, None if hours_s is None else hours_s / HOUR_S, detail)
        self.events.append(event)
        return event


class FleetCore(StoreCore):
    """Shared state of the tracker's parts.

    Parameters
    ----------
    db : Database
        The clinical database with the fleet tables migrated (see :func:`open_fleet`).
    clock : callable, optional
        µs since the epoch for user actions that give no ``at_us``.
    warn_fraction : float
        Warning margin of a model whose spec gives none, as a fraction of its limit
        (default 0.1: warn from 90 % of the limit).
    defaults : mapping of Kind to ModelSpec
        Limits of assets whose model has no spec (default :data:`DEFAULT_MODELS`: the
        contract's terminal 17,520 h, lead wire 4,380 h, battery 4,380 h).
    conflict_window_s : float
        An accessory reported by another terminal less than this many seconds after its
        terminal last reported it is a duplicate serial, not a move (default 60 s).
    """

    def __init__(self, db: Database, *, clock: Callable[[], int] | None = None,
                 warn_fraction: float = 0.1,
                 defaults: Mapping[Kind, ModelSpec] = DEFAULT_MODELS,
                 conflict_window_s: float = 60.0) -> None:
        super().__init__(db, clock=clock)
        if not 0 <= warn_fraction < 1:
            raise UsageError(f"warn_fraction must be in [0, 1), got {warn_fraction!r}")
        if not conflict_window_s >= 0:
            raise UsageError(f"conflict_window_s must be >= 0, got {conflict_window_s!r}")
        self.warn_fraction = float(warn_fraction)
        self.defaults = dict(defaults)
        self.conflict_window_us = int(conflict_window_s * 1e6)
        self.hub = EventHub()

    def _rules(self, tx: Tx) -> Rules:
        return Rules.load(tx, self.defaults, self.warn_fraction)

    # -- events ---------------------------------------------------------------------------
    def add_listener(self, callback: Callable[[LifecycleEvent], None]) -> None:
        """Call ``callback(event)`` for each committed lifecycle event.

        It runs on the thread that ingested or acted, after the commit; an exception it
        raises is logged and counted (``hub.listener_errors``), never passed on. Keep it
        quick (hand work to a queue or executor).
        """
        self.hub.add_listener(callback)

    def remove_listener(self, callback: Callable[[LifecycleEvent], None]) -> None:
        """Stop calling ``callback`` (UsageError if it was not added)."""
        self.hub.remove_listener(callback)

    def subscribe(self, kinds: Iterable[EventKind | str] | None = None, *,
                  maxsize: int = 1024) -> EventSubscription:
        """An async iterator of committed events (of ``kinds``, default all).

        Call from a coroutine; the subscription belongs to the running loop. Example::

            async for ev in tracker.subscribe({"warning", "over_limit"}):
                open_work_order(ev)
        """
        return self.hub.subscribe(kinds, maxsize)

    def events(self, since_id: int = 0, *, asset_id: int | None = None,
               kinds: Iterable[EventKind | str] | None = None,
               limit: int = 1000) -> list[LifecycleEvent]:
        """Stored events with ``event_id > since_id``, oldest first (at most ``limit``)."""
        if not 1 <= limit <= 100_000:
            raise UsageError("limit must be in 1..100000")
        sql = f"SELECT {EVENT_COLUMNS} FROM fleet_events WHERE id > ?"
        params: tuple = (int(since_id),)
        if asset_id is not None:
            sql += " AND asset_id = ?"
            params += (int(asset_id),)
        wanted = None if kinds is None else sorted(EventKind(k).value for k in kinds)
        if wanted is not None:
            sql += " AND kind IN (" + ", ".join("?" * len(wanted)) + ")"
            params += tuple(wanted)
        with self.db.transaction(write=False) as tx:
            rows = tx.all(sql + " ORDER BY id LIMIT ?", params + (limit,))
            ids = sorted({r[3] for r in rows if r[3] is not None})
            names = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                for aid, kind, serial in tx.all(
                        "SELECT id, kind, serial FROM fleet_assets WHERE id IN ("
                        + ", ".join("?" * len(chunk)) + ")", tuple(chunk)):
                    names[aid] = (Kind(kind), serial)
        return [event_row(r, names) for r in rows]

    def last_event_id(self) -> int:
        """The id of the newest stored event (0 if none)."""
        with self.db.transaction(write=False) as tx:
            return int(tx.scalar("SELECT MAX(id) FROM fleet_events") or 0)

    # -- scopes ---------------------------------------------------------------------------
    @staticmethod
    def _scope(tx: Tx, a: AssetRow) -> Resource:
        """The resource access to an asset is checked on: its terminal's device (if in the
        clinical registry), else its hospital, else the global scope."""
        if a.kind is Kind.TERMINAL and a.device_id is not None and tx.one(
                "SELECT 1 FROM devices WHERE id = ?", (dev_key(a.device_id),)):
            return Resource.device(a.device_id)
        if a.hospital_id is not None:
            return Resource.hospital(a.hospital_id)
        return Resource.everything()
