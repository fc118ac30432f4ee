"""Per-device engine state kept as columns, updated per committed batch without a Python
loop over its rows: the device index, the latest valid numerics and the recent IR pleth.

At 10,000 devices a batch-per-slot ingest commits ~200 batches/s holding ~80,000 numeric
rows and ~40,000 pleth frames per second; per-row Python (a dict update, an array copy,
a deque append each) took a fifth of a core and the GIL from ingest. Here each batch is a
handful of numpy operations; Python runs per *new device* only.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import UsageError

__all__ = ["DeviceIndex", "LatestNumerics", "PlethFrames"]


@numba.njit(cache=True, nogil=True)
def _latest_kernel(slots, ts, codes, values, l_ts, l_val):  # pragma: no cover - compiled
    """Keep the newest row per (slot, code), in row order (ties: the later row)."""
    for i in range(slots.size):
        s, c = slots[i], codes[i]
        if ts[i] >= l_ts[s, c]:
            l_ts[s, c] = ts[i]
            l_val[s, c] = values[i]


@numba.njit(cache=True, nogil=True)
def _pleth_kernel(slots, ts, fs, gain, off, samples, start, n, raw, nraw, nfr, f_ts, f_fs,
                  f_gain, f_off, f_n, f_pos):  # pragma: no cover - compiled
    """Append frames in row order: the frame table row and the samples to the ring."""
    k = f_ts.shape[1]
    cap = raw.shape[1]
    for i in range(slots.size):
        s = slots[i]
        f = nfr[s] % k
        p = nraw[s]
        f_ts[s, f] = ts[i]
        f_fs[s, f] = fs[i]
        f_gain[s, f] = gain[i]
        f_off[s, f] = off[i]
        f_n[s, f] = n[i]
        f_pos[s, f] = p
        for j in range(n[i]):
            raw[s, (p + j) % cap] = samples[start[i] + j]
        nraw[s] = p + n[i]
        nfr[s] += 1


def _check_rows(slots: np.ndarray, n_slots: int, *cols: np.ndarray) -> np.ndarray:
    """Rows with a slot (-1: none, skipped); raises UsageError for inconsistent columns or
    an out-of-range slot (the kernels do not check bounds)."""
    if any(c.shape != slots.shape for c in cols) or slots.ndim != 1:
        raise UsageError("columns must be 1-D arrays of one length")
    if slots.size and (slots.min() < -1 or slots.max() >= n_slots):
        raise UsageError(f"slots must be within -1..{n_slots - 1}")
    return slots >= 0


class DeviceIndex:
    """Dense slots for device ids (sorted-array lookup, vectorised)."""

    def __init__(self) -> None:
        self.slot_of: dict[int, int] = {}
        self._free: list[int] = []
        self._n = 0
        self._ids = np.zeros(0, np.uint64)
        self._slots = np.zeros(0, np.int64)
        self._dirty = False

    @property
    def size(self) -> int:
        """Slots ever handed out (arrays indexed by slot need this many rows)."""
        return self._n

    def add(self, device_id: int) -> int:
        s = self.slot_of.get(device_id)
        if s is None:
            s = self._free.pop() if self._free else self._n
            self._n = max(self._n, s + 1)
            self.slot_of[device_id] = s
            self._dirty = True
        return s

    def remove(self, device_id: int) -> int | None:
        s = self.slot_of.pop(device_id, None)
        if s is not None:
            self._free.append(s)
            self._dirty = True
        return s

    def lookup(self, device_ids: np.ndarray) -> np.ndarray:
        """Slot of each id, -1 for ids without one."""
        if self._dirty:
            items = sorted(self.slot_of.items())
            self._ids = np.fromiter((d for d, _ in items), np.uint64, len(items))
            self._slots = np.fromiter((s for _, s in items), np.int64, len(items))
            self._dirty = False
        ids = np.asarray(device_ids).astype(np.uint64, copy=False)
        if not self._ids.size:
            return np.full(ids.size, -1, np.int64)
        i = np.minimum(np.searchsorted(self._ids, ids), self._ids.size - 1)
        return np.where(self._ids[i] == ids, self._slots[i], -1)


def _grow(a: np.ndarray, rows: int, fill: object) -> np.ndarray:
    if a.shape[0] >= rows:
        return a
    b = np.full((max(rows, 2 * a.shape[0]),) + a.shape[1:], fill, a.dtype)
    b[:a.shape[0]] = a
    return b


class LatestNumerics:
    """Newest VALID finite value (by device time) of each numeric code of each slot."""

    def __init__(self) -> None:
        self.ts = np.full((0, 256), np.iinfo(np.int64).min, np.int64)
        self.value = np.zeros((0, 256), np.float64)

    def update(self, slots: np.ndarray, ts_us: np.ndarray, codes: np.ndarray,
               values: np.ndarray, n_slots: int) -> None:
        """Rows ``(slot, ts, code, value)`` known VALID and finite, any order; rows of slot
        -1 (no slot) are skipped. ``n_slots``: slots in use (the arrays grow to it)."""
        self.ts = _grow(self.ts, n_slots, np.iinfo(np.int64).min)
        self.value = _grow(self.value, n_slots, 0.0)
        ok = _check_rows(slots, n_slots, ts_us, codes, values)
        if not ok.all():
            slots, ts_us, codes, values = slots[ok], ts_us[ok], codes[ok], values[ok]
        if codes.size and not (0 <= codes.min() and codes.max() < 256):
            raise UsageError("numeric codes must be within 0-255")
        if slots.size:
            _latest_kernel(slots.astype(np.int64, copy=False), ts_us.astype(np.int64, copy=False),
                           codes.astype(np.int64, copy=False),
                           values.astype(np.float64, copy=False), self.ts, self.value)

    def of(self, slot: int) -> dict[int, tuple[int, float]]:
        """``code -> (ts_us, value)`` of one slot."""
        if slot >= self.ts.shape[0]:
            return {}
        codes = np.flatnonzero(self.ts[slot] != np.iinfo(np.int64).min)
        return {int(c): (int(self.ts[slot, c]), float(self.value[slot, c])) for c in codes}

    def clear(self, slot: int) -> None:
        if slot < self.ts.shape[0]:
            self.ts[slot] = np.iinfo(np.int64).min


class PlethFrames:
    """The last ``frames`` IR pleth frames of each slot, raw, in a per-slot sample ring.

    Parameters
    ----------
    frames : int
        Frames remembered per slot (the reference kept a deque of this many).
    ring : int
        Raw samples kept per slot; a remembered frame whose samples were overwritten (a
        device sending more than ``ring`` samples in ``frames`` frames) is left out of
        :meth:`frames_of`.
    """

    def __init__(self, frames: int, ring: int = 2048) -> None:
        self.k = frames
        self.cap = ring
        self.raw = np.zeros((0, ring), np.int16)
        self.nraw = np.zeros(0, np.int64)  # samples ever appended per slot
        self.nfr = np.zeros(0, np.int64)  # frames ever appended per slot
        self.ts = np.zeros((0, frames), np.int64)
        self.fs = np.zeros((0, frames), np.int64)
        self.gain = np.zeros((0, frames), np.float64)
        self.off = np.zeros((0, frames), np.float64)
        self.n = np.zeros((0, frames), np.int64)
        self.pos = np.zeros((0, frames), np.int64)

    def _fit(self, n_slots: int) -> None:
        for name in ("raw", "nraw", "nfr", "ts", "fs", "gain", "off", "n", "pos"):
            setattr(self, name, _grow(getattr(self, name), n_slots, 0))

    def add(self, slots: np.ndarray, ts_us: np.ndarray, fs_hz: np.ndarray, gain: np.ndarray,
            offset: np.ndarray, samples: np.ndarray, start: np.ndarray, n: np.ndarray,
            n_slots: int) -> None:
        """Append frames (batch order) whose samples are ``samples[start:start + n]``;
        frames of slot -1 (no slot) are skipped."""
        self._fit(n_slots)
        ok = _check_rows(slots, n_slots, ts_us, fs_hz, gain, offset, start, n)
        if not ok.all():
            slots, ts_us, fs_hz, gain, offset, start, n = (
                a[ok] for a in (slots, ts_us, fs_hz, gain, offset, start, n))
        if not slots.size:
            return
        if start.min() < 0 or (start.astype(np.int64) + n).max() > samples.size:
            raise UsageError("frame samples out of range of the samples array")
        n0 = n.astype(np.int64)
        n = np.minimum(n0, self.cap)  # a frame longer than the ring: its newest samples
        start = start.astype(np.int64) + (n0 - n)
        _pleth_kernel(slots.astype(np.int64, copy=False), ts_us.astype(np.int64, copy=False),
                      fs_hz.astype(np.int64, copy=False), gain.astype(np.float64, copy=False),
                      offset.astype(np.float64, copy=False), samples, start, n, self.raw,
                      self.nraw, self.nfr, self.ts, self.fs, self.gain, self.off, self.n,
                      self.pos)

    def frames_of(self, slot: int) -> list[tuple[int, np.ndarray, float, float, int]]:
        """``(ts_us, raw, gain, offset, fs)`` of the slot's remembered frames, oldest first."""
        if slot >= self.nfr.size:
            return []
        total = int(self.nfr[slot])
        out = []
        for i in range(max(0, total - self.k), total):
            f = i % self.k
            p, m = int(self.pos[slot, f]), int(self.n[slot, f])
            if p < self.nraw[slot] - self.cap:
                continue  # overwritten
            cols = (p + np.arange(m)) % self.cap
            out.append((int(self.ts[slot, f]), self.raw[slot, cols], float(self.gain[slot, f]),
                        float(self.off[slot, f]), int(self.fs[slot, f])))
        return out

    def clear(self, slot: int) -> None:
        if slot < self.nfr.size:
            self.nfr[slot] = 0
            self.nraw[slot] = 0


def frames_for(snippet_s: float) -> int:
    """Pleth frames remembered per device for ``snippet_s`` of evidence (4 frames/s + 4)."""
    return math.ceil(snippet_s * 4) + 4
