"""Value types of the service desk: work orders, their kinds, vendors and notices.

Times are µs since the Unix epoch (UTC); pages and reports show them to the minute.
Device ids are the wire-format u64 ids (stored as 16 lower-case hex digits, as in the
clinical store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from ..errors import UsageError

__all__ = [
    "RequestType",
    "Severity",
    "OrderStatus",
    "Channel",
    "Milestone",
    "VendorScope",
    "RecordKind",
    "WorkOrder",
    "OrderEvent",
    "Photo",
    "Vendor",
    "Association",
    "ServiceRecord",
    "Notice",
    "order_label",
    "minute",
    "check_text",
    "check_evidence",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_EVIDENCE_BYTES = 16_384


class RequestType(StrEnum):
    """What is asked for (the standards' request types)."""

    EMERGENCY_REPAIR = "emergency_repair"  #: corrective repair of a fault
    PREVENTIVE_MAINTENANCE = "preventive_maintenance"
    TRAINING = "training"


class Severity(StrEnum):
    """How much of the device's function is lost."""

    MINOR = "minor"  #: no loss of the main function
    GENERAL = "general"  #: part of the function lost
    SERIOUS = "serious"  #: main function lost (no signal, dead terminal)


class OrderStatus(StrEnum):
    """Where an order is: ``open`` → ``responded`` → ``in_progress`` → ``fixed`` →
    ``verified`` (function test passed) → ``closed`` (after the ward's sign-off).

    A failed function test sends a ``fixed`` order back to ``in_progress``.
    ``cancelled`` ends an order raised by mistake (its clocks stop; no KPI counts it).
    """

    OPEN = "open"
    RESPONDED = "responded"
    IN_PROGRESS = "in_progress"
    FIXED = "fixed"
    VERIFIED = "verified"
    CLOSED = "closed"
    CANCELLED = "cancelled"


#: statuses in which an order's SLA clocks still run
ACTIVE_STATUSES = (OrderStatus.OPEN, OrderStatus.RESPONDED, OrderStatus.IN_PROGRESS,
                   OrderStatus.FIXED, OrderStatus.VERIFIED)


class Channel(StrEnum):
    """How an order came in."""

    WEB = "web"
    API = "api"
    CLI = "cli"  #: phone intake typed by the service desk
    TELEMETRY = "telemetry"


class Milestone(StrEnum):
    """The contract's clocks, each measured from the report time.

    ``notify``: the responsible person was notified; ``respond``: someone took the
    order; ``on_site``: work started on site or remotely; ``fix``: the device problem
    was fixed; ``resolve``: the fault removed (the order closed after verification and
    sign-off).
    """

    NOTIFY = "notify"
    RESPOND = "respond"
    ON_SITE = "on_site"
    FIX = "fix"
    RESOLVE = "resolve"


class VendorScope(StrEnum):
    """What an outsourced-service vendor may do on an associated device."""

    VIEW_ARCHIVE = "view_archive"  #: the device's history and work orders
    REPAIR_RECORDS = "repair_records"  #: work on repair orders, write repair records
    MAINTENANCE_RECORDS = "maintenance_records"  #: preventive maintenance (and training)
    CALIBRATION_RECORDS = "calibration_records"


class RecordKind(StrEnum):
    """A service record written against a device."""

    REPAIR = "repair"
    MAINTENANCE = "maintenance"
    CALIBRATION = "calibration"


#: the vendor scope needed to write or read each record kind
RECORD_SCOPE = {RecordKind.REPAIR: VendorScope.REPAIR_RECORDS,
                RecordKind.MAINTENANCE: VendorScope.MAINTENANCE_RECORDS,
                RecordKind.CALIBRATION: VendorScope.CALIBRATION_RECORDS}
#: the vendor scope needed to work on an order of each request type
REQUEST_SCOPE = {RequestType.EMERGENCY_REPAIR: VendorScope.REPAIR_RECORDS,
                 RequestType.PREVENTIVE_MAINTENANCE: VendorScope.MAINTENANCE_RECORDS,
                 RequestType.TRAINING: VendorScope.MAINTENANCE_RECORDS}


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """One work order as stored.

    ``*_us`` milestone times are None until reached. ``sla_s`` holds the contract's
    limits (s from ``reported_us``) copied when the order was opened, so a later change
    of the contract does not rewrite history. ``years_in_use`` is measured from
    ``in_service_us`` (the device's registration in the clinical store, or as given)
    to ``reported_us``.
    """

    order_id: int
    institution: str
    contact: str
    device_id: int
    device_name: str
    model: str
    serial: str
    in_service_us: int
    ward_id: str | None
    floor: str
    room: str
    description: str
    fault_type: str
    request_type: RequestType
    severity: Severity
    emergency: bool
    channel: Channel
    auto_cause: str | None
    evidence: dict[str, Any]
    repeat_count: int
    contract: str
    sla_s: dict[Milestone, int]
    team: str
    vendor_id: str | None
    status: OrderStatus
    created_by: str
    fault_us: int
    reported_us: int
    notified_us: int | None
    responded_us: int | None
    started_us: int | None
    fixed_us: int | None
    verified_us: int | None
    verified_by: str | None
    verification_ref: str | None
    signed_off_us: int | None
    signed_off_by: str | None
    closed_us: int | None
    follow_up: str
    follow_up_due_us: int | None

    @property
    def label(self) -> str:
        return order_label(self.order_id)

    @property
    def years_in_use(self) -> float:
        """Years from ``in_service_us`` to the report, one decimal."""
        return round(max(0, self.reported_us - self.in_service_us) / (365.25 * 86400e6), 1)

    def done_us(self, milestone: Milestone) -> int | None:
        """When ``milestone`` was reached (None: not yet)."""
        return {Milestone.NOTIFY: self.notified_us, Milestone.RESPOND: self.responded_us,
                Milestone.ON_SITE: self.started_us, Milestone.FIX: self.fixed_us,
                Milestone.RESOLVE: self.closed_us if self.status is OrderStatus.CLOSED
                else None}[milestone]

    def deadline_us(self, milestone: Milestone) -> int:
        return self.reported_us + self.sla_s[milestone] * 1_000_000


class OrderEvent(NamedTuple):
    """One step in an order's timeline: who did what when (``note`` free text)."""

    order_id: int
    at_us: int
    actor: str
    kind: str
    note: str


class Photo(NamedTuple):
    """A photo of a fault: its SHA-256 (hex), media type and size in bytes."""

    photo_id: int
    order_id: int
    sha256: str
    media_type: str
    size: int
    added_us: int
    added_by: str


class Vendor(NamedTuple):
    """An outsourced-service company and the clinical users who act for it."""

    vendor_id: str
    name: str
    contact: str
    users: tuple[str, ...]
    invited_by: str
    invited_us: int


class Association(NamedTuple):
    """A device entrusted to a vendor for ``[valid_from_us, valid_until_us)`` within
    ``scopes``; ``revoked_us`` ends it early. Rows are never deleted (the history)."""

    association_id: int
    vendor_id: str
    device_id: int
    scopes: frozenset[VendorScope]
    valid_from_us: int
    valid_until_us: int
    created_by: str
    created_us: int
    revoked_us: int | None
    revoked_by: str | None
    warned_us: int | None

    def active_at(self, t_us: int) -> bool:
        return (self.valid_from_us <= t_us < self.valid_until_us
                and (self.revoked_us is None or t_us < self.revoked_us))


class ServiceRecord(NamedTuple):
    """A repair, maintenance or calibration record of a device."""

    record_id: int
    device_id: int
    kind: RecordKind
    order_id: int | None
    at_us: int
    by_user: str
    vendor_id: str | None
    note: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a person or system must hear about, handed to a :class:`Notifier`.

    ``kind``: ``assigned`` (a new order for a team), ``escalated`` (an SLA clock ran
    out), ``order_update`` (a vendor's device order changed), ``authorisation_expiring``.
    ``targets`` are routing names such as ``team/biomed`` or ``vendor/ACME``.
    """

    kind: str
    targets: tuple[str, ...]
    at_us: int
    text: str
    order_id: int | None = None
    milestone: Milestone | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "targets": list(self.targets), "at_us": self.at_us,
                "at": minute(self.at_us), "text": self.text,
                "order": None if self.order_id is None else order_label(self.order_id),
                "milestone": None if self.milestone is None else self.milestone.value,
                **self.payload}


def order_label(order_id: int) -> str:
    """``WO-000042``: the label people quote on the phone."""
    return f"WO-{order_id:06d}"


def minute(t_us: int | None) -> str:
    """``YYYY-MM-DD HH:MM`` (UTC) of ``t_us``, truncated to the minute; '' for None."""
    if t_us is None:
        return ""
    return (_EPOCH + timedelta(microseconds=int(t_us))).strftime("%Y-%m-%d %H:%M")


def check_text(value: object, what: str, max_len: int = 200, *, empty: bool = False) -> str:
    """``value`` if it is a string of at most ``max_len`` characters (non-blank unless
    ``empty``); :class:`UsageError` otherwise."""
    if not isinstance(value, str) or len(value) > max_len or (not empty and not value.strip()):
        need = "a string" if empty else "a non-empty string"
        raise UsageError(f"{what} must be {need} of at most {max_len} characters, "
                         f"got {value!r:.80}")
    if "\0" in value:
        raise UsageError(f"{what} must not contain NUL characters")
    return value


def check_evidence(evidence: object) -> str:
    """``evidence`` (a JSON-serialisable dict) as compact JSON of at most 16 KiB."""
    if not isinstance(evidence, dict):
        raise UsageError(f"evidence must be a dict, got {type(evidence).__name__}")
    try:
        text = json.dumps(evidence, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"evidence must be JSON-serialisable: {exc}") from None
    if len(text) > MAX_EVIDENCE_BYTES:
        raise UsageError(f"evidence too large ({len(text)} > {MAX_EVIDENCE_BYTES} bytes)")
    return text
