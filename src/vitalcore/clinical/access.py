"""Access decisions and the audit trail (functions on an open transaction).

A user holds role grants, each limited to a scope (global, a hospital, campus, ward,
bed, patient, device or device group) and optionally to a time window. A permission on
a resource is granted at time ``t`` when some grant valid at ``t`` has a role with that
permission and a scope that contains the resource at ``t``:

- hospital ⊃ campus ⊃ ward ⊃ bed (the organisation tree);
- a ward contains the patients placed in it at ``t``; a patient in transport belongs to
  the ward left and the announced destination ward (and their campuses and hospitals);
- a patient contains the devices bound to them at ``t``;
- a device group contains its member devices; a hospital contains the devices and
  groups it owns.

So a ward nurse's grant follows the patients: once a patient is transferred, the new
ward's staff see them and the old ward's do not.
"""

from __future__ import annotations

import json
import time

from ..errors import AccessDenied, UsageError
from .db import Tx
from .model import (
    ROLE_PERMISSIONS,
    AuditEntry,
    Permission,
    Resource,
    Role,
    ScopeKind,
    as_resource,
    check_id,
)

__all__ = ["containing_scopes", "denial_reason", "write_audit", "read_audit",
           "placement_at", "bound_patient_at"]

_K = ScopeKind
_OPEN_AT = "start_us <= ? AND (end_us IS NULL OR end_us > ?)"


def _need(tx: Tx, table: str, key: str, what: str) -> tuple:
    row = tx.one(f"SELECT * FROM {table} WHERE id = ?", (key,))
    if row is None:
        raise UsageError(f"unknown {what} {key!r}")
    return row


def _ward_up(tx: Tx, ward_id: str, out: set[Resource]) -> None:
    row = tx.one("SELECT w.campus_id, c.hospital_id FROM wards w "
                 "JOIN campuses c ON c.id = w.campus_id WHERE w.id = ?", (ward_id,))
    if row is None:
        raise UsageError(f"unknown ward {ward_id!r}")
    out.update((Resource.ward(ward_id), Resource.campus(row[0]), Resource.hospital(row[1])))


def placement_at(tx: Tx, patient_id: str, t_us: int) -> tuple | None:
    """``(ward_id, bed_id, from_ward_id, to_ward_id)`` of the patient at ``t_us``, or None."""
    return tx.one("SELECT ward_id, bed_id, from_ward_id, to_ward_id FROM placements "
                  f"WHERE patient_id = ? AND {_OPEN_AT}", (patient_id, t_us, t_us))


def bound_patient_at(tx: Tx, device_key: str, t_us: int) -> str | None:
    """The patient the device (16-hex key) is bound to at ``t_us``, or None."""
    return tx.scalar(f"SELECT patient_id FROM bindings WHERE device_id = ? AND {_OPEN_AT}",
                     (device_key, t_us, t_us))


def _patient_up(tx: Tx, patient_id: str, t_us: int, out: set[Resource]) -> None:
    out.add(Resource.patient(patient_id))
    where = placement_at(tx, patient_id, t_us)
    if where is None:
        return
    ward_id, bed_id, from_ward, to_ward = where
    if bed_id is not None:
        out.add(Resource.bed(bed_id))
    for w in (ward_id, from_ward, to_ward):
        if w is not None:
            _ward_up(tx, w, out)


def containing_scopes(tx: Tx, resource: Resource, t_us: int) -> set[Resource]:
    """Every scope that contains ``resource`` at ``t_us`` (itself and global included).

    Raises :class:`UsageError` for an unknown resource.
    """
    resource = as_resource(resource)
    kind, rid = resource.kind, resource.id
    out = {Resource.everything()}
    if kind is _K.GLOBAL:
        return out
    if kind is not _K.DEVICE:
        check_id(rid, kind.value)
    elif not isinstance(rid, str) or len(rid) != 16:
        raise UsageError(f"device resource id must be 16 hex digits, got {rid!r}")
    out.add(resource)
    if kind is _K.HOSPITAL:
        _need(tx, "hospitals", rid, "hospital")
    elif kind is _K.CAMPUS:
        out.add(Resource.hospital(_need(tx, "campuses", rid, "campus")[1]))
    elif kind is _K.WARD:
        _ward_up(tx, rid, out)
    elif kind is _K.BED:
        _ward_up(tx, _need(tx, "beds", rid, "bed")[1], out)
    elif kind is _K.PATIENT:
        _need(tx, "patients", rid, "patient")
        _patient_up(tx, rid, t_us, out)
    elif kind is _K.DEVICE_GROUP:
        owner = _need(tx, "device_groups", rid, "device group")[1]
        if owner is not None:
            out.add(Resource.hospital(owner))
    elif kind is _K.DEVICE:
        owner = _need(tx, "devices", rid, "device")[2]
        if owner is not None:
            out.add(Resource.hospital(owner))
        for (group,) in tx.all("SELECT group_id FROM device_group_members WHERE device_id = ?",
                               (rid,)):
            out.add(Resource.device_group(group))
        patient = bound_patient_at(tx, rid, t_us)
        if patient is not None:
            _patient_up(tx, patient, t_us, out)
    else:  # pragma: no cover - ScopeKind is closed
        raise UsageError(f"unknown resource kind {kind!r}")
    return out


def denial_reason(tx: Tx, user: str, permission: Permission, resource: Resource,
                  t_us: int) -> str | None:
    """Why ``user`` may not use ``permission`` on ``resource`` at ``t_us``; None if allowed."""
    row = tx.one("SELECT disabled FROM users WHERE name = ?", (user,))
    if row is None:
        return "unknown user"
    if row[0]:
        return "user disabled"
    grants = tx.all(
        "SELECT role, scope_kind, scope_id, permissions FROM role_grants WHERE user_name = ? "
        "AND revoked_us IS NULL AND (valid_from_us IS NULL OR valid_from_us <= ?) "
        "AND (valid_until_us IS NULL OR valid_until_us > ?)", (user, t_us, t_us))
    scopes = [Resource(ScopeKind(k), i) for role, k, i, limit in grants
              if permission in ROLE_PERMISSIONS[Role(role)]
              and (limit is None or permission.value in limit.split(","))]
    if not scopes:
        return "no role with this permission at this time"
    inside = containing_scopes(tx, resource, t_us)
    if not any(s in inside for s in scopes):
        return "outside the user's scope at this time"
    return None


def write_audit(tx: Tx, at_us: int, user: str, action: str, permission: str | None,
                resource: Resource | str, outcome: str, detail: dict | str = "") -> None:
    """Append one audit record (``outcome``: allowed, denied or error)."""
    if outcome not in ("allowed", "denied", "error"):
        raise UsageError(f"bad audit outcome {outcome!r}")
    text = detail if isinstance(detail, str) else json.dumps(detail, sort_keys=True)
    tx.execute("INSERT INTO audit (at_us, recorded_us, user_name, action, permission, "
               "resource, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (at_us, time.time_ns() // 1000, user, action, permission, str(resource),
                outcome, text))


def read_audit(tx: Tx, t0_us: int, t1_us: int, user: str | None = None) -> list[AuditEntry]:
    """Audit records with ``t0_us <= at_us < t1_us`` (of one user if given), in order."""
    sql = ("SELECT at_us, recorded_us, user_name, action, permission, resource, outcome, "
           "detail FROM audit WHERE at_us >= ? AND at_us < ?")
    params: tuple = (t0_us, t1_us)
    if user is not None:
        sql += " AND user_name = ?"
        params += (user,)
    return [AuditEntry(*r) for r in tx.all(sql + " ORDER BY id", params)]


def raise_denied(user: str, permission: Permission, resource: Resource, reason: str) -> None:
    """Raise :class:`AccessDenied` (the caller has audited it)."""
    raise AccessDenied(user, permission.value, str(resource), reason)
