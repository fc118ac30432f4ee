"""The service desk: work orders, SLA clocks, vendors and KPIs on the clinical database.

Typical use::

    store = open_store("clinical.sqlite")
    desk = ServiceDesk(store.db, clock=WallClock(loop), notifier=MqttNotifier(broker.publish))
    order = desk.create_order("nurse.li", OrderRequest(0x1001, "no ECG trace", "ext 4411"))
    desk.respond("biomed.wu", order.order_id)
"""

from __future__ import annotations

from ..clinical.model import check_time
from .kpi import KPIReport, compute_kpis, month_bounds
from .telemetry import TelemetryPart
from .vendors import VendorPart

__all__ = ["ServiceDesk"]


class ServiceDesk(TelemetryPart, VendorPart):
    """Every service-desk operation on one clinical database.

    Changes take the acting user's name first and an optional event time ``at_us`` (µs;
    default: the clock's now); each is one audited transaction (see
    :mod:`vitalcore.service.core`). See :class:`~vitalcore.service.core.DeskCore` for
    the constructor.
    """

    def kpis(self, t0_us: int, t1_us: int, at_us: int | None = None) -> KPIReport:
        """The figures of the orders reported in ``[t0_us, t1_us)`` as of ``at_us``."""
        check_time(t0_us, "t0_us")
        check_time(t1_us, "t1_us")
        t = self._time(at_us)
        orders = self.orders(t0_us=t0_us, t1_us=t1_us, limit=100_000)
        with self.db.transaction(write=False) as tx:
            escalated = {int(o) for (o,) in tx.all(
                "SELECT DISTINCT e.order_id FROM svc_escalations e JOIN svc_orders o ON "
                "o.id = e.order_id WHERE o.reported_us >= ? AND o.reported_us < ?",
                (t0_us, t1_us))}
        return compute_kpis(orders, t0_us, t1_us, t, escalated)

    def monthly_kpis(self, year: int, month: int, at_us: int | None = None) -> KPIReport:
        """:meth:`kpis` of a calendar month (UTC)."""
        t0, t1 = month_bounds(year, month)
        return self.kpis(t0, t1, at_us)
