"""Technical alarms: the equipment or the data path, not the patient.

==================  ========  ===================================================================
code                priority  condition
==================  ========  ===================================================================
``leads_off``       MEDIUM    status flag LEADS_OFF (the device says an electrode is off)
``probe_off``       MEDIUM    status flag PROBE_OFF (SpO2 probe off the finger)
``signal.poor``     LOW       status flag LOW_SIGNAL
``cuff.fault``      LOW       status flag CUFF_FAULT
``battery.low``     LOW       battery <= ``battery_low_pct`` (20 %) and not on external power
``battery.critical`` MEDIUM   battery <= ``battery_critical_pct`` (5 %) and not on external power
``ecg.no_signal``   MEDIUM    the engine sees flat/clipped/non-finite ECG the device does not
                              report as leads off (:func:`vitalcore.dsp.ecg_quality`)
``ecg.noisy``       LOW       the newest 2 s of ECG are NOISY
``data.gap``        LOW       a hole of >= ``gap_alarm_s`` in the ECG in the last ``gap_hold_s``
``clock.drift``     LOW       the device's newest time stamp in a committed batch is off the
                              server clock at that commit by more than ``clock_drift_s``
                              (30 s onset delay: a store-and-forward backlog drains first; a
                              backlog of the engine itself does not count)
``device.offline``  ``offline_priority`` (MEDIUM)  see :class:`Liveness`
``storage.failed``  HIGH      (system) the write-ahead log failed: ingest stopped
``storage.flush``   MEDIUM    (system) Parquet flushes are failing
``engine.overload`` HIGH      (system) the alarm engine dropped committed batches
``plugin.<name>.disabled``  MEDIUM  (system) a plugin failed too often (plugins.py)
==================  ========  ===================================================================

System alarms belong to device id 0 (:data:`~vitalcore.alarms.model.SYSTEM_DEVICE`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..protocol import StatusFlag
from .model import AlarmCategory, AlarmPriority, Finding, Timing

__all__ = ["TechnicalConfig", "TECHNICAL_TIMING", "STATUS_CODES", "status_findings",
           "Liveness", "OFFLINE"]

_T = AlarmCategory.TECHNICAL
_L, _M, _H = AlarmPriority.LOW, AlarmPriority.MEDIUM, AlarmPriority.HIGH

OFFLINE = "device.offline"
STATUS_CODES = ("leads_off", "probe_off", "signal.poor", "cuff.fault", "battery.low",
                "battery.critical")

#: Per-code timing defaults of technical alarms (others: the category default, 2 s / 2 s).
#: Status flags are judged only when a status frame comes (on every change and every
#: 10 s, protocol.md §6): the device has debounced them, so they act at once.
TECHNICAL_TIMING = {
    **{code: Timing(onset_delay_s=0.0, offset_delay_s=0.0) for code in STATUS_CODES},
    OFFLINE: Timing(onset_delay_s=0.0, offset_delay_s=0.0),  # the grace is in the rule
    "clock.drift": Timing(onset_delay_s=30.0, offset_delay_s=5.0),
    "data.gap": Timing(onset_delay_s=0.0, offset_delay_s=0.0),
    "storage.failed": Timing(onset_delay_s=0.0, offset_delay_s=0.0, latching=True),
    "storage.flush": Timing(onset_delay_s=0.0, offset_delay_s=30.0),
    "engine.overload": Timing(onset_delay_s=0.0, offset_delay_s=10.0, latching=True),
}


@dataclass(frozen=True, slots=True)
class TechnicalConfig:
    """Thresholds of the technical rules (see the module docstring)."""

    battery_low_pct: int = 20
    battery_critical_pct: int = 5
    offline_after_s: float = 30.0
    reconnect_grace_s: float = 15.0
    offline_priority: AlarmPriority = AlarmPriority.MEDIUM
    gap_alarm_s: float = 1.0
    gap_hold_s: float = 10.0
    clock_drift_s: float = 5.0
    storage_check_s: float = 5.0

    def __post_init__(self) -> None:
        for name, lo, hi in (("battery_low_pct", 1, 99), ("battery_critical_pct", 0, 98)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{name} must be an integer % within {lo}-{hi}, got {v!r}")
        if not self.battery_critical_pct < self.battery_low_pct:
            raise ConfigError("battery_critical_pct must be below battery_low_pct")
        for name, lo, hi in (("offline_after_s", 2.0, 3600.0), ("reconnect_grace_s", 0.0, 3600.0),
                             ("gap_alarm_s", 0.1, 60.0), ("gap_hold_s", 1.0, 3600.0),
                             ("clock_drift_s", 0.5, 86400.0), ("storage_check_s", 0.5, 600.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ConfigError(f"{name} must be within {lo:g}-{hi:g} s, got {v!r}")
        try:
            object.__setattr__(self, "offline_priority", AlarmPriority(self.offline_priority))
        except ValueError:
            raise ConfigError(f"offline_priority must be an AlarmPriority, "
                              f"got {self.offline_priority!r}") from None


def status_findings(battery: int, flags: int, ts_us: int, cfg: TechnicalConfig) -> list[Finding]:
    """Findings of one status frame (all :data:`STATUS_CODES` are evaluated)."""
    out = []
    if flags & StatusFlag.LEADS_OFF:
        out.append(Finding("leads_off", _M, _T, "ECG leads off", ts_us))
    if flags & StatusFlag.PROBE_OFF:
        out.append(Finding("probe_off", _M, _T, "SpO2 probe off", ts_us))
    if flags & StatusFlag.LOW_SIGNAL:
        out.append(Finding("signal.poor", _L, _T, "poor signal (device)", ts_us))
    if flags & StatusFlag.CUFF_FAULT:
        out.append(Finding("cuff.fault", _L, _T, "NIBP cuff fault", ts_us))
    if battery != 255 and not flags & StatusFlag.EXTERNAL_POWER:
        if battery <= cfg.battery_critical_pct:
            out.append(Finding("battery.critical", _M, _T, f"battery critical {battery} %",
                               ts_us, float(battery), float(cfg.battery_critical_pct)))
        elif battery <= cfg.battery_low_pct:
            out.append(Finding("battery.low", _L, _T, f"battery low {battery} %", ts_us,
                               float(battery), float(cfg.battery_low_pct)))
    return out


class Liveness:
    """Whether each known device is online, from data, transport events and silence.

    A device is offline when

    - the transport reported it disconnected (MQTT keep-alive timeout, a Will, a closed
      connection) and it did not reconnect or send data within ``reconnect_grace_s``; or
    - nothing of it was committed for ``offline_after_s`` (CoAP devices have no
      connection; this also catches a broken link the transport has not noticed yet).

    A normal reconnect (disconnect, then connect or data within the grace, the backlog
    following) raises nothing. Times are server monotonic seconds.
    """

    def __init__(self, cfg: TechnicalConfig) -> None:
        self.cfg = cfg
        self.last_seen: dict[int, float] = {}
        self.disconnected_at: dict[int, float] = {}

    def seen(self, device_id: int, now: float) -> None:
        self.last_seen[device_id] = now
        self.disconnected_at.pop(device_id, None)

    def seen_many(self, device_ids: list[int], now: float) -> None:
        """:meth:`seen` for each of ``device_ids`` (one dict update)."""
        self.last_seen.update(dict.fromkeys(device_ids, now))
        if self.disconnected_at:
            for dev in self.disconnected_at.keys() & set(device_ids):
                del self.disconnected_at[dev]

    def connected(self, device_id: int, now: float) -> None:
        self.seen(device_id, now)

    def disconnected(self, device_id: int, now: float) -> None:
        self.last_seen.setdefault(device_id, now)
        self.disconnected_at.setdefault(device_id, now)

    def forget(self, device_id: int) -> None:
        self.last_seen.pop(device_id, None)
        self.disconnected_at.pop(device_id, None)

    def offline(self, device_id: int, now: float) -> str | None:
        """Why the device is offline now (None: it is not)."""
        since = self.disconnected_at.get(device_id)
        if since is not None and now - since >= self.cfg.reconnect_grace_s:
            return f"disconnected {now - since:.0f} s ago, not back"
        silent = now - self.last_seen.get(device_id, now)
        if silent >= self.cfg.offline_after_s:
            return f"no data for {silent:.0f} s"
        return None

    def finding(self, device_id: int, now: float, now_us: int) -> Finding | None:
        why = self.offline(device_id, now)
        if why is None:
            return None
        return Finding(OFFLINE, self.cfg.offline_priority, _T, f"device offline: {why}", now_us)
