"""Device and accessory lifecycle: powered-on hours from telemetry, limits, due list.

Every terminal and accessory (lead wire, battery, comms module, storage card, screen,
SpO2 probe, NIBP cuff) is an *asset* with an identity (kind + serial, unique per kind;
a terminal also has its wire device id), a model with a replacement limit, an
install history and its powered-on hours, computed from the cumulative counters of the
device STATUS frames (protocol.md §6) and surviving device swaps, accessory moves and
counter resets (:mod:`.accounting`).

- :func:`open_fleet` → :class:`FleetTracker`, on the clinical database (tables migrated
  under component ``"fleet"``: :data:`FLEET_MIGRATIONS`).
- Telemetry: :meth:`FleetTracker.ingest`; :class:`StoreFeeder` from a running Store,
  :func:`catch_up` from its history.
- Events for work orders and dashboards: :meth:`FleetTracker.add_listener`,
  :meth:`FleetTracker.subscribe` (async iterator), :meth:`FleetTracker.events`.
- Export: :mod:`vitalcore.fleet.export` (CSV, XLSX, JSON payload).

See docs/lifecycle.md.
"""

from __future__ import annotations

from .accounting import CounterState, Credit, Outcome, observe, rebase
from .events import EventSubscription
from .feeder import StoreFeeder, catch_up, readings_from_store
from .ingest import IngestReport, StatusReading, readings_of
from .migrations import FLEET_COMPONENT, FLEET_MIGRATIONS
from .model import (
    DEFAULT_MODELS,
    Alert,
    Asset,
    AssetDetail,
    AssetStatus,
    DueItem,
    EventKind,
    FleetStats,
    Install,
    Kind,
    LifecycleEvent,
    ModelSpec,
    UsageRow,
)
from .reports import month_bounds
from .tracker import FleetTracker, open_fleet

__all__ = [
    "open_fleet",
    "FleetTracker",
    "FLEET_MIGRATIONS",
    "FLEET_COMPONENT",
    "Kind",
    "AssetStatus",
    "Alert",
    "ModelSpec",
    "DEFAULT_MODELS",
    "Asset",
    "AssetDetail",
    "Install",
    "DueItem",
    "UsageRow",
    "FleetStats",
    "EventKind",
    "LifecycleEvent",
    "EventSubscription",
    "StatusReading",
    "IngestReport",
    "readings_of",
    "StoreFeeder",
    "catch_up",
    "readings_from_store",
    "CounterState",
    "Credit",
    "Outcome",
    "observe",
    "rebase",
    "month_bounds",
]
