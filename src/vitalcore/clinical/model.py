"""Value types of the clinical organisation: roles, permissions, resources and records.

Times are µs since the Unix epoch (UTC). Device ids are the wire-format u64 ids
(non-zero); the database stores them as 16 lower-case hex digits (their MQTT name).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

from ..errors import UsageError

__all__ = [
    "DeviceState",
    "Role",
    "Permission",
    "ROLE_PERMISSIONS",
    "ScopeKind",
    "Resource",
    "Placement",
    "DeviceInfo",
    "DeviceEvent",
    "Grant",
    "AuditEntry",
    "device_key",
    "as_resource",
    "check_time",
    "check_id",
    "check_name",
]

_MAX_US = (1 << 63) - 1
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")


class DeviceState(StrEnum):
    """Where a device is in its use cycle.

    ``in_use`` → (released) ``to_clean`` → (cleaning and disinfection) ``to_check`` →
    (function check passed) ``available`` → (bound) ``in_use``. A failed check puts the
    device ``out_of_service`` until a repair is recorded, which sends it to ``to_clean``.
    A newly registered device starts in ``to_check``: it is checked before first use.
    """

    AVAILABLE = "available"
    IN_USE = "in_use"
    TO_CLEAN = "to_clean"
    TO_CHECK = "to_check"
    OUT_OF_SERVICE = "out_of_service"


class Role(StrEnum):
    """What a user does; the permissions of each are in :data:`ROLE_PERMISSIONS`."""

    WARD_NURSE = "ward_nurse"
    WARD_DOCTOR = "ward_doctor"
    CENTRAL_MONITORING = "central_monitoring"
    BIOMEDICAL_ENGINEER = "biomedical_engineer"
    ADMINISTRATOR = "administrator"
    SERVICE_VENDOR = "service_vendor"
    REMOTE_VIEWER = "remote_viewer"


class Permission(StrEnum):
    """One kind of action, checked by :meth:`ClinicalStore.authorize`."""

    READ_VITALS = "read_vitals"  #: live and historical patient data
    ACK_ALARMS = "ack_alarms"
    SET_ALARM_LIMITS = "set_alarm_limits"
    COMMAND_DEVICES = "command_devices"  #: start BP, identify, switch carrier
    MANAGE_PATIENTS = "manage_patients"  #: admit, transfer, transport, bind, discharge
    MANAGE_ORGANISATION = "manage_organisation"  #: hospitals, campuses, wards, beds
    MANAGE_DEVICES = "manage_devices"  #: register devices, groups, device secrets
    MAINTAIN_DEVICES = "maintain_devices"  #: cleaning, function checks, repairs
    VIEW_DEVICE_ARCHIVE = "view_device_archive"  #: maintenance and calibration records
    VIEW_AUDIT = "view_audit"
    MANAGE_USERS = "manage_users"  #: users and their role grants


_P = Permission

#: The role → permission table. Deliberately narrow: administrators organise but do not
#: read vitals; vendors maintain their devices but never see patient data.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.WARD_NURSE: frozenset({_P.READ_VITALS, _P.ACK_ALARMS, _P.COMMAND_DEVICES,
                                _P.MANAGE_PATIENTS}),
    Role.WARD_DOCTOR: frozenset({_P.READ_VITALS, _P.ACK_ALARMS, _P.COMMAND_DEVICES,
                                 _P.MANAGE_PATIENTS, _P.SET_ALARM_LIMITS}),
    Role.CENTRAL_MONITORING: frozenset({_P.READ_VITALS, _P.ACK_ALARMS, _P.COMMAND_DEVICES}),
    Role.BIOMEDICAL_ENGINEER: frozenset({_P.MANAGE_DEVICES, _P.MAINTAIN_DEVICES,
                                         _P.VIEW_DEVICE_ARCHIVE, _P.COMMAND_DEVICES}),
    Role.ADMINISTRATOR: frozenset({_P.MANAGE_ORGANISATION, _P.MANAGE_USERS, _P.VIEW_AUDIT,
                                   _P.MANAGE_DEVICES}),
    Role.SERVICE_VENDOR: frozenset({_P.MAINTAIN_DEVICES, _P.VIEW_DEVICE_ARCHIVE}),
    Role.REMOTE_VIEWER: frozenset({_P.READ_VITALS}),
}


class ScopeKind(StrEnum):
    """Kinds of resource, and of scope a role grant is limited to."""

    GLOBAL = "global"
    HOSPITAL = "hospital"
    CAMPUS = "campus"
    WARD = "ward"
    BED = "bed"
    PATIENT = "patient"
    DEVICE = "device"
    DEVICE_GROUP = "device_group"


class Resource(NamedTuple):
    """A thing access is checked against: a kind and an id (``None`` for global).

    Device resources carry the 16-hex device name; build them with :meth:`device`.
    """

    kind: ScopeKind
    id: str | None = None

    def __str__(self) -> str:
        return self.kind.value if self.id is None else f"{self.kind.value}:{self.id}"

    @classmethod
    def everything(cls) -> Resource:
        return cls(ScopeKind.GLOBAL)

    @classmethod
    def hospital(cls, hospital_id: str) -> Resource:
        return cls(ScopeKind.HOSPITAL, hospital_id)

    @classmethod
    def campus(cls, campus_id: str) -> Resource:
        return cls(ScopeKind.CAMPUS, campus_id)

    @classmethod
    def ward(cls, ward_id: str) -> Resource:
        return cls(ScopeKind.WARD, ward_id)

    @classmethod
    def bed(cls, bed_id: str) -> Resource:
        return cls(ScopeKind.BED, bed_id)

    @classmethod
    def patient(cls, patient_id: str) -> Resource:
        return cls(ScopeKind.PATIENT, patient_id)

    @classmethod
    def device(cls, device_id: int) -> Resource:
        return cls(ScopeKind.DEVICE, device_key(device_id))

    @classmethod
    def device_group(cls, group_id: str) -> Resource:
        return cls(ScopeKind.DEVICE_GROUP, group_id)


class Placement(NamedTuple):
    """Where a patient was over ``[start_us, end_us)``.

    In a ward: ``ward_id`` set (``bed_id`` optional). In transport (ambulance, between
    wards or hospitals): ``ward_id`` is None, ``from_ward_id`` is the ward left and
    ``to_ward_id`` the announced destination (optional).
    """

    patient_id: str
    ward_id: str | None
    bed_id: str | None
    from_ward_id: str | None
    to_ward_id: str | None
    start_us: int
    end_us: int | None


class DeviceInfo(NamedTuple):
    """A registered device: ``device_id`` (u64), ``model``, owning ``hospital_id``, state."""

    device_id: int
    model: str
    hospital_id: str | None
    state: DeviceState


class DeviceEvent(NamedTuple):
    """One recorded step of a device's life: who did what, when, with which result.

    ``kind`` is one of ``registered``, ``bound``, ``released``, ``cleaned``, ``checked``,
    ``repaired``; ``passed`` is set for ``checked`` (against ``reference``).
    """

    device_id: int
    kind: str
    at_us: int
    by_user: str
    state_after: DeviceState
    reference: str | None
    passed: bool | None
    note: str


class Grant(NamedTuple):
    """A role given to a user within a scope, optionally for ``[valid_from_us, valid_until_us)``."""

    grant_id: int
    user: str
    role: Role
    scope: Resource
    valid_from_us: int | None
    valid_until_us: int | None


class AuditEntry(NamedTuple):
    """One audit record: ``outcome`` is ``"allowed"``, ``"denied"`` or ``"error"``.

    ``at_us`` is the time the action claims (the event time given to the call),
    ``recorded_us`` the wall clock when it was written.
    """

    at_us: int
    recorded_us: int
    user: str
    action: str
    permission: str | None
    resource: str
    outcome: str
    detail: str


def as_resource(value: object) -> Resource:
    """``value`` as a :class:`Resource` with a :class:`ScopeKind` (a plain kind string
    such as ``"ward"`` is accepted); :class:`UsageError` otherwise."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise UsageError(f"expected a Resource (kind, id), got {value!r}")
    try:
        kind = ScopeKind(value[0])
    except ValueError:
        raise UsageError(f"unknown resource kind {value[0]!r}") from None
    return Resource(kind, value[1])


def device_key(device_id: int) -> str:
    """The database key of ``device_id``: 16 lower-case hex digits."""
    if isinstance(device_id, bool) or not isinstance(device_id, int):
        raise UsageError(f"device id must be an int, got {device_id!r}")
    if not 0 < device_id < 1 << 64:
        raise UsageError(f"device id must be in 1..2^64-1, got {device_id!r}")
    return f"{device_id:016x}"


def check_time(t_us: int, name: str = "at_us") -> int:
    """Validate a µs timestamp (a non-negative int below 2^63)."""
    if isinstance(t_us, bool) or not isinstance(t_us, int) or not 0 <= t_us <= _MAX_US:
        raise UsageError(f"{name} must be an int of µs since the epoch, got {t_us!r}")
    return t_us


def check_id(value: object, what: str) -> str:
    """Validate an id: 1..128 characters of ``A-Z a-z 0-9 . _ : @ / -``, not starting
    with punctuation."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise UsageError(f"{what} id must be 1..128 letters, digits or ._:@/- "
                         f"(starting with a letter or digit), got {value!r}")
    return value


def check_name(value: object, what: str) -> str:
    """Validate a display name: a non-empty string of at most 200 characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise UsageError(f"{what} must be a non-empty string of at most 200 characters")
    return value
