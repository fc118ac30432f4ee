"""The ambulatory blood pressure monitoring (ABPM) report from NIBP readings.

Definitions (docs/abpm.md, "Report"; thresholds and minimums after the European Society
of Hypertension position paper on ABPM, O'Brien et al., J Hypertens 2013;31:1731-1768,
and the AHA scientific statement on BP measurement, Muntner et al., Hypertension
2019;73:e35-e66; every number is a configurable default):

- **Readings.** One reading per (device, timestamp) carrying NIBP_SYS and NIBP_DIA
  (mmHg), optionally NIBP_MAP (mmHg) and NIBP_PR (bpm), as a device sends them in one
  NUMERICS frame.
- **Validity** (:class:`ValidityCriteria`), the first failing check names the reason:
  ``device`` (the device marked a value QUESTIONABLE), ``missing`` (no systolic or
  diastolic, or marked UNAVAILABLE), ``sys_range`` (outside 70-260 mmHg), ``dia_range`` (40-150),
  ``order`` (diastolic >= systolic, or MAP present and outside [dia, sys]),
  ``pp_range`` (pulse pressure outside 20-150 mmHg), ``pr_range`` (pulse rate present
  and outside 30-220 bpm). Only valid readings enter any statistic.
- **Day and night** by fixed local clock windows (default day 07:00-22:00, night
  22:00-07:00; :meth:`ABPMConfig.narrow` gives ESH's 09:00-21:00 / 01:00-06:00, whose
  transition hours count only in 24 h) or by the patient's reported sleep periods
  (asleep = night, else day).
- **Means** per period: arithmetic means of the valid readings (not time-weighted).
- **Nocturnal dipping** (systolic, %): ``100 * (day mean - night mean) / day mean``; class
  ``extreme dipper`` >= 20, ``dipper`` 10 to < 20, ``non-dipper`` 0 to < 10,
  ``reverse dipper`` < 0; ``insufficient data`` unless the day has >= 20 and the night
  >= 7 valid readings.
- **BP load**: % of a period's valid readings with systolic > 135 (day) / 120 (night)
  mmHg, diastolic > 85 / 70, and either; 24 h load counts each reading against the
  thresholds of its period (readings in neither period are left out).
- **Adequacy**: >= 70 % of the expected readings valid (of the readings received when
  ``n_expected`` is not given), >= 20 valid day and >= 7 valid night readings.

Times are µs since the Unix epoch (UTC); local times use :mod:`zoneinfo`. Nothing here
divides by a count without checking it: empty sets give ``None`` statistics and an
explicit "insufficient data", never NaN from 0/0 or an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa

from ..errors import UsageError
from ..protocol import NumericCode, NumericStatus

__all__ = [
    "NIBP_CODES",
    "INVALID_REASONS",
    "DIPPING_CLASSES",
    "ValidityCriteria",
    "ABPMConfig",
    "NIBPReadings",
    "PeriodStats",
    "Load",
    "Extreme",
    "HourStats",
    "ABPMReport",
    "abpm_report",
    "classify_dipping",
]

NIBP_CODES = (NumericCode.NIBP_SYS, NumericCode.NIBP_DIA, NumericCode.NIBP_MAP,
              NumericCode.NIBP_PR)
INVALID_REASONS = ("device", "missing", "sys_range", "dia_range", "order", "pp_range", "pr_range")
DIPPING_CLASSES = ("extreme dipper", "dipper", "non-dipper", "reverse dipper",
                   "insufficient data")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _range(name: str, lo_hi: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in lo_hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
        raise UsageError(f"{name} must be (low, high) with 0 <= low < high, got {lo_hi!r}")
    return lo, hi


@dataclass(frozen=True)
class ValidityCriteria:
    """Which readings count (inclusive ranges; mmHg, pulse rate bpm).

    ``device_flags``: a reading with any NIBP value the device marked QUESTIONABLE is
    invalid (reason ``device``); values marked UNAVAILABLE count as not sent.
    """

    sys_mmhg: tuple[float, float] = (70.0, 260.0)
    dia_mmhg: tuple[float, float] = (40.0, 150.0)
    pulse_pressure_mmhg: tuple[float, float] = (20.0, 150.0)
    pr_bpm: tuple[float, float] = (30.0, 220.0)
    device_flags: bool = True

    def __post_init__(self) -> None:
        for name in ("sys_mmhg", "dia_mmhg", "pulse_pressure_mmhg", "pr_bpm"):
            object.__setattr__(self, name, _range(name, getattr(self, name)))


def _window(name: str, w: tuple[dtime, dtime] | None) -> tuple[dtime, dtime] | None:
    if w is None:
        return None
    if (len(w) != 2 or not all(isinstance(t, dtime) and t.tzinfo is None for t in w)
            or w[0] == w[1]):
        raise UsageError(f"{name} must be (start, end): two different naive datetime.time, "
                         f"got {w!r}")
    return (w[0], w[1])


def _threshold(name: str, t: tuple[float, float]) -> tuple[float, float]:
    s, d = (float(v) for v in t)
    if not (0 < d < s < 300):
        raise UsageError(f"{name} must be (systolic, diastolic) mmHg with 0 < dia < sys < 300, "
                         f"got {t!r}")
    return s, d


@dataclass(frozen=True)
class ABPMConfig:
    """How the report splits and judges the readings.

    Parameters
    ----------
    day, night : (datetime.time, datetime.time)
        Local clock windows ``[start, end)`` (may cross midnight). Used unless sleep
        periods are given to :func:`abpm_report`.
    day_threshold, night_threshold : (float, float)
        (systolic, diastolic) mmHg for the BP load: a value strictly above counts.
    min_day, min_night : int
        Valid readings needed in each period for an adequate recording and a dipping
        class.
    min_valid_pct : float
        Valid readings needed, % of the expected (or received) readings.
    criteria : ValidityCriteria
    """

    day: tuple[dtime, dtime] = (dtime(7), dtime(22))
    night: tuple[dtime, dtime] = (dtime(22), dtime(7))
    day_threshold: tuple[float, float] = (135.0, 85.0)
    night_threshold: tuple[float, float] = (120.0, 70.0)
    min_day: int = 20
    min_night: int = 7
    min_valid_pct: float = 70.0
    criteria: ValidityCriteria = field(default_factory=ValidityCriteria)

    def __post_init__(self) -> None:
        object.__setattr__(self, "day", _window("day", self.day))
        object.__setattr__(self, "night", _window("night", self.night))
        d, n = self.day, self.night
        if _overlap(d, n):
            raise UsageError(f"day {d} and night {n} windows overlap")
        object.__setattr__(self, "day_threshold", _threshold("day_threshold", self.day_threshold))
        object.__setattr__(self, "night_threshold",
                           _threshold("night_threshold", self.night_threshold))
        for name in ("min_day", "min_night"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"{name} must be an int >= 1, got {v!r}")
        if not 0 <= self.min_valid_pct <= 100:
            raise UsageError(f"min_valid_pct must be within 0..100, got {self.min_valid_pct!r}")
        if not isinstance(self.criteria, ValidityCriteria):
            raise UsageError("criteria must be a ValidityCriteria")

    @classmethod
    def narrow(cls, **kw: object) -> ABPMConfig:
        """ESH's narrow fixed windows: day 09:00-21:00, night 01:00-06:00."""
        return cls(day=(dtime(9), dtime(21)), night=(dtime(1), dtime(6)), **kw)  # type: ignore[arg-type]


def _minutes(t: dtime) -> float:
    return t.hour * 60 + t.minute + t.second / 60 + t.microsecond / 6e7


def _in_window(mins: np.ndarray, w: tuple[dtime, dtime]) -> np.ndarray:
    a, b = _minutes(w[0]), _minutes(w[1])
    return (mins >= a) & (mins < b) if a < b else (mins >= a) | (mins < b)


def _overlap(d: tuple[dtime, dtime], n: tuple[dtime, dtime]) -> bool:
    grid = np.arange(0, 24 * 60, 1 / 60)  # every second of a day
    return bool(np.any(_in_window(grid, d) & _in_window(grid, n)))


# -- readings -------------------------------------------------------------------------------
def _f64(name: str, x: object, n: int | None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or (n is not None and len(a) != n):
        raise UsageError(f"{name} must be 1-D of the same length as ts_us")
    return a


@dataclass(frozen=True)
class NIBPReadings:
    """NIBP readings as parallel arrays, sorted by time.

    ``ts_us`` int64 (µs since the epoch, UTC); ``sys``, ``dia``, ``map`` mmHg and ``pr``
    bpm as float64 (NaN: not sent); ``device_ok`` False when the device marked a value
    QUESTIONABLE; ``device_id`` uint64 (0 when unknown).
    """

    ts_us: np.ndarray
    sys: np.ndarray
    dia: np.ndarray
    map: np.ndarray
    pr: np.ndarray
    device_ok: np.ndarray
    device_id: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_us)

    def select(self, mask: np.ndarray) -> NIBPReadings:
        """The readings where the boolean ``mask`` is True (order kept)."""
        return NIBPReadings(self.ts_us[mask], self.sys[mask], self.dia[mask], self.map[mask],
                            self.pr[mask], self.device_ok[mask], self.device_id[mask])

    @classmethod
    def from_arrays(cls, ts_us: object, sys: object, dia: object, map: object | None = None,
                    pr: object | None = None, device_ok: object | None = None,
                    device_id: object | None = None) -> NIBPReadings:
        """Validate shapes and sort by time (NaN marks a value not sent)."""
        try:
            return cls._from_arrays(ts_us, sys, dia, map, pr, device_ok, device_id)
        except (TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, UsageError):
                raise
            raise UsageError(f"NIBP readings: {exc}") from exc

    @classmethod
    def _from_arrays(cls, ts_us: object, sys: object, dia: object, map: object | None,
                     pr: object | None, device_ok: object | None,
                     device_id: object | None) -> NIBPReadings:
        t = np.asarray(ts_us)
        if t.ndim != 1 or not (t.size == 0 or np.issubdtype(t.dtype, np.integer)):
            raise UsageError("ts_us must be a 1-D array of integer µs")
        t = t.astype(np.int64)
        n = len(t)
        nan = np.full(n, np.nan)
        ok = np.ones(n, bool) if device_ok is None else np.asarray(device_ok, bool)
        dev = np.zeros(n, np.uint64) if device_id is None else np.asarray(device_id, np.uint64)
        if ok.shape != (n,) or dev.shape != (n,):
            raise UsageError("device_ok and device_id must be 1-D of the same length as ts_us")
        cols = [_f64("sys", sys, n), _f64("dia", dia, n),
                nan if map is None else _f64("map", map, n),
                nan.copy() if pr is None else _f64("pr", pr, n)]
        o = np.argsort(t, kind="stable")
        return cls(t[o], cols[0][o], cols[1][o], cols[2][o], cols[3][o], ok[o], dev[o])

    @classmethod
    def from_numerics(cls, table: pa.Table) -> NIBPReadings:
        """Readings from numeric rows (``Store.read_numerics``: device_id, ts_us, code,
        status, value), one per (device, ts_us) with a NIBP code; other codes are ignored.
        A code repeated within one reading keeps its last row."""
        need = {"device_id", "ts_us", "code", "status", "value"}
        if not need.issubset(table.column_names):
            raise UsageError(f"a numerics table needs columns {sorted(need)}, "
                             f"got {table.column_names}")
        code = table["code"].to_numpy(zero_copy_only=False).astype(np.int64)
        keep = np.isin(code, np.asarray(NIBP_CODES, np.int64))
        dev = table["device_id"].to_numpy(zero_copy_only=False).astype(np.uint64)[keep]
        ts = table["ts_us"].to_numpy(zero_copy_only=False).astype(np.int64)[keep]
        status = table["status"].to_numpy(zero_copy_only=False).astype(np.int64)[keep]
        value = table["value"].to_numpy(zero_copy_only=False).astype(np.float64)[keep]
        code = code[keep]
        keys = np.stack([dev.view(np.int64), ts])
        uniq, idx = np.unique(keys, axis=1, return_inverse=True)
        idx = idx.reshape(-1)
        m = uniq.shape[1]
        cols = {c: np.full(m, np.nan) for c in NIBP_CODES}
        ok = np.ones(m, bool)
        for c in NIBP_CODES:
            rows = np.flatnonzero(code == c)
            cols[c][idx[rows]] = np.where(status[rows] == NumericStatus.UNAVAILABLE, np.nan,
                                          value[rows])  # later rows win
        flagged = status == NumericStatus.QUESTIONABLE
        ok[np.unique(idx[flagged])] = False
        return cls.from_arrays(uniq[1], cols[NumericCode.NIBP_SYS], cols[NumericCode.NIBP_DIA],
                               cols[NumericCode.NIBP_MAP], cols[NumericCode.NIBP_PR], ok,
                               uniq[0].view(np.uint64))


def _reasons(r: NIBPReadings, c: ValidityCriteria) -> np.ndarray:
    """Index into INVALID_REASONS + 1 of each reading's first failed check, 0 if valid."""
    out = np.zeros(len(r), np.int8)
    with np.errstate(invalid="ignore"):
        pp = r.sys - r.dia
        checks = [
            ~r.device_ok if c.device_flags else np.zeros(len(r), bool),
            ~np.isfinite(r.sys) | ~np.isfinite(r.dia),
            (r.sys < c.sys_mmhg[0]) | (r.sys > c.sys_mmhg[1]),
            (r.dia < c.dia_mmhg[0]) | (r.dia > c.dia_mmhg[1]),
            (r.dia >= r.sys) | (np.isfinite(r.map) & ((r.map < r.dia) | (r.map > r.sys))),
            (pp < c.pulse_pressure_mmhg[0]) | (pp > c.pulse_pressure_mmhg[1]),
            np.isfinite(r.pr) & ((r.pr < c.pr_bpm[0]) | (r.pr > c.pr_bpm[1])),
        ]
    for k in range(len(checks) - 1, -1, -1):  # the first failing check wins
        out[checks[k]] = k + 1
    return out


# -- the report -----------------------------------------------------------------------------
def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


class PeriodStats(NamedTuple):
    """Means of one period's valid readings (``None`` when there are none)."""

    n: int  #: valid readings
    sys: float | None  #: mmHg
    dia: float | None  #: mmHg
    map: float | None  #: mmHg, over the readings that carry a MAP (``n_map``)
    pr: float | None  #: bpm, over the readings that carry a pulse rate (``n_pr``)
    n_map: int
    n_pr: int


class Load(NamedTuple):
    """% of a period's valid readings above its thresholds (``None`` when n = 0)."""

    n: int
    sys_pct: float | None
    dia_pct: float | None
    any_pct: float | None  #: systolic or diastolic above


class Extreme(NamedTuple):
    value: float  #: mmHg
    ts_us: int


class HourStats(NamedTuple):
    """Valid readings taken in one local clock hour (``hour``..``hour``:59)."""

    hour: int
    n: int
    sys: float | None
    dia: float | None
    map: float | None
    pr: float | None


@dataclass(frozen=True)
class ABPMReport:
    """The computed report; every figure in mmHg, bpm or %. See the module docstring.

    ``readings`` holds every reading in the range with its ``reason`` (0 valid, else
    index into :data:`INVALID_REASONS` + 1) and ``period`` (1 day, 2 night, 0 neither).
    """

    tz: str
    t0_us: int
    t1_us: int
    config: ABPMConfig
    periods_from: str  #: "clock windows" or "sleep diary"
    readings: NIBPReadings
    reason: np.ndarray
    period: np.ndarray
    n_expected: int | None
    n_valid: int
    valid_pct: float | None  #: of n_expected, else of the readings received
    invalid: dict[str, int]  #: readings per invalidity reason
    day: PeriodStats
    night: PeriodStats
    h24: PeriodStats
    dipping_sys_pct: float | None
    dipping_dia_pct: float | None
    dipping_class: str
    load_day: Load
    load_night: Load
    load_24h: Load
    extremes: dict[str, Extreme]  #: "sys_max", "sys_min", "dia_max", "dia_min"
    hourly: list[HourStats]
    adequate: bool
    notes: list[str]  #: why the recording is not adequate, in words

    @property
    def n_readings(self) -> int:
        return len(self.readings)


def classify_dipping(dipping_pct: float | None) -> str:
    """Dipping class of a systolic dipping % (``None``: "insufficient data")."""
    if dipping_pct is None or not np.isfinite(dipping_pct):
        return "insufficient data"
    if dipping_pct >= 20:
        return "extreme dipper"
    if dipping_pct >= 10:
        return "dipper"
    if dipping_pct >= 0:
        return "non-dipper"
    return "reverse dipper"


def _stats(r: NIBPReadings, sel: np.ndarray) -> PeriodStats:
    return PeriodStats(int(sel.sum()), _mean(r.sys[sel]), _mean(r.dia[sel]), _mean(r.map[sel]),
                       _mean(r.pr[sel]), int(np.isfinite(r.map[sel]).sum()),
                       int(np.isfinite(r.pr[sel]).sum()))


def _pct(k: int, n: int) -> float | None:
    return 100.0 * k / n if n else None


def _load(r: NIBPReadings, sel: np.ndarray, thr_s: np.ndarray, thr_d: np.ndarray) -> Load:
    n = int(sel.sum())
    hi_s = r.sys[sel] > thr_s[sel]
    hi_d = r.dia[sel] > thr_d[sel]
    return Load(n, _pct(int(hi_s.sum()), n), _pct(int(hi_d.sum()), n),
                _pct(int((hi_s | hi_d).sum()), n))


def _dip(day: float | None, night: float | None) -> float | None:
    return None if day is None or night is None or day <= 0 else 100.0 * (day - night) / day


def _local_minutes_hours(ts_us: np.ndarray, zone: ZoneInfo) -> tuple[np.ndarray, np.ndarray]:
    loc = [(_EPOCH + timedelta(microseconds=int(t))).astimezone(zone) for t in ts_us]
    mins = np.array([d.hour * 60 + d.minute + d.second / 60 for d in loc], np.float64)
    return mins, np.array([d.hour for d in loc], np.int64)


def _sleep_mask(ts_us: np.ndarray, sleep: Sequence[tuple[int, int]]) -> np.ndarray:
    asleep = np.zeros(len(ts_us), bool)
    for k, span in enumerate(sleep):
        try:
            a, b = (int(v) for v in span)
        except (TypeError, ValueError):
            raise UsageError(f"sleep[{k}] must be (start_us, end_us), got {span!r}") from None
        if not a < b:
            raise UsageError(f"sleep[{k}] must have start_us < end_us, got {span!r}")
        asleep |= (ts_us >= a) & (ts_us < b)
    return asleep


def abpm_report(readings: NIBPReadings | pa.Table, tz: str, *, t0_us: int | None = None,
                t1_us: int | None = None, config: ABPMConfig | None = None,
                sleep: Sequence[tuple[int, int]] | None = None,
                n_expected: int | None = None) -> ABPMReport:
    """Compute the ABPM report of the readings in ``[t0_us, t1_us)``.

    Parameters
    ----------
    readings : NIBPReadings or pyarrow.Table
        Readings, or numeric rows as ``Store.read_numerics`` returns them.
    tz : str
        IANA time zone of the patient (clock windows, hourly profile).
    t0_us, t1_us : int, optional
        The monitored range (µs since the epoch, UTC); default the readings' own span.
    config : ABPMConfig, optional
    sleep : sequence of (start_us, end_us), optional
        Patient-reported sleep periods: readings inside one are night, all others day
        (replaces the clock windows).
    n_expected : int, optional
        Measurements scheduled in the range (e.g. the schedule's issued rounds); the
        valid-reading rate is relative to it, else to the readings received.

    Returns
    -------
    ABPMReport
        Never raises for few or no readings: statistics of empty sets are ``None``,
        ``adequate`` is False and ``notes`` say why.

    Raises
    ------
    UsageError
        An unknown time zone, ``t0_us >= t1_us``, a malformed sleep period, a negative
        ``n_expected``, or readings that are neither a NIBPReadings nor a numerics table.
    """
    cfg = config if config is not None else ABPMConfig()
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise UsageError(f"unknown time zone {tz!r}") from exc
    if isinstance(readings, pa.Table):
        readings = NIBPReadings.from_numerics(readings)
    if not isinstance(readings, NIBPReadings):
        raise UsageError("readings must be NIBPReadings or a numerics pyarrow.Table")
    if n_expected is not None and (isinstance(n_expected, bool) or int(n_expected) < 0):
        raise UsageError(f"n_expected must be an int >= 0, got {n_expected!r}")
    ts = readings.ts_us
    lo = int(t0_us) if t0_us is not None else (int(ts[0]) if len(ts) else 0)
    hi = int(t1_us) if t1_us is not None else (int(ts[-1]) + 1 if len(ts) else 1)
    if not lo < hi:
        raise UsageError(f"empty time range: t0_us {lo} >= t1_us {hi}")
    inside = (ts >= lo) & (ts < hi)
    r = readings.select(inside)
    reason = _reasons(r, cfg.criteria)
    valid = reason == 0
    mins, hours = _local_minutes_hours(r.ts_us, zone)
    if sleep is not None:
        night_m = _sleep_mask(r.ts_us, sleep)
        day_m = ~night_m
        periods_from = "sleep diary"
    else:
        day_m, night_m = _in_window(mins, cfg.day), _in_window(mins, cfg.night)
        periods_from = "clock windows"
    period = np.where(day_m, 1, np.where(night_m, 2, 0)).astype(np.int8)
    vd, vn = valid & day_m, valid & night_m
    day, night, h24 = _stats(r, vd), _stats(r, vn), _stats(r, valid)
    thr_s = np.where(day_m, cfg.day_threshold[0], cfg.night_threshold[0])
    thr_d = np.where(day_m, cfg.day_threshold[1], cfg.night_threshold[1])
    n_valid = int(valid.sum())
    denom = len(r) if n_expected is None else int(n_expected)
    valid_pct = _pct(n_valid, denom)
    dip_s, dip_d = _dip(day.sys, night.sys), _dip(day.dia, night.dia)
    notes = []
    if n_valid == 0:
        notes.append("no valid reading in the range")
    if valid_pct is None or valid_pct < cfg.min_valid_pct:
        notes.append(f"valid readings {_fmt_pct(valid_pct)} of "
                     f"{'expected' if n_expected is not None else 'received'} "
                     f"(need >= {cfg.min_valid_pct:g} %)")
    if day.n < cfg.min_day:
        notes.append(f"{day.n} valid day readings (need >= {cfg.min_day})")
    if night.n < cfg.min_night:
        notes.append(f"{night.n} valid night readings (need >= {cfg.min_night})")
    enough = day.n >= cfg.min_day and night.n >= cfg.min_night
    extremes: dict[str, Extreme] = {}
    if n_valid:
        for name, col in (("sys", r.sys), ("dia", r.dia)):
            v = np.where(valid, col, np.nan)
            for kind, i in (("max", int(np.nanargmax(v))), ("min", int(np.nanargmin(v)))):
                extremes[f"{name}_{kind}"] = Extreme(float(col[i]), int(r.ts_us[i]))
    hourly = []
    for h in range(24):
        sel = valid & (hours == h)
        s = _stats(r, sel)
        hourly.append(HourStats(h, s.n, s.sys, s.dia, s.map, s.pr))
    return ABPMReport(
        tz=tz, t0_us=lo, t1_us=hi, config=cfg, periods_from=periods_from, readings=r,
        reason=reason, period=period, n_expected=None if n_expected is None else int(n_expected),
        n_valid=n_valid, valid_pct=valid_pct,
        invalid={name: int((reason == k + 1).sum()) for k, name in enumerate(INVALID_REASONS)},
        day=day, night=night, h24=h24, dipping_sys_pct=dip_s, dipping_dia_pct=dip_d,
        dipping_class=classify_dipping(dip_s) if enough else "insufficient data",
        load_day=_load(r, vd, thr_s, thr_d), load_night=_load(r, vn, thr_s, thr_d),
        load_24h=_load(r, vd | vn, thr_s, thr_d), extremes=extremes, hourly=hourly,
        adequate=not notes, notes=notes,
    )


def _fmt_pct(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.0f} %"

