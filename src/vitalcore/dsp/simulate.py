"""Physiological signal simulator with known ground truth (ECG, red/IR PPG, NIBP cuff).

Cheap, vectorised numpy models meant as honest test data for the detectors and as the
signal source of virtual wearables.  Every function is deterministic for a given ``seed``.

Models
------
ECG
    Each beat is a sum of five Gaussian waves (P, Q, R, S, T; after McSharry et al. 2003,
    ECGSYN, written in the time domain).  Wave offsets scale with sqrt(RR) (Bazett), so
    QT shortens at high rates.  RR intervals come from ``hr_bpm`` (constant, or a
    ``(t_s, bpm)`` schedule interpolated linearly, for rate changes), with respiratory
    sinus arrhythmia and random jitter (``hrv``), optional atrial-fibrillation-like
    irregularity (``af``: RR drawn independently, no P waves) and premature ventricular
    contractions (``pvc_rate``: 30 % premature, wide tall QRS, no P, compensatory pause).
    Noise: white (``noise_mv``), baseline wander at 0.25 Hz (``wander_mv``), mains
    interference (``mains_mv`` at 50 Hz).
PPG
    Each pulse is a systolic Gaussian plus a smaller, later diastolic (reflected) wave,
    starting a pulse-transit time of 0.2 s after the heart beat.  Red and IR share the
    shape; their DC levels are fixed (IR 1.0, red 0.7, arbitrary units) and their AC/DC
    ratios follow ``perfusion`` (IR perfusion index, %) and the ratio of ratios
    ``R = (AC_red/DC_red)/(AC_ir/DC_ir)`` obtained by inverting the calibration curve
    (default ``SpO2 = 110 - 25 R``) at the true ``spo2``.  ``motion`` adds band-limited
    (0.3-4 Hz) artefacts of that size relative to the IR pulse amplitude, with nearly the
    same relative size in both channels (which drives a naive ratio towards R = 1,
    SpO2 ~ 85 %, as real motion does).
Cuff
    Linear deflation at ``deflate_mmhg_s`` from ``start_mmhg`` to ``stop_mmhg``; the
    oscillation amplitude envelope is a two-sided Gaussian in cuff pressure peaking at the
    true mean pressure ``MAP = dia + (sys - dia) / 3`` whose value at the true systolic
    and diastolic pressures is ``ks`` and ``kd`` times the peak (characteristic ratios
    drawn per subject around 0.55 and 0.75 unless given, SD 0.03).  Oscillations use the
    arterial pulse shape.  Artefacts: motion bursts and a cuff leak (faster deflation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vitalcore.errors import UsageError

__all__ = ["simulate_ecg", "simulate_ppg", "simulate_cuff_deflation", "spo2_to_ratio"]

Schedule = float | Sequence[tuple[float, float]]

# ECG waves: (offset at RR = 1 s in s, width s, amplitude mV)
_ECG_WAVES = np.array([
    (-0.20, 0.025, 0.15),   # P
    (-0.025, 0.010, -0.12),  # Q
    (0.0, 0.011, 1.2),       # R
    (0.028, 0.011, -0.25),   # S
    (0.30, 0.045, 0.30),     # T
])
_PVC_WAVES = np.array([
    (-0.02, 0.025, -0.3),
    (0.0, 0.030, 1.8),
    (0.06, 0.035, -0.6),
    (0.32, 0.060, -0.4),
])


def _check(duration_s: float, fs: float) -> tuple[float, float]:
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise UsageError(f"duration_s must be positive, got {duration_s!r}")
    if not (np.isfinite(fs) and 10 <= fs <= 10000):
        raise UsageError(f"fs must be within 10-10000 Hz, got {fs!r}")
    return float(duration_s), float(fs)


def _schedule(value: Schedule, t: np.ndarray, name: str) -> np.ndarray:
    """Evaluate a constant or a ``(t_s, value)`` breakpoint schedule at times ``t``."""
    if np.isscalar(value):
        return np.full(t.shape, float(value))  # type: ignore[arg-type]
    pts = np.asarray(value, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise UsageError(f"{name} must be a number or a sequence of (t_s, value) pairs")
    order = np.argsort(pts[:, 0])
    return np.interp(t, pts[order, 0], pts[order, 1])


def _beat_times(duration_s: float, hr_bpm: Schedule, hrv: float, af: bool,
                rng: np.random.Generator) -> np.ndarray:
    """Heart-beat times in s within ``[0.3, duration_s)``."""
    times = []
    t = 0.3
    for _ in range(int(duration_s * 5) + 10):  # bounded: <= 300 bpm
        if t >= duration_s:
            break
        times.append(t)
        hr = float(_schedule(hr_bpm, np.array([t]), "hr_bpm")[0])
        if not (15 <= hr <= 300):
            raise UsageError(f"hr_bpm must stay within 15-300 bpm, got {hr:g}")
        rr = 60.0 / hr
        if af:
            rr *= rng.uniform(0.6, 1.4)
        else:
            rr *= 1 + 0.5 * hrv * np.sin(2 * np.pi * 0.25 * t) + hrv * rng.standard_normal()
        t += max(rr, 0.2)
    return np.asarray(times)


def _add_waves(sig: np.ndarray, fs: float, t0: float, waves: np.ndarray, scale: float) -> None:
    """Add Gaussian waves centred at ``t0 + offset * scale`` to ``sig`` (in place)."""
    for off, width, amp in waves:
        c = t0 + off * scale
        lo = max(int((c - 4 * width) * fs), 0)
        hi = min(int((c + 4 * width) * fs) + 1, sig.size)
        if hi > lo:
            tt = np.arange(lo, hi) / fs
            sig[lo:hi] += amp * np.exp(-0.5 * ((tt - c) / width) ** 2)


def simulate_ecg(duration_s: float, fs: float, hr_bpm: Schedule = 72.0, noise_mv: float = 0.02,
                 seed: int | None = None, *, hrv: float = 0.03, af: bool = False,
                 pvc_rate: float = 0.0, wander_mv: float = 0.1, mains_mv: float = 0.0,
                 amplitude: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Simulate one ECG lead (lead II-like) with known R-peak positions.

    Parameters
    ----------
    duration_s : float
        Length in s.
    fs : float
        Sampling rate in Hz.
    hr_bpm : float or sequence of (t_s, bpm)
        Heart rate, constant or a schedule interpolated linearly (rhythm changes).
    noise_mv : float
        Standard deviation of white noise, mV.
    seed : int, optional
        Random seed (same seed, same signal).
    hrv : float
        Relative RR variability (respiratory sinus arrhythmia and jitter), 0-0.3.
    af : bool
        Atrial-fibrillation-like rhythm: irregular RR (+/-40 %), no P waves.
    pvc_rate : float
        Probability (0-1) that a beat is a premature ventricular contraction.
    wander_mv, mains_mv : float
        Baseline wander (0.25 Hz) and 50 Hz interference amplitudes, mV.
    amplitude : float
        Scale of the whole complex (1.0: R wave about 1.2 mV).

    Returns
    -------
    signal : numpy.ndarray of float64
        ECG in mV, ``round(duration_s * fs)`` samples.
    beat_indices : numpy.ndarray of int64
        Sample index of every R peak (the QRS apex; PVCs included), increasing.
    """
    duration_s, fs = _check(duration_s, fs)
    if not (0 <= pvc_rate <= 1 and 0 <= hrv <= 0.3):
        raise UsageError("pvc_rate must be within 0-1 and hrv within 0-0.3")
    rng = np.random.default_rng(seed)
    beats = _beat_times(duration_s, hr_bpm, hrv, af, rng)
    n = int(round(duration_s * fs))
    sig = np.zeros(n)
    r_times = []
    prev = 0.0
    k = 0
    for _ in range(beats.size):  # bounded by the beat count
        if k >= beats.size:
            break
        t = beats[k]
        rr = t - prev if k else 60.0 / float(_schedule(hr_bpm, np.array([t]), "hr_bpm")[0])
        if k and rng.random() < pvc_rate and k + 1 < beats.size:
            # premature beat 30 % early; the next sinus beat keeps its time (full pause)
            tp = prev + 0.7 * rr
            _add_waves(sig, fs, tp, _PVC_WAVES * [1, 1, amplitude], 1.0)
            r_times.append(tp + 0.0)
            prev = tp
            k += 1
            continue
        scale = np.sqrt(np.clip(rr, 0.3, 2.0))
        waves = _ECG_WAVES[1:] if af else _ECG_WAVES
        _add_waves(sig, fs, t, waves * [1, 1, amplitude], scale)
        r_times.append(t)
        prev = t
        k += 1
    tt = np.arange(n) / fs
    if af:  # fibrillatory baseline waves
        sig += 0.04 * amplitude * np.sin(2 * np.pi * 6.0 * tt + rng.uniform(0, 6.3))
    sig += wander_mv * np.sin(2 * np.pi * 0.25 * tt + rng.uniform(0, 6.3))
    sig += mains_mv * np.sin(2 * np.pi * 50.0 * tt)
    sig += noise_mv * rng.standard_normal(n)
    idx = np.round(np.asarray(r_times) * fs).astype(np.int64)
    return sig, idx[idx < n]


def spo2_to_ratio(spo2: float | np.ndarray,
                  calibration: tuple[float, float, float] = (110.0, -25.0, 0.0)) -> np.ndarray:
    """Invert a calibration curve ``SpO2 = a + b R + c R^2`` (%) to the ratio of ratios R.

    Takes the root in 0 < R < 3 (the physiological branch).
    """
    a, b, c = calibration
    s = np.asarray(spo2, dtype=np.float64)
    if c == 0:
        return (s - a) / b
    disc = np.sqrt(np.maximum(b * b - 4 * c * (a - s), 0.0))
    r1, r2 = (-b + disc) / (2 * c), (-b - disc) / (2 * c)
    return np.where((r1 > 0) & (r1 < 3), r1, r2)


def _pulse_train(n: int, fs: float, beats_s: np.ndarray, rr_s: np.ndarray,
                 amp: np.ndarray | float = 1.0) -> np.ndarray:
    """Arterial pulse waveform: systolic + diastolic Gaussians per beat, peak ~1."""
    out = np.zeros(n)
    amps = np.broadcast_to(np.asarray(amp, dtype=np.float64), beats_s.shape)
    for t, rr, a in zip(beats_s, rr_s, amps, strict=True):
        s = min(rr, 1.2)
        _add_waves(out, fs, t, np.array([(0.0, 0.09, a), (0.28, 0.12, 0.45 * a)]), s)
    return out


def _band_noise(n: int, fs: float, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise band-limited to ``lo``-``hi`` Hz (FFT shaping)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def simulate_ppg(duration_s: float, fs: float, spo2: Schedule = 97.0, hr: Schedule = 72.0,
                 perfusion: float = 2.0, motion: float = 0.0, seed: int | None = None, *,
                 noise: float = 0.01, hrv: float = 0.03,
                 calibration: tuple[float, float, float] = (110.0, -25.0, 0.0),
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate red and infrared photoplethysmograms with known SpO2 and pulse times.

    Parameters
    ----------
    duration_s : float
        Length in s.
    fs : float
        Sampling rate in Hz.
    spo2 : float or sequence of (t_s, %)
        True arterial oxygen saturation, % (50-100), constant or a schedule.
    hr : float or sequence of (t_s, bpm)
        Pulse rate in bpm.
    perfusion : float
        IR perfusion index (AC/DC x 100), % (0.05-20).
    motion : float
        Motion artefact RMS relative to the IR pulse amplitude (0: none, 1: as large as
        the pulse).
    seed : int, optional
        Random seed.
    noise : float
        White sensor noise relative to the IR pulse amplitude.
    hrv : float
        Relative RR variability.
    calibration : (a, b, c)
        Curve ``SpO2 = a + b R + c R^2`` used to derive R from ``spo2``.

    Returns
    -------
    red, ir : numpy.ndarray of float64
        Light intensities in arbitrary units (DC about 0.7 and 1.0).
    beat_indices : numpy.ndarray of int64
        Sample index of each systolic pulse peak.
    """
    duration_s, fs = _check(duration_s, fs)
    if not (0.05 <= perfusion <= 20 and motion >= 0 and noise >= 0):
        raise UsageError("perfusion must be within 0.05-20 %, motion and noise >= 0")
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * fs))
    tt = np.arange(n) / fs
    beats = _beat_times(duration_s, hr, hrv, False, rng) + 0.2  # pulse transit time
    rr = np.diff(np.concatenate([[beats[0] - 60.0 / 72.0], beats])) if beats.size else beats
    pulse = _pulse_train(n, fs, beats, rr)
    pulse -= pulse.mean()
    ac_ir = perfusion / 100.0
    ratio = spo2_to_ratio(_schedule(spo2, tt, "spo2"), calibration)
    resp = 0.003 * np.sin(2 * np.pi * 0.25 * tt)  # respiratory baseline modulation
    dc_ir, dc_red = 1.0 * (1 + resp), 0.7 * (1 + resp)
    art = motion * ac_ir * _band_noise(n, fs, 0.3, 4.0, rng) if motion > 0 else 0.0
    ir = dc_ir * (1 + ac_ir * pulse + art)
    red = dc_red * (1 + ratio * ac_ir * pulse + 1.05 * art)
    ir += noise * ac_ir * rng.standard_normal(n)
    red += noise * ac_ir * 0.7 * rng.standard_normal(n)
    idx = np.round(beats * fs).astype(np.int64)
    return red, ir, idx[idx < n]


def simulate_cuff_deflation(sys: float = 120.0, dia: float = 80.0, hr: float = 72.0,
                            fs: float = 100.0, seed: int | None = None, *,
                            start_mmhg: float | None = None, stop_mmhg: float | None = None,
                            deflate_mmhg_s: float = 3.0, ks: float | None = None,
                            kd: float | None = None, amp_mmhg: float = 2.0,
                            motion: Sequence[tuple[float, float, float]] = (),
                            leak_mmhg_s: float = 0.0, noise_mmhg: float = 0.05) -> np.ndarray:
    """Simulate the cuff pressure of one oscillometric deflation with known pressures.

    Parameters
    ----------
    sys, dia : float
        True systolic and diastolic arterial pressure, mmHg. The true mean pressure is
        ``dia + (sys - dia) / 3``.
    hr : float
        Heart rate, bpm.
    fs : float
        Sampling rate, Hz.
    seed : int, optional
        Random seed.
    start_mmhg, stop_mmhg : float, optional
        Deflation start and end pressures (default ``sys + 30`` and ``dia - 30``, floor
        20 mmHg).
    deflate_mmhg_s : float
        Deflation rate, mmHg/s.
    ks, kd : float, optional
        Characteristic ratios at systole/diastole (default drawn around 0.55 / 0.75).
    amp_mmhg : float
        Peak oscillation amplitude (peak to trough), mmHg.
    motion : sequence of (t_s, duration_s, mmHg)
        Motion artefacts: band-limited pressure disturbances of that RMS.
    leak_mmhg_s : float
        Extra deflation caused by a leak, mmHg/s.
    noise_mmhg : float
        White sensor noise, mmHg.

    Returns
    -------
    numpy.ndarray of float64
        Cuff pressure in mmHg: 1 s hold at ``start_mmhg``, the deflation, then 1 s of
        rapid dump to 0 mmHg.
    """
    if not (20 <= dia < sys <= 300 and 20 <= hr <= 250 and 10 <= fs <= 2000):
        raise UsageError("need 20 <= dia < sys <= 300 mmHg, hr 20-250 bpm, fs 10-2000 Hz")
    rng = np.random.default_rng(seed)
    start = sys + 30.0 if start_mmhg is None else float(start_mmhg)
    stop = max(dia - 30.0, 20.0) if stop_mmhg is None else float(stop_mmhg)
    ks = float(np.clip(rng.normal(0.55, 0.03), 0.4, 0.7)) if ks is None else float(ks)
    kd = float(np.clip(rng.normal(0.75, 0.03), 0.6, 0.9)) if kd is None else float(kd)
    rate = deflate_mmhg_s + leak_mmhg_s
    dur = 1.0 + (start - stop) / rate
    n = int(round((dur + 1.0) * fs))
    tt = np.arange(n) / fs
    base = np.clip(start - rate * (tt - 1.0), stop, start)
    base[tt > dur] = stop * np.clip(1.0 - (tt[tt > dur] - dur), 0.0, 1.0)
    mean_p = dia + (sys - dia) / 3.0
    ws = (sys - mean_p) / np.sqrt(-np.log(ks))
    wd = (mean_p - dia) / np.sqrt(-np.log(kd))
    beats = _beat_times(dur, hr, 0.03, False, rng)
    rr = np.full(beats.shape, 60.0 / hr)
    pc = np.interp(beats, tt, base)
    w = np.where(pc > mean_p, ws, wd)
    env = amp_mmhg * np.exp(-(((pc - mean_p) / w) ** 2))
    osc = _pulse_train(n, fs, beats, rr, env)
    p = base + osc * (base > 0) + noise_mmhg * rng.standard_normal(n)
    for t0, d, a in motion:
        lo, hi = int(t0 * fs), int((t0 + d) * fs)
        lo, hi = max(lo, 0), min(hi, n)
        if hi - lo > 4:
            p[lo:hi] += a * _band_noise(hi - lo, fs, 0.5, 8.0, rng)
    return p
