"""RR intervals and heart rate (beat-to-beat and averaged) from beat indices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitalcore.errors import UsageError

__all__ = ["HeartRate", "heart_rate"]


@dataclass(frozen=True, slots=True)
class HeartRate:
    """Beat-to-beat figures, one entry per beat after the first.

    Attributes
    ----------
    beat_index : numpy.ndarray of int64
        Sample index of the beat that closes each interval.
    rr_s : numpy.ndarray of float64
        RR interval in s.
    hr_bpm : numpy.ndarray of float64
        Beat-to-beat heart rate ``60 / rr_s`` in bpm (NaN for implausible intervals).
    hr_avg_bpm : numpy.ndarray of float64
        Averaged heart rate, bpm: 60 / mean of the last ``average`` plausible intervals
        (the monitor-style displayed value).
    """

    beat_index: np.ndarray
    rr_s: np.ndarray
    hr_bpm: np.ndarray
    hr_avg_bpm: np.ndarray


def heart_rate(beats: object, fs: float, *, average: int = 8, rr_min_s: float = 0.2,
               rr_max_s: float = 3.0) -> HeartRate:
    """RR intervals and heart rate from increasing beat sample indices.

    Parameters
    ----------
    beats : array_like of int
        Beat (R peak or pulse) sample indices, increasing.
    fs : float
        Sampling rate in Hz.
    average : int
        Number of recent intervals averaged for ``hr_avg_bpm`` (>= 1).
    rr_min_s, rr_max_s : float
        Intervals outside this range (s) are implausible (missed or extra beat, pause):
        their beat-to-beat rate is NaN and they are left out of the average.

    Returns
    -------
    HeartRate
    """
    if not fs > 0 or average < 1 or not 0 < rr_min_s < rr_max_s:
        raise UsageError("need fs > 0, average >= 1 and 0 < rr_min_s < rr_max_s")
    b = np.asarray(beats, dtype=np.int64).ravel()
    if b.size and np.any(np.diff(b) <= 0):
        raise UsageError("beats must be strictly increasing")
    rr = np.diff(b) / float(fs)
    good = (rr >= rr_min_s) & (rr <= rr_max_s)
    hr = np.where(good, 60.0 / np.where(good, rr, 1.0), np.nan)
    # rolling mean of the last `average` good intervals
    g_rr = np.where(good, rr, 0.0)
    c_rr = np.concatenate([[0.0], np.cumsum(g_rr)])
    c_n = np.concatenate([[0], np.cumsum(good)])
    lo = np.maximum(c_n[1:] - average, 0)
    # index into the cumulative arrays where the count of good intervals equals `lo`
    start = np.searchsorted(c_n, lo, side="right") - 1
    tot = c_rr[1:] - c_rr[start]
    cnt = c_n[1:] - c_n[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(cnt > 0, 60.0 * cnt / tot, np.nan)
    return HeartRate(b[1:], rr, hr, avg)
