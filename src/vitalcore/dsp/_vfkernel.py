"""Private numba pieces of the VF/VFL rhythm analysis (see :mod:`vitalcore.dsp.vf`).

The QRS kernel's sample loop preprocesses every sanitised sample (5-point moving average,
1 Hz high-pass, 30 Hz low-pass; state ``_M1`` .. ``_LZ2``) into the ring at ``_OFF_P`` and
keeps per-second running sums and maxima (``_S_*``, :func:`end_second`): these filter
chains run beside the QRS filters at almost no cost, whereas a separate pass once per
second is bound by their latency.  Once per second of signal (one *hop* of
``L = round(fs)`` samples) :func:`vf_second` decides analysis window ``k = j - 3``
(``j`` = seconds seen), which covers samples ``[k L, k L + 2 L)`` and needs one more
second for the TCI look-ahead; it reads the ring in place and allocates nothing.

State lives in two arrays (floats ``vfb``, integers ``vfi``) laid out here, so the QRS
kernel can carry the analysis without a jitclass and stays a pure function of
(chunk, state).  Beats can be *held* in ``vfi`` until the VF decision covering them is
final, then released or muted (:func:`release`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# ---- integer state vfi --------------------------------------------------------------
(_L, _K, _J, _RUN_START, _RUN_LEN, _NREG, _NHOLD, _END, _SUP, _NWIN, _MP,
 _MIN_RUN, _VF_AT, _OFF_REG, _OFF_HOLD, _OFF_BAD) = range(16)
_NI = 16
# ---- float state vfb ----------------------------------------------------------------
(_HB0, _HA1, _LB0, _LB1, _LB2, _LA1, _LA2, _M1, _M2, _M3, _M4, _HZ, _LZ1, _LZ2,
 _LEAK_MAX, _TCI_MAX, _TCSC_MIN, _V0, _TCI_FRAC, _W_LEAK, _W_TCI, _W_TCSC, _W_FLAG,
 _OFF_P, _OFF_TAPER, _S_OWN, _S_WIN, _S_MAX) = range(28)
_SEC = 28  # per-second statistics ring: SEC_CAP rows of [window sum, maximum]
SEC_CAP = 4
_NF = _SEC + 2 * SEC_CAP
REG_CAP = 16  # mute regions remembered (each >= 4 s long)
HOLD_CAP = 512  # beats waiting for their VF decision (a few seconds of beats)
BAD_CAP = 8  # per-second "bad sample seen" ring
FAR = np.int64(2**62)


def _pow2(n: int) -> int:
    return 1 << int(math.ceil(math.log2(max(n, 2))))


def new_state(fs: float, suppress: bool, min_run: int, leak_max: float, tci_max_ms: float,
              tcsc_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Fresh (vfb, vfi) for sampling rate ``fs`` (Hz); thresholds as documented in vf.py."""
    L = int(round(fs))
    n_p = _pow2(4 * L + 1)
    vfb = np.zeros(_NF + n_p + 2 * L)
    vfi = np.zeros(_NI + 2 * REG_CAP + HOLD_CAP + BAD_CAP, dtype=np.int64)
    k = math.tan(math.pi * 1.0 / fs)  # 1st-order Butterworth high-pass 1 Hz (bilinear)
    vfb[_HB0] = 1.0 / (1.0 + k)
    vfb[_HA1] = (k - 1.0) / (k + 1.0)
    w0 = 2.0 * math.pi * 30.0 / fs  # 2nd-order Butterworth low-pass 30 Hz (RBJ = bilinear)
    alpha = math.sin(w0) / (2.0 * math.sqrt(0.5))
    c = math.cos(w0)
    a0 = 1.0 + alpha
    vfb[_LB0], vfb[_LB1], vfb[_LB2] = (1 - c) / 2 / a0, (1 - c) / a0, (1 - c) / 2 / a0
    vfb[_LA1], vfb[_LA2] = -2 * c / a0, (1 - alpha) / a0
    vfb[_LEAK_MAX], vfb[_TCI_MAX], vfb[_TCSC_MIN] = leak_max, tci_max_ms, tcsc_min
    vfb[_V0] = 0.2
    vfb[_TCI_FRAC] = 0.2
    vfb[_OFF_P] = _NF
    vfb[_OFF_TAPER] = _NF + n_p
    vfb[_S_MAX] = -np.inf
    # Arafat et al.: cosine taper over the first and last 0.25 s of the window
    t = np.arange(2 * L) / fs
    ls = 2 * L / fs
    taper = np.ones(2 * L)
    e = t < 0.25
    taper[e] = 0.5 * (1 - np.cos(4 * np.pi * t[e]))
    e = t > ls - 0.25
    taper[e] = 0.5 * (1 - np.cos(4 * np.pi * (ls - t[e])))
    vfb[_NF + n_p:] = taper
    vfi[_L] = L
    vfi[_MP] = n_p - 1
    vfi[_END] = FAR
    vfi[_SUP] = 1 if suppress else 0
    vfi[_MIN_RUN] = min_run
    vfi[_VF_AT] = L - 1 if suppress else FAR
    vfi[_OFF_REG] = _NI
    vfi[_OFF_HOLD] = _NI + 2 * REG_CAP
    vfi[_OFF_BAD] = _NI + 2 * REG_CAP + HOLD_CAP
    return vfb, vfi


@numba.njit(cache=True, nogil=True)
def _tci(q, mp, a, L, mean, thr):  # pragma: no cover - compiled
    """Thakor's threshold crossing interval (ms) of the 1 s segment starting at sample ``a``.

    ``q`` is the preprocessed-signal ring (mask ``mp``) holding one second before (if
    ``a > 0``) and one after the segment; values are taken as ``q - mean`` (the window
    mean); ``thr`` is the crossing level (20 % of the segment maximum).  TCI = 1000 /
    ((N - 1) + t2/(t1 + t2) + t3/(t3 + t4)) with N pulses starting in the segment, t1/t2
    the gaps before/after the segment start, t3/t4 around its end.  Returns 1000 when no
    pulse starts in the segment.
    """
    hi = a > 0 and q[(a - 1) & mp] - mean > thr
    n = 0
    t2 = 0
    last_fall = 0  # offset of the last high->low transition inside the segment
    for i in range(L):
        b = q[(a + i) & mp] - mean > thr
        if b != hi:
            if b:
                if n == 0:
                    t2 = i
                n += 1
            else:
                last_fall = i
            hi = b
    if hi:
        last_fall = L
    if n == 0:
        return 1000.0
    t1 = L
    if a > 0:
        for i in range(L):
            if q[(a - 1 - i) & mp] - mean > thr:
                t1 = i
                break
    t3 = L - last_fall
    t4 = L
    for i in range(L):
        if q[(a + L + i) & mp] - mean > thr:
            t4 = i
            break
    den = n - 1.0
    if t1 + t2 > 0:
        den += t2 / (t1 + t2)
    if t3 + t4 > 0:
        den += t3 / (t3 + t4)
    return 1000.0 / den if den > 0 else 1000.0


@numba.njit(cache=True, nogil=True)
def _window(vfb, q, mp, k, L):  # pragma: no cover - compiled
    """Features of window k (samples kL .. kL+2L) into vfb[_W_*]; returns the VF flag.

    Works in place on the ring ``q`` (no copy, no allocation): the window sum and the
    per-second maxima were accumulated while preprocessing (:func:`vf_second`), in the
    same order as a sequential sum over the window, so the mean is bit-identical to
    ``x.sum() / n``; ``max(q - mean) == max(q) - mean`` exactly (rounding is monotonic).
    TCI is computed first; leakage and TCSC only when TCI allows VF (otherwise NaN),
    which saves most of the work on non-VF rhythms without changing any decision.
    """
    n = 2 * L
    s0 = k * L
    mean = vfb[_SEC + 2 * ((k + 1) % SEC_CAP)] / n
    # TCI (Thakor et al. 1990), mean over the window's two 1 s segments
    tci = 0.0
    for j in range(2):
        mx = vfb[_SEC + 2 * ((k + j) % SEC_CAP) + 1] - mean
        tci += 0.5 * _tci(q, mp, s0 + j * L, L, mean,
                          vfb[_TCI_FRAC] * mx if mx > 0.0 else np.inf)
    vfb[_W_TCI] = tci
    vfb[_W_LEAK] = np.nan  # not computed: TCI already rules VF out (most windows)
    vfb[_W_TCSC] = np.nan
    if not tci < vfb[_TCI_MAX]:
        return False
    # VF filter leakage (Kuo & Dillman 1978)
    a = 0.0
    d = 0.0
    xp = q[s0 & mp] - mean
    for i in range(1, n):
        xi = q[(s0 + i) & mp] - mean
        a += abs(xi)
        d += abs(xi - xp)
        xp = xi
    leak = 1.0
    if d > 0.0:
        half = int(math.floor(math.pi * a / d + 0.5))
        if 1 <= half < n:
            num = 0.0
            den = 0.0
            for i in range(half, n):
                xi = q[(s0 + i) & mp] - mean
                xh = q[(s0 + i - half) & mp] - mean
                num += abs(xi + xh)
                den += abs(xi) + abs(xh)
            if den > 0.0:
                leak = num / den
    # TCSC (Arafat et al. 2011): % of tapered, normalised samples with |x| > V0
    off = np.int64(vfb[_OFF_TAPER])
    m = 0.0
    for i in range(n):
        m = max(m, abs((q[(s0 + i) & mp] - mean) * vfb[off + i]))
    tcsc = 0.0
    if m > 0.0:
        lim = vfb[_V0] * m
        c = 0
        for i in range(n):
            if abs((q[(s0 + i) & mp] - mean) * vfb[off + i]) > lim:
                c += 1
        tcsc = 100.0 * c / n
    vfb[_W_LEAK] = leak
    vfb[_W_TCSC] = tcsc
    return leak < vfb[_LEAK_MAX] and tcsc > vfb[_TCSC_MIN]


@numba.njit(cache=True, nogil=True)
def _add_region(vfi, lo, hi):  # pragma: no cover - compiled
    """Open a mute region [lo, hi) (forgetting the oldest when full)."""
    off = vfi[_OFF_REG]
    r = vfi[_NREG]
    if r == REG_CAP:
        for i in range(2, 2 * REG_CAP):
            vfi[off + i - 2] = vfi[off + i]
        r -= 1
    vfi[off + 2 * r] = lo
    vfi[off + 2 * r + 1] = hi
    vfi[_NREG] = r + 1


@numba.njit(cache=True, nogil=True)
def _book(vfi, flag):  # pragma: no cover - compiled
    """Record the decision of window K; grow the run / mute region."""
    k = vfi[_K]
    L = vfi[_L]
    if flag:
        if vfi[_RUN_LEN] == 0:
            vfi[_RUN_START] = k
        vfi[_RUN_LEN] += 1
        if vfi[_RUN_LEN] == vfi[_MIN_RUN]:
            _add_region(vfi, vfi[_RUN_START] * L, (k + 2) * L)
        elif vfi[_RUN_LEN] > vfi[_MIN_RUN]:
            vfi[vfi[_OFF_REG] + 2 * vfi[_NREG] - 1] = (k + 2) * L
    else:
        vfi[_RUN_LEN] = 0
    vfi[_K] = k + 1


@numba.njit(cache=True, nogil=True)
def release(vfi, out, n_out, final):  # pragma: no cover - compiled
    """Move decided held beats to ``out`` (muted ones dropped); returns the new count.

    A beat at t is decided once both windows covering it are decided (t < K L) and no
    run of flagged windows that is still too short to count covers it; ``final`` decides
    everything (end of record: undecided windows count as not VF).
    """
    L = vfi[_L]
    hold = vfi[_OFF_HOLD]
    nh = vfi[_NHOLD]
    horizon = vfi[_K] * L
    if 0 < vfi[_RUN_LEN] < vfi[_MIN_RUN]:
        horizon = min(horizon, vfi[_RUN_START] * L)
    reg = vfi[_OFF_REG]
    done = 0
    for h in range(nh):
        t = vfi[hold + h]
        if not final and t >= horizon:
            break
        muted = False
        for r in range(vfi[_NREG]):
            if vfi[reg + 2 * r] <= t < vfi[reg + 2 * r + 1]:
                muted = True
                break
        if not muted:
            out[n_out] = t
            n_out += 1
        done += 1
    if done:
        for h in range(done, nh):
            vfi[hold + h - done] = vfi[hold + h]
        vfi[_NHOLD] = nh - done
    return n_out


@numba.njit(cache=True, nogil=True)
def hold(vfi, src, n_src):  # pragma: no cover - compiled
    """Append beats ``src[:n_src]`` to the hold queue."""
    base = vfi[_OFF_HOLD] + vfi[_NHOLD]
    for i in range(n_src):
        vfi[base + i] = src[i]
    vfi[_NHOLD] += n_src


@numba.njit(cache=True, nogil=True)
def end_second(vfb, j, s_win, mx):  # pragma: no cover - compiled
    """Store the statistics of second ``j - 1`` accumulated by the sample loop.

    ``s_win`` is the previous second's sequential sum (from 0) continued over this one:
    the sequential sum of window ``j - 2``, bit-equal to summing that window's samples in
    order as :func:`_window` needs; ``mx`` is the second's maximum.
    """
    row = _SEC + 2 * ((j - 1) % SEC_CAP)
    vfb[row] = s_win
    vfb[row + 1] = mx


@numba.njit(cache=True, nogil=True)
def vf_second(vfb, vfi, count, last_bad, wout):  # pragma: no cover - compiled
    """One second ended (``count`` samples seen, a multiple of L): analyse, book, record.

    The sample loop has already preprocessed the second into the ring and stored its
    statistics (:func:`end_second`).  ``last_bad`` is the index of the latest bad
    (non-finite, clipped, flat) sample.  Appends ``[k, flag, leakage, tci_ms, tcsc_pct]``
    of the decided window to ``wout`` (row ``vfi[_NWIN]``) when it has room.
    """
    L = vfi[_L]
    mp = vfi[_MP]
    q = vfb[np.int64(vfb[_OFF_P]):np.int64(vfb[_OFF_P]) + mp + 1]
    s0 = count - L
    j = count // L
    bad = vfi[_OFF_BAD]
    vfi[bad + (j - 1) % BAD_CAP] = 1 if last_bad >= s0 else 0
    vfi[_J] = j
    if j < 3:
        return
    k = j - 3
    flag = _window(vfb, q, mp, k, L)
    if vfi[bad + k % BAD_CAP] or vfi[bad + (k + 1) % BAD_CAP] or count > vfi[_END]:
        flag = False
    vfb[_W_FLAG] = 1.0 if flag else 0.0
    _book(vfi, flag)
    r = vfi[_NWIN]
    if r < wout.shape[0]:
        wout[r, 0] = k
        wout[r, 1] = vfb[_W_FLAG]
        wout[r, 2] = vfb[_W_LEAK]
        wout[r, 3] = vfb[_W_TCI]
        wout[r, 4] = vfb[_W_TCSC]
        vfi[_NWIN] = r + 1


@numba.njit(cache=True, nogil=True)
def vf_finish(vfi, out):  # pragma: no cover - compiled
    """End of record: the open short run does not count; release every held beat."""
    if vfi[_RUN_LEN] < vfi[_MIN_RUN]:
        vfi[_RUN_LEN] = 0
    return release(vfi, out, 0, True)


# Published decision parameters (see vf.py / docs/dsp.md)
LEAK_MAX = 0.625  # VF filter leakage below this: VF (Kuo & Dillman 1978)
TCI_MAX_MS = 400.0  # threshold crossing interval below this: VF (Thakor et al. 1990)
TCSC_MIN = 48.0  # threshold crossing sample count above this: VF (Arafat et al. 2011)
MIN_RUN = 3  # consecutive VF windows (2 s, 1 s hop: 4 s of signal) that make an episode
