"""Beat-detection scoring against reference annotations (sensitivity, positive predictivity).

Convention (as used for MIT-BIH, ANSI/AAMI EC57-style without the 5-minute learning
exclusion): a detection matches a reference beat when it lies within ``window_s`` of it;
each reference beat and each detection are matched at most once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitalcore.errors import UsageError

__all__ = ["BeatScore", "score_beats", "score_vf_windows", "flutter_episodes", "BEAT_SYMBOLS"]

BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
"""MIT-BIH annotation symbols that denote a beat (all others are rhythm/noise marks)."""


@dataclass(frozen=True, slots=True)
class BeatScore:
    """Counts and rates of one beat-detection comparison.

    Attributes
    ----------
    tp, fn, fp : int
        Matched reference beats, missed reference beats, unmatched detections.
    """

    tp: int
    fn: int
    fp: int

    @property
    def se(self) -> float:
        """Sensitivity TP / (TP + FN), 0-1 (1.0 when there is no reference beat)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def ppv(self) -> float:
        """Positive predictivity TP / (TP + FP), 0-1 (1.0 when nothing was detected)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    def __add__(self, other: BeatScore) -> BeatScore:
        return BeatScore(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)


def flutter_episodes(samples: object, symbols: object) -> np.ndarray:
    """Ventricular flutter/fibrillation episodes from MIT-BIH ``[`` ... ``]`` annotations.

    Parameters
    ----------
    samples : array_like of int
        Annotation sample indices.
    symbols : sequence of str
        Annotation symbols, same length.

    Returns
    -------
    numpy.ndarray of int64, shape (k, 2)
        ``[start, end]`` sample intervals; an episode still open at the end of the
        annotations ends at the last annotation.
    """
    s = np.asarray(samples, dtype=np.int64).ravel()
    eps: list[tuple[int, int]] = []
    start = -1
    for t, sym in zip(s.tolist(), symbols, strict=True):
        if sym == "[" and start < 0:
            start = t
        elif sym == "]" and start >= 0:
            eps.append((start, t))
            start = -1
    if start >= 0 and s.size:
        eps.append((start, int(s[-1])))
    return np.array(eps, dtype=np.int64).reshape(-1, 2)


def _outside(x: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    keep = np.ones(x.size, dtype=bool)
    for a, b in exclude:
        keep &= (x < a) | (x > b)
    return x[keep]


def score_beats(ref: object, det: object, fs: float, window_s: float = 0.15,
                exclude: object = None) -> BeatScore:
    """Match detections to reference beats one-to-one within a tolerance.

    Parameters
    ----------
    ref, det : array_like of int
        Reference and detected beat sample indices (any order; sorted internally).
    fs : float
        Sampling rate in Hz.
    window_s : float, optional
        Match tolerance in s (default 0.15 s = 150 ms).
    exclude : array_like of int, shape (k, 2), optional
        Sample intervals ``[start, end]`` left out of the comparison (reference beats and
        detections in them are ignored), e.g. ventricular flutter episodes from
        :func:`flutter_episodes`, as ANSI/AAMI EC57 does for VF.

    Returns
    -------
    BeatScore
        ``tp + fn == len(ref)`` and ``tp + fp == len(det)``.

    Notes
    -----
    Both lists are walked in time order; a detection is matched to the nearest still
    unmatched reference beat within the window, preferring the next reference beat when it
    is closer and the next detection cannot take it (so one stray detection never shifts
    all following matches).
    """
    if not (fs > 0) or not (window_s > 0):
        raise UsageError("fs and window_s must be positive")
    r = np.sort(np.asarray(ref, dtype=np.float64).ravel())
    d = np.sort(np.asarray(det, dtype=np.float64).ravel())
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.float64).reshape(-1, 2)
        r, d = _outside(r, ex), _outside(d, ex)
    w = window_s * fs
    i = j = tp = 0
    nr, nd = r.size, d.size
    while i < nr and j < nd:
        diff = d[j] - r[i]
        if abs(diff) <= w:
            if (i + 1 < nr and abs(d[j] - r[i + 1]) < abs(diff)
                    and not (j + 1 < nd and abs(d[j + 1] - r[i]) <= w)):
                i += 1  # r[i] missed; d[j] belongs to the next reference beat
                continue
            tp += 1
            i += 1
            j += 1
        elif diff < 0:
            j += 1
        else:
            i += 1
    return BeatScore(tp=tp, fn=nr - tp, fp=nd - tp)


def score_vf_windows(start_index: object, vf: object, fs: float, window_s: float,
                     episodes: object) -> tuple[int, int, int, int]:
    """Score per-window VF flags against annotated VF/VFL episodes.

    Parameters
    ----------
    start_index : array of int
        First sample of each window (e.g. ``VFResult.start_index``).
    vf : array of bool
        The detector's flag per window.
    fs : float
        Sampling rate in Hz.
    window_s : float
        Window length in s (2 s for :func:`vitalcore.dsp.detect_vf`).
    episodes : (n, 2) array of int
        Annotated episodes as [start, end) samples (e.g. from :func:`flutter_episodes`).

    Returns
    -------
    (tp, fn, fp, tn) : tuple of int
        Windows wholly inside an episode count for sensitivity (tp, fn), windows that
        touch no episode for specificity (fp, tn); windows straddling an edge are not
        scored.
    """
    start = np.asarray(start_index, dtype=np.int64)
    flag = np.asarray(vf, dtype=bool)
    if start.shape != flag.shape:
        raise UsageError("start_index and vf must have the same shape")
    end = start + int(round(window_s * fs))
    inside = np.zeros(flag.size, dtype=bool)
    touch = np.zeros(flag.size, dtype=bool)
    for a, b in np.asarray(episodes, dtype=np.int64).reshape(-1, 2):
        inside |= (start >= a) & (end <= b)
        touch |= (end > a) & (start < b)
    return (int(np.sum(flag & inside)), int(np.sum(~flag & inside)),
            int(np.sum(flag & ~touch)), int(np.sum(~flag & ~touch)))
