"""The base of :class:`~vitalcore.service.desk.ServiceDesk`: configuration, rows, notices,
the SLA/expiry timer.

The desk is built on the clinical store's audited operations
(:class:`vitalcore.clinical.core.StoreCore`): every change is one transaction with its
permission checks and audit record; a denied or failed change leaves only its audit
record. Notices are delivered after the commit; a notifier's exception is contained.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..clinical.core import Operation, StoreCore
from ..clinical.db import Database, Tx
from ..errors import AccessDenied, ConfigError, UsageError
from .assign import Assigner
from .migrations import migrate_service
from .model import (
    ACTIVE_STATUSES,
    Channel,
    Milestone,
    Notice,
    OrderStatus,
    RequestType,
    Severity,
    VendorScope,
    WorkOrder,
)
from .notify import Notifier
from .sla import DEFAULT_CONTRACT, SlaPolicy, breached_milestones

if TYPE_CHECKING:
    from ..clinical.bp_schedule import Clock, Timer

__all__ = ["DeskConfig", "DeskCore", "ORDER_SELECT"]

log = logging.getLogger("vitalcore.service")

_ORDER_COLUMNS = (
    "id, institution, contact, device_id, device_name, model, serial, in_service_us, "
    "ward_id, floor, room, description, fault_type, request_type, severity, emergency, "
    "channel, auto_cause, evidence, repeat_count, contract, sla, team, vendor_id, status, "
    "created_by, fault_us, reported_us, notified_us, responded_us, started_us, fixed_us, "
    "verified_us, verified_by, verification_ref, signed_off_us, signed_off_by, closed_us, "
    "follow_up, follow_up_due_us")
ORDER_SELECT = f"SELECT {_ORDER_COLUMNS} FROM svc_orders"
_ACTIVE_SQL = "(" + ", ".join(f"'{s.value}'" for s in ACTIVE_STATUSES) + ")"


@dataclass(frozen=True)
class DeskConfig:
    """How the desk works.

    Attributes
    ----------
    contracts : mapping of str to SlaPolicy
        Named contracts; :data:`~vitalcore.service.sla.DEFAULT_CONTRACT` must be one.
    assigner : Assigner
        Team auto-assignment rules.
    warn_days : int
        Warn a vendor and the service lead this many days before an authorisation ends.
    max_photo_bytes, max_photos : int
        Per photo, and per order.
    lead : str
        Target of authorisation-expiry warnings on the hospital side.
    """

    contracts: Mapping[str, SlaPolicy] = field(
        default_factory=lambda: {DEFAULT_CONTRACT: SlaPolicy()})
    assigner: Assigner = field(default_factory=Assigner)
    warn_days: int = 15
    max_photo_bytes: int = 8 << 20
    max_photos: int = 10
    lead: str = "service/lead"

    def __post_init__(self) -> None:
        if DEFAULT_CONTRACT not in self.contracts:
            raise ConfigError(f"contracts must include {DEFAULT_CONTRACT!r}")
        if not all(isinstance(p, SlaPolicy) for p in self.contracts.values()):
            raise ConfigError("contracts must map names to SlaPolicy objects")
        if isinstance(self.warn_days, bool) or not isinstance(self.warn_days, int) \
                or not 0 <= self.warn_days <= 365:
            raise ConfigError(f"warn_days must be 0..365, got {self.warn_days!r}")
        for name in ("max_photo_bytes", "max_photos"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def row_to_order(r: tuple) -> WorkOrder:
    sla = json.loads(r[21])
    return WorkOrder(
        order_id=int(r[0]), institution=r[1], contact=r[2], device_id=int(r[3], 16),
        device_name=r[4], model=r[5], serial=r[6], in_service_us=int(r[7]), ward_id=r[8],
        floor=r[9], room=r[10], description=r[11], fault_type=r[12],
        request_type=RequestType(r[13]), severity=Severity(r[14]), emergency=bool(r[15]),
        channel=Channel(r[16]), auto_cause=r[17], evidence=json.loads(r[18]),
        repeat_count=int(r[19]), contract=r[20],
        sla_s={Milestone(k): int(v) for k, v in sla["limits"].items()}, team=r[22],
        vendor_id=r[23], status=OrderStatus(r[24]), created_by=r[25], fault_us=int(r[26]),
        reported_us=int(r[27]), notified_us=_opt_int(r[28]), responded_us=_opt_int(r[29]),
        started_us=_opt_int(r[30]), fixed_us=_opt_int(r[31]), verified_us=_opt_int(r[32]),
        verified_by=r[33], verification_ref=r[34], signed_off_us=_opt_int(r[35]),
        signed_off_by=r[36], closed_us=_opt_int(r[37]), follow_up=r[38],
        follow_up_due_us=_opt_int(r[39]))


def sla_json(policy: SlaPolicy) -> str:
    return json.dumps({"limits": {m.value: s for m, s in policy.limits().items()},
                       "escalate_to": list(policy.escalate_to)}, sort_keys=True)


def order_event(tx: Tx, order_id: int, at_us: int, actor: str, kind: str, note: str = "") -> None:
    """Append a step to an order's timeline and move its last-event time."""
    tx.execute("INSERT INTO svc_order_events (order_id, at_us, actor, kind, note) "
               "VALUES (?, ?, ?, ?, ?)", (order_id, at_us, actor, kind, note))
    tx.execute("UPDATE svc_orders SET last_event_us = ? WHERE id = ? AND last_event_us < ?",
               (at_us, order_id, at_us))


def active_association(tx: Tx, device_key: str, t_us: int,
                       vendor_id: str | None = None) -> tuple[str, frozenset[VendorScope]] | None:
    """``(vendor_id, scopes)`` of the association in force for the device at ``t_us``."""
    sql = ("SELECT vendor_id, scopes FROM svc_associations WHERE device_id = ? "
           "AND valid_from_us <= ? AND valid_until_us > ? "
           "AND (revoked_us IS NULL OR revoked_us > ?)")
    params: tuple = (device_key, t_us, t_us, t_us)
    if vendor_id is not None:
        sql += " AND vendor_id = ?"
        params += (vendor_id,)
    row = tx.one(sql + " ORDER BY id DESC", params)
    if row is None:
        return None
    return row[0], frozenset(VendorScope(s) for s in row[1].split(",") if s)


def vendor_of_user(tx: Tx, user: str) -> str | None:
    return tx.scalar("SELECT vendor_id FROM svc_vendor_users WHERE user_name = ?", (user,))


def require_vendor_scope(op: Operation, device_key: str, scope: VendorScope) -> None:
    """If the actor acts for a vendor, raise :class:`AccessDenied` unless the vendor's
    association for the device is in force at the operation's time and covers
    ``scope`` (the clinical grant check is done separately, by ``op.require``)."""
    vendor = vendor_of_user(op.tx, op.actor)
    if vendor is None:
        return
    found = active_association(op.tx, device_key, op.at_us, vendor)
    resource = f"device:{device_key}"
    if found is None:
        raise AccessDenied(op.actor, f"service.{scope.value}", resource,
                           f"vendor {vendor} has no authorisation for this device at this time")
    if scope not in found[1]:
        raise AccessDenied(op.actor, f"service.{scope.value}", resource,
                           f"outside vendor {vendor}'s authorised scope "
                           f"({', '.join(sorted(found[1]))})")
    op.checked.append(f"service.{scope.value}@{resource}")


class DeskCore(StoreCore):
    """Database, clock, configuration, notifier and the timer shared by the desk's parts.

    Parameters
    ----------
    db : Database
        The clinical database (clinical schema applied); the service schema is migrated
        here.
    clock : Clock, optional
        ``now_us()`` and ``call_at(t_us, callback)``
        (:class:`vitalcore.clinical.FakeClock` in tests,
        :class:`vitalcore.clinical.WallClock` in a server). With none, nothing is armed:
        call :meth:`tick` periodically.
    notifier : Notifier, optional
        Receives every notice (none: notices are only returned and counted).
    config : DeskConfig, optional
    """

    def __init__(self, db: Database, *, clock: Clock | None = None,
                 notifier: Notifier | None = None, config: DeskConfig | None = None,
                 log2_n: int | None = None) -> None:
        super().__init__(db, clock=None if clock is None else clock.now_us, log2_n=log2_n)
        migrate_service(db)
        self.config = config or DeskConfig()
        self.notifier = notifier
        self._timer_clock = clock
        self._timer: Timer | None = None
        self._timer_at: int | None = None
        self.counters = {"notices": 0, "notify_errors": 0, "escalations": 0,
                         "expiry_warnings": 0}

    def now_us(self) -> int:
        """The desk's current time, µs since the epoch."""
        return self._clock()

    # -- notices ------------------------------------------------------------------------
    def _deliver(self, notices: list[Notice]) -> list[bool]:
        """Hand each notice to the notifier; whether each was accepted."""
        out = []
        for n in notices:
            self.counters["notices"] += 1
            if self.notifier is None:
                out.append(False)
                continue
            try:
                self.notifier.notify(n)
                out.append(True)
            except Exception:  # noqa: BLE001 - a broken channel must not break the desk
                self.counters["notify_errors"] += 1
                log.exception("notifier failed on %s notice for %s", n.kind, n.targets)
                out.append(False)
        return out

    def _policy(self, name: str) -> SlaPolicy:
        try:
            return self.config.contracts[name]
        except KeyError:
            raise UsageError(f"unknown contract {name!r}; known: "
                             f"{sorted(self.config.contracts)}") from None

    # -- timer ---------------------------------------------------------------------------
    def _next_due(self, tx: Tx, now_us: int) -> int | None:
        best: int | None = None
        rows = tx.all(f"SELECT o.id, o.reported_us, o.sla, o.notified_us, o.responded_us, "
                      f"o.started_us, o.fixed_us FROM svc_orders o "
                      f"WHERE o.status IN {_ACTIVE_SQL}")
        sent: dict[int, set[str]] = {}
        for oid, m in tx.all("SELECT e.order_id, e.milestone FROM svc_escalations e "
                             f"JOIN svc_orders o ON o.id = e.order_id "
                             f"WHERE o.status IN {_ACTIVE_SQL}"):
            sent.setdefault(int(oid), set()).add(m)
        for oid, rep, sla, *done in rows:
            limits = json.loads(sla)["limits"]
            times = dict(zip(("notify", "respond", "on_site", "fix"), done, strict=True))
            for m, s in limits.items():
                if m in sent.get(int(oid), ()) or times.get(m) is not None:
                    continue
                t = int(rep) + int(s) * 1_000_000 + 1  # breached once strictly past it
                best = t if best is None else min(best, t)
        warn_us = self.config.warn_days * 86_400_000_000
        t = tx.scalar("SELECT MIN(valid_until_us) FROM svc_associations WHERE revoked_us IS "
                      "NULL AND warned_us IS NULL AND valid_until_us > ?", (now_us,))
        if t is not None:
            t = max(int(t) - warn_us, now_us)
            best = t if best is None else min(best, t)
        return best

    def _rearm(self) -> None:
        clock = self._timer_clock
        if clock is None:
            return
        now = clock.now_us()
        with self.db.transaction(write=False) as tx:
            due = self._next_due(tx, now)
        if due is None or (self._timer_at is not None and self._timer_at <= due
                           and self._timer_at > now):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = clock.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        try:
            self.tick()
        except Exception:  # noqa: BLE001 - a timer must never die silently
            log.exception("service desk tick failed")
            self._rearm()

    def tick(self, at_us: int | None = None) -> list[Notice]:
        """Escalate every breached SLA clock and warn of expiring vendor authorisations
        (each once, persisted); returns the notices sent. The clock calls it by itself."""
        t = self._time(at_us)
        notices: list[Notice] = []
        with self.db.transaction() as tx:
            self._escalate(tx, t, notices)
            self._warn_expiring(tx, t, notices)
        self._deliver(notices)
        self._rearm()
        return notices

    def _escalate(self, tx: Tx, t: int, notices: list[Notice]) -> None:
        rows = tx.all(f"{ORDER_SELECT} WHERE status IN {_ACTIVE_SQL} ORDER BY id")
        for r in rows:
            order = row_to_order(r)
            sent = {Milestone(m) for (m,) in tx.all(
                "SELECT milestone FROM svc_escalations WHERE order_id = ?", (order.order_id,))}
            done = {m: order.done_us(m) for m in Milestone}
            escalate_to = tuple(json.loads(r[21])["escalate_to"])
            for m in breached_milestones(order.reported_us, order.sla_s, done, t, sent):
                targets = (order.team, *(x for x in escalate_to if x != order.team))
                tx.execute("INSERT INTO svc_escalations (order_id, milestone, deadline_us, "
                           "fired_us, targets) VALUES (?, ?, ?, ?, ?)",
                           (order.order_id, m.value, order.deadline_us(m), t,
                            ",".join(targets)))
                order_event(tx, order.order_id, t, "system:sla", "escalated", m.value)
                self.counters["escalations"] += 1
                notices.append(Notice(
                    "escalated", targets, t,
                    f"{order.label}: {m.value} clock ran out "
                    f"({order.sla_s[m] // 60} min, {order.severity.value}"
                    f"{', EMERGENCY' if order.emergency else ''}) on {order.model} "
                    f"{order.serial}", order.order_id, m,
                    {"deadline_us": order.deadline_us(m), "ward": order.ward_id}))

    def _warn_expiring(self, tx: Tx, t: int, notices: list[Notice]) -> None:
        horizon = t + self.config.warn_days * 86_400_000_000
        rows = tx.all("SELECT id, vendor_id, device_id, valid_until_us FROM svc_associations "
                      "WHERE revoked_us IS NULL AND warned_us IS NULL AND valid_until_us > ? "
                      "AND valid_until_us <= ? ORDER BY id", (t, horizon))
        for aid, vendor, key, until in rows:
            tx.execute("UPDATE svc_associations SET warned_us = ? WHERE id = ?", (t, aid))
            self.counters["expiry_warnings"] += 1
            days = (int(until) - t) / 86_400_000_000
            notices.append(Notice(
                "authorisation_expiring", (f"vendor/{vendor}", self.config.lead), t,
                f"vendor {vendor}'s authorisation for device {key} ends in {days:.1f} days",
                payload={"association": int(aid), "device": key, "valid_until_us": int(until)}))
