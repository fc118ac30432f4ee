"""Outsourced service: vendors, device associations, service records, the vendor's view.

A vendor is a company with clinical users acting for it (:meth:`VendorPart.invite_vendor`).
Associating a device with a vendor (:meth:`VendorPart.associate_device`) writes, in the
same transaction, a time-windowed clinical role grant (``service_vendor`` on that
device, ``[valid_from_us, valid_until_us)``) for each of the vendor's users, and the
association with its scope. So the clinical access control
(:meth:`vitalcore.clinical.ClinicalStore.authorize`) is what lets a vendor user in and
what shuts them out at expiry, audited either way; the desk additionally checks the
association's scope (view archive, repair, maintenance, calibration records) and
audits a denial the same way.

Associations are never deleted: revoking one ends it (and revokes its grants) and the
rows stay as the history.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NamedTuple

from ..clinical.access import denial_reason, raise_denied
from ..clinical.model import (
    DeviceEvent,
    DeviceState,
    Permission,
    Resource,
    Role,
    ScopeKind,
    check_id,
    check_name,
    check_time,
    device_key,
)
from ..errors import UsageError
from .core import (
    ORDER_SELECT,
    DeskCore,
    active_association,
    require_vendor_scope,
    row_to_order,
    vendor_of_user,
)
from .model import (
    RECORD_SCOPE,
    Association,
    RecordKind,
    ServiceRecord,
    Vendor,
    VendorScope,
    WorkOrder,
    check_text,
)

__all__ = ["VendorPart", "DeviceArchive"]

#: The clinical permissions a vendor's grant carries for each scope of an association
#: (the grant is narrowed to them: a vendor trusted with the archive only cannot record
#: repairs through the clinical store either).
_SCOPE_PERMISSIONS = {
    VendorScope.VIEW_ARCHIVE: Permission.VIEW_DEVICE_ARCHIVE,
    VendorScope.REPAIR_RECORDS: Permission.MAINTAIN_DEVICES,
    VendorScope.MAINTENANCE_RECORDS: Permission.MAINTAIN_DEVICES,
    VendorScope.CALIBRATION_RECORDS: Permission.MAINTAIN_DEVICES,
}

_ASSOC_COLUMNS = ("SELECT id, vendor_id, device_id, scopes, valid_from_us, valid_until_us, "
                  "created_by, created_us, revoked_us, revoked_by, warned_us "
                  "FROM svc_associations")


def _assoc(r: tuple) -> Association:
    return Association(int(r[0]), r[1], int(r[2], 16),
                       frozenset(VendorScope(s) for s in r[3].split(",") if s), int(r[4]),
                       int(r[5]), r[6], int(r[7]), None if r[8] is None else int(r[8]), r[9],
                       None if r[10] is None else int(r[10]))


class DeviceArchive(NamedTuple):
    """What a vendor (or engineer) sees of one device: registry facts, the clinical
    device history (cleaning, checks, repairs), service records within scope, work orders."""

    device_id: int
    model: str
    state: DeviceState
    history: list[DeviceEvent]
    records: list[ServiceRecord]
    orders: list[WorkOrder]


def _scopes(values: Iterable[VendorScope | str]) -> frozenset[VendorScope]:
    try:
        out = frozenset(VendorScope(v) for v in values)
    except (TypeError, ValueError):
        raise UsageError(f"scopes must be among {[s.value for s in VendorScope]}, "
                         f"got {values!r}") from None
    if not out:
        raise UsageError("an association needs at least one scope")
    return out


class VendorPart(DeskCore):
    """Vendors, associations, service records and the vendor's view."""

    def invite_vendor(self, actor: str, vendor_id: str, name: str, contact: str,
                      users: Iterable[str], at_us: int | None = None) -> Vendor:
        """Register a vendor and the clinical users who act for it (``manage_users``
        globally). The users must exist (create them with
        :meth:`~vitalcore.clinical.ClinicalStore.create_user`) and act for no other vendor.
        """
        check_id(vendor_id, "vendor")
        check_name(name, "vendor name")
        check_text(contact, "contact")
        users = tuple(users)
        if not users or len(set(users)) != len(users):
            raise UsageError("a vendor needs one or more distinct user names")
        for u in users:
            check_id(u, "user")
        with self._operation(actor, "invite_vendor", Resource.everything(), at_us) as op:
            op.require(Permission.MANAGE_USERS, Resource.everything())
            if op.tx.one("SELECT 1 FROM svc_vendors WHERE id = ?", (vendor_id,)):
                raise UsageError(f"vendor {vendor_id!r} exists already")
            op.tx.execute("INSERT INTO svc_vendors (id, name, contact, invited_by, invited_us) "
                          "VALUES (?, ?, ?, ?, ?)", (vendor_id, name, contact, actor, op.at_us))
            for u in users:
                if op.tx.one("SELECT 1 FROM users WHERE name = ?", (u,)) is None:
                    raise UsageError(f"unknown user {u!r}: create the vendor's users first")
                other = vendor_of_user(op.tx, u)
                if other is not None:
                    raise UsageError(f"user {u!r} acts for vendor {other!r} already")
                op.tx.execute("INSERT INTO svc_vendor_users (user_name, vendor_id) VALUES (?, ?)",
                              (u, vendor_id))
            op.detail = {"vendor": vendor_id, "users": list(users)}
        return self.vendor(vendor_id)

    def vendor(self, vendor_id: str) -> Vendor:
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT id, name, contact, invited_by, invited_us FROM svc_vendors "
                         "WHERE id = ?", (vendor_id,))
            users = tuple(u for (u,) in tx.all("SELECT user_name FROM svc_vendor_users WHERE "
                                               "vendor_id = ? ORDER BY user_name", (vendor_id,)))
        if row is None:
            raise UsageError(f"unknown vendor {vendor_id!r}")
        return Vendor(row[0], row[1], row[2], users, row[3], int(row[4]))

    def vendors(self) -> list[Vendor]:
        with self.db.transaction(write=False) as tx:
            ids = [v for (v,) in tx.all("SELECT id FROM svc_vendors ORDER BY id")]
        return [self.vendor(v) for v in ids]

    def associate_device(self, actor: str, vendor_id: str, device_id: int,
                         scopes: Iterable[VendorScope | str], valid_from_us: int,
                         valid_until_us: int, at_us: int | None = None) -> Association:
        """Entrust ``device_id`` to ``vendor_id`` for ``[valid_from_us, valid_until_us)``
        within ``scopes``; needs ``manage_users`` on the device. At most one association
        of a device may be in force at any time (overlaps are refused)."""
        check_id(vendor_id, "vendor")
        key = device_key(device_id)
        chosen = _scopes(scopes)
        check_time(valid_from_us, "valid_from_us")
        check_time(valid_until_us, "valid_until_us")
        if valid_until_us <= valid_from_us:
            raise UsageError("valid_until_us must be after valid_from_us")
        dev = Resource.device(device_id)
        with self._operation(actor, "associate_device", dev, at_us) as op:
            if op.tx.one("SELECT 1 FROM devices WHERE id = ?" + op.tx.for_update, (key,)) is None:
                raise UsageError(f"unknown device {key}")
            op.require(Permission.MANAGE_USERS, dev)
            users = [u for (u,) in op.tx.all("SELECT user_name FROM svc_vendor_users WHERE "
                                             "vendor_id = ? ORDER BY user_name", (vendor_id,))]
            if not users:
                raise UsageError(f"unknown vendor {vendor_id!r}")
            clash = op.tx.one(
                "SELECT id, vendor_id FROM svc_associations WHERE device_id = ? AND "
                "valid_from_us < ? AND valid_until_us > ? AND (revoked_us IS NULL OR "
                "(revoked_us > ? AND revoked_us > valid_from_us))",
                (key, valid_until_us, valid_from_us, valid_from_us))
            if clash is not None:
                raise UsageError(f"device {key} is entrusted to vendor {clash[1]!r} in an "
                                 f"overlapping period (association {clash[0]})")
            permissions = ",".join(sorted({_SCOPE_PERMISSIONS[VendorScope(c)].value
                                           for c in chosen}))
            grants = [int(op.tx.scalar(
                "INSERT INTO role_grants (user_name, role, scope_kind, scope_id, valid_from_us, "
                "valid_until_us, granted_by, granted_us, permissions) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (u, Role.SERVICE_VENDOR.value, ScopeKind.DEVICE.value, key, valid_from_us,
                 valid_until_us, actor, op.at_us, permissions)))
                for u in users]
            aid = int(op.tx.scalar(
                "INSERT INTO svc_associations (vendor_id, device_id, scopes, valid_from_us, "
                "valid_until_us, grant_ids, created_by, created_us) VALUES (?, ?, ?, ?, ?, ?, "
                "?, ?) RETURNING id", (vendor_id, key, ",".join(sorted(chosen)), valid_from_us,
                                       valid_until_us, json.dumps(grants), actor, op.at_us)))
            op.detail = {"vendor": vendor_id, "device": key, "association": aid,
                         "grants": grants, "scopes": sorted(chosen),
                         "valid_from_us": valid_from_us, "valid_until_us": valid_until_us}
        self._rearm()
        return self.associations(association_id=aid)[0]

    def revoke_association(self, actor: str, association_id: int,
                           at_us: int | None = None) -> Association:
        """End an association now (``manage_users`` on the device); its grants are revoked."""
        if isinstance(association_id, bool) or not isinstance(association_id, int):
            raise UsageError(f"association id must be an int, got {association_id!r}")
        with self.db.transaction(write=False) as tx:
            key = tx.scalar("SELECT device_id FROM svc_associations WHERE id = ?",
                            (association_id,))
        if key is None:
            raise UsageError(f"unknown association {association_id!r}")
        dev = Resource.device(int(key, 16))
        with self._operation(actor, "revoke_association", dev, at_us) as op:
            op.require(Permission.MANAGE_USERS, dev)
            row = op.tx.one("SELECT grant_ids, revoked_us FROM svc_associations WHERE id = ?"
                            + op.tx.for_update, (association_id,))
            if row[1] is not None:
                raise UsageError(f"association {association_id} was revoked already")
            op.tx.execute("UPDATE svc_associations SET revoked_us = ?, revoked_by = ? "
                          "WHERE id = ?", (op.at_us, actor, association_id))
            for g in json.loads(row[0]):
                op.tx.execute("UPDATE role_grants SET revoked_us = ? WHERE id = ? "
                              "AND revoked_us IS NULL", (op.at_us, g))
            op.detail = {"association": association_id}
        return self.associations(association_id=association_id)[0]

    def associations(self, *, device_id: int | None = None, vendor_id: str | None = None,
                     association_id: int | None = None) -> list[Association]:
        """The history of associations (revoked and expired ones included), oldest first."""
        sql, params = _ASSOC_COLUMNS + " WHERE 1 = 1", []
        if device_id is not None:
            sql += " AND device_id = ?"
            params.append(device_key(device_id))
        if vendor_id is not None:
            sql += " AND vendor_id = ?"
            params.append(vendor_id)
        if association_id is not None:
            sql += " AND id = ?"
            params.append(association_id)
        with self.db.transaction(write=False) as tx:
            return [_assoc(r) for r in tx.all(sql + " ORDER BY id", params)]

    # -- records ------------------------------------------------------------------------------
    def add_record(self, actor: str, device_id: int, kind: RecordKind | str, note: str,
                   order_id: int | None = None, at_us: int | None = None) -> ServiceRecord:
        """Write a repair, maintenance or calibration record of a device
        (``maintain_devices``; a vendor user also needs the matching scope)."""
        try:
            kind = RecordKind(kind)
        except ValueError:
            raise UsageError(f"record kind must be one of {[k.value for k in RecordKind]}, "
                             f"got {kind!r}") from None
        check_text(note, "note", 4000)
        key = device_key(device_id)
        with self._operation(actor, f"add_{kind.value}_record", Resource.device(device_id),
                             at_us) as op:
            if op.tx.one("SELECT 1 FROM devices WHERE id = ?", (key,)) is None:
                raise UsageError(f"unknown device {key}")
            op.require(Permission.MAINTAIN_DEVICES, Resource.device(device_id))
            require_vendor_scope(op, key, RECORD_SCOPE[kind])
            if order_id is not None and op.tx.scalar(
                    "SELECT device_id FROM svc_orders WHERE id = ?", (order_id,)) != key:
                raise UsageError(f"work order {order_id!r} is not an order of device {key}")
            vendor = vendor_of_user(op.tx, actor)
            rid = int(op.tx.scalar(
                "INSERT INTO svc_records (device_id, kind, order_id, at_us, by_user, vendor_id, "
                "note) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (key, kind.value, order_id, op.at_us, actor, vendor, note)))
            op.detail = {"device": key, "record": rid}
        return ServiceRecord(rid, device_id, kind, order_id, op.at_us, actor, vendor, note)

    def device_archive(self, actor: str, device_id: int,
                       at_us: int | None = None) -> DeviceArchive:
        """The device's archive for ``actor`` at ``at_us`` (audited).

        Needs ``view_device_archive`` on the device (clinical; for a vendor that is its
        time-windowed grant); a vendor user also needs the ``view_archive`` scope, and
        sees only the record kinds its scope covers.
        """
        key = device_key(device_id)
        with self._operation(actor, "device_archive", Resource.device(device_id), at_us) as op:
            row = op.tx.one("SELECT model, state FROM devices WHERE id = ?", (key,))
            if row is None:
                raise UsageError(f"unknown device {key}")
            op.require(Permission.VIEW_DEVICE_ARCHIVE, Resource.device(device_id))
            require_vendor_scope(op, key, VendorScope.VIEW_ARCHIVE)
            vendor = vendor_of_user(op.tx, actor)
            kinds = [k.value for k in RecordKind]
            if vendor is not None:
                found = active_association(op.tx, key, op.at_us, vendor)
                scopes = found[1] if found is not None else frozenset()
                kinds = [k.value for k, s in RECORD_SCOPE.items() if s in scopes]
            events = op.tx.all("SELECT kind, at_us, by_user, state_after, reference, passed, "
                               "note FROM device_events WHERE device_id = ? ORDER BY id", (key,))
            recs = op.tx.all("SELECT id, kind, order_id, at_us, by_user, vendor_id, note FROM "
                             "svc_records WHERE device_id = ? ORDER BY id", (key,))
            orders = op.tx.all(f"{ORDER_SELECT} WHERE device_id = ? ORDER BY id DESC", (key,))
            op.detail = {"device": key}
        return DeviceArchive(
            device_id, row[0], DeviceState(row[1]),
            [DeviceEvent(device_id, k, int(t), u, DeviceState(s), r,
                         None if p is None else bool(p), n) for k, t, u, s, r, p, n in events],
            [ServiceRecord(int(i), device_id, RecordKind(k), None if o is None else int(o),
                           int(t), u, v, n) for i, k, o, t, u, v, n in recs if k in kinds],
            [row_to_order(r) for r in orders])

    def vendor_orders(self, actor: str, at_us: int | None = None) -> list[WorkOrder]:
        """The work orders of the devices entrusted to ``actor``'s vendor at ``at_us``
        whose clinical grant is still valid (the vendor portal's list; audited)."""
        with self._operation(actor, "vendor_orders", Resource.everything(), at_us) as op:
            vendor = vendor_of_user(op.tx, actor)
            if vendor is None:
                raise_denied(actor, Permission.MAINTAIN_DEVICES, Resource.everything(),
                             "not a vendor user")
            keys = [k for (k,) in op.tx.all(
                "SELECT DISTINCT device_id FROM svc_associations WHERE vendor_id = ? AND "
                "valid_from_us <= ? AND valid_until_us > ? AND (revoked_us IS NULL OR "
                "revoked_us > ?) ORDER BY device_id", (vendor, op.at_us, op.at_us, op.at_us))]
            keys = [k for k in keys if denial_reason(
                op.tx, actor, Permission.MAINTAIN_DEVICES, Resource(ScopeKind.DEVICE, k),
                op.at_us) is None]
            rows = []
            for k in keys:
                rows += op.tx.all(f"{ORDER_SELECT} WHERE device_id = ? ORDER BY id DESC", (k,))
            op.detail = {"vendor": vendor, "devices": keys}
        return sorted((row_to_order(r) for r in rows), key=lambda o: -o.order_id)
