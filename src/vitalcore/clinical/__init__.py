"""The clinical organisation: hospitals to beds, patients and their devices, users and audit.

- :func:`open_store` → :class:`ClinicalStore` (SQLite by default, PostgreSQL for several
  nodes): organisation tree, device registry and reprocessing, admissions, transfers,
  transport, bindings, discharge, users and role grants, the audit log.
- Lookups for other subsystems: :meth:`ClinicalStore.device_spans` (→ :class:`DeviceSpan`),
  :meth:`ClinicalStore.patient_of`, :meth:`ClinicalStore.devices_of_ward`,
  :meth:`ClinicalStore.device_wards`; :class:`WardDirectory` (:mod:`.wards`): device → ward
  now, refreshed in the background, for alarm topic routing.
- Access control: :class:`Role`, :class:`Permission`, :data:`ROLE_PERMISSIONS`,
  :class:`Resource`, :meth:`ClinicalStore.authorize` (raises
  :class:`~vitalcore.errors.AccessDenied`, audited).
- :class:`ClinicalAccounts`: the MQTT/CoAP server's accounts backed by this store.
- :class:`Records` (:mod:`.records`): a patient's, device's or ward's numerics, waveforms,
  status and alarms over a time range as Arrow tables, stitched across device swaps.
- :class:`BPScheduler`, :class:`BPScheduleConfig` (:mod:`.bp_schedule`): NIBP schedules
  with day/night intervals and "measure now"; :func:`abpm_report` (:mod:`.abpm`): the
  ambulatory BP report, rendered by :mod:`vitalcore.clinical.report` (HTML, PDF).

See docs/clinical.md.
"""

from __future__ import annotations

from .abpm import ABPMConfig, ABPMReport, NIBPReadings, ValidityCriteria, abpm_report
from .bp_schedule import (
    BPScheduleConfig,
    BPScheduler,
    FakeClock,
    ScheduleStatus,
    WallClock,
    devices_from_spans,
)
from .db import Database
from .migrations import SCHEMA_VERSION, migrate, schema_version
from .model import (
    ROLE_PERMISSIONS,
    AuditEntry,
    DeviceEvent,
    DeviceInfo,
    DeviceState,
    Grant,
    Permission,
    Placement,
    Resource,
    Role,
    ScopeKind,
)
from .records import SAMPLE_SCHEMA, AlarmLogSource, AlarmSource, Channel, DeviceHistory, Records
from .schedule_book import ScheduleBook
from .spans import DeviceSpan
from .store import ClinicalStore, open_store
from .wards import WardDirectory


def __getattr__(name: str):
    # the server bridge imports vitalcore.server (broker, codec, store): only on demand
    if name in ("ClinicalAccounts", "ClinicalScope"):
        from . import identity

        return getattr(identity, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "open_store",
    "ClinicalStore",
    "Database",
    "migrate",
    "schema_version",
    "SCHEMA_VERSION",
    "DeviceSpan",
    "WardDirectory",
    "ScheduleBook",
    "Placement",
    "DeviceInfo",
    "DeviceEvent",
    "DeviceState",
    "Grant",
    "AuditEntry",
    "Role",
    "Permission",
    "ROLE_PERMISSIONS",
    "ScopeKind",
    "Resource",
    "ClinicalAccounts",
    "ClinicalScope",
    "Records",
    "Channel",
    "DeviceHistory",
    "AlarmSource",
    "AlarmLogSource",
    "SAMPLE_SCHEMA",
    "BPScheduler",
    "BPScheduleConfig",
    "ScheduleStatus",
    "FakeClock",
    "WallClock",
    "devices_from_spans",
    "abpm_report",
    "ABPMConfig",
    "ABPMReport",
    "NIBPReadings",
    "ValidityCriteria",
]
