"""Many streaming QRS detectors in one structure of arrays, stepped by one numba call.

A :class:`QRSBank` holds the complete state of up to ``capacity`` streaming detectors of
one sampling rate, one per *row* of a few 2-D numpy arrays (the float state and buffers,
the integer state, the VF analysis state: the very arrays one :class:`~vitalcore.dsp.QRSDetector`
keeps, stacked).  :meth:`QRSBank.process` takes the new samples of many rows at once (one
concatenated array and segment bounds) and runs them through one private numba kernel
compiled with ``nogil=True``: it applies the per-sample detector kernel of
:mod:`vitalcore.dsp.qrs` to each segment in turn, on that row's state, without taking the
GIL, so the Python threads of an ingest server keep running meanwhile.

Because the per-row step *is* the detector's own kernel on the detector's own state
layout, a row gives the same beats as a :class:`~vitalcore.dsp.QRSDetector` fed the same
samples in any chunking (bit for bit: tests/dsp/test_qrs_bank.py checks it on MIT-BIH
records cut into random chunks).  What the bank saves is the per-call cost: one Python
call and one kernel dispatch per tick for all devices instead of one per device.
"""

from __future__ import annotations

import numba
import numpy as np

from vitalcore.dsp import _vfkernel as vk
from vitalcore.dsp import qrs as _q
from vitalcore.errors import UsageError

__all__ = ["QRSBank"]

# beats released by one row in one step beyond ``samples // refractory``: pending, stored
# and learning-phase peaks plus the VF hold queue (the single detector's own bound)
_EXTRA = 2 * _q._STORE_CAP + _q._LEARN_CAP + 8 + vk.HOLD_CAP


@numba.njit(cache=True, nogil=True)
def _bank_step(x, bounds, rows, blob, si, vfb, vfi, scratch, wout, out):  # pragma: no cover
    """Feed ``x[bounds[k]:bounds[k + 1]]`` to row ``rows[k]`` for each k, in order.

    Beats go to ``out`` (grown when needed) with ``counts[k]`` per segment; returns
    ``(out, counts)``.  No validation: :meth:`QRSBank.process` guarantees shapes.
    """
    counts = np.zeros(rows.size, np.int64)
    n_out = 0
    for k in range(rows.size):
        r = rows[k]
        m = _q._qrs_kernel(x[bounds[k]:bounds[k + 1]], blob[r], si[r], scratch, vfb[r],
                           vfi[r], wout)
        if n_out + m > out.size:
            grown = np.empty(max(2 * out.size, n_out + m), np.int64)
            grown[:n_out] = out[:n_out]
            out = grown
        out[n_out:n_out + m] = scratch[:m]
        n_out += m
        counts[k] = m
    return out[:n_out], counts


@numba.njit(cache=True, nogil=True)
def _bank_finish(rows, vfi, out):  # pragma: no cover - compiled
    """End of record for each row: release every held beat (see ``vk.vf_finish``)."""
    counts = np.zeros(rows.size, np.int64)
    n_out = 0
    for k in range(rows.size):
        m = vk.vf_finish(vfi[rows[k]], out[n_out:])
        n_out += m
        counts[k] = m
    return counts


class QRSBank:
    """Streaming QRS detectors (:class:`~vitalcore.dsp.QRSDetector`) for many ECG leads.

    Parameters
    ----------
    fs : float
        Sampling rate of every lead of the bank in Hz, 125-1000.
    capacity : int, optional
        Rows allocated up front (the bank grows by doubling when :meth:`add` needs more).
    clip_mv, flat_s, min_amp_mv, suppress_vf
        As for :class:`~vitalcore.dsp.QRSDetector`, shared by every row.

    Notes
    -----
    A row is one lead's detector: :meth:`add` returns a fresh one, :meth:`reset` restarts
    rows, :meth:`remove` frees a row for reuse.  Memory per row is that of one detector
    (about 21 KB at 250 Hz).  Invariants: row ``r`` fed samples through :meth:`process`
    reports the beats a :class:`~vitalcore.dsp.QRSDetector` of the same parameters reports
    for the same samples, in any chunking; indices are absolute sample indices of the row
    since its last (re)start.  Not thread-safe: one thread steps a bank at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from vitalcore.dsp import simulate_ecg
    >>> from vitalcore.dsp.qrs_bank import QRSBank
    >>> bank = QRSBank(250.0)
    >>> rows = np.array([bank.add(), bank.add()])
    >>> a, _ = simulate_ecg(10.0, 250.0, hr_bpm=60.0, seed=1)
    >>> b, _ = simulate_ecg(10.0, 250.0, hr_bpm=90.0, seed=2)
    >>> beats, counts = bank.process(rows, np.concatenate([a, b]), [0, a.size, a.size + b.size])
    """

    def __init__(self, fs: float, capacity: int = 64, *, clip_mv: float = 50.0,
                 flat_s: float = 0.2, min_amp_mv: float = 0.03,
                 suppress_vf: bool = True) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) \
                or not 1 <= capacity <= 10_000_000:
            raise UsageError(f"capacity must be an int within 1-10,000,000, got {capacity!r}")
        # one validated detector gives the template state of a fresh row
        tmpl = _q.QRSDetector(fs, clip_mv=clip_mv, flat_s=flat_s, min_amp_mv=min_amp_mv,
                              suppress_vf=suppress_vf)
        self.fs = tmpl.fs
        self.suppress_vf = tmpl.suppress_vf
        self._t_blob, self._t_si = tmpl._blob.copy(), tmpl._si.copy()
        self._t_vfb, self._t_vfi = tmpl._vfb.copy(), tmpl._vfi.copy()
        self._refr = tmpl._refr
        self._hop = tmpl._hop
        cap = int(capacity)
        self._blob = np.empty((cap, self._t_blob.size))
        self._si = np.empty((cap, self._t_si.size), np.int64)
        self._vfb = np.empty((cap, self._t_vfb.size))
        self._vfi = np.empty((cap, self._t_vfi.size), np.int64)
        self._used = np.zeros(cap, bool)
        self._free: list[int] = list(range(cap - 1, -1, -1))
        self._scratch = np.empty(0, np.int64)
        self._wout = np.zeros((0, 5))

    # -- rows -------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        """Rows allocated."""
        return int(self._used.size)

    def __len__(self) -> int:
        """Rows in use."""
        return int(self._used.sum())

    def add(self) -> int:
        """Allocate a row holding a fresh detector; returns its index."""
        if not self._free:
            self._grow(2 * self.capacity)
        r = self._free.pop()
        self._used[r] = True
        self.reset(r)
        return r

    def remove(self, row: int) -> None:
        """Free ``row`` (its index may be returned by a later :meth:`add`)."""
        r = self._row(row)
        self._used[r] = False
        self._free.append(r)

    def reset(self, rows: object) -> None:
        """Restart the detectors of ``rows`` (an index or an array of indices)."""
        idx = self._rows(rows)
        self._blob[idx] = self._t_blob
        self._si[idx] = self._t_si
        self._vfb[idx] = self._t_vfb
        self._vfi[idx] = self._t_vfi

    def _grow(self, cap: int) -> None:
        old = self.capacity
        for name in ("_blob", "_si", "_vfb", "_vfi"):
            a = getattr(self, name)
            b = np.empty((cap, a.shape[1]), a.dtype)
            b[:old] = a
            setattr(self, name, b)
        self._used = np.concatenate([self._used, np.zeros(cap - old, bool)])
        self._free.extend(range(cap - 1, old - 1, -1))

    def _row(self, row: object) -> int:
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)) \
                or not 0 <= row < self.capacity or not self._used[row]:
            raise UsageError(f"row {row!r} is not an allocated row of this bank")
        return int(row)

    def _rows(self, rows: object) -> np.ndarray:
        if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
            return np.array([self._row(rows)], np.int64)
        try:
            idx = np.asarray(rows)
        except Exception as exc:  # ragged input and the like
            raise UsageError(f"rows must be a 1-D array of row indices: {exc}") from None
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise UsageError(f"rows must be a 1-D array of integers, got {idx.dtype} "
                             f"shape {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity
                         or not self._used[idx].all()):
            raise UsageError("rows holds an index that is not an allocated row of this bank")
        return np.ascontiguousarray(idx)

    # -- state ------------------------------------------------------------------------------
    def samples_seen(self, rows: object) -> np.ndarray:
        """Samples fed to each of ``rows`` since its (re)start (int64)."""
        return self._si[self._rows(rows), _q._N].copy()

    def in_vf(self, rows: object) -> np.ndarray:
        """Per row: True while its latest decided windows form a VF/VFL episode."""
        idx = self._rows(rows)
        return self._vfi[idx, vk._RUN_LEN] >= self._vfi[idx, vk._MIN_RUN]

    # -- streaming --------------------------------------------------------------------------
    def process(self, rows: object, x: object, bounds: object) -> tuple[np.ndarray, np.ndarray]:
        """Feed segment ``x[bounds[k]:bounds[k + 1]]`` (mV) to row ``rows[k]``, for each k.

        Parameters
        ----------
        rows : array_like of int, shape (m,)
            Rows to feed, in order; a row may appear more than once (its segments are
            fed in the order given).
        x : array_like of float, 1-D
            The samples of all segments, concatenated, in mV. NaN/inf are signal loss.
        bounds : array_like of int, shape (m + 1,)
            Segment bounds in ``x``: non-decreasing, from 0 to ``len(x)``.

        Returns
        -------
        beats : numpy.ndarray of int64
            R-peak sample indices decided during the call (absolute per row), grouped by
            segment in the order of ``rows``.
        counts : numpy.ndarray of int64, shape (m,)
            Beats per segment: those of segment k are
            ``beats[counts[:k].sum():counts[:k + 1].sum()]``.

        Raises
        ------
        vitalcore.errors.UsageError
            ``rows`` holds a free or out-of-range index, ``x`` is not 1-D numeric, or
            ``bounds`` does not fit ``x`` and ``rows``.  Nothing is fed then.
        """
        idx = self._rows(rows)
        if not (type(x) is np.ndarray and x.dtype == np.float64 and x.ndim == 1
                and x.flags.c_contiguous):
            x = _q._as_1d(x, "x")
        try:
            b = np.asarray(bounds)
        except Exception as exc:  # noqa: BLE001 - ragged input and the like
            raise UsageError(f"bounds must be a 1-D array of int: {exc}") from None
        if b.ndim != 1 or b.size != idx.size + 1 or (b.size and b.dtype.kind not in "iu"):
            raise UsageError(f"bounds must be {idx.size + 1} integers, got {b.dtype} "
                             f"shape {b.shape}")
        b = np.ascontiguousarray(b, dtype=np.int64)
        lens = np.diff(b)
        if b[0] != 0 or b[-1] != x.size or (lens.size and lens.min() < 0):
            raise UsageError("bounds must rise from 0 to len(x) without decreasing")
        longest = int(lens.max()) if lens.size else 0
        need = longest // self._refr + _EXTRA
        if self._scratch.size < need:
            self._scratch = np.empty(need, np.int64)
        if self.suppress_vf and self._wout.shape[0] < longest // self._hop + 2:
            self._wout = np.zeros((longest // self._hop + 2, 5))
        out = np.empty(x.size // self._refr + 2 * idx.size + 16, np.int64)  # rarely grown
        return _bank_step(x, b, idx, self._blob, self._si, self._vfb, self._vfi,
                          self._scratch, self._wout, out)

    def flush(self, rows: object) -> tuple[np.ndarray, np.ndarray]:
        """End of record for ``rows``: decide their last beats, as
        :meth:`~vitalcore.dsp.QRSDetector.flush` does (the last value held for 1 s, beats
        in that padding dropped).  Returns ``(beats, counts)`` as :meth:`process` does.
        Restart the rows with :meth:`reset` before feeding them again."""
        idx = self._rows(rows)
        if np.unique(idx).size != idx.size:
            raise UsageError("flush needs distinct rows")
        pad = int(round(self.fs))
        n0 = self._si[idx, _q._N].copy()
        flat_min = self._si[idx, _q._FLAT_MIN].copy()
        self._si[idx, _q._FLAT_MIN] = 2**62
        self._vfi[idx, vk._END] = n0
        last = self._blob[idx, _q._LAST_X]
        last = np.where(np.isfinite(last), last, 0.0)
        beats, counts = self.process(idx, np.repeat(last, pad),
                                     np.arange(idx.size + 1, dtype=np.int64) * pad)
        self._si[idx, _q._FLAT_MIN] = flat_min
        parts = np.split(beats, np.cumsum(counts)[:-1])
        if self.suppress_vf:
            tail = np.empty(idx.size * (vk.HOLD_CAP + 1), np.int64)
            tc = _bank_finish(idx, self._vfi, tail)
            tails = np.split(tail[:tc.sum()], np.cumsum(tc)[:-1])
            parts = [np.concatenate([p, t]) for p, t in zip(parts, tails, strict=True)]
        parts = [p[p < n] for p, n in zip(parts, n0.tolist(), strict=True)]
        return (np.concatenate(parts) if parts else np.empty(0, np.int64),
                np.array([p.size for p in parts], np.int64))
