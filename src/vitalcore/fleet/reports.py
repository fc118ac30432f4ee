"""What the service team reads: due list, statistics, drill-down, usage for billing."""

from __future__ import annotations

import datetime as _dt
from collections import Counter, defaultdict

from ..clinical.model import (
    DeviceEvent,
    DeviceState,
    Permission,
    Resource,
    check_id,
    check_time,
)
from ..errors import UsageError
from .model import (
    HOUR_S,
    Alert,
    AssetDetail,
    AssetStatus,
    DueItem,
    FleetStats,
    Install,
    Kind,
    UsageRow,
    check_serial,
    kind_of,
)
from .registry import RegistryPart
from .rows import ASSET_COLUMNS, AssetRow, dev_key, load_asset

__all__ = ["ReportPart", "month_bounds"]

_DAY_US = 86_400_000_000
_CLOSED = (AssetStatus.REPLACED, AssetStatus.RETIRED)


def _month_start(t_us: int) -> _dt.datetime:
    d = _dt.datetime.fromtimestamp(t_us / 1e6, _dt.UTC)
    return _dt.datetime(d.year, d.month, 1, tzinfo=_dt.UTC)


def _next_month(d: _dt.datetime) -> _dt.datetime:
    return _dt.datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=_dt.UTC)


def _us(d: _dt.datetime) -> int:
    return int(d.timestamp()) * 1_000_000


def month_bounds(t0_us: int, t1_us: int) -> list[tuple[str, int, int]]:
    """``("YYYY-MM", start_us, end_us)`` of each UTC month overlapping ``[t0_us, t1_us)``,
    clipped to it."""
    out = []
    m = _month_start(t0_us)
    while _us(m) < t1_us:
        n = _next_month(m)
        out.append((m.strftime("%Y-%m"), max(t0_us, _us(m)), min(t1_us, _us(n))))
        m = n
    return out


class ReportPart(RegistryPart):
    """Due list, statistics, per-asset drill-down and usage by ward and month."""

    def _rows(self, tx, where: str = "1 = 1", params: tuple = ()) -> list[AssetRow]:
        return [AssetRow.from_db(r) for r in
                tx.all(f"SELECT {ASSET_COLUMNS} FROM fleet_assets WHERE {where} ORDER BY id",
                       params)]

    def due(self, *, at_us: int | None = None, expiry_days: int = 30) -> list[DueItem]:
        """Assets in service at or near their limit, or near their calendar expiry.

        An asset is due for hours once it is within its warning margin (``warning``) or
        over its limit (``over_limit``), and for expiry when its calendar end of life is
        within ``expiry_days`` of ``at_us`` (``over_limit`` once passed). Sorted: over
        the limit first, then by hours remaining, then by due time.
        """
        t = self._time(at_us)
        if isinstance(expiry_days, bool) or not isinstance(expiry_days, int) or expiry_days < 0:
            raise UsageError(f"expiry_days must be a non-negative int, got {expiry_days!r}")
        with self.db.transaction(write=False) as tx:
            rules = self._rules(tx)
            rows = self._rows(tx, "status <> 'replaced' AND status <> 'retired'")
            assets = [rules.asset(a) for a in rows]
        out = []
        for a in assets:
            if a.alert >= Alert.WARNING:
                out.append(DueItem(a, a.alert, "hours", a.remaining_h, a.limit_at_us))
            elif a.expiry_us is not None and a.expiry_us <= t + expiry_days * _DAY_US:
                alert = Alert.OVER_LIMIT if a.expiry_us <= t else Alert.WARNING
                out.append(DueItem(a, alert, "expiry", a.remaining_h, a.expiry_us))
        big = float("inf")
        out.sort(key=lambda d: (-d.alert, big if d.remaining_h is None else d.remaining_h,
                                d.due_us or 0, d.asset.asset_id))
        return out

    def statistics(self) -> FleetStats:
        """Fleet-wide counts and hours (every asset, closed ones included in counts)."""
        with self.db.transaction(write=False) as tx:
            rules = self._rules(tx)
            assets = [rules.asset(a) for a in self._rows(tx)]
            unknown = int(tx.scalar("SELECT COUNT(*) FROM fleet_unknown") or 0)
            states = dict(tx.all("SELECT state, COUNT(*) FROM devices GROUP BY state"))
        by_kind = Counter(a.kind.value for a in assets)
        hours: dict[str, float] = defaultdict(float)
        for a in assets:
            hours[a.kind.value] += a.hours
        live = [a for a in assets if a.status not in _CLOSED]
        return FleetStats(
            assets=len(assets),
            by_kind=dict(sorted(by_kind.items())),
            by_status=dict(sorted(Counter(a.status.value for a in assets).items())),
            by_alert=dict(sorted(Counter(a.alert.name.lower() for a in live).items())),
            hours_by_kind={k: round(v, 3) for k, v in sorted(hours.items())},
            mean_hours_by_kind={k: round(hours[k] / n, 3) for k, n in sorted(by_kind.items())},
            unregistered=sum(not a.registered for a in assets),
            resets=sum(a.resets for a in assets),
            unknown_devices=unknown,
            clinical_states={DeviceState(k).value: int(n) for k, n in sorted(states.items())},
        )

    def drill_down(self, actor: str, kind: Kind | str, serial: str | None = None, *,
                   device_id: int | None = None) -> AssetDetail:
        """Everything about one asset (``view_device_archive`` on it; audited).

        Name it by ``(kind, serial)``, or a terminal by ``device_id``.
        """
        try:
            a, scope = self._drill_target(kind, serial, device_id)
        except UsageError as exc:  # audited like any refused request of a user
            self._audit_failure(self._time(None), actor, "fleet_drill_down", None,
                                Resource.everything(), "error", exc)
            raise
        self.authorize(actor, Permission.VIEW_DEVICE_ARCHIVE, scope, action="fleet_drill_down")
        return self._detail(a)

    def _drill_target(self, kind: Kind | str, serial: str | None,
                      device_id: int | None) -> tuple[AssetRow, Resource]:
        k = kind_of(kind)
        if (serial is None) == (device_id is None):
            raise UsageError("name the asset by serial or (a terminal) by device_id")
        with self.db.transaction(write=False) as tx:
            if serial is not None:
                check_serial(serial)
                a = load_asset(tx, "kind = ? AND serial = ?", (k.value, serial))
            else:
                if k is not Kind.TERMINAL:
                    raise UsageError("only terminals are named by device id")
                a = load_asset(tx, "device_id = ? AND status <> 'replaced' AND "
                               "status <> 'retired'", (dev_key(device_id),))
            if a is None:
                raise UsageError(f"unknown {k.value} {serial or dev_key(device_id)}")
            return a, self._scope(tx, a)

    def _detail(self, a: AssetRow) -> AssetDetail:
        with self.db.transaction(write=False) as tx:
            rules = self._rules(tx)
            installs = [Install(a.id, int(d, 16), s, e) for d, s, e in tx.all(
                "SELECT device_id, start_us, end_us FROM fleet_installs WHERE asset_id = ? "
                "ORDER BY start_us, id", (a.id,))]
            contents: list = []
            state, clinical = None, []
            if a.kind is Kind.TERMINAL and a.device_id is not None:
                contents = [rules.asset(r) for r in self._rows(
                    tx, "installed_on = ? AND kind <> 'terminal' AND status <> 'replaced' "
                        "AND status <> 'retired' AND id IN (SELECT asset_id FROM fleet_installs "
                        "WHERE end_us IS NULL)", (dev_key(a.device_id),))]
                key = dev_key(a.device_id)
                state = tx.scalar("SELECT state FROM devices WHERE id = ?", (key,))
                clinical = [DeviceEvent(a.device_id, kd, t, u, DeviceState(s), r,
                                        None if p is None else bool(p), n)
                            for kd, t, u, s, r, p, n in tx.all(
                                "SELECT kind, at_us, by_user, state_after, reference, passed, "
                                "note FROM device_events WHERE device_id = ? ORDER BY id", (key,))]
            asset = rules.asset(a)
        events = self.events(asset_id=a.id, limit=100_000)
        return AssetDetail(asset, installs, events, contents, state, clinical)

    def usage(self, t0_us: int, t1_us: int, *, ward_id: str | None = None,
              now_us: int | None = None) -> list[UsageRow]:
        """Monitoring usage per ward and UTC month over ``[t0_us, t1_us)``, for billing.

        ``bound_h`` sums, over the clinical bindings, the time a terminal was bound to a
        patient placed in the ward (split at placement changes and month boundaries,
        clipped to the window; a binding still open counts up to ``now_us``, default the
        tracker's clock, never beyond ``t1_us``). ``powered_h`` is
        the powered-on time those terminals reported while bound in the ward, over the
        whole months the window touches (telemetry is aggregated per month). Rows by
        month then ward; ``ward_id`` None is transport.
        """
        check_time(t0_us, "t0_us")
        check_time(t1_us, "t1_us")
        if t1_us <= t0_us:
            raise UsageError(f"empty time range [{t0_us}, {t1_us})")
        if ward_id is not None:
            check_id(ward_id, "ward")
        now = self._time(now_us)
        months = month_bounds(t0_us, t1_us)
        bound: dict[tuple[str, str], int] = defaultdict(int)
        devices: dict[tuple[str, str], set[str]] = defaultdict(set)
        with self.db.transaction(write=False) as tx:
            rows = tx.all(
                "SELECT b.device_id, b.start_us, b.end_us, p.ward_id, p.start_us, p.end_us "
                "FROM bindings b JOIN placements p ON p.patient_id = b.patient_id "
                "WHERE b.start_us < ? AND (b.end_us IS NULL OR b.end_us > ?) "
                "AND p.start_us < ? AND (p.end_us IS NULL OR p.end_us > ?)",
                (t1_us, t0_us, t1_us, t0_us))
            powered = tx.all(
                "SELECT ward_id, month, asset_id, seconds FROM fleet_usage WHERE month >= ? "
                "AND month <= ?", (months[0][0], months[-1][0]))
        for dev, b0, b1, ward, p0, p1 in rows:
            s0 = max(b0, p0, t0_us)
            s1 = min(t1_us, b1 if b1 is not None else now, p1 if p1 is not None else now)
            for month, m0, m1 in months:
                overlap = min(s1, m1) - max(s0, m0)
                if overlap > 0:
                    key = (ward or "", month)
                    bound[key] += overlap
                    devices[key].add(dev)
        power: dict[tuple[str, str], int] = defaultdict(int)
        for ward, month, _asset, seconds in powered:
            power[(ward, month)] += int(seconds)
        keys = sorted(set(bound) | set(power), key=lambda k: (k[1], k[0]))
        return [UsageRow(w or None, m, bound.get((w, m), 0) / 3.6e9,
                         power.get((w, m), 0) / HOUR_S, len(devices.get((w, m), ())))
                for w, m in keys if ward_id is None or w == ward_id]
