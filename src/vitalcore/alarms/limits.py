"""Physiological limit alarms: HR, PR, SpO2, NIBP sys/dia/map, respiration rate, temperature.

A :class:`Limit` gives the low and high alarm limits of one numeric (either may be
``None``: no limit on that side), their priorities, and a value hysteresis: once a value
has crossed a limit, the condition lasts until it is back inside by ``hysteresis`` (in the
unit of the numeric), so a value hovering at the threshold does not chatter (the state
machine adds a time hysteresis on top, see :mod:`vitalcore.alarms.semantics`).

:class:`LimitTable` holds the ward defaults and per-patient overrides (keyed by device id,
the patient's terminal); per-patient limits replace the ward's limit of that numeric.
Every limit is checked when it is configured; an impossible one (NaN, low >= high, outside
the range the wire format accepts for the numeric, negative hysteresis) raises
:class:`~vitalcore.errors.ConfigError` and changes nothing.

Only VALID numerics are judged: QUESTIONABLE and UNAVAILABLE values (and NaN) make the
limit conditions of that numeric absent (the technical alarms report the data trouble).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from ..protocol import NUMERIC_RANGES, NUMERIC_UNITS, NumericCode
from .model import AlarmCategory, AlarmPriority, Finding

__all__ = ["Limit", "LimitTable", "WARD_DEFAULTS", "LIMIT_CODES", "limit_codes"]

#: Numerics that can have limits, with the alarm code stem of each.
LIMIT_CODES: dict[NumericCode, str] = {
    NumericCode.HR: "hr",
    NumericCode.PR: "pr",
    NumericCode.SPO2: "spo2",
    NumericCode.NIBP_SYS: "nibp_sys",
    NumericCode.NIBP_DIA: "nibp_dia",
    NumericCode.NIBP_MAP: "nibp_map",
    NumericCode.RESP_RATE: "resp",
    NumericCode.TEMP: "temp",
}


def limit_codes(code: NumericCode) -> tuple[str, str]:
    """Alarm codes ``(low, high)`` of a numeric, e.g. ``("hr.low", "hr.high")``."""
    stem = LIMIT_CODES[code]
    return f"{stem}.low", f"{stem}.high"


def _bound(name: str, v: object, code: NumericCode) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{name} limit of {code.name} must be a finite number, got {v!r}")
    lo, hi = NUMERIC_RANGES[code]
    if not lo <= v <= hi:
        raise ConfigError(f"{name} limit of {code.name} must be within {lo:g}-{hi:g} "
                          f"{NUMERIC_UNITS[code]}, got {v!r}")
    return float(v)


@dataclass(frozen=True, slots=True)
class Limit:
    """Alarm limits of one numeric.

    Parameters
    ----------
    code : NumericCode
        One of :data:`LIMIT_CODES`.
    low, high : float or None
        Alarm when the value is below ``low`` / above ``high`` (unit of the numeric);
        ``None``: no limit. ``low < high`` when both are given.
    priority_low, priority_high : AlarmPriority
    hysteresis : float
        The value must come back inside by this much to end the condition (>= 0, and
        smaller than ``high - low``).

    Raises
    ------
    ConfigError
        Any impossible value; nothing is created.
    """

    code: NumericCode
    low: float | None = None
    high: float | None = None
    priority_low: AlarmPriority = AlarmPriority.MEDIUM
    priority_high: AlarmPriority = AlarmPriority.MEDIUM
    hysteresis: float = 0.0

    def __post_init__(self) -> None:
        try:
            code = NumericCode(self.code)
        except (ValueError, TypeError):
            raise ConfigError(f"no numeric code {self.code!r}") from None
        if code not in LIMIT_CODES:
            raise ConfigError(f"{code.name} cannot have alarm limits")
        object.__setattr__(self, "code", code)
        low = _bound("low", self.low, code)
        high = _bound("high", self.high, code)
        if low is None and high is None:
            raise ConfigError(f"limit of {code.name} needs a low or a high value")
        if low is not None and high is not None and not low < high:
            raise ConfigError(f"low limit of {code.name} must be below its high limit, "
                              f"got {low:g} >= {high:g}")
        h = self.hysteresis
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) or h < 0:
            raise ConfigError(f"hysteresis of {code.name} must be a finite number >= 0, got {h!r}")
        if low is not None and high is not None and not h < high - low:
            raise ConfigError(f"hysteresis of {code.name} must be below high - low")
        for name in ("priority_low", "priority_high"):
            try:
                object.__setattr__(self, name, AlarmPriority(getattr(self, name)))
            except ValueError:
                raise ConfigError(f"{name} must be an AlarmPriority, got "
                                  f"{getattr(self, name)!r}") from None
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "hysteresis", float(h))

    def judge(self, value: float, ts_us: int, was_low: bool, was_high: bool) -> list[Finding]:
        """Findings for ``value`` given whether each side was in alarm before (hysteresis)."""
        out = []
        unit = NUMERIC_UNITS[self.code]
        codes = limit_codes(self.code)
        if self.low is not None:
            edge = self.low + self.hysteresis if was_low else self.low
            if value < edge:
                out.append(Finding(codes[0], self.priority_low, AlarmCategory.PHYSIOLOGICAL,
                                   f"{self.code.name} {value:.4g} {unit} below {self.low:g}",
                                   ts_us, float(value), self.low))
        if self.high is not None:
            edge = self.high - self.hysteresis if was_high else self.high
            if value > edge:
                out.append(Finding(codes[1], self.priority_high, AlarmCategory.PHYSIOLOGICAL,
                                   f"{self.code.name} {value:.4g} {unit} above {self.high:g}",
                                   ts_us, float(value), self.high))
        return out


def _adult(code: NumericCode, low: float | None, high: float | None, hyst: float,
           prio_low: AlarmPriority = AlarmPriority.MEDIUM) -> Limit:
    return Limit(code, low, high, priority_low=prio_low, hysteresis=hyst)


#: Adult ward defaults (a starting point; every ward sets its own).
WARD_DEFAULTS: dict[NumericCode, Limit] = {
    NumericCode.HR: _adult(NumericCode.HR, 50, 120, 2),
    NumericCode.PR: _adult(NumericCode.PR, 50, 120, 2),
    NumericCode.SPO2: _adult(NumericCode.SPO2, 90, None, 1, AlarmPriority.HIGH),
    NumericCode.NIBP_SYS: _adult(NumericCode.NIBP_SYS, 90, 160, 3),
    NumericCode.NIBP_DIA: _adult(NumericCode.NIBP_DIA, 50, 90, 3),
    NumericCode.NIBP_MAP: _adult(NumericCode.NIBP_MAP, 60, 110, 3),
    NumericCode.RESP_RATE: _adult(NumericCode.RESP_RATE, 8, 30, 1),
    NumericCode.TEMP: _adult(NumericCode.TEMP, 35.0, 38.5, 0.2),
}


def _check_limits(limits: object) -> dict[NumericCode, Limit]:
    if not isinstance(limits, Mapping):
        raise ConfigError(f"limits must be a mapping of NumericCode to Limit, got {limits!r}")
    out: dict[NumericCode, Limit] = {}
    for code, lim in limits.items():
        if not isinstance(lim, Limit):
            raise ConfigError(f"limit of {code!r} must be a Limit, got {lim!r}")
        if lim.code != code:
            raise ConfigError(f"limit filed under {code!r} is for {lim.code.name}")
        out[lim.code] = lim
    return out


class LimitTable:
    """Ward default limits and per-patient overrides; evaluates numerics against them.

    Parameters
    ----------
    ward_defaults : mapping of NumericCode to Limit, optional
        Default :data:`WARD_DEFAULTS`. A numeric left out has no limit alarm.

    Notes
    -----
    Readers (the engine thread) see either the old or the new limits of a patient, never
    a mix: every change replaces a whole dict.
    """

    def __init__(self, ward_defaults: Mapping[NumericCode, Limit] | None = None) -> None:
        self._ward = _check_limits(WARD_DEFAULTS if ward_defaults is None else ward_defaults)
        self._patient: dict[int, dict[NumericCode, Limit]] = {}
        self._merged: dict[int, dict[NumericCode, Limit]] = {}
        self.version = 0  #: increases with every change

    def ward_defaults(self) -> dict[NumericCode, Limit]:
        return self._ward

    def patient_devices(self) -> set[int]:
        """Devices whose patient has limits of their own."""
        return set(self._patient)

    def set_ward_defaults(self, limits: Mapping[NumericCode, Limit]) -> None:
        """Replace the ward defaults (validated first; ConfigError changes nothing)."""
        self._ward = _check_limits(limits)
        self._merged = {}
        self.version += 1

    def set_patient(self, device_id: int, limits: Mapping[NumericCode, Limit]) -> None:
        """Per-patient limits of the patient on ``device_id`` (replacing earlier ones)."""
        if isinstance(device_id, bool) or not isinstance(device_id, int) or not 0 < device_id < 2**64:
            raise ConfigError(f"device_id must be in 1..2^64-1, got {device_id!r}")
        checked = _check_limits(limits)
        patient = dict(self._patient)
        patient[device_id] = checked
        self._patient = patient
        merged = dict(self._merged)
        merged.pop(device_id, None)
        self._merged = merged
        self.version += 1

    def clear_patient(self, device_id: int) -> None:
        """Back to the ward defaults for ``device_id``."""
        patient = dict(self._patient)
        patient.pop(device_id, None)
        self._patient = patient
        merged = dict(self._merged)
        merged.pop(device_id, None)
        self._merged = merged
        self.version += 1

    def limits_for(self, device_id: int) -> dict[NumericCode, Limit]:
        """Effective limits of a device: the ward's, with the patient's on top."""
        got = self._merged.get(device_id)
        if got is None:
            own = self._patient.get(device_id)
            got = {**self._ward, **own} if own else self._ward
            self._merged[device_id] = got
        return got

    def evaluated_codes(self, device_id: int, code: NumericCode) -> tuple[str, ...]:
        """Alarm codes judged when a value of ``code`` arrives (empty: no limit)."""
        return limit_codes(code) if code in self.limits_for(device_id) else ()
