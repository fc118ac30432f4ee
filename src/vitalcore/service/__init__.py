"""Maintenance work orders with contract SLAs and outsourced-service vendors.

Built on the clinical store's database, users, access control and audit
(:mod:`vitalcore.clinical`); see docs/workorders.md.

- :class:`ServiceDesk` (:mod:`.desk`): create orders (:class:`OrderRequest`, channels
  web/API/CLI, :meth:`~ServiceDesk.open_from_telemetry`), take them through respond →
  start → fix → verify → ward sign-off → close, photos, follow-up; SLA clocks
  (:class:`SlaPolicy`, escalation through a :class:`Notifier`), auto-assignment
  (:class:`Assigner`), vendors and device associations enforced by clinical grants,
  KPIs (:meth:`~ServiceDesk.kpis`).
- :class:`TelemetryWatch`: orders from STATUS frames (fault codes, battery drain) and
  alarm events (repeated leads-off, link loss).
- :func:`render_html` / :func:`render_pdf` (:mod:`.report`): the monthly report.
- :func:`request_from_json` / :func:`order_to_json` (:mod:`.jsonio`): the JSON channel;
  ``python -m vitalcore.service``: the CLI (:mod:`.cli`).
"""

from __future__ import annotations

from .assign import Assigner, AssignmentRule
from .core import DeskConfig
from .desk import ServiceDesk
from .jsonio import order_to_json, request_from_json
from .kpi import Compliance, KPIReport, compute_kpis, month_bounds
from .migrations import SERVICE_MIGRATIONS, migrate_service
from .model import (
    Association,
    Channel,
    Milestone,
    Notice,
    OrderEvent,
    OrderStatus,
    Photo,
    RecordKind,
    RequestType,
    ServiceRecord,
    Severity,
    Vendor,
    VendorScope,
    WorkOrder,
    minute,
    order_label,
)
from .notify import CallbackNotifier, FanoutNotifier, MqttNotifier, Notifier, notice_topic
from .orders import OrderRequest
from .sla import DEFAULT_CONTRACT, ClockState, ClockView, SlaPolicy, clock_state
from .telemetry import CAUSES, AutoOrder, TelemetryConfig, TelemetryWatch
from .vendors import DeviceArchive


def __getattr__(name: str):
    # jinja2/weasyprint only on demand
    if name in ("render_html", "render_pdf"):
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ServiceDesk", "DeskConfig", "OrderRequest", "WorkOrder", "OrderEvent", "Photo",
    "OrderStatus", "RequestType", "Severity", "Channel", "Milestone", "VendorScope",
    "RecordKind", "Vendor", "Association", "ServiceRecord", "DeviceArchive", "Notice",
    "Notifier", "CallbackNotifier", "MqttNotifier", "FanoutNotifier", "notice_topic",
    "SlaPolicy", "ClockState", "ClockView", "clock_state", "DEFAULT_CONTRACT",
    "Assigner", "AssignmentRule", "TelemetryWatch", "TelemetryConfig", "AutoOrder", "CAUSES",
    "KPIReport", "Compliance", "compute_kpis", "month_bounds", "render_html", "render_pdf",
    "request_from_json", "order_to_json", "SERVICE_MIGRATIONS", "migrate_service",
    "minute", "order_label",
]
