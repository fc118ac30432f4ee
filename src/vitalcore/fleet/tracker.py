"""The lifecycle tracker: one object over the clinical database, and how to open it."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..clinical.db import Database
from ..clinical.migrations import migrate
from ..clinical.store import ClinicalStore
from .migrations import FLEET_COMPONENT, FLEET_MIGRATIONS
from .model import DEFAULT_MODELS, Kind, ModelSpec
from .reports import ReportPart

__all__ = ["FleetTracker", "open_fleet"]


class FleetTracker(ReportPart):
    """Terminals and accessories, their powered-on hours from telemetry, limits, events.

    - telemetry: :meth:`ingest` (a DecodedBatch or STATUS readings; see
      :mod:`vitalcore.fleet.ingest`), fed by :class:`~vitalcore.fleet.feeder.StoreFeeder`
      from a running :class:`~vitalcore.storage.Store`;
    - registry (audited): :meth:`define_model`, :meth:`register_asset`,
      :meth:`set_status`, :meth:`replace`, :meth:`rebind_terminal`,
      :meth:`record_reading`;
    - reading: :meth:`asset`, :meth:`terminal`, :meth:`assets`, :meth:`due`,
      :meth:`statistics`, :meth:`drill_down` (audited), :meth:`usage`, :meth:`events`;
    - subscriptions: :meth:`add_listener` (callback), :meth:`subscribe` (async iterator).

    Build it with :func:`open_fleet`. Parameters: see :class:`~vitalcore.fleet.core.FleetCore`.
    """


def open_fleet(target: ClinicalStore | Database, *, clock: Callable[[], int] | None = None,
               warn_fraction: float = 0.1,
               defaults: Mapping[Kind, ModelSpec] = DEFAULT_MODELS,
               conflict_window_s: float = 60.0) -> FleetTracker:
    """A :class:`FleetTracker` on the clinical store's database, its tables migrated.

    Parameters
    ----------
    target : ClinicalStore or Database
        An open clinical store (its database and clock are shared) or a migrated
        clinical :class:`~vitalcore.clinical.Database`.
    clock, warn_fraction, defaults, conflict_window_s
        See :class:`~vitalcore.fleet.core.FleetCore`.

    Raises
    ------
    StorageError
        The fleet schema in the database is newer than this code.
    """
    if isinstance(target, ClinicalStore):
        db, clock = target.db, clock or target._clock
    else:
        db = target
    migrate(db, FLEET_MIGRATIONS, component=FLEET_COMPONENT)
    return FleetTracker(db, clock=clock, warn_fraction=warn_fraction, defaults=defaults,
                        conflict_window_s=conflict_window_s)
