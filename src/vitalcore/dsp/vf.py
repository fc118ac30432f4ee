"""Ventricular fibrillation / flutter (VF/VFL) detection on one ECG lead.

A window of 2 s, taken every second, is called VF when three published time-domain
criteria agree, each with its published parameter (after the preprocessing of Amann et
al. 2005: 5-point moving average, 1 Hz high-pass, 30 Hz low-pass, window mean removed):

* **VF filter leakage** (Kuo & Dillman 1978): half-period ``N = floor(pi sum|x| /
  sum|dx| + 1/2)``, leakage ``l = sum|x_i + x_(i-N)| / sum(|x_i| + |x_(i-N)|)``; VF if
  ``l < 0.625`` (a sinusoid-like signal is cancelled by its half-period shift);
* **threshold crossing interval** (Thakor, Zhu & Pan 1990): per 1 s segment, level 20 %
  of the segment maximum, ``TCI = 1000 / ((N - 1) + t2/(t1+t2) + t3/(t3+t4))`` ms; VF if
  the window's mean TCI is under 400 ms;
* **threshold crossing sample count** (Arafat, Chowdhury & Hasan 2011): cosine taper over
  0.25 s at both ends, normalised to the absolute maximum, percentage of samples with
  ``|x| > 0.2``; VF if over 48 %.

An *episode* is a run of at least 3 consecutive VF windows (4 s of signal); it spans
from the start of its first window to the end of its last.  Windows touching bad samples
(non-finite, clipped, flat: the sanitiser of :class:`~vitalcore.dsp.QRSDetector`) are
never VF.  The analysis runs inside the QRS detector's kernel once per second, so
streaming and batch results are identical for any chunking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitalcore.dsp import _vfkernel as vk
from vitalcore.dsp.qrs import QRSDetector, _as_1d

__all__ = ["VFDetector", "VFResult", "detect_vf", "vf_episodes", "LEAK_MAX", "TCI_MAX_MS",
           "TCSC_MIN", "MIN_RUN"]

LEAK_MAX = vk.LEAK_MAX
TCI_MAX_MS = vk.TCI_MAX_MS
TCSC_MIN = vk.TCSC_MIN
MIN_RUN = vk.MIN_RUN


@dataclass(frozen=True, slots=True)
class VFResult:
    """Per-window VF/VFL decisions and the episodes they form.

    Attributes
    ----------
    start_index : numpy.ndarray of int64
        First sample of each 2 s window (windows start every ``round(fs)`` samples).
    vf : numpy.ndarray of bool
        Window called VF/VFL (all three criteria met, no bad sample).
    leakage, tci_ms, tcsc_pct : numpy.ndarray of float64
        The three features (VF filter leakage 0-1, mean TCI in ms, TCSC in %).
    episodes : numpy.ndarray of int64, shape (k, 2)
        ``[onset, offset)`` sample intervals of runs of >= :data:`MIN_RUN` VF windows.
    """

    start_index: np.ndarray
    vf: np.ndarray
    leakage: np.ndarray
    tci_ms: np.ndarray
    tcsc_pct: np.ndarray
    episodes: np.ndarray


def vf_episodes(start_index: object, vf: object, hop: int, min_run: int = MIN_RUN
                ) -> np.ndarray:
    """Episodes ``[onset, offset)`` (samples) from consecutive window decisions.

    Parameters
    ----------
    start_index : array_like of int
        Window starts, consecutive windows ``hop`` samples apart.
    vf : array_like of bool
        Decision per window.
    hop : int
        Samples between window starts; windows are ``2 * hop`` long.
    min_run : int
        Fewest consecutive VF windows that form an episode.
    """
    s = np.asarray(start_index, dtype=np.int64).ravel()
    f = np.asarray(vf, dtype=bool).ravel()
    eps = []
    k = 0
    while k < f.size:
        if f[k]:
            j = k
            while j < f.size and f[j]:
                j += 1
            if j - k >= min_run:
                eps.append((int(s[k]), int(s[j - 1]) + 2 * hop))
            k = j
        else:
            k += 1
    return np.array(eps, dtype=np.int64).reshape(-1, 2)


class VFDetector:
    """Streaming VF/VFL detector for one ECG lead.

    Parameters
    ----------
    fs : float
        Sampling rate in Hz, 125-1000.
    **kwargs
        Sanitiser options of :class:`~vitalcore.dsp.QRSDetector` (``clip_mv``,
        ``flat_s``).

    Notes
    -----
    Shares the QRS detector's kernel (its beats are discarded here); if beats are needed
    too, use :class:`~vitalcore.dsp.QRSDetector` (``suppress_vf=True``) and its
    :meth:`~vitalcore.dsp.QRSDetector.vf_windows` instead of running both.  Window ``k``
    (samples ``[k L, k L + 2 L)``, ``L = round(fs)``) is decided once sample ``(k+3) L``
    has been fed.
    """

    def __init__(self, fs: float, **kwargs: float) -> None:
        self._det = QRSDetector(fs, suppress_vf=True, **kwargs)
        self.fs = self._det.fs
        self.hop = self._det._hop

    def process(self, chunk: object) -> np.ndarray:
        """Feed ECG (mV); return the windows decided in this call.

        Returns
        -------
        numpy.ndarray of float64, shape (k, 5)
            Rows ``[start sample, vf flag, leakage, TCI ms, TCSC %]``.
        """
        self._det.process(chunk)
        return self._det.vf_windows()

    def flush(self) -> np.ndarray:
        """End of record: decide what can be decided (later windows count as not VF)."""
        self._det.flush()
        return self._det.vf_windows()

    @property
    def in_vf(self) -> bool:
        """True while the latest decided windows form a VF/VFL episode (alarm state)."""
        return self._det.in_vf


def detect_vf(ecg: object, fs: float, **kwargs: float) -> VFResult:
    """Detect ventricular fibrillation / flutter in one ECG lead (mV).

    Parameters
    ----------
    ecg : array_like, 1-D
        ECG lead in mV.
    fs : float
        Sampling rate in Hz, 125-1000.
    **kwargs
        Sanitiser options (``clip_mv``, ``flat_s``).

    Returns
    -------
    VFResult
        One row per complete 2 s window, ``max(len(ecg) // round(fs) - 1, 0)`` windows;
        the last one is always "not VF" because the TCI look-ahead second is missing.

    Raises
    ------
    vitalcore.errors.UsageError
        ``ecg`` is not 1-D numeric or ``fs`` is outside 125-1000 Hz.
    """
    det = VFDetector(fs, **kwargs)
    x = _as_1d(ecg, "ecg")
    w = np.concatenate([det.process(x), det.flush()])
    start = w[:, 0].astype(np.int64)
    vf = w[:, 1] > 0.5
    return VFResult(start, vf, w[:, 2].copy(), w[:, 3].copy(), w[:, 4].copy(),
                    vf_episodes(start, vf, det.hop))
