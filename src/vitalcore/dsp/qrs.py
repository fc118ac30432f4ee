"""QRS detection on single-lead ECG: a streaming Pan-Tompkins-class detector in numba.

One private kernel, :func:`_qrs_kernel`, consumes samples one at a time and keeps every
piece of state (filter memories, ring buffers, adaptive thresholds, RR averages, pending
peaks) in numpy arrays owned by a :class:`QRSDetector`.  The batch function
:func:`detect_qrs` feeds the whole record through the same kernel and then flushes it, so
streaming and batch results agree by construction, for any chunking.

Pipeline per sample (Pan & Tompkins 1985, with the Hamilton & Tompkins 1986 feature and
threshold position):

1. sanitise: non-finite samples hold the last finite value, ``|x|`` is clipped to
   ``clip_mv``; both, and runs of identical values longer than ``flat_s``, mark the
   sample *bad* (leads off, saturation, dropout).  The high-pass starts settled on the
   first sample (no start-up transient from an electrode offset);
2. band-pass 5-15 Hz (2nd-order Butterworth high-pass then low-pass, bilinear transform);
3. five-point derivative, absolute value (Hamilton-Tompkins; linear in QRS amplitude, so
   small aberrant beats are not squashed as by squaring), moving-window integration over
   150 ms (MWI);
4. MWI peaks: a local maximum becomes a peak once no higher local maximum follows within
   the 200 ms refractory period;
5. adaptive thresholds ``THR1 = NPKI + 0.3125 (SPKI - NPKI)``, ``THR2 = THR1 / 2``
   (signal/noise peak levels, exponential averages with weight 1/8), after a 2 s learning
   phase (``SPKI = max/2``, ``NPKI = mean/2`` of the MWI);
6. T waves: a peak whose maximum band-pass slope is under half that of the preceding
   QRS (pending or reported) and which comes within the T-wave window after it is a T
   wave, above ``THR1`` or not (so searchback never takes it either).  The window is
   360 ms (Pan-Tompkins) up to an RR of 1 s and ``360 ms x sqrt(RR / 1 s)`` (Bazett's
   QT rate law) after a longer RR (capped at 3 s; ~0.49 s at 33 bpm), where the RR is
   the longer of the one ending at that QRS and the regular-RR average;
   a peak above ``THR1`` becomes a *pending* QRS for 360 ms: a later peak in that span
   with over 1.5x its slope replaces it (the pending one was a tall P wave or an
   artefact); otherwise the pending QRS is confirmed;
7. searchback: if no QRS came within 1.66 x the regular-RR average (mean of the last 8
   RR within 92-116 % of it, reset after 8 misses; the first RR measured sets it, 2 s
   before that), the largest stored non-T peak above ``THR2`` is taken (level weight
   1/4); if none is, ``SPKI`` is halved (not below ``3 NPKI``) so the detector recovers
   from a gain drop without inventing a beat;
8. the R peak is the largest absolute band-pass value in the QRS window, minus the lag
   the filters give a template R wave.  Beats whose QRS window touches a bad sample, or
   whose band-pass amplitude is under ``min_amp_mv``, are never reported.

Latency: a beat is reported about 0.2 s (refractory) + 0.36 s (pending) after its R peak.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from vitalcore.dsp import _vfkernel as vk
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
_FS = 33  # sampling rate, Hz
_NF = 34
# integer state
_N, _CAND_IDX, _LAST_M, _LAST_R = 0, 1, 2, 3
_LEARN_END, _LEARNED, _N_STORE, _SB_DEADLINE = 4, 5, 6, 7
_FLAT_RUN, _LAST_BAD, _W, _REFR, _TWAVE, _MASK_SQ, _MASK_BP = 8, 9, 10, 11, 12, 13, 14
_BP_DELAY, _N_LEARN_PK, _FLAT_MIN, _RR_N1, _RR_N2, _RR_MISS = 15, 16, 17, 18, 19, 20
_GUARD, _PEND, _SB_FROM, _PEND_AT = 21, 22, 23, 24
_OFF_SQ, _OFF_BP, _OFF_STORE, _OFF_LEARN, _OFF_RR1, _OFF_RR2, _OFF_PK, _OFF_PEND = range(25, 33)
_NI = 33
# peak records (stored noise peaks and learning-phase peaks): columns
_PK_M, _PK_VAL, _PK_R, _PK_AMP, _PK_SLOPE, _PK_T = 0, 1, 2, 3, 4, 5
_PK_COLS = 6
_TH = 0.3125  # detection threshold position between noise and signal level (Hamilton)
_STORE_CAP = 32
_LEARN_CAP = 16
_RR_LEN = 8
_FAR = np.int64(2**62)
_EMPTY = np.empty(0, dtype=np.int64)
_EMPTY.flags.writeable = False


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


def _locate_delay(coefs: list[tuple[float, ...]], fs: float, width_s: float = 0.010,
                  signed: bool = False) -> int:
    """Lag (samples) of the filtered absolute maximum behind a template wave's apex.

    The template is a Gaussian (SD ``width_s``; 10 ms: an R wave) in the middle of a
    4 s buffer; the lag is subtracted from located maxima (of the absolute value, or of
    the value itself if ``signed``) to point at the apex.
    """
    n = int(4 * fs)
    t = (np.arange(n) - n // 2) / fs
    y = np.exp(-0.5 * (t / width_s) ** 2)
    for b0, b1, b2, a1, a2 in coefs:
        z1 = z2 = 0.0
        out = np.empty(n)
        for i, v in enumerate(y.tolist()):
            o = b0 * v + z1
            z1 = b1 * v - a1 * o + z2
            z2 = b2 * v - a2 * o
            out[i] = o
        y = out
    return int(np.argmax(y if signed else np.abs(y))) - n // 2


# ----------------------------------------------------------------------------------------
# numba kernels (private, no validation: the wrapper guarantees shapes and dtypes)
# ----------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _rr_update(sf, si, rr1, rr2, rr):  # pragma: no cover - compiled
    """Push one RR interval (samples) into the recent and the regular-RR averages."""
    n1 = si[_RR_N1]
    rr1[n1 % _RR_LEN] = rr
    si[_RR_N1] = n1 + 1
    if n1 == 0:  # the first RR sets both averages (Pan-Tompkins learning phase 2)
        rr2[0] = rr
        si[_RR_N2] = 1
        sf[_RR_AVG1] = sf[_RR_AVG2] = rr
        return
    k = min(n1 + 1, _RR_LEN)
    s = 0.0
    for j in range(k):
        s += rr1[j]
    sf[_RR_AVG1] = s / k
    avg2 = sf[_RR_AVG2]
    if 0.92 * avg2 <= rr <= 1.16 * avg2:
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
def _accept(sf, si, rr1, rr2, store, out, n_out, pk, weight):  # pragma: no cover - compiled
    """Report the QRS of peak record ``pk``; ``weight`` updates the signal level."""
    m = np.int64(pk[_PK_M])
    r = np.int64(pk[_PK_R])
    sf[_SPKI] = weight * pk[_PK_VAL] + (1.0 - weight) * sf[_SPKI]
    sf[_LAST_SLOPE] = pk[_PK_SLOPE]
    if si[_LAST_R] >= 0:
        _rr_update(sf, si, rr1, rr2, float(r - si[_LAST_R]))
    si[_LAST_M] = m
    si[_LAST_R] = r
    si[_SB_FROM] = m
    # drop stored peaks at or before this QRS
    k = 0
    for j in range(si[_N_STORE]):
        if store[j, _PK_M] > m:
            store[k, :] = store[j, :]
            k += 1
    si[_N_STORE] = k
    _set_deadline(sf, si)
    out[n_out] = r
    return n_out + 1


@numba.njit(cache=True, nogil=True)
def _searchback(sf, si, rr1, rr2, store, pend, out, n_out, t_dec):  # pragma: no cover
    """Searchback while the decided-up-to time ``t_dec`` is 1.66 RR past the last QRS.

    Only peaks before a pending QRS candidate are eligible (beats stay in time order).
    """
    limit = np.int64(pend[_PK_M]) if si[_PEND] else t_dec
    for _ in range(_STORE_CAP + 8):  # bounded
        if si[_SB_FROM] < 0 or limit - si[_SB_FROM] <= 1.66 * sf[_RR_AVG2]:
            break
        thr2 = 0.5 * (sf[_NPKI] + _TH * (sf[_SPKI] - sf[_NPKI]))
        best = -1
        bval = thr2
        for j in range(si[_N_STORE]):
            if store[j, _PK_T] == 0.0 and store[j, _PK_VAL] > bval and store[j, _PK_M] < limit:
                bval = store[j, _PK_VAL]
                best = j
        if best >= 0:
            n_out = _accept(sf, si, rr1, rr2, store, out, n_out, store[best], 0.25)
        else:
            # nothing above THR2: lower the signal level (gain drop), retry one RR later
            sf[_SPKI] = max(0.5 * sf[_SPKI], 3.0 * sf[_NPKI])
            si[_SB_FROM] = limit  # restart the RR clock without inventing a beat
            _set_deadline(sf, si)
            break
    return n_out


@numba.njit(cache=True, nogil=True)
def _noise(sf, si, store, pk, is_t):  # pragma: no cover - compiled
    """Book a non-QRS peak: update the noise level, keep it for searchback."""
    sf[_NPKI] = 0.125 * pk[_PK_VAL] + 0.875 * sf[_NPKI]
    if pk[_PK_AMP] < sf[_MIN_AMP]:
        return
    k = si[_N_STORE]
    if k == _STORE_CAP:  # full: forget the oldest
        store[:-1, :] = store[1:, :]
        k -= 1
    store[k, :] = pk
    store[k, _PK_T] = 1.0 if is_t else 0.0
    si[_N_STORE] = k + 1
    _set_deadline(sf, si)


@numba.njit(cache=True, nogil=True)
def _t_window(sf, si, rr1, pend):  # pragma: no cover - compiled
    """Span (samples) after the reference QRS in which a low-slope peak is a T wave.

    360 ms (Pan-Tompkins) while the RR is at most 1 s; after a longer RR the T wave comes
    later (QT lengthens with RR), so the span grows as sqrt(RR) (Bazett's rate law applied
    to the 360 ms at 60 bpm), RR capped at 3 s.  The RR is the longer of the one that
    ended at the reference QRS (the pending one, or the last reported) and the
    regular-RR average: a T wave once counted as a beat gives a short RR, which must not
    shorten the span for the next T wave (the regular average ignores such RRs until
    8 irregular ones in a row reset it).
    """
    rr = sf[_RR_AVG2] if si[_RR_N1] > 0 else 0.0  # no RR measured yet: 360 ms
    if si[_PEND]:
        if si[_LAST_R] >= 0:
            rr = max(rr, pend[_PK_R] - si[_LAST_R])
    elif si[_RR_N1] > 0:
        rr = max(rr, rr1[(si[_RR_N1] - 1) % _RR_LEN])
    rr_s = min(rr / sf[_FS], 3.0)
    if rr_s <= 1.0:
        return si[_TWAVE]
    return np.int64(si[_TWAVE] * math.sqrt(rr_s))


@numba.njit(cache=True, nogil=True)
def _classify(sf, si, rr1, rr2, store, pend, out, n_out, pk):  # pragma: no cover - compiled
    """Classify one MWI peak record ``pk``: noise, T wave, or (pending) QRS.

    A peak within the T-wave window of the reference QRS (the pending one, else the last
    reported; :func:`_t_window`) with under half its maximal slope is a T wave, whether
    or not it exceeds THR1, and is stored flagged so that searchback never takes it.
    A QRS candidate stays pending for 360 ms: a later candidate in that span with over
    1.5x its slope replaces it (the pending one was a P wave or an artefact).
    """
    m = np.int64(pk[_PK_M])
    if si[_LAST_BAD] >= np.int64(pk[_PK_R]) - si[_GUARD]:
        return n_out  # QRS window touches bad samples: report nothing, learn nothing
    n_out = _searchback(sf, si, rr1, rr2, store, pend, out, n_out, m)
    if si[_PEND]:
        ref_m, ref_slope = np.int64(pend[_PK_M]), pend[_PK_SLOPE]
    else:
        ref_m, ref_slope = si[_LAST_M], sf[_LAST_SLOPE]
    in_t = ref_m >= 0 and m - ref_m < _t_window(sf, si, rr1, pend)
    is_t = in_t and pk[_PK_SLOPE] < 0.5 * ref_slope
    thr1 = sf[_NPKI] + _TH * (sf[_SPKI] - sf[_NPKI])
    if pk[_PK_VAL] <= thr1 or pk[_PK_AMP] < sf[_MIN_AMP] or is_t:
        _noise(sf, si, store, pk, is_t)  # a T wave is never taken by searchback either
        return n_out
    if si[_PEND] and m - ref_m < si[_TWAVE] and pk[_PK_SLOPE] > 1.5 * ref_slope:
        _noise(sf, si, store, pend, True)  # the pending peak was a tall P wave or artefact
        si[_PEND] = 0
    if si[_PEND]:
        n_out = _accept(sf, si, rr1, rr2, store, out, n_out, pend, 0.125)
    pend[:] = pk
    si[_PEND] = 1
    si[_PEND_AT] = m + si[_TWAVE] + si[_REFR]
    return n_out


@numba.njit(cache=True, nogil=True)
def _next_event(si, emit_at):  # pragma: no cover - compiled
    """Earliest sample index at which the kernel must leave its per-sample fast path."""
    if not si[_LEARNED]:
        return min(emit_at, si[_LEARN_END])
    t = min(emit_at, si[_SB_DEADLINE])
    return min(t, si[_PEND_AT]) if si[_PEND] else t


@numba.njit(cache=True, nogil=True)
def _peak_record(ring_bp, mbp, c, w, delay, val, pk):  # pragma: no cover - compiled
    """Fill ``pk`` for the MWI peak at ``c``: R location, band-pass amplitude and slope."""
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
    pk[_PK_M] = c
    pk[_PK_VAL] = val
    pk[_PK_R] = max(ridx - delay, 0)
    pk[_PK_AMP] = amp
    pk[_PK_SLOPE] = slope
    pk[_PK_T] = 0.0


@numba.njit(cache=True, nogil=True)
def _vf_event(vfb, vfi, out, n_rel, n_out, count, last_bad, wout):  # pragma: no cover
    """One second ended: hold the new beats ``out[n_rel:n_out]``, analyse, release."""
    if vfi[vk._NHOLD] + (n_out - n_rel) > vk.HOLD_CAP:  # unreachable in practice
        n_rel = vk.release(vfi, out, n_rel, True)
    vk.hold(vfi, out[n_rel:], n_out - n_rel)
    if count > 0:
        vk.vf_second(vfb, vfi, count, last_bad, wout)
    return vk.release(vfi, out, n_rel, False)


@numba.njit(cache=True, nogil=True)
def _qrs_kernel(x, blob, si, out, vfb, vfi, wout):  # pragma: no cover - compiled
    """Feed ``x`` (mV) through the detector; writes R-peak indices to ``out``, returns count.

    ``blob`` holds the float state and all buffers at the offsets recorded in ``si``
    (few arguments keep the per-call dispatch cost low for small chunks).  The per-sample
    path works on locals only; peaks, the end of learning, searchback and the once per
    second VF analysis (``vfb``/``vfi``, window records to ``wout``) are rare events
    folded into one comparison against ``next_event``.  With VF suppression, beats wait
    in ``vfi`` until the VF decision covering them is final.
    """
    sf = blob[:_NF]
    ring_sq = blob[si[_OFF_SQ]:si[_OFF_BP]]
    ring_bp = blob[si[_OFF_BP]:si[_OFF_STORE]]
    store = blob[si[_OFF_STORE]:si[_OFF_LEARN]].reshape((_STORE_CAP, _PK_COLS))
    learn = blob[si[_OFF_LEARN]:si[_OFF_RR1]].reshape((_LEARN_CAP, _PK_COLS))
    rr1 = blob[si[_OFF_RR1]:si[_OFF_RR2]]
    rr2 = blob[si[_OFF_RR2]:si[_OFF_PK]]
    pk = blob[si[_OFF_PK]:si[_OFF_PEND]]
    pend = blob[si[_OFF_PEND]:si[_OFF_PEND] + _PK_COLS]
    n_out = 0
    n_rel = 0  # beats released after their VF decision (front of ``out``)
    sup = vfi[vk._SUP] != 0
    vfi[vk._NWIN] = 0
    vf_at = vfi[vk._VF_AT]
    hop = vfi[vk._L]
    # VF preprocessing (see _vfkernel): filter state and per-second running statistics
    vmp = vfi[vk._MP]
    ring_vf = vfb[np.int64(vfb[vk._OFF_P]):np.int64(vfb[vk._OFF_P]) + vmp + 1]
    vm1, vm2, vm3, vm4 = vfb[vk._M1], vfb[vk._M2], vfb[vk._M3], vfb[vk._M4]
    vhb0, vha1, vhz = vfb[vk._HB0], vfb[vk._HA1], vfb[vk._HZ]
    vlb0, vlb1, vlb2 = vfb[vk._LB0], vfb[vk._LB1], vfb[vk._LB2]
    vla1, vla2, vlz1, vlz2 = vfb[vk._LA1], vfb[vk._LA2], vfb[vk._LZ1], vfb[vk._LZ2]
    s_own, s_win, vmx = vfb[vk._S_OWN], vfb[vk._S_WIN], vfb[vk._S_MAX]
    hb0, hb1, hb2, ha1, ha2 = sf[_HB0], sf[_HB1], sf[_HB2], sf[_HA1], sf[_HA2]
    lb0, lb1, lb2, la1, la2 = sf[_LB0], sf[_LB1], sf[_LB2], sf[_LA1], sf[_LA2]
    hz1, hz2, lz1, lz2 = sf[_HZ1], sf[_HZ2], sf[_LZ1], sf[_LZ2]
    d1, d2, d3, d4 = sf[_D1], sf[_D2], sf[_D3], sf[_D4]
    msum, p1, p2 = sf[_MWI_SUM], sf[_MWI_P1], sf[_MWI_P2]
    last_x, clip, dgain = sf[_LAST_X], sf[_CLIP], sf[_DGAIN]
    cand_val = sf[_CAND_VAL]
    cand_idx = si[_CAND_IDX]
    learned = si[_LEARNED]
    last_bad = si[_LAST_BAD]
    n = si[_N]
    w = si[_W]
    refr = si[_REFR]
    msq = si[_MASK_SQ]
    mbp = si[_MASK_BP]
    delay = si[_BP_DELAY]
    flat_run = si[_FLAT_RUN]
    flat_min = si[_FLAT_MIN]
    learn_max = sf[_LEARN_MAX]
    learn_sum = sf[_LEARN_SUM]
    emit_at = cand_idx + refr if cand_idx >= 0 else _FAR
    next_event = min(_next_event(si, emit_at), vf_at)
    for i in range(x.shape[0]):
        v = x[i]
        if not math.isfinite(v):
            v = last_x if math.isfinite(last_x) else 0.0
            last_bad = n
        elif v > clip or v < -clip:
            v = clip if v > 0 else -clip
            last_bad = n
        if not math.isfinite(last_x):  # first sample: start the high-pass settled on it
            hz1, hz2 = -hb0 * v, hb2 * v
            vm1 = vm2 = vm3 = vm4 = v
            vhz = -vhb0 * v
        if v == last_x:
            flat_run += 1
            if flat_run >= flat_min:
                last_bad = n
        else:
            flat_run = 0
        last_x = v
        if sup:  # VF preprocessing: 5-point moving average, high-pass 1 Hz, low-pass 30 Hz
            ma = (v + vm1 + vm2 + vm3 + vm4) * 0.2
            vm4, vm3, vm2, vm1 = vm3, vm2, vm1, v
            vh = vhb0 * ma + vhz
            vhz = -vhb0 * ma - vha1 * vh
            y = vlb0 * vh + vlz1
            vlz1 = vlb1 * vh - vla1 * y + vlz2
            vlz2 = vlb2 * vh - vla2 * y
            ring_vf[n & vmp] = y
            s_own += y
            s_win += y
            vmx = max(vmx, y)
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
        sq = abs(der)
        ring_bp[n & mbp] = b
        ring_sq[n & msq] = sq
        msum += sq - ring_sq[(n - w) & msq]
        if (n & msq) == 0:  # re-sum exactly now and then: no drift after huge inputs
            msum = 0.0
            for j in range(w):
                msum += ring_sq[(n - j) & msq]
        # local maximum of the MWI at n-1 that beats the pending candidate
        if p1 > p2 and p1 >= msum and p1 > cand_val:
            cand_val = p1
            cand_idx = n - 1
            emit_at = cand_idx + refr
            next_event = min(next_event, emit_at)
        p2 = p1
        p1 = msum
        if not learned:
            learn_max = max(learn_max, msum)
            learn_sum += msum
        if n >= next_event:
            si[_LAST_BAD] = last_bad
            if n >= emit_at:
                # no higher local maximum for a refractory period: the candidate is a peak
                _peak_record(ring_bp, mbp, cand_idx, w, delay, cand_val, pk)
                cand_val = 0.0
                cand_idx = -1
                emit_at = _FAR
                if learned:
                    n_out = _classify(sf, si, rr1, rr2, store, pend, out, n_out, pk)
                elif si[_N_LEARN_PK] < _LEARN_CAP:
                    learn[si[_N_LEARN_PK], :] = pk
                    si[_N_LEARN_PK] += 1
            if not learned and n >= si[_LEARN_END]:
                # end of the 2 s learning phase: initial levels, then the queued peaks
                learned = 1
                si[_LEARNED] = 1
                si[_SB_FROM] = n
                sf[_SPKI] = 0.5 * learn_max
                sf[_NPKI] = 0.5 * learn_sum / (n + 1)
                for j in range(si[_N_LEARN_PK]):
                    n_out = _classify(sf, si, rr1, rr2, store, pend, out, n_out, learn[j])
            elif learned:
                if si[_PEND] and n >= si[_PEND_AT]:
                    n_out = _searchback(sf, si, rr1, rr2, store, pend, out, n_out, n - refr)
                    n_out = _accept(sf, si, rr1, rr2, store, out, n_out, pend, 0.125)
                    si[_PEND] = 0
                if n >= si[_SB_DEADLINE]:
                    n_out = _searchback(sf, si, rr1, rr2, store, pend, out, n_out, n - refr)
            if n >= vf_at:
                vk.end_second(vfb, (n + 1) // hop, s_win, vmx)
                s_win = s_own
                s_own = 0.0
                vmx = -np.inf
                n_out = n_rel = _vf_event(vfb, vfi, out, n_rel, n_out, n + 1, last_bad, wout)
                vf_at += hop
            next_event = min(_next_event(si, emit_at), vf_at)
        n += 1
    sf[_HZ1], sf[_HZ2], sf[_LZ1], sf[_LZ2] = hz1, hz2, lz1, lz2
    sf[_D1], sf[_D2], sf[_D3], sf[_D4] = d1, d2, d3, d4
    sf[_MWI_SUM], sf[_MWI_P1], sf[_MWI_P2] = msum, p1, p2
    sf[_LAST_X] = last_x
    sf[_CAND_VAL] = cand_val
    sf[_LEARN_MAX] = learn_max
    sf[_LEARN_SUM] = learn_sum
    si[_CAND_IDX] = cand_idx
    si[_LAST_BAD] = last_bad
    si[_N] = n
    si[_FLAT_RUN] = flat_run
    vfi[vk._VF_AT] = vf_at
    vfb[vk._M1], vfb[vk._M2], vfb[vk._M3], vfb[vk._M4] = vm1, vm2, vm3, vm4
    vfb[vk._HZ], vfb[vk._LZ1], vfb[vk._LZ2] = vhz, vlz1, vlz2
    vfb[vk._S_OWN], vfb[vk._S_WIN], vfb[vk._S_MAX] = s_own, s_win, vmx
    if sup:  # beats found since the last second wait for their VF decision
        n_out = _vf_event(vfb, vfi, out, n_rel, n_out, 0, last_bad, wout)
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
    suppress_vf : bool, optional
        Run the VF/VFL rhythm analysis of :mod:`vitalcore.dsp.vf` alongside and report no
        beat inside a detected VF/VFL episode (default True), as a bedside monitor shows a
        VF alarm instead of QRS complexes there.  The window decisions are available from
        :meth:`vf_windows` and :attr:`in_vf`.

    Notes
    -----
    Feed chunks of any size with :meth:`process`; it returns the absolute sample indices
    (int64, strictly increasing over the stream) of the R peaks decided in that call.  A
    beat is decided about 0.6 s after its R peak (``suppress_vf=False``); with VF
    suppression it is held until the VF decision covering it is final, 3-5 s after the
    R peak (up to 2 s more while a run of VF windows is too short to count), so the beats
    of a chunk may come with later ones.  Call :meth:`flush` at the end of a record to
    decide the last beats.  Invariants: every returned index is ``< samples_seen``;
    indices never repeat; the output does not depend on how the stream is chunked.

    Examples
    --------
    >>> import numpy as np
    >>> from vitalcore.dsp import QRSDetector, simulate_ecg
    >>> ecg, truth = simulate_ecg(20.0, 250.0, hr_bpm=72.0, seed=1)
    >>> det = QRSDetector(250.0)
    >>> beats = np.concatenate([det.process(ecg[i:i + 250]) for i in range(0, ecg.size, 250)]
    ...                        + [det.flush()])
    """

    def __init__(self, fs: float, *, clip_mv: float = 50.0, flat_s: float = 0.2,
                 min_amp_mv: float = 0.03, suppress_vf: bool = True) -> None:
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
        if not isinstance(suppress_vf, (bool, np.bool_)):
            raise UsageError(f"suppress_vf must be a bool, got {suppress_vf!r}")
        self.suppress_vf = bool(suppress_vf)
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
        sf[_FS] = fs
        sf[_CLIP] = self.clip_mv
        sf[_MIN_AMP] = self.min_amp_mv
        sf[_LAST_X] = np.nan  # first sample never counts as a flat run
        sf[_RR_AVG1] = fs  # 60 bpm until beats are seen
        # searchback waits 1.66 x 2 s (30 bpm) until the first RR is measured: an assumed
        # 60 bpm would search back inside every RR of a rhythm under 36 bpm
        sf[_RR_AVG2] = 2.0 * fs
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
        si[_BP_DELAY] = _locate_delay([hp, lp], fs)
        n_sq = 1 << int(math.ceil(math.log2(w + 2)))
        n_bp = 1 << int(math.ceil(math.log2(refr + w + 8)))
        sizes = [_NF, n_sq, n_bp, _STORE_CAP * _PK_COLS, _LEARN_CAP * _PK_COLS, _RR_LEN,
                 _RR_LEN, _PK_COLS, _PK_COLS]
        offs = np.cumsum([0] + sizes)
        si[_OFF_SQ:_OFF_PEND + 1] = offs[1:-1]
        si[_MASK_SQ] = n_sq - 1
        si[_MASK_BP] = n_bp - 1
        self._blob = np.zeros(int(offs[-1]))
        self._blob[:_NF] = sf
        self._sf = self._blob[:_NF]  # view: the kernel updates it in place
        self._si = si
        self._out = np.empty(0, dtype=np.int64)
        self._refr = refr
        self._vfb, self._vfi = vk.new_state(fs, self.suppress_vf, vk.MIN_RUN, vk.LEAK_MAX,
                                            vk.TCI_MAX_MS, vk.TCSC_MIN)
        self._hop = int(self._vfi[vk._L])
        self._wout = np.zeros((0, 5))

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
        if not (type(chunk) is np.ndarray and chunk.dtype == np.float64 and chunk.ndim == 1
                and chunk.flags.c_contiguous):
            chunk = _as_1d(chunk, "chunk")
        return self._run(chunk)

    @property
    def in_vf(self) -> bool:
        """True while the latest decided windows form a VF/VFL episode (alarm state)."""
        return bool(self._vfi[vk._RUN_LEN] >= self._vfi[vk._MIN_RUN])

    def vf_windows(self) -> np.ndarray:
        """VF windows decided during the last :meth:`process` / :meth:`flush` call.

        Returns
        -------
        numpy.ndarray of float64, shape (k, 5)
            Rows ``[start sample, vf flag (0/1), leakage, TCI ms, TCSC %]``; windows are
            2 s long and start every second.  Empty when ``suppress_vf`` is False.
        """
        w = self._wout[:int(self._vfi[vk._NWIN])].copy()
        w[:, 0] *= self._hop
        return w

    def _run(self, x: np.ndarray) -> np.ndarray:
        cap = x.size // self._refr + 2 * _STORE_CAP + _LEARN_CAP + 8 + vk.HOLD_CAP
        if self._out.size < cap:
            self._out = np.empty(cap, dtype=np.int64)
        if self.suppress_vf and self._wout.shape[0] < x.size // self._hop + 2:
            self._wout = np.zeros((x.size // self._hop + 2, 5))
        k = _qrs_kernel(x, self._blob, self._si, self._out, self._vfb, self._vfi, self._wout)
        return self._out[:k].copy() if k else _EMPTY

    def flush(self) -> np.ndarray:
        """Decide the pending beat at the end of a record; returns its index if any.

        The detector is fed the last value held for 1 s (not counted as bad); beats
        located in that padding are dropped. Call :meth:`reset` before reusing it.
        """
        n0 = self.samples_seen
        pad = int(round(1.0 * self.fs))
        si = self._si
        flat_min = si[_FLAT_MIN]
        si[_FLAT_MIN] = 2**62
        self._vfi[vk._END] = n0  # VF windows reaching into the padding count as not VF
        last = float(self._sf[_LAST_X])
        beats = self._run(np.full(pad, last if math.isfinite(last) else 0.0))
        si[_FLAT_MIN] = flat_min
        if self.suppress_vf:
            k = vk.vf_finish(self._vfi, self._out)
            beats = np.concatenate([beats, self._out[:k]])
        return beats[beats < n0]


def detect_qrs(ecg: object, fs: float, **kwargs: float | bool) -> np.ndarray:
    """Detect QRS complexes in one ECG lead.

    Parameters
    ----------
    ecg : array_like, 1-D
        ECG lead in mV.
    fs : float
        Sampling rate in Hz, 125-1000.
    **kwargs
        Passed to :class:`QRSDetector` (``clip_mv``, ``flat_s``, ``min_amp_mv``,
        ``suppress_vf``: by default no beat is reported inside detected VF/VFL episodes).

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
