"""Work orders: intake from every channel, the steps to closing, photos and queries.

Steps and who may take them (each an audited operation on the order's device):

=================  ==============================  =====================================
step               status change                   needs
=================  ==============================  =====================================
create             → ``open``                      an enabled user (anyone may report)
mark_notified      (notify clock)                  ``maintain_devices`` on the device
respond            ``open`` → ``responded``        ``maintain_devices``
start_work         ``responded`` → ``in_progress`` ``maintain_devices``
mark_fixed         ``in_progress`` → ``fixed``     ``maintain_devices``
verify             ``fixed`` → ``verified`` (pass) ``maintain_devices``; a failed function
                   or ``in_progress`` (fail)       test clears the fix time
sign_off           (``verified``, by the ward)     ``read_vitals`` on the order's ward
close              ``verified`` → ``closed``       ``maintain_devices``; verified AND
                                                   signed off, else refused
cancel             active → ``cancelled``          ``maintain_devices``
set_follow_up      (any)                           ``maintain_devices``
=================  ==============================  =====================================

A user acting for a vendor also needs the vendor's association for the device, in
force at that time and covering the order's request type (repair orders:
``repair_records``; maintenance and training: ``maintenance_records``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..clinical.access import bound_patient_at, placement_at
from ..clinical.core import Operation
from ..clinical.db import Tx
from ..clinical.model import Permission, Resource, check_id, check_time, device_key
from ..errors import StorageError, UsageError
from .core import (
    ORDER_SELECT,
    DeskCore,
    active_association,
    order_event,
    require_vendor_scope,
    row_to_order,
    sla_json,
    vendor_of_user,
)
from .model import (
    ACTIVE_STATUSES,
    REQUEST_SCOPE,
    Channel,
    Notice,
    OrderEvent,
    OrderStatus,
    Photo,
    RequestType,
    Severity,
    WorkOrder,
    check_text,
    minute,
)
from .sla import DEFAULT_CONTRACT, ClockView, clock_views

__all__ = ["OrderRequest", "OrderPart", "photo_media_type"]

_S = OrderStatus
_MAINTAIN = Permission.MAINTAIN_DEVICES


def photo_media_type(data: bytes) -> str:
    """The media type of a photo from its magic bytes (JPEG, PNG or WebP), else
    :class:`UsageError`."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise UsageError("a photo must be a JPEG, PNG or WebP image")


@dataclass(frozen=True)
class OrderRequest:
    """A fault report as taken from a form, a JSON body or the phone.

    Only ``device_id``, ``description`` and ``contact`` are required. Omitted device
    facts come from the clinical store (model, owning hospital as institution,
    registration as in-service time, the device's hex id as serial); an omitted ward
    from where the device's patient is at the report time (bed label as room).
    ``fault_us`` (when the fault happened) defaults to the report time.
    """

    device_id: int
    description: str
    contact: str
    request_type: RequestType = RequestType.EMERGENCY_REPAIR
    severity: Severity = Severity.GENERAL
    emergency: bool = False
    ward_id: str | None = None
    floor: str = ""
    room: str = ""
    institution: str | None = None
    device_name: str | None = None
    serial: str | None = None
    in_service_us: int | None = None
    fault_type: str = "reported"
    fault_us: int | None = None
    contract: str = DEFAULT_CONTRACT
    photos: tuple[bytes, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        device_key(self.device_id)
        check_text(self.description, "description", 4000)
        check_text(self.contact, "contact")
        for name, kind in (("request_type", RequestType), ("severity", Severity)):
            try:
                object.__setattr__(self, name, kind(getattr(self, name)))
            except ValueError:
                raise UsageError(f"{name} must be one of {[k.value for k in kind]}, "
                                 f"got {getattr(self, name)!r}") from None
        if not isinstance(self.emergency, bool):
            raise UsageError(f"emergency must be a bool, got {self.emergency!r}")
        if self.ward_id is not None:
            check_id(self.ward_id, "ward")
        for name in ("floor", "room"):
            check_text(getattr(self, name), name, 64, empty=True)
        for name in ("institution", "device_name", "serial"):
            if getattr(self, name) is not None:
                check_text(getattr(self, name), name)
        check_text(self.fault_type, "fault_type", 64)
        check_text(self.contract, "contract", 64)
        for name in ("in_service_us", "fault_us"):
            if getattr(self, name) is not None:
                check_time(getattr(self, name), name)
        if not isinstance(self.photos, tuple) or not all(
                isinstance(p, bytes) for p in self.photos):
            raise UsageError("photos must be a tuple of bytes")
        for p in self.photos:
            photo_media_type(p)


@dataclass(frozen=True)
class _Facts:
    institution: str
    device_name: str
    model: str
    serial: str
    in_service_us: int
    ward_id: str | None
    room: str


def _device_facts(tx: Tx, key: str, t: int, req: OrderRequest | None) -> _Facts:
    row = tx.one("SELECT model, hospital_id FROM devices WHERE id = ?" + tx.for_update, (key,))
    if row is None:
        raise UsageError(f"unknown device {key}: register it in the clinical store first")
    model, hospital = row
    registered = tx.scalar("SELECT MIN(at_us) FROM device_events WHERE device_id = ? "
                           "AND kind = 'registered'", (key,))
    ward, room = None, ""
    if req is not None and req.ward_id is not None:
        if tx.one("SELECT 1 FROM wards WHERE id = ?", (req.ward_id,)) is None:
            raise UsageError(f"unknown ward {req.ward_id!r}")
        ward = req.ward_id
    else:
        patient = bound_patient_at(tx, key, t)
        where = None if patient is None else placement_at(tx, patient, t)
        if where is not None:
            ward = where[0] or where[1]
            if where[1] is not None:
                room = tx.scalar("SELECT label FROM beds WHERE id = ?", (where[1],)) or ""
    r = req
    return _Facts(
        institution=(r.institution if r and r.institution else None) or hospital or "-",
        device_name=(r.device_name if r and r.device_name else None) or model,
        model=model, serial=(r.serial if r and r.serial else None) or key,
        in_service_us=(r.in_service_us if r and r.in_service_us is not None else None)
        or int(registered if registered is not None else t),
        ward_id=ward, room=(r.room if r and r.room else None) or room)


class OrderPart(DeskCore):
    """Creating, advancing and reading work orders."""

    # -- intake -----------------------------------------------------------------------------
    def create_order(self, actor: str, request: OrderRequest, *, channel: Channel | str =
                     Channel.API, at_us: int | None = None) -> WorkOrder:
        """Open a work order reported by ``actor`` through ``channel``; the new order.

        The order is assigned (vendor association or :class:`Assigner` rules), its team
        notified (the notify clock stops when the notifier accepts), the vendor of the
        device gets it pushed. Raises :class:`UsageError` for an unknown device, ward or
        contract, or an unknown/disabled reporting user (audited as ``error``; nothing is
        written but the audit record).
        """
        if not isinstance(request, OrderRequest):
            raise UsageError("create_order needs an OrderRequest")
        try:
            channel = Channel(channel)
        except ValueError:
            raise UsageError(f"unknown channel {channel!r}") from None
        if channel is Channel.TELEMETRY:
            raise UsageError("telemetry orders come through open_from_telemetry")
        if len(request.photos) > self.config.max_photos:
            raise UsageError(f"at most {self.config.max_photos} photos per order")
        policy = self._policy(request.contract)
        key = device_key(request.device_id)
        notices: list[Notice] = []
        with self._operation(actor, "create_work_order", Resource.device(request.device_id),
                             at_us) as op:
            row = op.tx.one("SELECT disabled FROM users WHERE name = ?", (actor,))
            if row is None or row[0]:
                raise UsageError(f"reporting user {actor!r} is unknown or disabled")
            facts = _device_facts(op.tx, key, op.at_us, request)
            fault_us = op.at_us if request.fault_us is None else request.fault_us
            if fault_us > op.at_us:
                raise UsageError("fault_us is after the report time")
            oid = self._insert(op, key, facts, request.description, request.contact,
                               request.fault_type, request.request_type, request.severity,
                               request.emergency, channel, None, "{}", request.contract,
                               sla_json(policy), fault_us, request.floor, notices)
            for data in request.photos:
                self._add_photo(op, oid, data)
            op.detail = {"order": oid, "device": key, "channel": channel.value}
        return self._after_create(oid, notices)

    def _insert(self, op: Operation, key: str, facts: _Facts, description: str, contact: str,
                fault_type: str, request_type: RequestType, severity: Severity,
                emergency: bool, channel: Channel, cause: str | None, evidence: str,
                contract: str, sla: str, fault_us: int, floor: str,
                notices: list[Notice]) -> int:
        tx, t = op.tx, op.at_us
        vendor = active_association(tx, key, t)
        if vendor is not None and REQUEST_SCOPE[request_type] in vendor[1]:
            team, vendor_id = f"vendor/{vendor[0]}", vendor[0]
        else:
            vendor_id = None
            team = self.config.assigner.team_for(request_type, severity, facts.model,
                                                 facts.ward_id, emergency)
        oid = int(tx.scalar(
            "INSERT INTO svc_orders (institution, contact, device_id, device_name, model, "
            "serial, in_service_us, ward_id, floor, room, description, fault_type, "
            "request_type, severity, emergency, channel, auto_cause, evidence, repeat_count, "
            "contract, sla, team, vendor_id, status, created_by, fault_us, reported_us, "
            "follow_up, last_event_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, '', ?) RETURNING id",
            (facts.institution, contact, key, facts.device_name, facts.model, facts.serial,
             facts.in_service_us, facts.ward_id, floor, facts.room, description, fault_type,
             request_type.value, severity.value, int(emergency), channel.value, cause,
             evidence, contract, sla, team, vendor_id, _S.OPEN.value, op.actor, fault_us, t, t)))
        order_event(tx, oid, t, op.actor, "reported", f"via {channel.value}; assigned to {team}")
        text = (f"WO-{oid:06d} {severity.value}{' EMERGENCY' if emergency else ''} "
                f"{request_type.value}: {facts.model} {facts.serial} "
                f"(ward {facts.ward_id or '-'}) {description[:120]}")
        payload = {"device": key, "ward": facts.ward_id, "team": team}
        notices.append(Notice("assigned", (team,), t, text, oid, payload=payload))
        if vendor is not None:
            notices.append(Notice("order_update", (f"vendor/{vendor[0]}",), t, text, oid,
                                  payload={**payload, "status": _S.OPEN.value}))
        return oid

    def _after_create(self, oid: int, notices: list[Notice]) -> WorkOrder:
        accepted = self._deliver(notices)
        if accepted and accepted[0] and notices[0].kind == "assigned":
            t = notices[0].at_us  # delivered synchronously, right after the report
            with self.db.transaction() as tx:
                if tx.execute("UPDATE svc_orders SET notified_us = ? WHERE id = ? "
                              "AND notified_us IS NULL", (t, oid)):
                    order_event(tx, oid, t, "system:notify", "notified", notices[0].targets[0])
        self._rearm()
        return self.order(oid)

    # -- photos -------------------------------------------------------------------------------
    def _add_photo(self, op: Operation, oid: int, data: bytes) -> int:
        if not isinstance(data, bytes):
            raise UsageError("a photo must be bytes")
        if len(data) > self.config.max_photo_bytes:
            raise UsageError(f"photo too large ({len(data)} > {self.config.max_photo_bytes} B)")
        media = photo_media_type(data)
        digest = hashlib.sha256(data).hexdigest()
        n = op.tx.scalar("SELECT COUNT(*) FROM svc_photos WHERE order_id = ?", (oid,))
        if n >= self.config.max_photos:
            raise UsageError(f"at most {self.config.max_photos} photos per order")
        if op.tx.one("SELECT 1 FROM svc_photos WHERE order_id = ? AND sha256 = ?",
                     (oid, digest)):
            raise UsageError(f"this photo (sha256 {digest[:12]}…) is attached already")
        pid = op.tx.scalar("INSERT INTO svc_photos (order_id, sha256, media_type, size, data, "
                           "added_us, added_by) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                           (oid, digest, media, len(data), data, op.at_us, op.actor))
        order_event(op.tx, oid, op.at_us, op.actor, "photo", digest)
        return int(pid)

    def add_photo(self, actor: str, order_id: int, data: bytes,
                  at_us: int | None = None) -> Photo:
        """Attach a photo (JPEG/PNG/WebP) to an order: any enabled user, while it is active."""
        with self._order_op(actor, "add_photo", order_id, at_us) as (op, order):
            row = op.tx.one("SELECT disabled FROM users WHERE name = ?", (actor,))
            if row is None or row[0]:
                raise UsageError(f"user {actor!r} is unknown or disabled")
            if order.status not in ACTIVE_STATUSES:
                raise UsageError(f"{order.label} is {order.status.value}: no more photos")
            pid = self._add_photo(op, order_id, data)
        return next(p for p in self.photos(order_id) if p.photo_id == pid)

    def photos(self, order_id: int) -> list[Photo]:
        with self.db.transaction(write=False) as tx:
            rows = tx.all("SELECT id, order_id, sha256, media_type, size, added_us, added_by "
                          "FROM svc_photos WHERE order_id = ? ORDER BY id", (order_id,))
        return [Photo(int(i), int(o), h, m, int(s), int(a), b) for i, o, h, m, s, a, b in rows]

    def photo_data(self, order_id: int, photo_id: int) -> tuple[str, bytes]:
        """``(media_type, bytes)`` of a photo, checked against its stored SHA-256."""
        with self.db.transaction(write=False) as tx:
            row = tx.one("SELECT media_type, data, sha256 FROM svc_photos WHERE id = ? "
                         "AND order_id = ?", (photo_id, order_id))
        if row is None:
            raise UsageError(f"no photo {photo_id!r} on order {order_id!r}")
        data = bytes(row[1])
        if hashlib.sha256(data).hexdigest() != row[2]:
            raise StorageError(f"photo {photo_id} of order {order_id} fails its SHA-256 check")
        return row[0], data

    # -- steps --------------------------------------------------------------------------------
    @contextmanager
    def _order_op(self, actor: str, action: str, order_id: int,
                  at_us: int | None) -> Iterator[tuple[Operation, WorkOrder]]:
        """An audited operation on one order, its row locked; audited on its device."""
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            raise UsageError(f"order id must be an int, got {order_id!r}")
        with self.db.transaction(write=False) as tx:
            key = tx.scalar("SELECT device_id FROM svc_orders WHERE id = ?", (order_id,))
        resource = Resource.everything() if key is None else Resource.device(int(key, 16))
        with self._operation(actor, action, resource, at_us) as op:
            row = op.tx.one(f"{ORDER_SELECT} WHERE id = ?" + op.tx.for_update, (order_id,))
            if row is None:
                raise UsageError(f"unknown work order {order_id!r}")
            order = row_to_order(row)
            last = op.tx.scalar("SELECT last_event_us FROM svc_orders WHERE id = ?",
                                (order_id,))
            if op.at_us < int(last):
                raise UsageError(f"{order.label}: time {minute(op.at_us)} is before its last "
                                 f"recorded step ({minute(int(last))})")
            op.detail = {"order": order_id}
            yield op, order

    def _maintainer(self, op: Operation, order: WorkOrder) -> None:
        op.require(_MAINTAIN, Resource.device(order.device_id))
        require_vendor_scope(op, device_key(order.device_id), REQUEST_SCOPE[order.request_type])

    def _step(self, actor: str, action: str, order_id: int, expect: Iterable[OrderStatus],
              after: OrderStatus | None, sets: dict[str, object], note: str,
              at_us: int | None, *, check=None) -> WorkOrder:
        check_text(note, "note", 2000, empty=True)
        notices: list[Notice] = []
        with self._order_op(actor, action, order_id, at_us) as (op, order):
            (check or self._maintainer)(op, order)
            expect = tuple(expect)
            if order.status not in expect:
                raise UsageError(f"{order.label} is {order.status.value}: cannot {action} "
                                 f"(needs {' or '.join(s.value for s in expect)})")
            values = {k: (op.at_us if v in (_NOW, _NOW_IF_UNSET)
                          else (op.actor if v is _ACTOR else v)) for k, v in sets.items()}
            if after is not None:
                values["status"] = after.value
            cols = ", ".join(f"{k} = COALESCE({k}, ?)" if sets.get(k) is _NOW_IF_UNSET
                             else f"{k} = ?" for k in values)
            op.tx.execute(f"UPDATE svc_orders SET {cols} WHERE id = ?",
                          (*values.values(), order_id))
            order_event(op.tx, order_id, op.at_us, op.actor, action, note)
            vendor = active_association(op.tx, device_key(order.device_id), op.at_us)
            if vendor is not None:
                notices.append(Notice(
                    "order_update", (f"vendor/{vendor[0]}",), op.at_us,
                    f"{order.label} {action} by {op.actor}", order_id,
                    payload={"status": (after or order.status).value, "step": action,
                             "note": note}))
        self._deliver(notices)
        self._rearm()
        return self.order(order_id)

    def mark_notified(self, actor: str, order_id: int, note: str,
                      at_us: int | None = None) -> WorkOrder:
        """Record that the responsible person was told (e.g. by phone) when the automatic
        notice failed: stops the notify clock."""
        check_text(note, "note", 2000)
        return self._step(actor, "mark_notified", order_id, ACTIVE_STATUSES, None,
                          {"notified_us": _NOW}, note, at_us)

    def respond(self, actor: str, order_id: int, note: str = "",
                at_us: int | None = None) -> WorkOrder:
        """Take the order (stops the respond clock, and the notify clock if still running)."""
        return self._step(actor, "respond", order_id, (_S.OPEN,), _S.RESPONDED,
                          {"responded_us": _NOW, "notified_us": _NOW_IF_UNSET}, note, at_us)

    def start_work(self, actor: str, order_id: int, *, remote: bool = False, note: str = "",
                   at_us: int | None = None) -> WorkOrder:
        """Work starts on site (or remotely): stops the on-site clock."""
        if not isinstance(remote, bool):
            raise UsageError("remote must be a bool")
        return self._step(actor, "start_remote" if remote else "start_on_site", order_id,
                          (_S.RESPONDED,), _S.IN_PROGRESS, {"started_us": _NOW}, note, at_us)

    def mark_fixed(self, actor: str, order_id: int, note: str,
                   at_us: int | None = None) -> WorkOrder:
        """The device problem is fixed (stops the fix clock); a function test must follow."""
        check_text(note, "note (what was done)", 2000)
        return self._step(actor, "mark_fixed", order_id, (_S.IN_PROGRESS,), _S.FIXED,
                          {"fixed_us": _NOW}, note, at_us)

    def verify(self, actor: str, order_id: int, passed: bool, reference: str, note: str = "",
               at_us: int | None = None) -> WorkOrder:
        """Record the function test against ``reference`` (a simulator or tester id).

        Passed: ``fixed`` → ``verified``. Failed: back to ``in_progress`` and the fix
        time is cleared (the fix clock runs on).
        """
        if not isinstance(passed, bool):
            raise UsageError(f"passed must be a bool, got {passed!r}")
        check_id(reference, "reference")
        if passed:
            sets = {"verified_us": _NOW, "verified_by": _ACTOR, "verification_ref": reference}
            return self._step(actor, "verify_passed", order_id, (_S.FIXED,), _S.VERIFIED,
                              sets, note, at_us)
        return self._step(actor, "verify_failed", order_id, (_S.FIXED,), _S.IN_PROGRESS,
                          {"fixed_us": None}, f"reference {reference}; {note}", at_us)

    def sign_off(self, actor: str, order_id: int, note: str = "",
                 at_us: int | None = None) -> WorkOrder:
        """The ward accepts the repaired device (a ward role on the order's ward, or on its
        institution when the order has no ward)."""
        def ward_staff(op: Operation, order: WorkOrder) -> None:
            where = (Resource.ward(order.ward_id) if order.ward_id is not None
                     else Resource.hospital(order.institution))
            op.require(Permission.READ_VITALS, where)

        return self._step(actor, "sign_off", order_id, (_S.VERIFIED,), None,
                          {"signed_off_us": _NOW, "signed_off_by": _ACTOR}, note, at_us,
                          check=ward_staff)

    def close(self, actor: str, order_id: int, note: str = "",
              at_us: int | None = None) -> WorkOrder:
        """Close the order (stops the resolve clock). Refused unless the function test
        passed and the ward signed off."""
        def closer(op: Operation, order: WorkOrder) -> None:
            self._maintainer(op, order)
            if order.verified_us is None:
                raise UsageError(f"{order.label} cannot close: no passed function test "
                                 "(verify first)")
            if order.signed_off_us is None:
                raise UsageError(f"{order.label} cannot close: the ward has not signed off")

        return self._step(actor, "close", order_id, ACTIVE_STATUSES, _S.CLOSED,
                          {"closed_us": _NOW}, note, at_us, check=closer)

    def cancel(self, actor: str, order_id: int, reason: str,
               at_us: int | None = None) -> WorkOrder:
        """End an order raised by mistake or twice; its clocks stop, KPIs skip it."""
        check_text(reason, "reason", 2000)
        return self._step(actor, "cancel", order_id, ACTIVE_STATUSES, _S.CANCELLED,
                          {"closed_us": _NOW}, reason, at_us)

    def set_follow_up(self, actor: str, order_id: int, note: str, due_us: int | None = None,
                      at_us: int | None = None) -> WorkOrder:
        """Record a follow-up (e.g. "call the ward in a week"), optionally due at ``due_us``."""
        check_text(note, "follow-up", 2000)
        if due_us is not None:
            check_time(due_us, "due_us")
        return self._step(actor, "follow_up", order_id, tuple(_S), None,
                          {"follow_up": note, "follow_up_due_us": due_us}, note, at_us)

    # -- reading ----------------------------------------------------------------------------
    def order(self, order_id: int) -> WorkOrder:
        """One order (:class:`UsageError` if unknown)."""
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            raise UsageError(f"order id must be an int, got {order_id!r}")
        with self.db.transaction(write=False) as tx:
            row = tx.one(f"{ORDER_SELECT} WHERE id = ?", (order_id,))
        if row is None:
            raise UsageError(f"unknown work order {order_id!r}")
        return row_to_order(row)

    def orders(self, *, status: Iterable[OrderStatus | str] | None = None,
               device_id: int | None = None, ward_id: str | None = None,
               t0_us: int | None = None, t1_us: int | None = None,
               limit: int = 1000) -> list[WorkOrder]:
        """Orders reported in ``[t0_us, t1_us)`` matching the filters, newest first."""
        sql, params = f"{ORDER_SELECT} WHERE 1 = 1", []
        if status is not None:
            names = [OrderStatus(s).value for s in status]
            if not names:
                return []
            sql += f" AND status IN ({', '.join('?' for _ in names)})"
            params += names
        if device_id is not None:
            sql += " AND device_id = ?"
            params.append(device_key(device_id))
        if ward_id is not None:
            sql += " AND ward_id = ?"
            params.append(check_id(ward_id, "ward"))
        if t0_us is not None:
            sql += " AND reported_us >= ?"
            params.append(check_time(t0_us, "t0_us"))
        if t1_us is not None:
            sql += " AND reported_us < ?"
            params.append(check_time(t1_us, "t1_us"))
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 100_000:
            raise UsageError("limit must be 1..100000")
        with self.db.transaction(write=False) as tx:
            rows = tx.all(sql + f" ORDER BY id DESC LIMIT {limit}", params)
        return [row_to_order(r) for r in rows]

    def follow_ups_due(self, at_us: int | None = None) -> list[WorkOrder]:
        """Orders whose follow-up is due at ``at_us`` (default now), earliest first."""
        t = self._time(at_us)
        with self.db.transaction(write=False) as tx:
            rows = tx.all(f"{ORDER_SELECT} WHERE follow_up_due_us IS NOT NULL AND "
                          "follow_up_due_us <= ? ORDER BY follow_up_due_us, id", (t,))
        return [row_to_order(r) for r in rows]

    def order_events(self, order_id: int) -> list[OrderEvent]:
        """The order's timeline, oldest first."""
        with self.db.transaction(write=False) as tx:
            rows = tx.all("SELECT order_id, at_us, actor, kind, note FROM svc_order_events "
                          "WHERE order_id = ? ORDER BY id", (order_id,))
        return [OrderEvent(int(o), int(t), a, k, n) for o, t, a, k, n in rows]

    def clocks(self, order: WorkOrder | int, at_us: int | None = None) -> list[ClockView]:
        """The order's SLA clocks at ``at_us`` (default now)."""
        if not isinstance(order, WorkOrder):
            order = self.order(order)
        t = self._time(at_us)
        if order.status is _S.CANCELLED and order.closed_us is not None:
            t = min(t, order.closed_us)  # a cancelled order's clocks stopped
        return clock_views(order.reported_us, order.sla_s,
                           {m: order.done_us(m) for m in order.sla_s}, t)

    def escalations(self, order_id: int) -> list[tuple[str, int, int, tuple[str, ...]]]:
        """``(milestone, deadline_us, fired_us, targets)`` of each escalation of the order."""
        with self.db.transaction(write=False) as tx:
            rows = tx.all("SELECT milestone, deadline_us, fired_us, targets FROM "
                          "svc_escalations WHERE order_id = ? ORDER BY id", (order_id,))
        return [(m, int(d), int(f), tuple(t.split(","))) for m, d, f, t in rows]

    def vendor_of(self, user: str) -> str | None:
        """The vendor ``user`` acts for, or None."""
        with self.db.transaction(write=False) as tx:
            return vendor_of_user(tx, user)


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_NOW = _Marker("NOW")  # set a column to the operation's time
_NOW_IF_UNSET = _Marker("NOW_IF_UNSET")  # the operation's time unless already set
_ACTOR = _Marker("ACTOR")  # set a column to the acting user
