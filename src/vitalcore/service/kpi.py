"""Key figures of the service: SLA compliance, fix rate, time to repair, where faults are.

Computed over the orders *reported* in ``[t0_us, t1_us)`` as they stand at ``at_us``
(cancelled orders are counted apart and excluded from every figure).

- **compliance** of a milestone: of the clocks already decided at ``at_us`` (met,
  late, or breached and still running), the share met. Running clocks within their
  limit are not judged yet. *Response-time compliance* is the ``respond`` clock's.
- **fix rate**: the share of orders whose device problem is fixed (fix time set).
- **time to repair**: report → fix, minutes (median, mean, 90th percentile), over the
  fixed orders.
- faults by type (the reported fault type, or the telemetry cause kind), model, ward
  and severity, most frequent first.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from ..clinical.model import check_time
from ..errors import UsageError
from .model import Milestone, OrderStatus, WorkOrder
from .sla import ClockState, clock_views

__all__ = ["Compliance", "KPIReport", "compute_kpis", "month_bounds"]


class Compliance(NamedTuple):
    """``met`` of ``judged`` clocks; ``pct`` None when none was judged."""

    met: int
    judged: int

    @property
    def pct(self) -> float | None:
        return None if not self.judged else round(100.0 * self.met / self.judged, 1)


@dataclass(frozen=True)
class KPIReport:
    """The figures of one period (see the module docstring)."""

    t0_us: int
    t1_us: int
    at_us: int
    n_orders: int
    n_cancelled: int
    n_emergency: int
    n_escalated: int
    by_status: dict[str, int]
    compliance: dict[Milestone, Compliance]
    fix_rate_pct: float | None
    ttr_median_min: float | None
    ttr_mean_min: float | None
    ttr_p90_min: float | None
    by_type: list[tuple[str, int]]
    by_model: list[tuple[str, int]]
    by_ward: list[tuple[str, int]]
    by_severity: list[tuple[str, int]]
    orders: list[WorkOrder] = field(repr=False, default_factory=list)

    @property
    def response_compliance_pct(self) -> float | None:
        return self.compliance[Milestone.RESPOND].pct


def _top(c: Counter) -> list[tuple[str, int]]:
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))


def compute_kpis(orders: list[WorkOrder], t0_us: int, t1_us: int, at_us: int,
                 escalated: set[int] | None = None) -> KPIReport:
    """The figures of ``orders`` reported in ``[t0_us, t1_us)``, judged at ``at_us``.

    ``escalated``: ids of orders with at least one escalation (for the count).
    """
    for name, v in (("t0_us", t0_us), ("t1_us", t1_us), ("at_us", at_us)):
        check_time(v, name)
    if t1_us <= t0_us:
        raise UsageError("t1_us must be after t0_us")
    chosen = [o for o in orders if t0_us <= o.reported_us < t1_us]
    live = [o for o in chosen if o.status is not OrderStatus.CANCELLED]
    met = Counter[Milestone]()
    judged = Counter[Milestone]()
    ttr = []
    for o in live:
        for v in clock_views(o.reported_us, o.sla_s, {m: o.done_us(m) for m in Milestone},
                             at_us):
            if v.state is ClockState.RUNNING:
                continue
            judged[v.milestone] += 1
            met[v.milestone] += v.state is ClockState.MET
        if o.fixed_us is not None and o.fixed_us <= at_us:
            ttr.append((o.fixed_us - o.reported_us) / 60e6)
    n = len(live)

    def q90(xs: list[float]) -> float:
        return statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]

    return KPIReport(
        t0_us=t0_us, t1_us=t1_us, at_us=at_us, n_orders=n,
        n_cancelled=len(chosen) - n, n_emergency=sum(o.emergency for o in live),
        n_escalated=sum(o.order_id in (escalated or set()) for o in live),
        by_status=dict(_top(Counter(o.status.value for o in chosen))),
        compliance={m: Compliance(met[m], judged[m]) for m in Milestone},
        fix_rate_pct=None if not n else round(100.0 * len(ttr) / n, 1),
        ttr_median_min=round(statistics.median(ttr), 1) if ttr else None,
        ttr_mean_min=round(statistics.fmean(ttr), 1) if ttr else None,
        ttr_p90_min=round(q90(ttr), 1) if ttr else None,
        by_type=_top(Counter(o.fault_type for o in live)),
        by_model=_top(Counter(o.model for o in live)),
        by_ward=_top(Counter(o.ward_id or "(none)" for o in live)),
        by_severity=_top(Counter(o.severity.value for o in live)),
        orders=sorted(live, key=lambda o: o.order_id))


def month_bounds(year: int, month: int) -> tuple[int, int]:
    """``[t0_us, t1_us)`` of a calendar month in UTC."""
    if isinstance(year, bool) or not isinstance(year, int) or not 1970 <= year <= 2200:
        raise UsageError(f"year must be 1970..2200, got {year!r}")
    if isinstance(month, bool) or not isinstance(month, int) or not 1 <= month <= 12:
        raise UsageError(f"month must be 1..12, got {month!r}")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()) * 1_000_000, int(end.timestamp()) * 1_000_000
