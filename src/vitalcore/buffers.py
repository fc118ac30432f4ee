"""Live buffers: the recent window of every stream in memory, for live views and algorithms.

:class:`StreamBuffers` keeps, per waveform stream ``(device_id, frame_type, channel)``,
a ring of the last ``window_s`` seconds of raw int16 samples placed by device time,
plus a ring of frame records ``(ts_us, seq, sample position, n)`` that maps samples
back to device time. Per device it keeps the latest value of every numeric code, a
recent window of numerics, and the latest status with its accessories.

This is not the durable copy of anything: the write-ahead log and the Parquet history
(:mod:`vitalcore.storage`) are. Overwriting the oldest samples of a ring, evicting an
idle stream or dropping a late frame that falls outside the window loses nothing that
was accepted; history reads get it back.

How data flows in: the store classifies a decoded batch with
:class:`vitalcore._ext.streamtab.StreamTable`, drops DUPLICATE frames with
``batch.select(mask)``, writes the WAL, then calls :meth:`StreamBuffers.append`.

Memory policy (see ``docs/storage.md``, "Live buffers"):

- a sample ring holds ``ceil(window_s * fs)`` samples and never grows; a change of
  ``fs_hz``, ``gain`` or ``offset`` re-creates it empty (counted as ``reconfigured``:
  a window never mixes two scales);
- the frame-record ring starts at ``ceil(capacity / samples per frame) + 4`` entries and
  doubles only while its oldest record still covers samples in the window (frames got
  shorter), so it is bounded by one record per sample;
- a stream or device that received nothing for ``idle_evict_s`` (arrival time) is
  evicted (``evicted_idle``);
- at most ``max_streams`` waveform streams: a new stream beyond that evicts the least
  recently updated one (``evicted_lru``); if one batch alone brings more new streams
  than that, the excess streams' frames are not buffered (``rejected_frames``);
- numerics are kept for ``numerics_window_s`` of arrival time;
- rings live in two pools (samples, frame records) reserved up front for
  ``expected_streams`` streams as address space (pages are mapped when first written);
  a full pool grows by doubling with one copy (rings keep their place) and is compacted
  only when half of it is free blocks, so thousands of new streams arriving at once
  (a server restart) cost no copy of the existing rings.
"""

from __future__ import annotations

import math
import mmap
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple

import numba as nb
import numpy as np

from .batch import DecodedBatch
from .errors import InternalError, UsageError
from .protocol import WAVEFORM_TYPES, stream_id

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["StreamBuffers", "WaveWindow", "NumericValue", "DeviceStatus", "Accessory"]

# Per-stream counters (columns of StreamBuffers._counters).
_COUNTERS = (
    "frames",  # frames written (whole or in part) into the ring
    "samples",  # samples written
    "gaps",  # in-order frames that started after a hole in device time
    "gap_samples",  # samples of those holes (read as 0 raw, NaN in values())
    "late_placed",  # out-of-order frames placed at their time position
    "late_clipped",  # ... of which only a part was inside the window
    "late_dropped",  # out-of-order frames entirely older than the window
    "clock_steps",  # in-order frames whose time went back: appended contiguously
)
(
    _C_FRAMES,
    _C_SAMPLES,
    _C_GAPS,
    _C_GAP_SAMPLES,
    _C_LATE_PLACED,
    _C_LATE_CLIPPED,
    _C_LATE_DROPPED,
    _C_CLOCK_STEPS,
) = range(len(_COUNTERS))

# Frame record columns (StreamBuffers._frec is an (N, 4) int64 pool).
_R_TS, _R_SEQ, _R_POS, _R_N = range(4)

# Pool reservation caps (rows): 1 GiB of int16 samples, 512 MiB of 32-byte records.
_RESERVE_SAMPLE_ROWS = 1 << 29
_RESERVE_RECORD_ROWS = 1 << 24
_MAP_BYTES = 4 << 20  #: pools from this size on are anonymous mappings without huge pages

# Kernel exit codes.
_DONE, _NEED_CONFIG, _NEED_RECORDS = range(3)

_NUMERIC_COLUMNS = ("device_id", "seq", "ts_us", "code", "status", "value")


class NumericValue(NamedTuple):
    """Latest value of one numeric code of a device."""

    ts_us: int  #: device time of the frame, µs since the Unix epoch
    value: float  #: in the unit of the code (NaN when status is UNAVAILABLE)
    status: int  #: :class:`vitalcore.protocol.NumericStatus`


class Accessory(NamedTuple):
    kind: int  #: :class:`vitalcore.protocol.AccessoryKind`
    serial: str
    powered_s: int  #: cumulative powered-on seconds


@dataclass(frozen=True)
class DeviceStatus:
    """Latest status frame of a device (see the ``status`` table of DecodedBatch)."""

    ts_us: int
    seq: int
    battery: int  #: % (255 unknown)
    flags: int  #: :class:`vitalcore.protocol.StatusFlag`
    carrier: int
    rssi: int  #: dBm (-128 unknown)
    leads_off: int
    fault: int
    powered_s: int
    accessories: tuple[Accessory, ...]


@dataclass(frozen=True, eq=False)
class WaveWindow:
    """The recent samples of one waveform stream.

    ``raw`` and :meth:`to_arrow` share memory with the ring when they can: they are
    valid until the next :meth:`StreamBuffers.append`; :meth:`copy` what you keep.
    Sample ``i`` lies at device time ``sample_ts_us()[i]``; samples that no frame
    covered (holes in device time) are 0 in ``raw`` and NaN in :meth:`values`.
    """

    device_id: int
    frame_type: int
    channel: int
    fs_hz: int  #: sampling frequency, Hz
    gain: float  #: physical value = raw * gain + offset
    offset: float
    start_ts_us: int  #: device time of sample 0, µs since the Unix epoch
    segments: tuple[np.ndarray, ...]  #: one or two int16 views of the ring, in time order
    #: the frames in the window, sorted by position: ts_us (of their first sample in the
    #: window), seq, start (sample index in the window), n_samples
    frames: dict[str, np.ndarray] = field(repr=False)

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)

    @property
    def raw(self) -> np.ndarray:
        """Raw int16 samples: a view of the ring if it is not wrapped, else one copy."""
        if len(self.segments) == 1:
            return self.segments[0]
        return np.concatenate(self.segments)

    def valid(self) -> np.ndarray:
        """Boolean mask of the samples some frame wrote."""
        mask = np.zeros(len(self) + 1, np.int32)
        np.add.at(mask, self.frames["start"], 1)
        np.add.at(mask, self.frames["start"] + self.frames["n_samples"], -1)
        return np.cumsum(mask[:-1]) > 0

    def values(self) -> np.ndarray:
        """Physical values (float32: µV for ECG, mmHg for cuff, a.u. for pleth); NaN in holes."""
        v = self.raw.astype(np.float32) * np.float32(self.gain) + np.float32(self.offset)
        v[~self.valid()] = np.nan
        return v

    def sample_ts_us(self) -> np.ndarray:
        """Device time of every sample (int64 µs), from the frame that holds it.

        Samples in a hole take the time extrapolated from the frame before it.
        """
        n = len(self)
        starts = self.frames["start"]
        if len(starts) == 0:
            return self.start_ts_us + np.round(np.arange(n) * (1e6 / self.fs_hz)).astype(np.int64)
        i = np.arange(n)
        j = np.maximum(np.searchsorted(starts, i, side="right") - 1, 0)
        offset_us = np.round((i - starts[j]) * (1e6 / self.fs_hz)).astype(np.int64)
        return self.frames["ts_us"][j] + offset_us

    def to_arrow(self) -> pa.ChunkedArray:
        """Raw samples as an int16 ``pyarrow.ChunkedArray`` over the ring segments (no copy)."""
        import pyarrow as pa

        chunks = [
            pa.Array.from_buffers(pa.int16(), len(s), [None, pa.py_buffer(s)]) for s in self.segments
        ]
        return pa.chunked_array(chunks, type=pa.int16())

    def copy(self) -> WaveWindow:
        """A window that owns its samples (safe to keep across appends)."""
        return WaveWindow(
            self.device_id,
            self.frame_type,
            self.channel,
            self.fs_hz,
            self.gain,
            self.offset,
            self.start_ts_us,
            (self.raw.copy(),),
            {k: v.copy() for k, v in self.frames.items()},
        )


# ------------------------------------------------------------------------------ kernel
@nb.njit(cache=True, nogil=True)
def _append_waves(
    r0, slot, ts, seq, fs, gain, offset, sample_start, n_samples, samples,
    st_fs, st_gain, st_offset, st_base, st_cap, st_fbase, st_fcap,
    st_end, st_start, st_end_ts, st_seq, st_fcount, counters, pool, frec, snap_us,
):  # fmt: skip
    """Write waveform rows ``r0..`` into their rings, in order.

    Returns ``(row, code)``: ``_DONE``, or the row at which Python must act first
    (``_NEED_CONFIG``: no ring or another fs/gain/offset; ``_NEED_RECORDS``: the frame
    ring is full of records still in the window). State is untouched for that row.
    """
    for r in range(r0, slot.shape[0]):
        s = slot[r]
        if s < 0:
            continue
        if st_fs[s] != fs[r] or st_gain[s] != gain[r] or st_offset[s] != offset[r]:
            return r, _NEED_CONFIG
        cap = st_cap[s]
        base = st_base[s]
        f = np.float64(fs[r])
        nn = np.int64(n_samples[r])
        end = st_end[s]
        fc = st_fcount[s]
        kind = 0  # 0 first, 1 contiguous, 2 gap, 3 clock step, 4 late
        pos = cap
        if fc > 0:
            d = (np.int64(seq[r]) - np.int64(st_seq[s])) & 0xFFFFFFFF
            if d >= 0x80000000:
                d -= 0x100000000
            delta = np.int64(round((ts[r] - st_end_ts[s]) * f / 1e6))
            snap = max(np.int64(1), np.int64(round(snap_us * f / 1e6)))
            if d <= 0:
                kind = 4
                pos = end + delta
            elif delta > snap:
                kind = 2
                pos = end + delta
            else:
                kind = 3 if delta < -snap else 1
                pos = end
        if kind == 4:
            new_end = end
            a = max(pos, end - cap)
            b = min(pos + nn, end)
            if b <= a:
                counters[s, _C_LATE_DROPPED] += 1
                continue
        else:
            new_end = pos + nn
            a = max(pos, new_end - cap)
            b = new_end
        fcap = st_fcap[s]
        k = st_fbase[s] + fc % fcap
        if fc >= fcap and fcap <= cap and frec[k, _R_POS] + frec[k, _R_N] > new_end - cap:
            return r, _NEED_RECORDS  # (past one record per sample, overwrite: see docs)
        # -- from here on the row is applied
        if kind == 2:  # zero the hole (at most the part still in the window)
            lo = max(end, new_end - cap)
            for p in range(lo, pos):
                pool[base + p % cap] = 0
            counters[s, _C_GAPS] += 1
            counters[s, _C_GAP_SAMPLES] += pos - end
            if end <= new_end - cap:  # the hole spans the window: restart it here
                st_start[s] = a
        elif kind == 3:
            counters[s, _C_CLOCK_STEPS] += 1
        elif kind == 0:
            st_start[s] = a
        if kind == 4:
            counters[s, _C_LATE_PLACED] += 1
            if b - a < nn:
                counters[s, _C_LATE_CLIPPED] += 1
            if a < st_start[s]:
                st_start[s] = a
        src = sample_start[r] + (a - pos)
        i0 = a % cap
        first = min(b - a, cap - i0)
        pool[base + i0 : base + i0 + first] = samples[src : src + first]
        rest = b - a - first
        if rest > 0:
            pool[base : base + rest] = samples[src + first : src + first + rest]
        frec[k, _R_TS] = ts[r] + np.int64(round((a - pos) * 1e6 / f))
        frec[k, _R_SEQ] = seq[r]
        frec[k, _R_POS] = a
        frec[k, _R_N] = b - a
        st_fcount[s] = fc + 1
        counters[s, _C_FRAMES] += 1
        counters[s, _C_SAMPLES] += b - a
        if kind != 4:
            st_end[s] = new_end
            st_end_ts[s] = ts[r] + np.int64(round(nn * 1e6 / f))
            st_seq[s] = seq[r]
    return slot.shape[0], _DONE


# ------------------------------------------------------------------------------ stream hash
# Open addressing (linear probing) from (device_id, stream_id) to a stream's slot: the
# hash table holds slot numbers (-1 empty), the keys are the slots' own _dev/_sid. It
# maps a batch's rows to their rings in one call; StreamBuffers._index (a dict) stays the
# authority for Python-side lookups and is kept equal to it.
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


@nb.njit(cache=True, nogil=True, inline="always")
def _hash(dev, sid, mask):  # splitmix64 finaliser over both key parts
    z = np.uint64(dev) ^ (np.uint64(sid) * _M1)
    z = (z ^ (z >> np.uint64(30))) * _M2
    z = (z ^ (z >> np.uint64(27))) * _M3
    return np.int64((z ^ (z >> np.uint64(31))) & np.uint64(mask))


@nb.njit(cache=True, nogil=True)
def _hash_find(dev, sid, table, mask, st_dev, st_sid, out):
    """``out[k]``: the slot of stream ``(dev[k], sid[k])``, or -1."""
    for k in range(dev.shape[0]):
        h = _hash(dev[k], sid[k], mask)
        while True:
            s = table[h]
            if s < 0 or (st_dev[s] == dev[k] and st_sid[s] == sid[k]):
                out[k] = s
                break
            h = (h + 1) & mask


@nb.njit(cache=True, nogil=True)
def _hash_insert(table, mask, st_dev, st_sid, s):
    """Add slot ``s`` (its key absent; the table has room: at most half full)."""
    h = _hash(st_dev[s], st_sid[s], mask)
    while table[h] >= 0:
        h = (h + 1) & mask
    table[h] = s


@nb.njit(cache=True, nogil=True)
def _hash_remove(table, mask, st_dev, st_sid, s):
    """Remove slot ``s`` (present), shifting later entries of its run back (no tombstones)."""
    i = _hash(st_dev[s], st_sid[s], mask)
    while table[i] != s:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        t = table[j]
        if t < 0:
            break
        home = _hash(st_dev[t], st_sid[t], mask)
        # t stays if its home lies cyclically in (i, j]: moving it to i would put it
        # before its home, where probing never looks
        if (i < j and i < home <= j) or (i > j and (home > i or home <= j)):
            continue
        table[i] = t
        i = j
    table[i] = -1


# ------------------------------------------------------------------------------ pools
class _Pool:
    """Blocks of one numpy array: exact-size free lists and a bump pointer.

    When a block does not fit, the owner (:meth:`StreamBuffers._alloc`) grows the array
    with :meth:`grow` (blocks keep their base) or, when at least half of it is free
    blocks, compacts the live blocks into a new array.
    """

    def __init__(self, dtype: np.dtype, width: int = 0) -> None:
        self.shape_tail = (width,) if width else ()
        self.data = np.zeros((0, *self.shape_tail), dtype)
        self.top = 0
        self.free: dict[int, list[int]] = {}
        self.free_total = 0

    def alloc(self, size: int) -> int:
        """Base of a free block of ``size`` rows, or -1 if none fits."""
        blocks = self.free.get(size)
        if blocks:
            self.free_total -= size
            return blocks.pop()
        if self.top + size <= len(self.data):
            self.top += size
            return self.top - size
        return -1

    def grow(self, rows: int) -> None:
        """Move to an array of ``rows`` rows (>= ``top``); every block keeps its base.

        One copy of the used rows; the rows beyond are zero pages the OS maps only when
        written (an anonymous ``mmap`` from 4 MiB on), so growing ahead costs address
        space, not memory.
        """
        if rows < self.top:
            raise InternalError(f"pool cannot shrink below its top ({rows} < {self.top})")
        dtype = self.data.dtype
        nbytes = rows * dtype.itemsize * (self.shape_tail[0] if self.shape_tail else 1)
        if nbytes >= _MAP_BYTES:
            # an anonymous mapping: zero pages mapped on first write, 4 KiB at a time
            # (transparent huge pages, which numpy asks for, made the first write into
            # thousands of new rings 2x slower: each fault zeroes 2 MiB)
            mm = mmap.mmap(-1, nbytes)
            if hasattr(mmap, "MADV_NOHUGEPAGE"):
                mm.madvise(mmap.MADV_NOHUGEPAGE)
            data = np.frombuffer(mm, dtype).reshape(rows, *self.shape_tail)
        else:
            data = np.zeros((rows, *self.shape_tail), dtype)
        data[: self.top] = self.data[: self.top]
        self.data = data

    def release(self, base: int, size: int) -> None:
        self.data[base : base + size] = 0
        self.free.setdefault(size, []).append(base)
        self.free_total += size

    def live(self) -> int:
        return self.top - self.free_total

    def used_bytes(self) -> int:
        """Bytes of the rows below ``top`` (the part of the array ever written)."""
        return self.top * self.data.itemsize * (self.shape_tail[0] if self.shape_tail else 1)


# ------------------------------------------------------------------------------ buffers
class StreamBuffers:
    """Recent window of every stream, appended a decoded batch at a time.

    Parameters
    ----------
    window_s : float
        Seconds of waveform kept per stream (ring capacity ``ceil(window_s * fs)``).
    numerics_window_s : float, optional
        Seconds (arrival time) of numerics kept per device; default ``max(window_s, 60)``.
    idle_evict_s : float
        A stream or device with no frame for this long (arrival time) is evicted.
    max_streams : int
        Bound on waveform streams; the least recently updated one is evicted to make room.
    expected_streams : int, optional
        Waveform streams to reserve ring memory for at construction (default
        ``min(max_streams, 32768)``): ``expected_streams`` rings of ``window_s`` at
        250 Hz plus 128 frame records each, at most 1 GiB of samples and 512 MiB of
        records. The reservation is address space (zero pages the OS maps when first
        written), not memory; it spares the event loop the copy of every ring when
        thousands of new streams arrive at once. Beyond it the pools grow by doubling
        (one copy).
    snap_us : int
        Device-time tolerance (µs) within which an in-order frame continues the previous
        one. A later start leaves a hole (a gap); an earlier one is a clock step.
    clock : callable
        Arrival clock in seconds (``time.monotonic``); tests pass a fake one.
    """

    def __init__(
        self,
        window_s: float = 30.0,
        *,
        numerics_window_s: float | None = None,
        idle_evict_s: float = 300.0,
        max_streams: int = 65_536,
        expected_streams: int | None = None,
        snap_us: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(window_s) and 0 < window_s <= 3600):
            raise UsageError(f"window_s must be in (0, 3600], got {window_s}")
        numerics_window_s = max(window_s, 60.0) if numerics_window_s is None else numerics_window_s
        if not (math.isfinite(numerics_window_s) and numerics_window_s > 0):
            raise UsageError(f"numerics_window_s must be > 0, got {numerics_window_s}")
        if not (idle_evict_s > 0):
            raise UsageError(f"idle_evict_s must be > 0, got {idle_evict_s}")
        if not 1 <= max_streams <= 2**31 - 1:
            raise UsageError(f"max_streams must be in 1..2**31-1, got {max_streams}")
        if expected_streams is None:
            expected_streams = min(max_streams, 32_768)
        if not 0 <= expected_streams <= 2**31 - 1:
            raise UsageError(f"expected_streams must be in 0..2**31-1, got {expected_streams}")
        if not 0 <= snap_us <= 10**6:
            raise UsageError(f"snap_us must be in 0..1_000_000, got {snap_us}")
        self.window_s = float(window_s)
        self.numerics_window_s = float(numerics_window_s)
        self.idle_evict_s = float(idle_evict_s)
        self.max_streams = int(max_streams)
        self.snap_us = int(snap_us)
        self._clock = clock
        self._sweep_every = min(1.0, self.idle_evict_s / 4)
        self._last_sweep = -math.inf
        # waveform streams: slot arrays, index and pools
        self._index: dict[tuple[int, int], int] = {}
        self._free_slots: list[int] = []
        self._n_slots = 0
        self._alloc_slots(16)
        self._samples = _Pool(np.dtype(np.int16))
        self._frec = _Pool(np.dtype(np.int64), width=4)
        if expected_streams:
            ring = math.ceil(self.window_s * 250)
            self._samples.grow(min(expected_streams * ring, _RESERVE_SAMPLE_ROWS))
            self._frec.grow(min(expected_streams * 128, _RESERVE_RECORD_ROWS))
        self._retired = np.zeros(len(_COUNTERS), np.int64)  # counters of evicted streams
        self._events = dict.fromkeys(
            ("reconfigured", "evicted_idle", "evicted_lru", "rejected_frames", "devices_evicted"), 0
        )
        # devices: numerics, status
        self._device_seen: dict[int, float] = {}
        # latest numeric per (device, code): rows of three arrays
        self._lat_index: dict[tuple[int, int], int] = {}
        self._lat_codes: dict[int, dict[int, int]] = {}  # device -> code -> row
        self._lat_free: list[int] = []
        self._lat_ts = np.zeros(0, np.int64)
        self._lat_seq = np.zeros(0, np.uint32)
        self._lat_value = np.zeros(0, np.float32)
        self._lat_status = np.zeros(0, np.uint8)
        self._status: dict[int, DeviceStatus] = {}
        # (first arrival, last arrival, rows sorted by device)
        self._num_chunks: deque[tuple[float, float, dict[str, np.ndarray]]] = deque()

    # -- slot arrays ----------------------------------------------------------------------
    _SLOT_ARRAYS = (
        ("_dev", np.uint64),
        ("_sid", np.uint16),
        ("_fs", np.uint16),  # 0: no ring
        ("_gain", np.float32),
        ("_offset", np.float32),
        ("_base", np.int64),
        ("_cap", np.int64),
        ("_fbase", np.int64),
        ("_fcap", np.int64),
        ("_end", np.int64),  # absolute sample position after the newest sample
        ("_start", np.int64),  # oldest sample position written since the ring began
        ("_end_ts", np.int64),  # device time expected at _end
        ("_seq", np.uint32),  # seq of the newest in-order frame
        ("_fcount", np.int64),  # frame records written since the ring began
        ("_seen", np.float64),  # arrival time of the last frame
    )

    def _alloc_slots(self, n: int) -> None:
        old = self._n_slots
        for name, dtype in self._SLOT_ARRAYS:
            a = np.zeros(n, dtype)
            if old:
                a[:old] = getattr(self, name)
            setattr(self, name, a)
        counters = np.zeros((n, len(_COUNTERS)), np.int64)
        if old:
            counters[:old] = self._counters
        self._counters = counters
        self._free_slots.extend(range(n - 1, old - 1, -1))
        self._n_slots = n
        size = 1 << max(4, (2 * n - 1).bit_length())  # a power of two >= 2n: half full at most
        self._table = np.full(size, -1, np.int32)
        self._mask = size - 1
        for s in self._index.values():
            _hash_insert(self._table, self._mask, self._dev, self._sid, s)

    def _new_slot(self, device_id: int, sid: int) -> int:
        if not self._free_slots:
            self._alloc_slots(min(2 * self._n_slots, self.max_streams))
        s = self._free_slots.pop()
        self._index[(device_id, sid)] = s
        self._dev[s] = device_id
        self._sid[s] = sid
        _hash_insert(self._table, self._mask, self._dev, self._sid, s)
        return s

    def _release(self, s: int) -> None:
        """Free slot ``s`` and its ring; its counters go to the retired totals."""
        if self._fs[s]:
            self._samples.release(int(self._base[s]), int(self._cap[s]))
            self._frec.release(int(self._fbase[s]), int(self._fcap[s]))
        self._retired += self._counters[s]
        del self._index[(int(self._dev[s]), int(self._sid[s]))]
        _hash_remove(self._table, self._mask, self._dev, self._sid, s)
        for name, _ in self._SLOT_ARRAYS:
            getattr(self, name)[s] = 0
        self._counters[s] = 0
        self._free_slots.append(s)

    def _active(self) -> np.ndarray:
        return np.fromiter(self._index.values(), np.int64, len(self._index))

    # -- pools ----------------------------------------------------------------------------
    def _alloc(self, pool: _Pool, size: int, bases: np.ndarray, sizes: np.ndarray) -> int:
        base = pool.alloc(size)
        if base >= 0:
            return base
        if 2 * pool.free_total < len(pool.data):
            # little fragmentation: grow, one copy of the used rows, no block moves (a
            # per-block compaction of 30,000 rings stalled the event loop for seconds)
            pool.grow(max(2 * len(pool.data), pool.top + size, 4096))
            return pool.alloc(size)
        # half of it is free blocks (evictions): compact live blocks to the front of a
        # new array with room for as much again
        active = self._active()
        active = active[self._fs[active] > 0]
        live = int(sizes[active].sum())
        data = np.zeros((max(2 * (live + size), 4096), *pool.shape_tail), pool.data.dtype)
        top = 0
        for s in active.tolist():
            b, n = int(bases[s]), int(sizes[s])
            data[top : top + n] = pool.data[b : b + n]
            bases[s] = top
            top += n
        pool.data, pool.top, pool.free, pool.free_total = data, top, {}, 0
        base = pool.alloc(size)
        if base < 0:
            raise InternalError("pool has no room right after compaction")
        return base

    def _configure(self, s: int, fs: int, gain: float, offset: float, n_first: int) -> None:
        """(Re-)create the ring of slot ``s`` for this fs/gain/offset, empty."""
        if self._fs[s]:
            self._samples.release(int(self._base[s]), int(self._cap[s]))
            self._frec.release(int(self._fbase[s]), int(self._fcap[s]))
            self._fs[s] = 0
            self._events["reconfigured"] += 1
        cap = max(1, math.ceil(self.window_s * fs))
        fcap = math.ceil(cap / max(1, min(n_first, cap))) + 4
        self._base[s] = self._alloc(self._samples, cap, self._base, self._cap)
        self._cap[s] = cap
        self._fbase[s] = self._alloc(self._frec, fcap, self._fbase, self._fcap)
        self._fcap[s] = fcap
        self._fs[s], self._gain[s], self._offset[s] = fs, gain, offset
        self._end[s] = self._start[s] = self._end_ts[s] = self._seq[s] = self._fcount[s] = 0

    def _grow_records(self, s: int) -> None:
        """Double the frame-record ring of ``s`` (frames got shorter), keeping its records."""
        old_base, old_cap = int(self._fbase[s]), int(self._fcap[s])
        head = int(self._fcount[s]) % old_cap
        records = np.roll(self._frec.data[old_base : old_base + old_cap], -head, axis=0).copy()
        self._frec.release(old_base, old_cap)
        new_cap = min(2 * old_cap, int(self._cap[s]) + 1)  # > old_cap: the kernel checked
        self._fcap[s] = 0  # not live while the pool may compact
        base = self._alloc(self._frec, new_cap, self._fbase, self._fcap)
        self._frec.data[base : base + old_cap] = records
        self._fbase[s], self._fcap[s] = base, new_cap
        self._fcount[s] = old_cap

    # -- append ---------------------------------------------------------------------------
    def append(self, batch: DecodedBatch) -> None:
        """Add a de-duplicated batch (frames in arrival order) to the live windows.

        Waveform frames are written into their stream's ring at their device-time
        position; numerics and status update the per-device views.
        """
        if not isinstance(batch, DecodedBatch):
            raise UsageError(f"append takes a DecodedBatch, got {type(batch).__name__}")
        now = float(self._clock())
        devices = np.unique(batch.tables["frames"]["device_id"])
        self._device_seen.update(dict.fromkeys(devices.tolist(), now))
        self._append_waveforms(batch, now)
        self._append_numerics(batch.tables["numerics"], now)
        self._append_status(batch)
        if now - self._last_sweep >= self._sweep_every:
            self.evict_idle(now)

    def _append_waveforms(self, batch: DecodedBatch, now: float) -> None:
        w = batch.tables["waveforms"]
        n = len(w["device_id"])
        if n == 0:
            return
        # the kernel trusts these (no checks inside numba): refuse an inconsistent batch
        # before any state changes
        start, count = w["sample_start"], w["n_samples"].astype(np.int64)
        if (
            (count < 1).any()
            or (start < 0).any()
            or (start + count > len(batch.samples)).any()
            or (w["fs_hz"] < 1).any()
            or not (np.isfinite(w["gain"]).all() and np.isfinite(w["offset"]).all())
        ):
            raise UsageError(
                "inconsistent waveform rows: need n_samples >= 1, fs_hz >= 1, finite gain and"
                " offset, and sample ranges inside batch.samples"
            )
        dev = np.ascontiguousarray(w["device_id"], np.uint64)
        sid = (w["frame_type"].astype(np.uint16) << 8) | w["channel"]
        slot = np.empty(n, np.int64)
        _hash_find(dev, sid, self._table, self._mask, self._dev, self._sid, slot)
        self._seen[slot[slot >= 0]] = now  # before any LRU eviction below: never evict these
        rows = np.flatnonzero(slot < 0)
        if len(rows):  # new streams, in order of first appearance
            first, inverse = _groups(dev[rows], sid[rows])
            new_slot = np.full(len(first), -1, np.int64)
            fresh = []
            for u, r in enumerate(rows[first].tolist()):
                if len(self._index) >= self.max_streams and not self._evict_lru(now):
                    continue
                s = new_slot[u] = self._new_slot(int(dev[r]), int(sid[r]))
                self._seen[s] = now
                fresh.append((s, r))
            for s, r in fresh:
                self._configure(
                    s, int(w["fs_hz"][r]), float(w["gain"][r]), float(w["offset"][r]), int(w["n_samples"][r])
                )
            slot[rows] = new_slot[inverse]
            self._events["rejected_frames"] += int((slot[rows] < 0).sum())
        cols = [
            np.ascontiguousarray(w[c])
            for c in ("ts_us", "seq", "fs_hz", "gain", "offset", "sample_start", "n_samples")
        ]
        samples = np.ascontiguousarray(batch.samples)
        r = 0
        while True:
            r, code = _append_waves(
                r, slot, *cols, samples,
                self._fs, self._gain, self._offset, self._base, self._cap, self._fbase,
                self._fcap, self._end, self._start, self._end_ts, self._seq, self._fcount,
                self._counters, self._samples.data, self._frec.data, self.snap_us,
            )  # fmt: skip
            if code == _DONE:
                return
            s = int(slot[r])
            if code == _NEED_CONFIG:
                self._configure(
                    s, int(w["fs_hz"][r]), float(w["gain"][r]), float(w["offset"][r]), int(w["n_samples"][r])
                )
            else:
                self._grow_records(s)

    def _evict_lru(self, now: float) -> bool:
        """Evict the least recently updated stream not touched at ``now``; False if none."""
        active = self._active()
        seen = self._seen[active]
        older = seen < now
        if not older.any():
            return False
        s = int(active[older][np.argmin(seen[older])])
        self._release(s)
        self._events["evicted_lru"] += 1
        return True

    def evict_idle(self, now: float | None = None) -> int:
        """Evict streams and devices idle for ``idle_evict_s``; return streams evicted.

        Called by :meth:`append` at most once a second; call it from a timer too if
        traffic may stop altogether.
        """
        now = float(self._clock()) if now is None else now
        self._last_sweep = now
        limit = now - self.idle_evict_s
        active = self._active()
        idle = active[self._seen[active] < limit]
        for s in idle.tolist():
            self._release(s)
        self._events["evicted_idle"] += len(idle)
        gone = [d for d, t in self._device_seen.items() if t < limit]
        for d in gone:
            del self._device_seen[d]
            for code, i in self._lat_codes.pop(d, {}).items():
                del self._lat_index[(d, code)]
                self._lat_free.append(i)
            self._status.pop(d, None)
        self._events["devices_evicted"] += len(gone)
        while self._num_chunks and self._num_chunks[0][1] < now - self.numerics_window_s:
            self._num_chunks.popleft()
        return len(idle)

    # -- numerics and status ----------------------------------------------------------------
    def _append_numerics(self, t: dict[str, np.ndarray], now: float) -> None:
        if len(t["device_id"]) == 0:
            return
        # recent window: chunks of rows sorted by device (for searchsorted); a batch
        # merges into the newest chunk while that is small and spans < 1/8 of the window,
        # so chunks stay few and are trimmed with that granularity
        order = np.argsort(t["device_id"], kind="stable")
        chunk = {c: t[c][order] for c in _NUMERIC_COLUMNS}
        first = now
        if self._num_chunks:
            last_first, _, last = self._num_chunks[-1]
            if (
                len(last["device_id"]) + len(chunk["device_id"]) <= 4096
                and now - last_first < self.numerics_window_s / 8
            ):
                merged = {c: np.concatenate([last[c], chunk[c]]) for c in _NUMERIC_COLUMNS}
                order = np.argsort(merged["device_id"], kind="stable")
                chunk = {c: merged[c][order] for c in _NUMERIC_COLUMNS}
                first = last_first
                self._num_chunks.pop()
        self._num_chunks.append((first, now, chunk))
        # latest value per (device, code): newest device time wins, ties to the later row
        rows = _last_per_group(t["device_id"], t["code"], t["ts_us"])
        keys = zip(t["device_id"][rows].tolist(), t["code"][rows].tolist(), strict=True)
        at = np.fromiter(map(self._lat_index.get, keys, repeat(-1)), np.int64, len(rows))
        for i in np.flatnonzero(at < 0).tolist():
            at[i] = self._lat_new(int(t["device_id"][rows[i]]), int(t["code"][rows[i]]))
        # A value replaces the latest one if its device time is not older, or if its
        # sequence number is newer (serial arithmetic): a device whose clock stepped back
        # (NTP, SET_TIME) while its counter went on must not freeze its live numerics
        # until its clock catches up again; a late frame (older seq, older time) still
        # never overwrites a newer value.
        seq = t["seq"][rows].astype(np.uint32)
        newer = (t["ts_us"][rows] >= self._lat_ts[at]) | (
            (seq - self._lat_seq[at]).astype(np.int32) > 0)
        at, rows, seq = at[newer], rows[newer], seq[newer]
        self._lat_ts[at] = t["ts_us"][rows]
        self._lat_seq[at] = seq
        self._lat_value[at] = t["value"][rows]
        self._lat_status[at] = t["status"][rows]

    def _lat_new(self, dev: int, code: int) -> int:
        """A row of the latest-numerics arrays for a new (device, code)."""
        if not self._lat_free:
            n = len(self._lat_ts)
            grow = max(64, n)
            self._lat_ts = np.concatenate([self._lat_ts, np.zeros(grow, np.int64)])
            self._lat_seq = np.concatenate([self._lat_seq, np.zeros(grow, np.uint32)])
            self._lat_value = np.concatenate([self._lat_value, np.zeros(grow, np.float32)])
            self._lat_status = np.concatenate([self._lat_status, np.zeros(grow, np.uint8)])
            self._lat_free.extend(range(n + grow - 1, n - 1, -1))
        i = self._lat_free.pop()
        self._lat_ts[i] = np.iinfo(np.int64).min
        self._lat_seq[i] = 0
        self._lat_index[(dev, code)] = i
        self._lat_codes.setdefault(dev, {})[code] = i
        return i

    def _append_status(self, batch: DecodedBatch) -> None:
        st = batch.tables["status"]
        if len(st["device_id"]) == 0:
            return
        acc = batch.tables["accessories"]
        rows = _last_per_group(st["device_id"], np.zeros(len(st["device_id"]), np.uint8), st["ts_us"])
        for r in rows.tolist():
            dev, ts = int(st["device_id"][r]), int(st["ts_us"][r])
            old = self._status.get(dev)
            if old is not None and ts < old.ts_us:
                continue
            mine = np.flatnonzero(acc["frame"] == st["frame"][r])
            accessories = tuple(
                Accessory(int(acc["kind"][i]), acc["serial"][i].rstrip(b"\0").decode("ascii"), int(acc["powered_s"][i]))
                for i in mine.tolist()
            )
            fields = ("seq", "battery", "flags", "carrier", "rssi", "leads_off", "fault", "powered_s")
            self._status[dev] = DeviceStatus(
                ts, *(int(st[c][r]) for c in fields), accessories=accessories
            )

    # -- reading ------------------------------------------------------------------------------
    def window(
        self, device_id: int, frame_type: int, channel: int, seconds: float | None = None
    ) -> WaveWindow | None:
        """The live window of one waveform stream, or None if it has none (never seen, evicted).

        Parameters
        ----------
        seconds : float, optional
            Only the newest ``seconds`` (by sample count at the stream's fs); default all.
        """
        if frame_type not in WAVEFORM_TYPES:
            raise UsageError(f"frame_type {frame_type} is not a waveform type")
        if seconds is not None and not seconds > 0:
            raise UsageError(f"seconds must be > 0, got {seconds}")
        s = self._index.get((device_id, stream_id(frame_type, channel)))
        if s is None or self._fs[s] == 0 or self._fcount[s] == 0:
            return None
        fs = int(self._fs[s])
        cap, base, end = int(self._cap[s]), int(self._base[s]), int(self._end[s])
        start = max(int(self._start[s]), end - cap)
        if seconds is not None:
            start = max(start, end - math.ceil(seconds * fs))
        n = end - start
        i0 = start % cap
        first = min(n, cap - i0)
        data = self._samples.data
        segments = (data[base + i0 : base + i0 + first],)
        if n > first:
            segments += (data[base : base + n - first],)
        frames = self._frames_in(s, start, end)
        if len(frames["ts_us"]):
            rel = start - frames["start"][0]  # frames["start"] is absolute here
            start_ts = int(frames["ts_us"][0]) + round(rel * 1e6 / fs)
        else:
            start_ts = int(self._end_ts[s]) - round(n * 1e6 / fs)
        frames["start"] -= start
        return WaveWindow(
            device_id, frame_type, channel, fs, float(self._gain[s]), float(self._offset[s]),
            start_ts, segments, frames,
        )  # fmt: skip

    def _frames_in(self, s: int, start: int, end: int) -> dict[str, np.ndarray]:
        """Frame records of slot ``s`` overlapping [start, end), clipped, sorted by position."""
        fcap, fbase = int(self._fcap[s]), int(self._fbase[s])
        rec = self._frec.data[fbase : fbase + min(int(self._fcount[s]), fcap)]
        pos, n = rec[:, _R_POS], rec[:, _R_N]
        keep = (pos + n > start) & (pos < end) & (n > 0)
        rec = rec[keep]
        rec = rec[np.argsort(rec[:, _R_POS], kind="stable")]
        pos, n = rec[:, _R_POS], rec[:, _R_N]
        lo = np.maximum(pos, start)
        hi = np.minimum(pos + n, end)
        fs = float(self._fs[s])
        ts = rec[:, _R_TS] + np.round((lo - pos) * (1e6 / fs)).astype(np.int64)
        return {
            "ts_us": ts,
            "seq": rec[:, _R_SEQ].astype(np.uint32),
            "start": lo.copy(),
            "n_samples": hi - lo,
        }

    def streams(self) -> list[tuple[int, int, int]]:
        """``(device_id, frame_type, channel)`` of every buffered waveform stream."""
        return [(d, sid >> 8, sid & 0xFF) for d, sid in self._index]

    def stream_stats(self, device_id: int, frame_type: int, channel: int) -> dict[str, int] | None:
        """Counters of one stream since its slot was created, or None if not buffered."""
        s = self._index.get((device_id, stream_id(frame_type, channel)))
        if s is None:
            return None
        return dict(zip(_COUNTERS, self._counters[s].tolist(), strict=True))

    def latest(self, device_id: int) -> dict[int, NumericValue]:
        """Latest value of every numeric code of a device (empty if none)."""
        rows = self._lat_codes.get(device_id, {})
        return {
            code: NumericValue(int(self._lat_ts[i]), float(self._lat_value[i]), int(self._lat_status[i]))
            for code, i in sorted(rows.items())
        }

    def numerics(self, device_id: int, seconds: float | None = None) -> pa.Table:
        """Numerics of a device in its newest ``seconds`` of device time, as a pyarrow Table.

        Columns as in :meth:`vitalcore.storage.HistoryStore.read_numerics`: device_id,
        seq, ts_us, code, status, value; rows sorted by (ts_us, code). At most
        ``numerics_window_s`` of arrival time is kept.
        """
        import pyarrow as pa

        if seconds is not None and not seconds > 0:
            raise UsageError(f"seconds must be > 0, got {seconds}")
        parts = []
        for _, _, chunk in self._num_chunks:
            dev = chunk["device_id"]
            key = np.uint64(device_id)
            lo, hi = np.searchsorted(dev, key, "left"), np.searchsorted(dev, key, "right")
            if hi > lo:
                parts.append({c: chunk[c][lo:hi] for c in _NUMERIC_COLUMNS})
        if parts:
            cols = {c: np.concatenate([p[c] for p in parts]) for c in _NUMERIC_COLUMNS}
        else:
            from .batch import TABLES

            dtypes = dict(TABLES["numerics"])
            cols = {c: np.empty(0, dtypes[c]) for c in _NUMERIC_COLUMNS}
        if seconds is not None and len(cols["ts_us"]):
            keep = cols["ts_us"] >= cols["ts_us"].max() - round(seconds * 1e6)
            cols = {c: a[keep] for c, a in cols.items()}
        order = np.lexsort((cols["code"], cols["ts_us"]))
        return pa.table({c: a[order] for c, a in cols.items()})

    def status(self, device_id: int) -> DeviceStatus | None:
        """Latest status (and accessories) of a device, or None."""
        return self._status.get(device_id)

    # -- accounting -------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes held: sample and frame-record pools, slot arrays, numerics and status.

        Pools are counted up to their highest block in use (``top``: rows ever handed
        out, freed blocks included; the reserved rows beyond were never written and
        are not memory); dict entries at a flat 200 bytes.
        """
        slots = sum(getattr(self, name).nbytes for name, _ in self._SLOT_ARRAYS)
        numerics = sum(a.nbytes for _, _, c in self._num_chunks for a in c.values())
        entries = len(self._index) + len(self._device_seen) + len(self._status)
        entries += len(self._lat_index)
        slots += self._lat_ts.nbytes + self._lat_seq.nbytes + self._lat_value.nbytes
        slots += self._lat_status.nbytes
        return (
            self._samples.used_bytes() + self._frec.used_bytes() + slots + self._counters.nbytes
            + self._table.nbytes + numerics + 200 * entries
        )  # fmt: skip

    def stats(self) -> dict[str, int]:
        """Counters summed over all streams (evicted ones included) and current sizes."""
        active = self._active()
        totals = self._retired + self._counters[active].sum(axis=0)
        out: dict[str, Any] = dict(zip(_COUNTERS, totals.tolist(), strict=True))
        out.update(self._events)
        out.update(
            streams=len(self._index),
            devices=len(self._device_seen),
            numeric_rows=sum(len(c["ts_us"]) for _, _, c in self._num_chunks),
            memory_bytes=self.memory_bytes(),
            ring_samples=int(self._cap[active].sum()),
        )
        return out


def _groups(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group rows by the pair (a, b).

    Returns the first row of each group, groups numbered in order of first appearance,
    and the group number of every row.
    """
    n = len(a)
    order = np.lexsort((b, a))  # stable: the first row of a group comes first
    sa, sb = a[order], b[order]
    start = np.ones(n, bool)
    start[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    first = order[start]
    rank = np.argsort(first, kind="stable")
    renumber = np.empty(len(first), np.int64)
    renumber[rank] = np.arange(len(first))
    inverse = np.empty(n, np.int64)
    inverse[order] = renumber[np.cumsum(start) - 1]
    return first[rank], inverse


def _last_per_group(a: np.ndarray, b: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Row index of the newest ``ts`` (last row on ties) for each (a, b) pair."""
    rows = np.arange(len(a))
    order = np.lexsort((rows, ts, b, a))
    sa, sb = a[order], b[order]
    last = np.ones(len(a), bool)
    last[:-1] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    return order[last]
