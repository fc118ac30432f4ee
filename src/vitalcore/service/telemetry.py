"""Work orders that open themselves from device telemetry.

:meth:`TelemetryPart.open_from_telemetry` is the one entry point: every automatic
order comes through it (the lifecycle tracker wires its "accessory over its limit"
events here too). An order is keyed by ``(device, cause)``: while one is open, the same
cause on the same device adds to it (``repeat_count``, an ``repeated`` step with the
new evidence) instead of opening another. A partial unique index backs this, so two
nodes racing cannot open two.

:class:`TelemetryWatch` turns raw telemetry into causes:

- a device fault code in a STATUS frame (``fault != 0``) → ``device_fault:<code hex>``;
- a battery failing to hold charge: discharging (not charging, not on external power)
  faster than ``max_drain_pct_per_h`` over at least ``drain_window_s`` →
  ``battery.not_holding_charge``;
- leads off raised ``leads_off_count`` times within ``repeat_window_s`` on one device
  (from :class:`~vitalcore.alarms.AlarmEvent`) → ``leads_off.repeated``;
- link loss (``device.offline`` raised) ``link_loss_count`` times in the window →
  ``link_loss.repeated``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..clinical.model import Resource, check_time, device_key
from ..errors import ConfigError, UsageError, VitalcoreError
from ..protocol import StatusFlag
from .core import order_event, sla_json
from .model import Channel, Notice, RequestType, Severity, WorkOrder, check_evidence
from .orders import OrderPart, _device_facts
from .sla import DEFAULT_CONTRACT

__all__ = ["CAUSES", "TelemetryPart", "TelemetryConfig", "TelemetryWatch", "AutoOrder"]

log = logging.getLogger("vitalcore.service")

#: cause kind → (request type, severity, description); the kind is the fault type
CAUSES: dict[str, tuple[RequestType, Severity, str]] = {
    "device_fault": (RequestType.EMERGENCY_REPAIR, Severity.SERIOUS,
                     "device reports fault code"),
    "leads_off.repeated": (RequestType.EMERGENCY_REPAIR, Severity.GENERAL,
                           "ECG leads off repeatedly (lead wire or electrodes?)"),
    "link_loss.repeated": (RequestType.EMERGENCY_REPAIR, Severity.GENERAL,
                           "device loses its link repeatedly (comms module or coverage?)"),
    "battery.not_holding_charge": (RequestType.EMERGENCY_REPAIR, Severity.GENERAL,
                                   "battery does not hold its charge"),
    "accessory.over_limit": (RequestType.PREVENTIVE_MAINTENANCE, Severity.MINOR,
                             "accessory past its replacement limit"),
}
_TELEMETRY_ACTOR = "system:telemetry"


class AutoOrder(NamedTuple):
    """The order a telemetry cause landed in, and whether it was opened just now."""

    order: WorkOrder
    created: bool


def _check_cause(cause: object) -> str:
    if not isinstance(cause, str) or not 0 < len(cause) <= 128 or "\0" in cause:
        raise UsageError(f"cause must be a string of 1..128 characters, got {cause!r}")
    kind = cause.split(":", 1)[0]
    if kind not in CAUSES:
        raise UsageError(f"unknown telemetry cause {kind!r}; known: {sorted(CAUSES)} "
                         "(add a detail after ':', e.g. 'accessory.over_limit:LW-0001')")
    return kind


class TelemetryPart(OrderPart):
    """The automatic intake."""

    def open_from_telemetry(self, device_id: int, cause: str, evidence: dict[str, Any],
                            at_us: int | None = None) -> AutoOrder:
        """Open a work order for ``device_id`` because of ``cause``, or add to the open one.

        Parameters
        ----------
        device_id : int
            A device registered in the clinical store (else :class:`UsageError`,
            audited, nothing written).
        cause : str
            ``<kind>`` or ``<kind>:<detail>``; kinds in :data:`CAUSES`. The detail
            separates orders of one device: ``accessory.over_limit:LW-0001`` and
            ``accessory.over_limit:BAT-0007`` are two orders.
        evidence : dict
            JSON-serialisable facts (hours, limit, fault code, counts), at most 16 KiB.
        at_us : int, optional
            When it was seen, µs since the epoch (default: now). It is the report time.
        """
        kind = _check_cause(cause)
        text = check_evidence(evidence)
        if at_us is not None:
            check_time(at_us)
        key = device_key(device_id)
        request_type, severity, description = CAUSES[kind]
        notices: list[Notice] = []
        for attempt in range(2):  # a racing node may insert the same open order first
            try:
                with self._operation(_TELEMETRY_ACTOR, "open_from_telemetry",
                                     Resource.device(device_id), at_us) as op:
                    existing = op.tx.one("SELECT id FROM svc_orders WHERE device_id = ? AND "
                                         "auto_cause = ? AND closed_us IS NULL" + op.tx.for_update,
                                         (key, cause))
                    if existing is not None:
                        oid = int(existing[0])
                        op.tx.execute("UPDATE svc_orders SET repeat_count = repeat_count + 1 "
                                      "WHERE id = ?", (oid,))
                        order_event(op.tx, oid, op.at_us, _TELEMETRY_ACTOR, "repeated", text)
                        op.detail = {"order": oid, "cause": cause, "repeated": True}
                        created = False
                    else:
                        facts = _device_facts(op.tx, key, op.at_us, None)
                        detail = cause.split(":", 1)[1] if ":" in cause else ""
                        oid = self._insert(
                            op, key, facts, f"{description}{': ' + detail if detail else ''}",
                            "telemetry", kind, request_type, severity, False,
                            Channel.TELEMETRY, cause, text, DEFAULT_CONTRACT,
                            sla_json(self._policy(DEFAULT_CONTRACT)), op.at_us, "", notices)
                        op.detail = {"order": oid, "cause": cause}
                        created = True
                break
            except UsageError as exc:
                if attempt or "conflicting change" not in str(exc):
                    raise
        if created:
            return AutoOrder(self._after_create(oid, notices), True)
        return AutoOrder(self.order(oid), False)


def _positive(name: str, v: object, kind: type = float) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int) \
            or not v > 0:
        raise ConfigError(f"{name} must be a positive {kind.__name__}, got {v!r}")


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """Thresholds of :class:`TelemetryWatch` (see the module docstring)."""

    repeat_window_s: float = 3600.0
    leads_off_count: int = 5
    link_loss_count: int = 3
    drain_window_s: float = 1800.0
    max_drain_pct_per_h: float = 30.0

    def __post_init__(self) -> None:
        for name in ("repeat_window_s", "drain_window_s", "max_drain_pct_per_h"):
            _positive(name, getattr(self, name))
        for name in ("leads_off_count", "link_loss_count"):
            _positive(name, getattr(self, name), int)


_REPEATED = {"leads_off": ("leads_off.repeated", "leads_off_count"),
             "device.offline": ("link_loss.repeated", "link_loss_count")}


class TelemetryWatch:
    """Feeds a desk's :meth:`~TelemetryPart.open_from_telemetry` from telemetry.

    Call :meth:`observe_batch` with each committed :class:`~vitalcore.batch.DecodedBatch`
    (e.g. from a store commit listener hopping to the event loop) and
    :meth:`on_alarm_event` with each alarm event (or run :meth:`follow` on an
    :meth:`vitalcore.alarms.AlarmEngine.subscribe` subscription). Call them on the
    thread that owns the desk's clock (the event loop). Telemetry of a device the
    clinical store does not know is counted (``unknown_devices``) and skipped: it
    must not stop the others.
    """

    def __init__(self, desk: TelemetryPart, config: TelemetryConfig | None = None) -> None:
        self.desk = desk
        self.config = config or TelemetryConfig()
        self._raised: dict[tuple[int, str], deque[int]] = {}
        self._drain: dict[int, tuple[int, int]] = {}  # device -> (start ts_us, start %)
        self._last_fault: dict[int, int] = {}
        self.counters = {"orders_opened": 0, "orders_repeated": 0, "unknown_devices": 0,
                         "unplaced": 0, "errors": 0}

    def _open(self, device_id: int, cause: str, evidence: dict, at_us: int) -> AutoOrder | None:
        try:
            out = self.desk.open_from_telemetry(device_id, cause, evidence, at_us)
        except UsageError as exc:
            key = "unknown_devices" if "unknown device" in str(exc) else "errors"
            self.counters[key] += 1
            log.warning("telemetry order for %016x (%s) not opened: %s", device_id, cause, exc)
            return None
        except VitalcoreError:
            self.counters["errors"] += 1
            log.exception("telemetry order for %016x (%s) failed", device_id, cause)
            return None
        self.counters["orders_opened" if out.created else "orders_repeated"] += 1
        return out

    def observe_batch(self, batch: Any) -> list[AutoOrder]:
        """Look at the STATUS rows of a decoded batch (fault codes, battery drain)."""
        t = batch.tables["status"]
        out: list[AutoOrder] = []
        for dev, ts, battery, flags, fault in zip(
                t["device_id"].tolist(), t["ts_us"].tolist(), t["battery"].tolist(),
                t["flags"].tolist(), t["fault"].tolist(), strict=True):
            if fault and self._last_fault.get(dev) != fault:
                got = self._open(dev, f"device_fault:{fault:04x}",
                                 {"fault_code": fault, "ts_us": ts, "battery_pct": battery}, ts)
                if got is not None:
                    out.append(got)
            self._last_fault[dev] = fault
            got = self._battery(dev, ts, battery, flags)
            if got is not None:
                out.append(got)
        return out

    def _battery(self, dev: int, ts: int, pct: int, flags: int) -> AutoOrder | None:
        charging = flags & (StatusFlag.CHARGING | StatusFlag.EXTERNAL_POWER)
        start = self._drain.get(dev)
        if pct == 255 or charging or start is None or pct > start[1] or ts < start[0]:
            if pct == 255 or charging:
                self._drain.pop(dev, None)
            else:
                self._drain[dev] = (ts, pct)  # a discharge starts (or the battery was swapped)
            return None
        hours = (ts - start[0]) / 3.6e9
        if hours * 3600 < self.config.drain_window_s:
            return None
        rate = (start[1] - pct) / hours
        if rate <= self.config.max_drain_pct_per_h:
            return None
        self._drain[dev] = (ts, pct)  # judge the next window afresh
        return self._open(dev, "battery.not_holding_charge",
                          {"drain_pct_per_h": round(rate, 1), "from_pct": start[1],
                           "to_pct": pct, "window_s": round(hours * 3600),
                           "limit_pct_per_h": self.config.max_drain_pct_per_h}, ts)

    def on_alarm_event(self, event: Any) -> AutoOrder | None:
        """Count leads-off and link-loss raises per device; open an order when one device
        has too many within the window."""
        from ..alarms import EventKind

        code = event.alarm.code
        if event.kind is not EventKind.RAISED or code not in _REPEATED:
            return None
        cause, count_name = _REPEATED[code]
        dev = event.alarm.device_id
        window = self._raised.setdefault((dev, code), deque())
        window.append(event.ts_us)
        horizon = event.ts_us - int(self.config.repeat_window_s * 1e6)
        while window and window[0] < horizon:
            window.popleft()
        need = getattr(self.config, count_name)
        if len(window) < need:
            return None
        evidence = {"alarm": code, "raised": len(window), "within_s": self.config.repeat_window_s,
                    "first_us": window[0], "last_us": window[-1],
                    "last_alarm_id": event.alarm.alarm_id}
        window.clear()
        return self._open(dev, cause, evidence, event.ts_us)

    def on_fleet_event(self, event: Any) -> AutoOrder | None:
        """Open a preventive-maintenance order for an asset that reached its replacement
        limit: a :class:`vitalcore.fleet.LifecycleEvent` of kind ``over_limit``. Use as
        a fleet listener: ``tracker.add_listener(watch.on_fleet_event)``. An asset on
        no terminal (a spare) has no device to order for: counted as ``unplaced``."""
        from ..fleet import EventKind

        if event.kind is not EventKind.OVER_LIMIT:
            return None
        if not event.device_id:  # None or 0: read with a service tool, on no terminal
            self.counters["unplaced"] += 1
            return None
        evidence = {"kind": str(event.asset_kind), "serial": event.serial,
                    "hours": round(event.hours, 2), **event.detail}
        return self._open(event.device_id, f"accessory.over_limit:{event.serial}", evidence,
                          event.at_us)

    async def follow(self, events: AsyncIterator[Any]) -> None:
        """Consume an alarm subscription until it ends."""
        async for ev in events:
            self.on_alarm_event(ev)
