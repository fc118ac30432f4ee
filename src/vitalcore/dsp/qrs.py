"""QRS detection on single-lead ECG: a streaming Pan-Tompkins-class detector in numba.

One private kernel, :func:`_qrs_kernel`, consumes samples one at a time and keeps every
piece of state (filter memories, ring buffers, adaptive thresholds, RR averages, pending
peaks) in numpy arrays owned by a :class:`QRSDetector`.  The batch function
:func:`detect_qrs` feeds the whole record through the same kernel and then flushes it, so
streaming and batch results agree by construction, for any chunking.

Pipeline per sample (Pan & Tompkins 1985, with Hamilton & Tompkins 1986 decision rules):

1. sanitise: non-finite samples hold the last finite value, ``|x|`` is clipped to
   ``clip_mv``; both, and runs of identical values longer than ``flat_s``, mark the
   sample *bad* (leads off, saturation, dropout);
2. band-pass 5-15 Hz (2nd-order Butterworth high-pass then low-pass, bilinear transform);
3. five-point derivative, squaring, moving-window integration over 150 ms (MWI);
4. MWI peaks: a local maximum becomes a peak once no higher local maximum follows within
   the 200 ms refractory period;
5. classification with adaptive thresholds ``THR1 = NPKI + 0.25 (SPKI - NPKI)`` and
   ``THR2 = THR1 / 2`` (signal/noise peak levels updated with weight 1/8), T-wave
   discrimination (a peak within 360 ms of the last QRS whose maximum band-pass slope is
   under half of that QRS's slope is a T wave), searchback: if no QRS came within
   1.66 x the regular-RR average, the largest stored peak above ``THR2`` is taken (level
   update weight 1/4); if none is, ``SPKI`` is halved (not below ``3 NPKI``) so the
   detector recovers from a gain drop;
6. the R peak is the largest absolute band-pass value in the QRS window, corrected for
   the filter group delay.  Beats whose QRS window touches a bad sample, or whose
   band-pass amplitude is under ``min_amp_mv``, are never reported.

Latency: a beat is reported about 0.2 s + 0.15 s after its R peak.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from vitalcore.errors import UsageError

__all__ = ["QRSDetector", "detect_qrs", "FS_MIN", "FS_MAX"]

FS_MIN = 125.0
"""Lowest supported ECG sampling rate, Hz."""
FS_MAX = 1000.0
"""Highest supported ECG sampling rate, Hz."""

# ----------------------------------------------------------------------------------------
# Kernel state layout.  Float state ``sf`` and integer state ``si`` are plain arrays so the
# kernel is a pure function of (chunk, state) and caches to disk (no jitclass).
# ----------------------------------------------------------------------------------------
# float state
_HB0, _HB1, _HB2, _HA1, _HA2, _HZ1, _HZ2 = 0, 1, 2, 3, 4, 5, 6  # high-pass biquad
_LB0, _LB1, _LB2, _LA1, _LA2, _LZ1, _LZ2 = 7, 8, 9, 10, 11, 12, 13  # low-pass biquad
_D1, _D2, _D3, _D4 = 14, 15, 16, 17  # band-pass history for the derivative
_MWI_SUM, _MWI_P1, _MWI_P2 = 18, 19, 20  # running sum, previous two MWI values
_CAND_VAL, _SPKI, _NPKI, _LAST_SLOPE = 21, 22, 23, 24
_LEARN_MAX, _LEARN_SUM, _LAST_X = 25, 26, 27
_DGAIN, _CLIP, _MIN_AMP = 28, 29, 30
_RR_AVG1, _RR_AVG2 = 31, 32
_NF = 33
# integer state
_N, _CAND_IDX, _LAST_M, _LAST_R = 0, 1, 2, 3
_LEARN_END, _LEARNED, _N_STORE, _SB_DEADLINE = 4, 5, 6, 7
_FLAT_RUN, _LAST_BAD, _W, _REFR, _TWAVE, _MASK_SQ, _MASK_BP = 8, 9, 10, 11, 12, 13, 14
_BP_DELAY, _N_LEARN_PK, _FLAT_MIN, _RR_N1, _RR_N2, _RR_MISS = 15, 16, 17, 18, 19, 20
_GUARD, _N_OUT_TOTAL, _SB_FROM = 21, 22, 23
_NI = 24
# peak records (stored noise peaks and learning-phase peaks): columns
_PK_M, _PK_VAL, _PK_R, _PK_AMP, _PK_SLOPE, _PK_T = 0, 1, 2, 3, 4, 5
_PK_COLS = 6
_STORE_CAP = 32
_LEARN_CAP = 16
_RR_LEN = 8
_FAR = np.int64(2**62)


def _biquad(kind: str, fc: float, fs: float) -> tuple[float, float, float, float, float]:
    """2nd-order Butterworth biquad (RBJ cookbook, Q = 1/sqrt(2)), normalised a0 = 1."""
    w0 = 2.0 * math.pi * fc / fs
    alpha = math.sin(w0) / (2.0 * math.sqrt(0.5))
    c = math.cos(w0)
    if kind == "high":
        b0, b1, b2 = (1 + c) / 2, -(1 + c), (1 + c) / 2
    else:
        b0, b1, b2 = (1 - c) / 2, 1 - c, (1 - c) / 2
    a0, a1, a2 = 1 + alpha, -2 * c, 1 - alpha
    return b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0


def _group_delay(coefs: list[tuple[float, ...]], f: float, fs: float) -> float:
    """Group delay in samples of a biquad cascade at frequency ``f`` (numerical phase slope)."""

    def phase(freq: float) -> float:
        z = np.exp(-1j * 2 * math.pi * freq / fs)
        h = 1.0 + 0j
        for b0, b1, b2, a1, a2 in coefs:
            h *= (b0 + b1 * z + b2 * z * z) / (1 + a1 * z + a2 * z * z)
        return float(np.angle(h))

    df = 0.01
    dphi = phase(f + df) - phase(f - df)
    dphi = (dphi + math.pi) % (2 * math.pi) - math.pi
    return -dphi / (2 * math.pi * 2 * df) * fs


# ----------------------------------------------------------------------------------------
# numba kernels (private, no validation: the wrapper guarantees shapes and dtypes)
# ----------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _rr_update(sf, si, rr1, rr2, rr):  # pragma: no cover - compiled
    """Push one RR interval (samples) into the recent and the regular-RR averages."""
    n1 = si[_RR_N1]
    rr1[n1 % _RR_LEN] = rr
    si[_RR_N1] = n1 + 1
    k = min(n1 + 1, _RR_LEN)
    s = 0.0
    for j in range(k):
        s += rr1[j]
    sf[_RR_AVG1] = s / k
    avg2 = sf[_RR_AVG2]
    if si[_RR_N2] == 0 or (0.92 * avg2 <= rr <= 1.16 * avg2):
        n2 = si[_RR_N2]
        rr2[n2 % _RR_LEN] = rr
        si[_RR_N2] = n2 + 1
        k = min(n2 + 1, _RR_LEN)
        s = 0.0
        for j in range(k):
            s += rr2[j]
        sf[_RR_AVG2] = s / k
        si[_RR_MISS] = 0
    else:
        si[_RR_MISS] += 1
        if si[_RR_MISS] >= _RR_LEN:  # rhythm changed: restart the regular average
            k = min(n1 + 1, _RR_LEN)
            for j in range(k):
                rr2[j] = rr1[j]
            si[_RR_N2] = k
            sf[_RR_AVG2] = sf[_RR_AVG1]
            si[_RR_MISS] = 0


@numba.njit(cache=True, nogil=True)
def _set_deadline(sf, si):  # pragma: no cover - compiled
    """Sample index at which searchback must run (only if peaks are stored)."""
    if si[_N_STORE] > 0 and si[_SB_FROM] >= 0:
        si[_SB_DEADLINE] = si[_SB_FROM] + np.int64(1.66 * sf[_RR_AVG2]) + si[_REFR]
    else:
        si[_SB_DEADLINE] = _FAR


@numba.njit(cache=True, nogil=True)
def _accept(sf, si, rr1, rr2, store, out, n_out, m, val, r, slope, weight):  # pragma: no cover
    """Record a QRS (MWI peak ``m``, R peak ``r``); returns the new output count."""
    sf[_SPKI] = weight * val + (1.0 - weight) * sf[_SPKI]
    sf[_LAST_SLOPE] = slope
    if si[_LAST_R] >= 0:
        _rr_update(sf, si, rr1, rr2, float(r - si[_LAST_R]))
    si[_LAST_M] = m
    si[_LAST_R] = r
    si[_SB_FROM] = m
    # drop stored peaks at or before this QRS
    k = 0
    for j in range(si[_N_STORE]):
        if store[j, _PK_M] > m:
            for c in range(_PK_COLS):
                store[k, c] = store[j, c]
            k += 1
    si[_N_STORE] = k
    _set_deadline(sf, si)
    out[n_out] = r
    si[_N_OUT_TOTAL] += 1
    return n_out + 1


@numba.njit(cache=True, nogil=True)
def _searchback(sf, si, rr1, rr2, store, out, n_out, t_dec):  # pragma: no cover - compiled
    """Run searchback while the decided-up-to time ``t_dec`` is past the RR limit."""
    for _ in range(_STORE_CAP + 8):  # bounded
        if si[_SB_FROM] < 0 or t_dec - si[_SB_FROM] <= 1.66 * sf[_RR_AVG2]:
            break
        thr1 = sf[_NPKI] + 0.25 * (sf[_SPKI] - sf[_NPKI])
        thr2 = 0.5 * thr1
        best = -1
        bval = thr2
        for j in range(si[_N_STORE]):
            if store[j, _PK_T] == 0.0 and store[j, _PK_VAL] > bval:
                bval = store[j, _PK_VAL]
                best = j
        if best >= 0:
            n_out = _accept(sf, si, rr1, rr2, store, out, n_out,
                            np.int64(store[best, _PK_M]), store[best, _PK_VAL],
                            np.int64(store[best, _PK_R]), store[best, _PK_SLOPE], 0.25)
        else:
            # nothing above THR2: lower the signal level (gain drop), retry at the next RR
            sf[_SPKI] = max(0.5 * sf[_SPKI], 3.0 * sf[_NPKI])
            si[_SB_FROM] = t_dec  # restart the RR clock without inventing a beat
            _set_deadline(sf, si)
            break
    return n_out


@numba.njit(cache=True, nogil=True)
def _classify(sf, si, rr1, rr2, store, out, n_out, pk):  # pragma: no cover - compiled
    """Classify one MWI peak record ``pk`` as QRS or noise."""
    m = np.int64(pk[_PK_M])
    val = pk[_PK_VAL]
    r = np.int64(pk[_PK_R])
    amp = pk[_PK_AMP]
    slope = pk[_PK_SLOPE]
    if si[_LAST_BAD] >= r - si[_GUARD]:
        return n_out  # QRS window touches bad samples: report nothing, learn nothing
    n_out = _searchback(sf, si, rr1, rr2, store, out, n_out, m)
    thr1 = sf[_NPKI] + 0.25 * (sf[_SPKI] - sf[_NPKI])
    is_t = (si[_LAST_M] >= 0 and m - si[_LAST_M] < si[_TWAVE]
            and slope < 0.5 * sf[_LAST_SLOPE])
    if val > thr1 and not is_t and amp >= sf[_MIN_AMP]:
        return _accept(sf, si, rr1, rr2, store, out, n_out, m, val, r, slope, 0.125)
    sf[_NPKI] = 0.125 * val + 0.875 * sf[_NPKI]
    if amp >= sf[_MIN_AMP]:
        k = si[_N_STORE]
        if k == _STORE_CAP:  # full: forget the oldest
            for j in range(1, _STORE_CAP):
                for c in range(_PK_COLS):
                    store[j - 1, c] = store[j, c]
            k -= 1
        for c in range(_PK_COLS):
            store[k, c] = pk[c]
        store[k, _PK_T] = 1.0 if is_t else 0.0
        si[_N_STORE] = k + 1
        _set_deadline(sf, si)
    return n_out


@numba.njit(cache=True, nogil=True)
def _qrs_kernel(x, sf, si, ring_sq, ring_bp, store, learn, rr1, rr2, pk, out):  # pragma: no cover
    """Feed ``x`` (mV) through the detector; writes R-peak indices to ``out``, returns count."""
    n_out = 0
    hb0, hb1, hb2, ha1, ha2 = sf[_HB0], sf[_HB1], sf[_HB2], sf[_HA1], sf[_HA2]
    lb0, lb1, lb2, la1, la2 = sf[_LB0], sf[_LB1], sf[_LB2], sf[_LA1], sf[_LA2]
    hz1, hz2, lz1, lz2 = sf[_HZ1], sf[_HZ2], sf[_LZ1], sf[_LZ2]
    d1, d2, d3, d4 = sf[_D1], sf[_D2], sf[_D3], sf[_D4]
    msum, p1, p2 = sf[_MWI_SUM], sf[_MWI_P1], sf[_MWI_P2]
    last_x, clip, dgain = sf[_LAST_X], sf[_CLIP], sf[_DGAIN]
    n = si[_N]
    w = si[_W]
    refr = si[_REFR]
    msq = si[_MASK_SQ]
    mbp = si[_MASK_BP]
    flat_run = si[_FLAT_RUN]
    flat_min = si[_FLAT_MIN]
    for i in range(x.shape[0]):
        v = x[i]
        if not math.isfinite(v):
            v = last_x
            si[_LAST_BAD] = n
        elif v > clip or v < -clip:
            v = clip if v > 0 else -clip
            si[_LAST_BAD] = n
        if v == last_x:
            flat_run += 1
            if flat_run >= flat_min:
                si[_LAST_BAD] = n
        else:
            flat_run = 0
        last_x = v
        # band-pass: high-pass then low-pass, transposed direct form II
        h = hb0 * v + hz1
        hz1 = hb1 * v - ha1 * h + hz2
        hz2 = hb2 * v - ha2 * h
        b = lb0 * h + lz1
        lz1 = lb1 * h - la1 * b + lz2
        lz2 = lb2 * h - la2 * b
        # five-point derivative (Pan-Tompkins), squared, moving-window integral
        der = (2.0 * b + d1 - d3 - 2.0 * d4) * dgain
        d4, d3, d2, d1 = d3, d2, d1, b
        sq = der * der
        ring_bp[n & mbp] = b
        ring_sq[n & msq] = sq
        msum += sq - ring_sq[(n - w) & msq]
        if (n & msq) == 0:  # re-sum exactly now and then: no drift after huge inputs
            msum = 0.0
            for j in range(w):
                msum += ring_sq[(n - j) & msq]
        mwi = msum
        # local maximum of the MWI at n-1
        if p1 > p2 and p1 >= mwi and p1 > sf[_CAND_VAL]:
            sf[_CAND_VAL] = p1
            si[_CAND_IDX] = n - 1
        p2 = p1
        p1 = mwi
        if si[_LEARNED] == 0:
            if mwi > sf[_LEARN_MAX]:
                sf[_LEARN_MAX] = mwi
            sf[_LEARN_SUM] += mwi
        c = si[_CAND_IDX]
        if c >= 0 and n - c >= refr:
            # the candidate is a peak: build its record from the band-pass ring
            amp = 0.0
            slope = 0.0
            ridx = c
            prev = ring_bp[(c - w - 4) & mbp]
            for k in range(c - w - 3, c + 1):
                bk = ring_bp[k & mbp]
                if abs(bk) > amp:
                    amp = abs(bk)
                    ridx = k
                dk = abs(bk - prev)
                if dk > slope:
                    slope = dk
                prev = bk
            ridx -= si[_BP_DELAY]
            if ridx < 0:
                ridx = 0
            pk[_PK_M] = c
            pk[_PK_VAL] = sf[_CAND_VAL]
            pk[_PK_R] = ridx
            pk[_PK_AMP] = amp
            pk[_PK_SLOPE] = slope
            pk[_PK_T] = 0.0
            sf[_CAND_VAL] = 0.0
            si[_CAND_IDX] = -1
            if si[_LEARNED] == 1:
                n_out = _classify(sf, si, rr1, rr2, store, out, n_out, pk)
            elif si[_N_LEARN_PK] < _LEARN_CAP:
                for cc in range(_PK_COLS):
                    learn[si[_N_LEARN_PK], cc] = pk[cc]
                si[_N_LEARN_PK] += 1
        if si[_LEARNED] == 0 and n >= si[_LEARN_END]:
            # end of the 2 s learning phase: initial levels, then classify queued peaks
            si[_LEARNED] = 1
            sf[_SPKI] = 0.5 * sf[_LEARN_MAX]
            sf[_NPKI] = 0.5 * sf[_LEARN_SUM] / (n + 1)
            for j in range(si[_N_LEARN_PK]):
                n_out = _classify(sf, si, rr1, rr2, store, out, n_out, learn[j])
        elif n >= si[_SB_DEADLINE]:
            n_out = _searchback(sf, si, rr1, rr2, store, out, n_out, n - refr)
        n += 1
    sf[_HZ1], sf[_HZ2], sf[_LZ1], sf[_LZ2] = hz1, hz2, lz1, lz2
    sf[_D1], sf[_D2], sf[_D3], sf[_D4] = d1, d2, d3, d4
    sf[_MWI_SUM], sf[_MWI_P1], sf[_MWI_P2] = msum, p1, p2
    sf[_LAST_X] = last_x
    si[_N] = n
    si[_FLAT_RUN] = flat_run
    return n_out


# ----------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------
def _check_fs(fs: float, lo: float = FS_MIN, hi: float = FS_MAX) -> float:
    try:
        fs = float(fs)
    except (TypeError, ValueError):
        raise UsageError(f"fs must be a number in Hz, got {fs!r}") from None
    if not (lo <= fs <= hi):
        raise UsageError(f"fs must be within {lo:g}-{hi:g} Hz, got {fs:g}")
    return fs


def _as_1d(sig: object, name: str) -> np.ndarray:
    """Return ``sig`` as a contiguous 1-D float64 array (no copy when it already is one)."""
    try:
        a = np.asarray(sig)
    except Exception as exc:  # ragged lists and the like
        raise UsageError(f"{name} must be a 1-D numeric array: {exc}") from None
    if a.ndim != 1:
        raise UsageError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise UsageError(f"{name} must be numeric, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float64)


class QRSDetector:
    """Streaming QRS detector for one ECG lead (state kept across chunks).

    Parameters
    ----------
    fs : float
        Sampling rate in Hz, 125-1000.
    clip_mv : float, optional
        Samples beyond +/- ``clip_mv`` (mV) are clipped and marked bad (saturation).
    flat_s : float, optional
        A run of identical sample values at least this long (s) marks the samples bad
        (leads off, ADC rail, dropout filled with a constant).
    min_amp_mv : float, optional
        Smallest band-passed (5-15 Hz) QRS amplitude in mV that can be reported as a beat;
        below it the signal is treated as asystole / no signal.

    Notes
    -----
    Feed chunks of any size with :meth:`process`; it returns the absolute sample indices
    (int64, strictly increasing over the stream) of the R peaks decided in that call.  A
    beat is decided about 0.35 s after its R peak, so the beats of a chunk may come with
    the next one.  Call :meth:`flush` at the end of a record to decide the last beat.
    Invariants: every returned index is ``< samples_seen``; indices never repeat.

    Examples
    --------
    >>> from vitalcore.dsp import QRSDetector, simulate_ecg
    >>> ecg, truth = simulate_ecg(20.0, 250.0, hr_bpm=72.0, seed=1)
    >>> det = QRSDetector(250.0)
    >>> beats = np.concatenate([det.process(ecg[i:i + 250]) for i in range(0, ecg.size, 250)]
    ...                        + [det.flush()])
    """

    def __init__(self, fs: float, *, clip_mv: float = 50.0, flat_s: float = 0.2,
                 min_amp_mv: float = 0.03) -> None:
        self.fs = _check_fs(fs)
        if not (clip_mv > 0 and math.isfinite(clip_mv)):
            raise UsageError(f"clip_mv must be a positive number of mV, got {clip_mv!r}")
        if not (0.02 <= flat_s <= 10):
            raise UsageError(f"flat_s must be within 0.02-10 s, got {flat_s!r}")
        if not (0 <= min_amp_mv < 10):
            raise UsageError(f"min_amp_mv must be within 0-10 mV, got {min_amp_mv!r}")
        self.clip_mv = float(clip_mv)
        self.flat_s = float(flat_s)
        self.min_amp_mv = float(min_amp_mv)
        self.reset()

    def reset(self) -> None:
        """Forget all state (start a new record)."""
        fs = self.fs
        hp = _biquad("high", 5.0, fs)
        lp = _biquad("low", 15.0, fs)
        sf = np.zeros(_NF)
        si = np.zeros(_NI, dtype=np.int64)
        sf[_HB0:_HA2 + 1] = hp
        sf[_LB0:_LA2 + 1] = lp
        sf[_DGAIN] = fs / 8.0
        sf[_CLIP] = self.clip_mv
        sf[_MIN_AMP] = self.min_amp_mv
        sf[_LAST_X] = np.nan  # first sample never counts as a flat run
        sf[_RR_AVG1] = sf[_RR_AVG2] = fs  # 60 bpm until beats are seen
        w = max(1, int(round(0.150 * fs)))
        refr = int(round(0.200 * fs))
        si[_W] = w
        si[_REFR] = refr
        si[_TWAVE] = int(round(0.360 * fs))
        si[_CAND_IDX] = -1
        si[_LAST_M] = si[_LAST_R] = si[_SB_FROM] = -1
        si[_LAST_BAD] = -(2**62)
        si[_LEARN_END] = int(round(2.0 * fs))
        si[_SB_DEADLINE] = _FAR
        si[_FLAT_MIN] = max(2, int(round(self.flat_s * fs)))
        si[_GUARD] = w
        # band-pass group delay at 10 Hz plus the derivative's 2 samples are removed
        # from the located extremum (which is found on the band-passed signal)
        si[_BP_DELAY] = int(round(_group_delay([hp, lp], 10.0, fs)))
        self._sf, self._si = sf, si
        self._ring_sq = np.zeros(1 << int(math.ceil(math.log2(w + 2))))
        si[_MASK_SQ] = self._ring_sq.size - 1
        self._ring_bp = np.zeros(1 << int(math.ceil(math.log2(refr + w + 8))))
        si[_MASK_BP] = self._ring_bp.size - 1
        self._store = np.zeros((_STORE_CAP, _PK_COLS))
        self._learn = np.zeros((_LEARN_CAP, _PK_COLS))
        self._rr1 = np.zeros(_RR_LEN)
        self._rr2 = np.zeros(_RR_LEN)
        self._pk = np.zeros(_PK_COLS)

    @property
    def samples_seen(self) -> int:
        """Number of samples fed so far."""
        return int(self._si[_N])

    @property
    def rr_mean_s(self) -> float:
        """Mean of the last 8 RR intervals in s (1.0 before two beats were found)."""
        return float(self._sf[_RR_AVG1]) / self.fs

    def process(self, chunk: object) -> np.ndarray:
        """Feed one chunk of ECG (mV); return the R-peak sample indices decided so far.

        Parameters
        ----------
        chunk : array_like, 1-D
            Next samples of the lead in mV, any length (0 is allowed). NaN/inf samples
            are treated as signal loss.

        Returns
        -------
        numpy.ndarray of int64
            Absolute sample indices (from the first sample after construction / reset).
        """
        x = _as_1d(chunk, "chunk")
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        cap = x.size // max(1, int(self._si[_REFR])) + 2 * _STORE_CAP + _LEARN_CAP + 8
        out = np.empty(cap, dtype=np.int64)
        k = _qrs_kernel(x, self._sf, self._si, self._ring_sq, self._ring_bp, self._store,
                        self._learn, self._rr1, self._rr2, self._pk, out)
        return out[:k]

    def flush(self) -> np.ndarray:
        """Decide the pending beat at the end of a record; returns its index if any.

        The detector is fed the last value held for 0.4 s (not counted as bad); beats
        located in that padding are dropped. Call :meth:`reset` before reusing it.
        """
        n0 = self.samples_seen
        pad = int(round(0.4 * self.fs))
        si = self._si
        flat_min = si[_FLAT_MIN]
        si[_FLAT_MIN] = 2**62
        last = float(self._sf[_LAST_X])
        beats = self._run(np.full(pad, last if math.isfinite(last) else 0.0))
        si[_FLAT_MIN] = flat_min
        return beats[beats < n0]


def detect_qrs(ecg: object, fs: float, **kwargs: float) -> np.ndarray:
    """Detect QRS complexes in one ECG lead.

    Parameters
    ----------
    ecg : array_like, 1-D
        ECG lead in mV.
    fs : float
        Sampling rate in Hz, 125-1000.
    **kwargs
        Passed to :class:`QRSDetector` (``clip_mv``, ``flat_s``, ``min_amp_mv``).

    Returns
    -------
    numpy.ndarray of int64
        R-peak sample indices, strictly increasing, each in ``[0, len(ecg))``.
        Identical to feeding :class:`QRSDetector` chunk by chunk and flushing.

    Raises
    ------
    vitalcore.errors.UsageError
        ``ecg`` is not 1-D numeric or ``fs`` is outside 125-1000 Hz.
    """
    det = QRSDetector(fs, **kwargs)
    x = _as_1d(ecg, "ecg")
    return np.concatenate([det._run(x), det.flush()])
