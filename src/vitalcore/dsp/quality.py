"""Per-window ECG signal quality and leads-off indication.

Each window of ``window_s`` gets flag bits (0 = usable):

``NONFINITE``
    NaN/inf samples (dropout).
``FLAT``
    peak-to-peak under 0.05 mV or one value held for over half the window: leads off,
    asystole-like flat line or a disconnected amplifier (``LEADS_OFF`` = FLAT or
    NONFINITE or CLIPPED).
``CLIPPED``
    the window's maximum or minimum is held for at least 50 ms: ADC saturation.
``NOISY``
    high-frequency noise: the RMS of the signal minus its 25 ms moving average exceeds
    0.1 mV and 10 % of the window's peak-to-peak (EMG, electrode motion, mains).

The detector (:class:`vitalcore.dsp.QRSDetector`) independently refuses to report beats
touching non-finite, clipped or flat samples; these flags are what a monitor shows
("leads off", "noisy ECG") and what alarm logic uses to suppress rate alarms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from vitalcore.dsp.qrs import _as_1d, _check_fs
from vitalcore.errors import UsageError

__all__ = ["ECGQuality", "ecg_quality", "NONFINITE", "FLAT", "CLIPPED", "NOISY", "LEADS_OFF"]

NONFINITE, FLAT, CLIPPED, NOISY = 1, 2, 4, 8
LEADS_OFF = NONFINITE | FLAT | CLIPPED


@numba.njit(cache=True, nogil=True)
def _quality_kernel(x, win, clip_run, ma, out):  # pragma: no cover - compiled
    """Fill ``out[w]`` with the flag bits of window ``w`` of ``x``."""
    for w in range(out.shape[0]):
        seg = x[w * win:(w + 1) * win]
        flags = 0
        lo = np.inf
        hi = -np.inf
        nbad = 0
        for v in seg:
            if not np.isfinite(v):
                nbad += 1
            else:
                lo = min(lo, v)
                hi = max(hi, v)
        if nbad:
            flags |= NONFINITE
        if nbad == seg.size or hi - lo < 0.05:
            out[w] = flags | FLAT
            continue
        run = 1
        longest = 1
        clip_at_edge = False
        for i in range(1, seg.size):
            if seg[i] == seg[i - 1]:
                run += 1
                if run > longest:
                    longest = run
                if run >= clip_run and (seg[i] == hi or seg[i] == lo):
                    clip_at_edge = True
            else:
                run = 1
        if longest * 2 > seg.size:
            flags |= FLAT
        if clip_at_edge:
            flags |= CLIPPED
        # high-frequency residual against a centred moving average
        acc = 0.0
        cnt = 0
        h = ma // 2
        for i in range(h, seg.size - h):
            s = 0.0
            ok = True
            for j in range(i - h, i + h + 1):
                if not np.isfinite(seg[j]):
                    ok = False
                    break
                s += seg[j]
            if ok:
                d = seg[i] - s / (2 * h + 1)
                acc += d * d
                cnt += 1
        if cnt:
            rms = np.sqrt(acc / cnt)
            if rms > 0.1 and rms > 0.1 * (hi - lo):
                flags |= NOISY
        out[w] = flags


@dataclass(frozen=True, slots=True)
class ECGQuality:
    """Quality flags per window.

    Attributes
    ----------
    start_index : numpy.ndarray of int64
        First sample of each window.
    flags : numpy.ndarray of int64
        Flag bits (:data:`NONFINITE`, :data:`FLAT`, :data:`CLIPPED`, :data:`NOISY`).
    """

    start_index: np.ndarray
    flags: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """Windows with no flag (usable for rate and rhythm)."""
        return self.flags == 0

    @property
    def leads_off(self) -> np.ndarray:
        """Windows whose flags indicate leads off / no signal (technical alarm)."""
        return (self.flags & LEADS_OFF) != 0


def ecg_quality(ecg: object, fs: float, window_s: float = 2.0) -> ECGQuality:
    """Flag each ``window_s`` window of one ECG lead (mV) for usability.

    Parameters
    ----------
    ecg : array_like, 1-D
        ECG in mV.
    fs : float
        Sampling rate in Hz, 125-1000.
    window_s : float
        Window length in s (0.5-60); a trailing partial window is dropped.

    Returns
    -------
    ECGQuality
    """
    fs = _check_fs(fs)
    x = _as_1d(ecg, "ecg")
    if not 0.5 <= window_s <= 60:
        raise UsageError(f"window_s must be within 0.5-60 s, got {window_s!r}")
    win = int(round(window_s * fs))
    n_win = x.size // win
    out = np.zeros(n_win, dtype=np.int64)
    _quality_kernel(x, win, max(2, int(0.05 * fs)), max(3, int(0.025 * fs)) | 1, out)
    return ECGQuality(np.arange(n_win, dtype=np.int64) * win, out)
