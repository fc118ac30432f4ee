"""SpO2, pulse rate and perfusion index from red and infrared PPG (streaming, numba).

Method
------
Both channels are band-passed 0.5-5 Hz (4th-order Butterworth-squared high-pass against
respiratory baseline swings, then 2nd-order low-pass)
to give the pulsatile part (AC); the DC part is the window mean of the raw intensity.
Every ``hop_s`` the last ``window_s`` are evaluated:

* ratio of ratios ``R = (AC_red / DC_red) / (AC_ir / DC_ir)``, with ``AC_red / AC_ir``
  the least-squares slope of red AC on IR AC (robust to noise that is uncorrelated
  between channels); ``rho`` is their correlation coefficient;
* ``SpO2 = a + b R + c R^2`` (%) with ``calibration = (a, b, c)``; the default
  ``(110, -25, 0)`` is the textbook linear approximation (Webster, *Design of Pulse
  Oximeters*, 1997).  It is NOT a device calibration: a device maker calibrates each
  probe design (LED wavelengths, geometry) against arterial blood gases in a
  desaturation study (ISO 80601-2-61) and passes its own curve;
* pulses (see :mod:`vitalcore.dsp._ppgpulse`): systolic upstrokes found with the slope sum
  function (Zong et al. 2003) of the 5 Hz low-passed IR signal (no high-pass: the 0.5 Hz
  one distorts pulses slower than 60 bpm), adaptive threshold 0.4 x the running SSF pulse
  level, 0.2 s hard refractory period and dicrotic-wave rejection within
  ``max(0.6 x median interval, 0.36 s)`` of a pulse (a late wave with under half the
  pulse's upstroke); pulse rate = 60 / mean interval.  Pulses are positive-going (blood
  volume up), as in displayed pleth and the simulator;
* perfusion index ``PI = mean pulse amplitude / DC_ir x 100`` (%).

A window is *valid* when none of these flags is set: ``BAD_SAMPLES`` (NaN/inf or a flat
run, probe off / saturation), ``NO_PULSE`` (fewer than 2 pulses or PI < 0.05 %),
``LOW_CORRELATION`` (rho < 0.9: motion or noise), ``MOTION`` (any of: PI > 20 %; pulse
interval CV > 0.25; the red/IR AC slopes of the 1-hop pieces dispersed by more than 1 %
SpO2 (SD weighted by each hop's IR AC energy, converted with the calibration slope); the
pulses' mean correlation with their ensemble-average template < 0.86 (Orphanidou et al.
2015); the template's SpO2 more than 1 % from the window's; under 80 % of the IR AC power
near the pulse-rate harmonics), ``OUT_OF_RANGE`` (SpO2 outside 50-102 % or R <= 0, or
DC <= 0; values up to 102 % are reported as 100 %).
Invalid windows carry their numbers but must not be displayed as SpO2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from vitalcore.dsp._ppgpulse import (
    _A1,
    _CAND,
    _CAND_IDX,
    _DELAY,
    _HARD_REFR,
    _HARD_REFR_S,
    _LAST_PULSE,
    _N,
    _N_PB,
    _PB_LEN,
    _PEAK_IDX,
    _TMIN,
    _W,
    _harmonic_fraction,
    _pulse_step,
    _template_sqi,
)
from vitalcore.dsp.qrs import _as_1d, _biquad, _check_fs, _locate_delay
from vitalcore.errors import UsageError

__all__ = ["SpO2Estimator", "SpO2Result", "estimate_spo2", "SPO2_FLAGS"]

BAD_SAMPLES, NO_PULSE, LOW_CORRELATION, MOTION, OUT_OF_RANGE = 1, 2, 4, 8, 16
SPO2_FLAGS = {"BAD_SAMPLES": BAD_SAMPLES, "NO_PULSE": NO_PULSE,
              "LOW_CORRELATION": LOW_CORRELATION, "MOTION": MOTION,
              "OUT_OF_RANGE": OUT_OF_RANGE}
"""Quality flag bits of :attr:`SpO2Result.flags`."""

# float state (slots 22-30 belong to the pulse detector, see _ppgpulse)
_HP, _LP = 0, 5  # 5 coefficients each
_ZR, _ZI = 10, 16  # hp z1 z2 (twice), lp z1 z2 per channel
_LAST_R, _LAST_I, _CA, _CB, _CC = range(31, 36)
_ZD = 36  # lp z1 z2 of the pulse-detection path (IR low-passed only)
_NF = 38
# integer state (slots 0-13 belong to the pulse detector)
_HOP, _K, _HOPS_SEEN, _FLAT_RUN, _FLAT_MIN, _FIRST = range(14, 20)
_NI = 20
# per-hop accumulators
_H_SR, _H_SI, _H_RI, _H_II, _H_RR, _H_BAD, _H_NP, _H_AMP, _H_INT, _H_INT2, _H_N = range(11)
_H_COLS = 11
_ROW_COLS = 9  # end sample, spo2, ratio, pr, pi, rho, flags, pulse-shape SQI, purity

_HOP_DISPERSION = 1.0  # max SD (% SpO2) of the 1-hop red/IR slopes, energy-weighted
_SQI_MIN = 0.86  # pulse/template correlation (Orphanidou et al. 2015)
_TEMPLATE_DEV = 1.0  # max SpO2 difference (%) of the template and raw-window estimates
_PURITY_MIN = 0.8  # IR AC power fraction near the pulse-rate harmonics


@numba.njit(cache=True, nogil=True)
def _window_row(hops, acbuf, pbuf, fs, sf, si, end, row):  # pragma: no cover - compiled
    """Evaluate the window made of all hop accumulators into ``row``."""
    tot = hops.sum(axis=0)
    flags = 0
    if tot[_H_BAD] > 0:
        flags |= BAD_SAMPLES
    nn = max(tot[_H_N], 1.0)
    dc_r = tot[_H_SR] / nn
    dc_i = tot[_H_SI] / nn
    ratio = np.nan
    rho = 0.0
    spo2 = np.nan
    mk = 0.0
    if dc_r > 0 and dc_i > 0 and tot[_H_II] > 0 and tot[_H_RR] > 0:
        mk = tot[_H_RI] / tot[_H_II]
        rho = tot[_H_RI] / math.sqrt(tot[_H_II] * tot[_H_RR])
        ratio = mk * dc_i / dc_r
        spo2 = sf[_CA] + sf[_CB] * ratio + sf[_CC] * ratio * ratio
    if not (ratio > 0 and 50.0 <= spo2 <= 102.0):
        flags |= OUT_OF_RANGE
    spo2_raw = spo2
    spo2 = min(spo2, 100.0)
    if rho < 0.9:
        flags |= LOW_CORRELATION
    n_int = tot[_H_NP]
    pr = np.nan
    pi = 0.0
    if n_int >= 2:
        mean_int = tot[_H_INT] / n_int
        pr = 60.0 * fs / mean_int
        cv = math.sqrt(max(tot[_H_INT2] / n_int - mean_int * mean_int, 0.0)) / mean_int
        pi = tot[_H_AMP] / n_int / dc_i * 100.0 if dc_i > 0 else 0.0
        if cv > 0.25 or pi > 20.0:
            flags |= MOTION
    # motion: the red/IR AC slope of the single hops must agree (clean pulses keep R),
    # Each hop's slope is weighted by its IR AC energy: a 1 s hop that holds only the
    # flat part of a slow pulse (HR < 60) has an ill-determined slope and little weight.
    sw = 0.0
    for j in range(hops.shape[0]):
        if hops[j, _H_II] > 0:
            kj = hops[j, _H_RI] / hops[j, _H_II]
            sw += hops[j, _H_II] * (kj - mk) * (kj - mk)
    # in SpO2 units (|dSpO2/dR| x R x relative slope SD): a fixed relative tolerance
    # would allow 2.7x more SpO2 error at R = 1.6 (70 %) than at R = 0.6 (95 %)
    gain = abs(sf[_CB] + 2.0 * sf[_CC] * ratio) * ratio
    if mk <= 0 or not gain * math.sqrt(sw / tot[_H_II]) / mk <= _HOP_DISPERSION:
        flags |= MOTION
    # motion: pulse shapes must match their ensemble average, and the ratio of the
    # ensemble average (artefact not synchronous with the pulse averaged out) must
    # agree with the ratio of the raw window
    sqi, kt, interval = _template_sqi(acbuf, pbuf, si[_N_PB], end, acbuf.shape[1])
    spo2_t = np.nan
    if dc_r > 0 and dc_i > 0:
        r_t = kt * dc_i / dc_r
        spo2_t = sf[_CA] + sf[_CB] * r_t + sf[_CC] * r_t * r_t
    if not (sqi >= _SQI_MIN and abs(spo2_t - spo2_raw) <= _TEMPLATE_DEV):
        flags |= MOTION
    purity = _harmonic_fraction(acbuf, end, interval, int(5.0 * acbuf.shape[1] / fs),
                                int(fs // 25.0))
    if not purity >= _PURITY_MIN:
        flags |= MOTION
    if n_int < 2 or pi < 0.05:
        flags |= NO_PULSE
    row[0] = end
    row[1] = spo2
    row[2] = ratio
    row[3] = pr
    row[4] = pi
    row[5] = rho
    row[6] = flags
    row[7] = sqi
    row[8] = purity


@numba.njit(cache=True, nogil=True, inline="always")
def _biquad_step(sf, c, z, x):  # pragma: no cover - compiled
    """One sample through the biquad with coefficients ``sf[c:c+5]``, memory ``sf[z:z+2]``."""
    y = sf[c] * x + sf[z]
    sf[z] = sf[c + 1] * x - sf[c + 3] * y + sf[z + 1]
    sf[z + 1] = sf[c + 2] * x - sf[c + 4] * y
    return y


@numba.njit(cache=True, nogil=True, inline="always")
def _bandpass(sf, z, x):  # pragma: no cover - compiled
    """4th-order high-pass (two biquads) then 2nd-order low-pass; memory ``sf[z:z+6]``."""
    h = _biquad_step(sf, _HP, z, x)
    h = _biquad_step(sf, _HP, z + 2, h)
    return _biquad_step(sf, _LP, z + 4, h)


@numba.njit(cache=True, nogil=True)
def _spo2_kernel(red, ir, sf, si, hops, ring, acbuf, pbuf, rows, pulses,
                 fs):  # pragma: no cover - compiled
    """Feed paired samples; returns (window rows written, pulses written)."""
    n_rows = 0
    n_pulses = 0
    hop = si[_HOP]
    k = si[_K]
    width = acbuf.shape[1]
    n = si[_N]
    for i in range(red.shape[0]):
        slot = (n // hop) % k
        if n % hop == 0:
            hops[slot, :] = 0.0
        r = red[i]
        v = ir[i]
        bad = False
        if not (math.isfinite(r) and math.isfinite(v)):
            r, v = sf[_LAST_R], sf[_LAST_I]
            bad = True
        if r == sf[_LAST_R] and v == sf[_LAST_I]:
            si[_FLAT_RUN] += 1
            if si[_FLAT_RUN] >= si[_FLAT_MIN]:
                bad = True
        else:
            si[_FLAT_RUN] = 0
        sf[_LAST_R], sf[_LAST_I] = r, v
        if not math.isfinite(r):  # nothing finite seen yet
            r = v = 0.0
            bad = True
        elif si[_FIRST] == 0:  # start the high-pass settled on the first level: no transient
            si[_FIRST] = 1
            sf[_ZR], sf[_ZR + 1] = -sf[_HP] * r, sf[_HP + 2] * r
            sf[_ZI], sf[_ZI + 1] = -sf[_HP] * v, sf[_HP + 2] * v
            sf[_ZD], sf[_ZD + 1] = (1.0 - sf[_LP]) * v, (sf[_LP + 2] - sf[_LP + 4]) * v
            sf[_A1] = v
        a_r = _bandpass(sf, _ZR, r)  # identical band-pass on both channels
        a_i = _bandpass(sf, _ZI, v)
        acbuf[0, n % width] = a_i
        acbuf[1, n % width] = a_r
        hp_ = hops[slot]
        hp_[_H_SR] += r
        hp_[_H_SI] += v
        hp_[_H_RI] += a_r * a_i
        hp_[_H_II] += a_i * a_i
        hp_[_H_RR] += a_r * a_r
        hp_[_H_N] += 1.0
        if bad:
            hp_[_H_BAD] += 1.0
        # pulses from the low-passed IR: the slope sum needs no high-pass, and the 0.5 Hz
        # high-pass distorts pulses slower than 60 bpm (a ringing rebound after the notch)
        peak, dt, amp = _pulse_step(_biquad_step(sf, _LP, _ZD, v), n, sf, si, ring, fs)
        if peak >= 0:
            if dt > 0:
                d = float(dt)
                hp_[_H_NP] += 1.0
                hp_[_H_AMP] += amp
                hp_[_H_INT] += d
                hp_[_H_INT2] += d * d
            pbuf[si[_N_PB] % _PB_LEN] = peak
            si[_N_PB] += 1
            pulses[n_pulses] = max(peak - si[_DELAY], 0)
            n_pulses += 1
        n += 1
        si[_N] = n
        if n % hop == 0:
            si[_HOPS_SEEN] += 1
            if si[_HOPS_SEEN] >= k:
                _window_row(hops, acbuf, pbuf, fs, sf, si, n, rows[n_rows])
                n_rows += 1
    si[_N] = n
    return n_rows, n_pulses


@dataclass(frozen=True, slots=True)
class SpO2Result:
    """Per-window SpO2 figures and detected pulses.

    Attributes
    ----------
    end_index : numpy.ndarray of int64
        Sample index one past the end of each evaluated window.
    spo2 : numpy.ndarray of float64
        SpO2 in % per window (NaN when R could not be formed).
    ratio : numpy.ndarray of float64
        Ratio of ratios R per window (dimensionless).
    pulse_rate : numpy.ndarray of float64
        Pulse rate in bpm per window (NaN with fewer than 2 pulses).
    perfusion_index : numpy.ndarray of float64
        IR perfusion index in % per window.
    correlation : numpy.ndarray of float64
        Red/IR AC correlation coefficient per window.
    flags : numpy.ndarray of int64
        Quality flag bits per window (see :data:`SPO2_FLAGS`); 0 means valid.
    pulse_quality : numpy.ndarray of float64
        Pulse-shape SQI per window: mean correlation coefficient (-1 to 1) of the
        window's IR pulses with their ensemble average (NaN with fewer than 3 whole
        pulses); below 0.86 the window is flagged ``MOTION``.
    spectral_purity : numpy.ndarray of float64
        Fraction (0-1) of the window's IR AC power near the harmonics of its pulse rate
        (NaN with fewer than 4 pulses); below 0.8 the window is flagged ``MOTION``.
    pulse_indices : numpy.ndarray of int64
        Sample index of each detected pulse peak (IR), increasing.
    """

    end_index: np.ndarray
    spo2: np.ndarray
    ratio: np.ndarray
    pulse_rate: np.ndarray
    perfusion_index: np.ndarray
    correlation: np.ndarray
    flags: np.ndarray
    pulse_quality: np.ndarray
    spectral_purity: np.ndarray
    pulse_indices: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of windows with no quality flag."""
        return self.flags == 0

    def _median(self, a: np.ndarray) -> float:
        v = a[self.valid]
        return float(np.median(v)) if v.size else math.nan

    @property
    def spo2_median(self) -> float:
        """Median SpO2 (%) over valid windows (NaN if none)."""
        return self._median(self.spo2)

    @property
    def pulse_rate_median(self) -> float:
        """Median pulse rate (bpm) over valid windows (NaN if none)."""
        return self._median(self.pulse_rate)

    @property
    def perfusion_index_median(self) -> float:
        """Median perfusion index (%) over valid windows (NaN if none)."""
        return self._median(self.perfusion_index)


class SpO2Estimator:
    """Streaming SpO2 / pulse-rate / perfusion estimator for one red+IR probe.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz, 25-1000.
    window_s : float
        Evaluation window in s (4-30), a multiple of ``hop_s``.
    hop_s : float
        A new window row is produced every ``hop_s`` s (0.25-window_s).
    calibration : (a, b, c)
        ``SpO2 = a + b R + c R^2`` in %; default ``(110, -25, 0)`` (textbook linear
        curve; device makers pass their probe's curve).

    Notes
    -----
    :meth:`process` takes equally long red and IR chunks of any size and returns the
    windows completed by them; window boundaries are fixed on the absolute sample clock,
    so any chunking yields identical rows, and :func:`estimate_spo2` equals one call.
    """

    def __init__(self, fs: float, *, window_s: float = 8.0, hop_s: float = 1.0,
                 calibration: tuple[float, float, float] = (110.0, -25.0, 0.0)) -> None:
        self.fs = _check_fs(fs, 25.0, 1000.0)
        if not (0.25 <= hop_s <= window_s and 4.0 <= window_s <= 30.0):
            raise UsageError("need 0.25 <= hop_s <= window_s and 4 <= window_s <= 30 s")
        hop = int(round(hop_s * self.fs))
        k = int(round(window_s / hop_s))
        if abs(k * hop_s - window_s) > 1e-6 * window_s:
            raise UsageError("window_s must be a multiple of hop_s")
        cal = tuple(float(c) for c in calibration)
        if len(cal) != 3 or not all(math.isfinite(c) for c in cal):
            raise UsageError("calibration must be three finite numbers (a, b, c)")
        self.window_s, self.hop_s, self.calibration = float(window_s), float(hop_s), cal
        self._hop, self._k = hop, k
        self.reset()

    def reset(self) -> None:
        """Forget all state."""
        fs = self.fs
        hp, lp = _biquad("high", 0.5, fs), _biquad("low", 5.0, fs)
        sf = np.zeros(_NF)
        sf[_HP:_HP + 5], sf[_LP:_LP + 5] = hp, lp
        sf[_LAST_R] = sf[_LAST_I] = np.nan
        sf[_CAND] = -np.inf
        sf[_TMIN] = np.inf
        sf[_CA], sf[_CB], sf[_CC] = self.calibration
        si = np.zeros(_NI, dtype=np.int64)
        si[_CAND_IDX] = si[_PEAK_IDX] = si[_LAST_PULSE] = -1
        si[_HOP], si[_K] = self._hop, self._k
        si[_W] = max(int(round(0.128 * fs)), 3)  # SSF window (Zong et al. 2003)
        si[_HARD_REFR] = int(round(_HARD_REFR_S * fs))
        si[_FLAT_MIN] = int(round(0.5 * fs))
        si[_DELAY] = _locate_delay([lp], fs, width_s=0.09, signed=True)
        self._sf, self._si = sf, si
        self._hops = np.zeros((self._k, _H_COLS))
        self._ring = np.zeros(si[_W])
        self._acbuf = np.zeros((2, self._k * self._hop))
        self._pbuf = np.zeros(_PB_LEN, dtype=np.int64)

    def process(self, red: object, ir: object) -> SpO2Result:
        """Feed equally long red and IR chunks (intensity, any linear unit).

        Returns
        -------
        SpO2Result
            The windows completed during this call and the pulses decided in it.
        """
        r = _as_1d(red, "red")
        i = _as_1d(ir, "ir")
        if r.size != i.size:
            raise UsageError(f"red and ir differ in length ({r.size} != {i.size})")
        rows = np.empty((r.size // self._hop + 1, _ROW_COLS))
        pulses = np.empty(r.size // int(self._si[_HARD_REFR]) + 2, dtype=np.int64)
        nr, npl = _spo2_kernel(r, i, self._sf, self._si, self._hops, self._ring, self._acbuf,
                               self._pbuf, rows, pulses, self.fs)
        rows = rows[:nr]
        return SpO2Result(rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2], rows[:, 3],
                          rows[:, 4], rows[:, 5], rows[:, 6].astype(np.int64), rows[:, 7],
                          rows[:, 8], pulses[:npl])


def estimate_spo2(red: object, ir: object, fs: float, **kwargs: object) -> SpO2Result:
    """SpO2 (%), pulse rate (bpm) and perfusion index (%) from a red+IR recording.

    Parameters
    ----------
    red, ir : array_like, 1-D, same length
        Red and infrared light intensities (raw, with their DC level), any linear unit.
    fs : float
        Sampling rate in Hz, 25-1000.
    **kwargs
        ``window_s``, ``hop_s``, ``calibration``: see :class:`SpO2Estimator`.

    Returns
    -------
    SpO2Result
        One row per ``hop_s`` once ``window_s`` of data was seen; summary medians over
        valid windows in :attr:`SpO2Result.spo2_median` etc.

    Examples
    --------
    >>> from vitalcore.dsp import estimate_spo2, simulate_ppg
    >>> red, ir, _ = simulate_ppg(60.0, 100.0, spo2=92.0, hr=80.0, seed=3)
    >>> res = estimate_spo2(red, ir, 100.0)
    >>> abs(res.spo2_median - 92.0) < 2.0
    True
    """
    return SpO2Estimator(fs, **kwargs).process(red, ir)  # type: ignore[arg-type]
