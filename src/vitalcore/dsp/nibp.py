"""Oscillometric non-invasive blood pressure from the cuff pressure of one deflation.

Maximum-amplitude algorithm with fixed characteristic ratios:

1. the deflation runs from the pressure maximum to where the cuff falls below
   ``stop_mmhg`` (or the end); the cuff baseline is a centred 2 s moving average, the
   oscillation signal is pressure minus baseline, smoothed over 40 ms;
2. oscillation pulses are local maxima at least 0.3 s apart (<= 200 bpm); each pulse's
   amplitude is peak minus the preceding minimum (mmHg), its cuff pressure the baseline
   at the peak;
3. artefacts: a pulse whose amplitude is more than 1.8x or less than 0.4x the median of
   its +/-2 neighbours, or whose interval differs by more than 40 % from the median
   interval, is rejected; more than 30 % rejected -> ``motion``;
4. the envelope (amplitude over cuff pressure, 3-point median then 3-point mean) peaks at
   the mean arterial pressure (MAP; refined by a parabola through the peak and its
   neighbours);
5. systolic: the pressure above MAP where the envelope falls to ``ks`` (0.55) of the
   peak; diastolic: the pressure below MAP where it falls to ``kd`` (0.75) of the peak,
   both by linear interpolation. Ratios after Geddes et al. (1982) and the review by
   Forouzanfar et al., IEEE Rev. Biomed. Eng. 2015 (Ks 0.45-0.73, Kd 0.69-0.83); a
   device maker validates its own per cuff/population (ISO 81060-2) and passes them;
6. failure reasons: ``bad_signal`` (NaN/inf), ``not_inflated`` (max < 40 mmHg),
   ``cuff_leak`` (median deflation faster than ``max_deflate_mmhg_s``),
   ``no_oscillations`` (fewer than 6 pulses or the 3 largest under 0.5 mmHg),
   ``motion`` (also when over 15 % of the pulses were rejected and the envelope then
   gives no valid result), ``out_of_range`` (an end of the envelope not reached, or
   SBP/DBP outside 40-280 / 20-200 mmHg, or DBP >= MAP >= SBP).

Plain numpy (one deflation is at most a few thousand samples; nothing here is hot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vitalcore.dsp.qrs import _as_1d, _check_fs
from vitalcore.errors import UsageError

__all__ = ["NIBPResult", "estimate_nibp", "NIBP_REASONS"]

NIBP_REASONS = ("ok", "bad_signal", "not_inflated", "cuff_leak", "no_oscillations", "motion",
                "out_of_range")
"""Possible :attr:`NIBPResult.reason` values."""


@dataclass(frozen=True, slots=True)
class NIBPResult:
    """Outcome of one oscillometric measurement.

    Attributes
    ----------
    ok : bool
        True when the pressures are valid; otherwise they are NaN.
    reason : str
        ``"ok"`` or a failure reason from :data:`NIBP_REASONS`.
    systolic, diastolic, mean : float
        Arterial pressures in mmHg.
    pulse_rate : float
        Pulse rate from the oscillations, bpm (NaN if not found).
    n_pulses : int
        Oscillation pulses used for the envelope.
    deflation_rate : float
        Median deflation rate, mmHg/s.
    """

    ok: bool
    reason: str
    systolic: float = math.nan
    diastolic: float = math.nan
    mean: float = math.nan
    pulse_rate: float = math.nan
    n_pulses: int = 0
    deflation_rate: float = math.nan


def _movavg(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average of odd length ``n`` with edge values repeated."""
    n = max(1, n | 1)
    pad = np.pad(x, n // 2, mode="edge")
    c = np.cumsum(np.concatenate([[0.0], pad]))
    return (c[n:] - c[:-n]) / n


def _crossing(p: np.ndarray, env: np.ndarray, i0: int, level: float, step: int) -> float:
    """Cuff pressure where ``env`` falls below ``level`` walking from ``i0`` by ``step``."""
    i = i0
    while 0 <= i + step < env.size:
        j = i + step
        if env[j] < level:
            f = (env[i] - level) / (env[i] - env[j])
            return float(p[i] + f * (p[j] - p[i]))
        i = j
    return math.nan


def estimate_nibp(pressure_mmhg: object, fs: float, *, ks: float = 0.55, kd: float = 0.75,
                  stop_mmhg: float = 20.0, max_deflate_mmhg_s: float = 10.0) -> NIBPResult:
    """Systolic, diastolic and mean pressure (mmHg) and pulse rate from a cuff deflation.

    Parameters
    ----------
    pressure_mmhg : array_like, 1-D
        Cuff pressure in mmHg covering one deflation (inflation may precede it).
    fs : float
        Sampling rate in Hz, 20-1000.
    ks, kd : float
        Systolic and diastolic characteristic ratios (0-1).
    stop_mmhg : float
        Pressure below which the deflation is considered finished, mmHg.
    max_deflate_mmhg_s : float
        Faster median deflation is reported as ``cuff_leak`` (mmHg/s).

    Returns
    -------
    NIBPResult
        ``ok`` with the pressures, or ``ok=False`` and a ``reason``; never raises for
        bad signal content.

    Raises
    ------
    vitalcore.errors.UsageError
        Not 1-D numeric, ``fs`` outside 20-1000 Hz, ratios outside (0, 1), or shorter
        than 2 s.

    Examples
    --------
    >>> from vitalcore.dsp import estimate_nibp, simulate_cuff_deflation
    >>> p = simulate_cuff_deflation(125, 82, hr=70, fs=100, seed=4)
    >>> r = estimate_nibp(p, 100)
    >>> r.ok, abs(r.systolic - 125) < 8
    (True, True)
    """
    fs = _check_fs(fs, 20.0, 1000.0)
    p = _as_1d(pressure_mmhg, "pressure_mmhg")
    if not (0 < ks < 1 and 0 < kd < 1):
        raise UsageError("ks and kd must be within (0, 1)")
    if p.size < 2 * fs:
        raise UsageError(f"need at least 2 s of cuff pressure, got {p.size / fs:.2f} s")
    if not np.all(np.isfinite(p)):
        return NIBPResult(False, "bad_signal")
    top = int(np.argmax(p))
    if p[top] < 40.0:
        return NIBPResult(False, "not_inflated")
    below = np.flatnonzero(p[top:] < stop_mmhg)
    end = top + (int(below[0]) if below.size else p.size - top)
    seg = p[top:end]
    if seg.size < 4 * fs:
        rate = (p[top] - stop_mmhg) / max(seg.size / fs, 1.0 / fs)
        reason = "cuff_leak" if rate > max_deflate_mmhg_s else "no_oscillations"
        return NIBPResult(False, reason, deflation_rate=rate)
    base = _movavg(seg, int(2.0 * fs))
    slope = -np.diff(base) * fs
    inner = slope[int(fs):-int(fs)] if slope.size > 2 * fs + 2 else slope
    rate = float(np.median(inner))
    if rate > max_deflate_mmhg_s:
        return NIBPResult(False, "cuff_leak", deflation_rate=rate)
    osc = _movavg(seg - base, int(0.04 * fs))
    # pulses: local maxima >= 0.3 s apart, highest first wins within the distance
    dist = int(0.3 * fs)
    cand = np.flatnonzero((osc[1:-1] > osc[:-2]) & (osc[1:-1] >= osc[2:])) + 1
    cand = cand[np.argsort(-osc[cand], kind="stable")]
    taken = np.zeros(seg.size, dtype=bool)
    peaks = []
    for c in cand.tolist():
        if not taken[max(c - dist, 0):c + dist].any():
            peaks.append(c)
            taken[c] = True
    pk = np.sort(np.asarray(peaks, dtype=np.int64))
    if pk.size < 6:
        return NIBPResult(False, "no_oscillations", deflation_rate=rate)
    amps = np.empty(pk.size)
    prev = 0
    for j, c in enumerate(pk.tolist()):
        lo = max(prev, c - int(0.6 * fs))
        amps[j] = osc[c] - osc[lo:c + 1].min()
        prev = c
    # keep the pulses of the deflation proper (drop the initial hold/edge) and big enough
    keep = amps > 0.2 * np.percentile(amps, 90)
    pk, amps = pk[keep], amps[keep]
    if pk.size < 6 or np.median(np.sort(amps)[-3:]) < 0.5:
        return NIBPResult(False, "no_oscillations", deflation_rate=rate, n_pulses=int(pk.size))
    # artefact rejection
    med_amp = np.array([np.median(amps[max(j - 2, 0):j + 3]) for j in range(amps.size)])
    iv = np.diff(pk).astype(np.float64)
    med_iv = float(np.median(iv))
    bad = (amps > 1.8 * med_amp) | (amps < 0.4 * med_amp)
    bad[1:] |= np.abs(iv - med_iv) > 0.4 * med_iv
    if bad.mean() > 0.3:
        return NIBPResult(False, "motion", deflation_rate=rate, n_pulses=int(pk.size))
    fail = "motion" if bad.mean() > 0.15 else "out_of_range"
    pk, amps = pk[~bad], amps[~bad]
    pr = 60.0 * fs / med_iv
    cuff = base[pk]
    env = amps.copy()
    if env.size >= 3:
        med3 = np.median(np.stack([np.r_[env[0], env[:-1]], env, np.r_[env[1:], env[-1]]]), 0)
        env = _movavg(med3, 3)
    i = int(np.argmax(env))
    if i == 0 or i == env.size - 1:
        return NIBPResult(False, fail, pulse_rate=pr, n_pulses=int(pk.size),
                          deflation_rate=rate)
    y0, y1, y2 = env[i - 1], env[i], env[i + 1]
    den = y0 - 2 * y1 + y2
    off = 0.5 * (y0 - y2) / den if den < 0 else 0.0
    off = float(np.clip(off, -1.0, 1.0))
    nb = i + 1 if off > 0 else i - 1
    mean_p = float(cuff[i] + abs(off) * (cuff[nb] - cuff[i]))
    amax = float(y1)
    # cuff pressure falls with the pulse index: systolic side is towards index 0
    sys_p = _crossing(cuff, env, i, ks * amax, -1)
    dia_p = _crossing(cuff, env, i, kd * amax, +1)
    ok = (math.isfinite(sys_p) and math.isfinite(dia_p) and 40 <= sys_p <= 280
          and 20 <= dia_p <= 200 and dia_p < mean_p < sys_p)
    if not ok:
        return NIBPResult(False, fail, pulse_rate=pr, n_pulses=int(pk.size),
                          deflation_rate=rate)
    return NIBPResult(True, "ok", sys_p, dia_p, mean_p, pr, int(pk.size), rate)
