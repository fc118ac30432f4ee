"""Private numba kernels of the SpO2 estimator: PPG pulse detection and pulse-shape quality.

Pulse detection (:func:`_pulse_step`, one IR AC sample per call)
    The slope sum function of Zong et al. (Computers in Cardiology 30:259, 2003),
    ``SSF(n) = sum of max(x(k) - x(k-1), 0) over the last 128 ms``, peaks on each systolic
    upstroke.  A local SSF maximum is a candidate; it is decided once no larger one follows
    within the 128 ms window and the IR pulse peak after it is found (or 0.4 s passed).
    It becomes a pulse when

    * its SSF exceeds ``_THR`` (0.4) of the running SSF pulse level (exponential average,
      weight 1/8, of the accepted pulses' SSF; Zong's adaptive threshold; halved when no
      pulse was accepted for 2 running intervals, or 2.5 s before an interval is known);
    * it is at least 0.2 s after the last pulse (300 bpm);
    * it is not a dicrotic / reflected wave: a candidate within ``max(0.6 x median of the
      last 5 pulse intervals, 0.36 s)`` of the last pulse must have at least half that
      pulse's SSF (the late wave's upstroke is much flatter than the systolic one; the
      rule mirrors the T-wave discrimination of Pan & Tompkins 1985, which compares the
      slope of a wave within 360 ms of a QRS with half the QRS slope).  A real pulse
      arriving early keeps its steep upstroke and is accepted, so a sudden rise of the
      pulse rate is followed (no lock-in of an interval-based refractory period).

    Pulse intervals are measured between SSF maxima (upstroke timing, insensitive to a
    rounded or notched peak); the reported pulse position is the IR AC peak after the
    upstroke, minus the band-pass delay.

Pulse-shape similarity (:func:`_template_sqi`, once per window)
    After Orphanidou et al. (IEEE J. Biomed. Health Inform. 19:832, 2015): the pulses of the
    window are cut out centred on their IR peaks with the window's median pulse interval as
    length, averaged into a template, and the mean correlation coefficient of the pulses
    with the template is the SQI (acceptable >= 0.86 in that paper).  The same segments give
    the red/IR AC slope of the *template* (ensemble average), in which artefact that is not
    synchronous with the pulse is attenuated; disagreement between it and the slope of the
    raw window shows that non-pulsatile energy is biasing the ratio.

Spectral purity (:func:`_harmonic_fraction`, once per window)
    Share of the window's IR AC power near the harmonics of the pulse rate (a comb on the
    DFT); broadband artefact lowers it even when the detector has locked onto it.

Note: numba's on-disk cache does not track calls across modules; after editing this file
delete the ``spo2.*`` cache files too (``__pycache__/spo2.*.nb[ic]``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# float state slots used here (the estimator's layout, see spo2.py)
_A1, _SSF, _S1, _S2, _CAND, _CAND_AMP, _LEVEL, _LAST_SSF, _TMIN = range(22, 31)
# integer state slots used here
_N, _CAND_IDX, _PEAK_IDX, _LAST_PULSE, _W, _HARD_REFR, _N_IV, _N_PB, _DELAY = range(9)
_IV = 9
_IV_LEN = 5

_THR = 0.4  # candidate SSF / running SSF pulse level
_DICROTIC_FRAC = 0.5  # late wave: SSF below this fraction of the last pulse's SSF
_DICROTIC_MIN_S = 0.36  # the late-wave zone is at least this long after a pulse (s)
_DICROTIC_IV = 0.6  # ... and at least this fraction of the median pulse interval
_HARD_REFR_S = 0.2  # no two pulses closer than this (300 bpm)
_LEVEL_W = 0.125  # weight of a new pulse in the SSF level average
_PB_LEN = 256  # pulse ring: > 30 s window x 5 pulses/s


@numba.njit(cache=True, nogil=True)
def _median_interval(si):  # pragma: no cover - compiled
    """Median of the last (up to 5) accepted pulse intervals in samples; 0 if none known."""
    m = min(si[_N_IV], _IV_LEN)
    if m == 0:
        return 0.0
    return float(np.median(si[_IV:_IV + m].astype(np.float64)))


@numba.njit(cache=True, nogil=True)
def _pulse_step(a, n, sf, si, ring, fs):  # pragma: no cover - compiled
    """Feed IR AC sample ``a`` at absolute index ``n``.

    Returns ``(peak_index, interval, amplitude)`` of a pulse decided at this sample, or
    ``(-1, -1, 0.0)``: the IR AC peak (band-pass time, no delay removed), the samples
    since the previous pulse's upstroke (-1 for the first pulse) and the trough-to-peak
    IR AC amplitude.
    """
    a1 = sf[_A1]
    d = a - a1
    sf[_A1] = a
    w = si[_W]
    j = n % w
    pos = d if d > 0.0 else 0.0
    sf[_SSF] += pos - ring[j]
    ring[j] = pos
    if j == w - 1:  # re-sum on the absolute clock: no drift, chunking-independent
        sf[_SSF] = ring.sum()
    ssf = sf[_SSF]
    sf[_TMIN] = min(sf[_TMIN], a)
    s1, s2 = sf[_S1], sf[_S2]
    sf[_S2], sf[_S1] = s1, ssf
    if s1 > s2 and s1 >= ssf and s1 > sf[_CAND]:
        # SSF maximum at n-1; SSF rose there, so IR AC rose too: its peak is at n-1 or later
        sf[_CAND] = s1
        si[_CAND_IDX] = n - 1
        si[_PEAK_IDX] = -1
    c = si[_CAND_IDX]
    if c >= 0 and si[_PEAK_IDX] < 0 and d <= 0.0 and n - 1 >= c:
        si[_PEAK_IDX] = n - 1
        sf[_CAND_AMP] = a1 - sf[_TMIN]
    if c < 0 or n - c < w or (si[_PEAK_IDX] < 0 and n - c < int(0.4 * fs)):
        return -1, -1, 0.0
    # decide the candidate
    val = sf[_CAND]
    peak = si[_PEAK_IDX]
    amp = sf[_CAND_AMP]
    if peak < 0:  # still rising after 0.4 s: no pulse shape
        peak = c
        amp = 0.0
    sf[_CAND] = -np.inf
    si[_CAND_IDX] = -1
    si[_PEAK_IDX] = -1
    last = si[_LAST_PULSE]
    level = sf[_LEVEL]
    med = _median_interval(si)
    accept = val > 0.0 and amp > 0.0 and val > _THR * level
    if accept and last >= 0:
        dt = c - last
        if dt < si[_HARD_REFR]:
            accept = False
        elif (dt < max(_DICROTIC_MIN_S * fs, _DICROTIC_IV * med)
              and val < _DICROTIC_FRAC * sf[_LAST_SSF]):
            accept = False
    if not accept:
        idle = (c - last) if last >= 0 else n
        if idle > (2.0 * med if med > 0 else 2.5 * fs):
            sf[_LEVEL] = 0.5 * level
        return -1, -1, 0.0
    sf[_LEVEL] = val if level == 0.0 else level + _LEVEL_W * (val - level)
    sf[_LAST_SSF] = val
    sf[_TMIN] = a
    dt = c - last if last >= 0 else -1
    if last >= 0:
        si[_IV + si[_N_IV] % _IV_LEN] = dt
        si[_N_IV] += 1
    si[_LAST_PULSE] = c
    return peak, dt, amp


@numba.njit(cache=True, nogil=True)
def _template_sqi(acbuf, pbuf, n_pb, end, width):  # pragma: no cover - compiled
    """Pulse-shape SQI and template red/IR slope of the window ``[end - width, end)``.

    ``acbuf[0]`` / ``acbuf[1]`` hold IR / red AC on a ring of ``width`` samples indexed by
    the absolute sample number; ``pbuf`` holds the last ``n_pb`` pulse peaks (absolute,
    band-pass time) on a ring.  Returns ``(mean correlation, template slope, median pulse
    interval in samples)``; ``(nan, nan, interval)`` when fewer than 3 whole pulses lie in
    the window (interval 0 when fewer than 4 pulses).
    """
    start = end - width
    lo = max(n_pb - _PB_LEN, 0)
    pk = np.empty(n_pb - lo, dtype=np.int64)
    m = 0
    for q in range(lo, n_pb):
        p = pbuf[q % _PB_LEN]
        if start <= p < end:
            pk[m] = p
            m += 1
    if m < 4:
        return np.nan, np.nan, 0
    ln = int(np.median(np.diff(pk[:m]).astype(np.float64)))
    half = ln // 2
    if half < 2:
        return np.nan, np.nan, ln
    seg = np.empty((m, 2 * half))
    u = 0
    for q in range(m):
        a, b = pk[q] - half, pk[q] + half
        if a < start or b > end:
            continue
        for t in range(2 * half):
            seg[u, t] = acbuf[0, (a + t) % width]
        u += 1
    if u < 3:
        return np.nan, np.nan, ln
    tpl = np.zeros(2 * half)
    tpr = np.zeros(2 * half)
    u2 = 0
    for q in range(m):
        a, b = pk[q] - half, pk[q] + half
        if a < start or b > end:
            continue
        for t in range(2 * half):
            tpl[t] += seg[u2, t]
            tpr[t] += acbuf[1, (a + t) % width]
        u2 += 1
    tpl /= u
    tpr /= u
    tpl_c = tpl - tpl.mean()
    tpr_c = tpr - tpr.mean()
    tt = np.sum(tpl_c * tpl_c)
    if not tt > 0.0:
        return np.nan, np.nan, ln
    csum = 0.0
    for q in range(u):
        x = seg[q] - seg[q].mean()
        xx = np.sum(x * x)
        csum += np.sum(x * tpl_c) / math.sqrt(xx * tt) if xx > 0.0 else 0.0
    return csum / u, np.sum(tpr_c * tpl_c) / tt, ln


@numba.njit(cache=True, nogil=True)
def _harmonic_fraction(acbuf, end, interval, fmax_bins, decim):  # pragma: no cover - compiled
    """Fraction of the window's IR AC power near the harmonics of the pulse rate.

    The window (the whole ring ``acbuf[0]``, oldest sample at ``end % width``) is reduced
    to means of ``decim`` samples and Hann-tapered; DFT power (Goertzel) is summed over
    the bins within ``1.5 + 0.03 h f0`` bins of each
    harmonic ``h f0`` up to ``fmax_bins`` (``f0 = width / interval`` bins, ``interval``
    the median pulse interval in samples; 1.5 bins: the Hann main lobe of a tone between
    two bins, 3 % per harmonic: rate variation within the window) and divided by the total
    power (Parseval).  Power above ``fmax_bins`` (the 5 Hz low-pass edge) counts as
    non-harmonic; it is negligible after the low-pass.
    """
    if interval <= 0:
        return np.nan
    # block means down to >= 25 Hz (the signal is low-passed at 5 Hz): q x fewer samples
    q = max(decim, 1)
    width = acbuf.shape[1] // q
    skip = acbuf.shape[1] - width * q  # oldest samples that do not fill a block
    start = end % acbuf.shape[1] + skip
    x = np.empty(width)
    tot = 0.0
    for t in range(width):
        acc = 0.0
        for u in range(q):
            acc += acbuf[0, (start + t * q + u) % acbuf.shape[1]]
        wt = 0.5 - 0.5 * math.cos(2.0 * math.pi * t / width)
        x[t] = acc / q * wt
        tot += x[t] * x[t]
    if not tot > 0.0:
        return np.nan
    interval = interval / q
    half = width // 2
    f0 = width / interval
    top = min(fmax_bins, half - 1)
    mask = np.zeros(top + 1, dtype=np.bool_)
    h = 1
    while h * f0 <= top:
        bw = 1.5 + 0.03 * h * f0
        lo = max(int(math.ceil(h * f0 - bw)), 1)
        hi = min(int(math.floor(h * f0 + bw)), top)
        for k in range(lo, hi + 1):
            mask[k] = True
        h += 1
    pw = 0.0
    for k in range(1, top + 1):
        if mask[k]:  # Goertzel: |X_k|^2 with one multiply per sample
            coef = 2.0 * math.cos(2.0 * math.pi * k / width)
            s1 = s2 = 0.0
            for t in range(width):
                s0 = x[t] + coef * s1 - s2
                s2 = s1
                s1 = s0
            pw += s1 * s1 + s2 * s2 - coef * s1 * s2
    return 2.0 * pw / (width * tot)
