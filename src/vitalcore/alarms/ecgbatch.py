"""Arrhythmia analysis of every device's ECG in one batched pass (structure of arrays).

:class:`EcgBatch` does for all devices what one :class:`~vitalcore.alarms.arrhythmia.EcgAnalyser`
per device does (the per-device *reference twin*, kept for equivalence tests and the
benchmark's baseline), with no Python work per device per frame:

* :meth:`EcgBatch.add_frames` takes a committed batch's ECG frames as columns (device,
  device time, sampling rate, scale, samples) and only appends them to a log;
* :meth:`EcgBatch.step` (the engine's ECG thread calls it every :data:`PASS_S`) runs the
  whole log through private numba kernels compiled with ``nogil=True``: frame placement
  by device time (holes up to 2 s NaN-filled, longer holes or a new rate restart the
  device's analysis, late retransmissions dropped: the rules of
  :class:`~vitalcore.alarms.windows.WaveRing`), scaling to mV, one
  :class:`~vitalcore.dsp.qrs_bank.QRSBank` step per sampling rate over every device that
  received samples, the evidence rings and the per-second judgement of the arrhythmia
  rules (asystole, VF/VFL, pause, extreme brady/tachycardia) and ECG quality;
* Python then runs only for the devices whose judgement found something or that have an
  alarm condition under way: it builds their :class:`~vitalcore.alarms.model.Finding`
  objects, identical in code, value and message to the reference twin's.

The judgement is the reference twin's (arrhythmia.py documents the rules), evaluated once
per second of each device's ECG; the twin judges once per second *of queued ECG*, so an
ECG alarm may come up to about a second earlier or later in data time (docs/alarms.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numba
import numpy as np

from ..dsp.qrs import _N
from ..dsp.qrs_bank import QRSBank
from ..dsp.quality import LEADS_OFF, _quality_kernel
from ..errors import UsageError
from .arrhythmia import ArrhythmiaConfig
from .windows import SNAP_US, WaveRing

__all__ = ["EcgBatch", "EcgLead", "Judgement", "PASS_S"]

#: Period of the batched ECG pass on the engine's ECG thread while frames arrive, s
#: (ECG alarms are judged once per second of data; this adds at most PASS_S).
PASS_S = 0.5
#: Beats remembered per device for the rhythm rules.
BEATS_KEPT = 10
_MAX_FILL_S = 2.0
_FS_LO, _FS_HI = 125, 1000

# judgement bits (Judgement.bits)
VFIB, ASYSTOLE, PAUSE, BRADY, TACHY = 1, 2, 4, 8, 16


# ----------------------------------------------------------------------------------------
# numba kernels (private; EcgBatch guarantees shapes and dtypes)
# ----------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _place(slot, ts, n, fs, s_fs, s_live, s_next, s_origin, s_gap, keep, hole,
           restart_at):  # pragma: no cover - compiled
    """Place frames in log order (WaveRing.place per device); returns frames dropped late.

    ``keep[j]`` False: late (dropped); ``hole[j]``: NaN samples before frame j;
    ``restart_at[s]``: index of the last frame of this pass that restarted slot ``s``
    (-1: none); frames of a slot before its restart are dropped by the caller.
    """
    late = 0
    for j in range(slot.size):
        s = slot[j]
        keep[j] = True
        hole[j] = 0
        if fs[j] != s_fs[s] or not s_live[s]:
            s_fs[s] = fs[j]
            s_live[s] = True
            s_origin[s] = ts[j]
            restart_at[s] = j
        else:
            delta = ts[j] - s_next[s]
            if delta < -SNAP_US:
                keep[j] = False
                late += 1
                continue
            if delta > SNAP_US:
                gap = delta / 1e6
                s_gap[s] = max(s_gap[s], gap)
                if gap > _MAX_FILL_S:
                    s_origin[s] = ts[j]
                    restart_at[s] = j
                else:
                    hole[j] = np.int64(np.rint(delta * fs[j] / 1e6))
        s_next[s] = ts[j] + np.int64(np.rint(n[j] * 1e6 / fs[j]))
    return late


@numba.njit(cache=True, nogil=True)
def _assemble(sel, hole, start, n, gain_mv, off_mv, raw, bounds, x):  # pragma: no cover
    """Write frames ``sel`` (their NaN hole, then ``raw * gain + offset`` in mV) to ``x``."""
    p = 0
    for k in range(sel.size):
        j = sel[k]
        for _ in range(hole[j]):
            x[p] = np.nan
            p += 1
        g = gain_mv[j]
        o = off_mv[j]
        s0 = start[j]
        for i in range(n[j]):
            x[p] = raw[s0 + i] * g + o
            p += 1
        bounds[k + 1] = p


@numba.njit(cache=True, nogil=True)
def _after_step(rows, x, bounds, beats, counts, n_seen, ring, recent, bbuf,
                nbeats):  # pragma: no cover - compiled
    """Write each segment to its row's rings (evidence float32, last 2 s float64) and
    append its beats to the row's last BEATS_KEPT beats."""
    cap = ring.shape[1]
    rcap = recent.shape[1]
    b0 = 0
    for k in range(rows.size):
        r = rows[k]
        lo, hi = bounds[k], bounds[k + 1]
        end = n_seen[k]  # samples seen by the row after this segment
        for i in range(max(lo, hi - cap), hi):
            ring[r, (end - (hi - i)) % cap] = x[i]
        for i in range(max(lo, hi - rcap), hi):
            recent[r, (end - (hi - i)) % rcap] = x[i]
        for i in range(b0, b0 + counts[k]):
            m = nbeats[r]
            if m == BEATS_KEPT:
                for q in range(BEATS_KEPT - 1):
                    bbuf[r, q] = bbuf[r, q + 1]
                m -= 1
            bbuf[r, m] = beats[i]
            nbeats[r] = m + 1
        b0 += counts[k]


@numba.njit(cache=True, nogil=True)
def _judge(rows, n_now, vf, fs, cfg, recent, bbuf, nbeats, clock_from, judged, qflags,
           bits, val_a, val_b, q_args):  # pragma: no cover - compiled
    """The reference twin's ``EcgAnalyser._judge`` for each due row (see arrhythmia.py).

    ``cfg`` = [asystole_s, beat_lag_s, pause_s, brady_bpm, tachy_bpm]; writes ``bits``
    (VFIB | ASYSTOLE | PAUSE | BRADY | TACHY) and the finding values: ``val_a`` the silence
    (asystole) or the last RR (pause), ``val_b`` the averaged heart rate (brady/tachy).
    """
    asys, lag, pause_s, brady, tachy = cfg[0], cfg[1], cfg[2], cfg[3], cfg[4]
    rcap = recent.shape[1]
    win = np.empty(rcap)
    qout = np.zeros(1, np.int64)
    rr = np.empty(BEATS_KEPT)
    for k in range(rows.size):
        r = rows[k]
        n = n_now[k]
        judged[r] += 1
        if judged[r] % 2 == 0:  # quality of consecutive 2 s windows: every 2nd second
            if n >= rcap:
                for i in range(rcap):
                    win[i] = recent[r, (n - rcap + i) % rcap]
                _quality_kernel(win, rcap, q_args[0], q_args[1], qout)
                qflags[r] = qout[0]
            else:
                qflags[r] = 0
        if qflags[r] & LEADS_OFF:
            clock_from[r] = n
        b = 0
        a_val = 0.0
        h_val = 0.0
        if vf[k]:  # beats are muted in VF: silence after it counts from its end
            b |= VFIB
            clock_from[r] = n
        m = nbeats[r]
        last = bbuf[r, m - 1] if m else -1
        quiet = (n - max(last, clock_from[r])) / fs
        if not vf[k] and quiet > asys + lag:
            b |= ASYSTOLE
            a_val = quiet - lag
        if not b:
            u0 = 0
            while u0 < m and bbuf[r, u0] < clock_from[r]:
                u0 += 1
            nr = 0
            for i in range(u0 + 1, m):
                rr[nr] = (bbuf[r, i] - bbuf[r, i - 1]) / fs
                nr += 1
            if nr >= 1:
                last_rr = rr[nr - 1]
                if pause_s < last_rr <= asys + lag:
                    b |= PAUSE
                    a_val = last_rr
                # the last 8 regular RRs (pauses are not part of the rate), summed in order
                cnt = 0
                first = nr
                while first > 0 and cnt < 8:
                    first -= 1
                    if rr[first] <= pause_s:
                        cnt += 1
                if cnt >= 4:
                    s = 0.0
                    for i in range(first, nr):
                        if rr[i] <= pause_s:
                            s += rr[i]
                    hr = 60.0 * cnt / s
                    if hr < brady:
                        b |= BRADY
                        h_val = hr
                    elif hr > tachy:
                        b |= TACHY
                        h_val = hr
        bits[k] = b
        val_a[k] = a_val
        val_b[k] = h_val


# ----------------------------------------------------------------------------------------
# per-rate group of rows
# ----------------------------------------------------------------------------------------
class _Group:
    """The devices analysed at one sampling rate: a QRS bank and row-indexed arrays."""

    def __init__(self, fs: int, ring_s: float, capacity: int) -> None:
        self.fs = fs
        self.bank = QRSBank(float(fs), capacity)
        self.ring_cap = max(1, math.ceil(ring_s * fs))
        self.two = 2 * fs
        self.q_args = np.array([max(2, int(0.05 * fs)), max(3, int(0.025 * fs)) | 1], np.int64)
        self.ring = np.zeros((0, self.ring_cap), np.float32)
        self._alloc(self.bank.capacity)

    def _alloc(self, cap: int) -> None:
        """(Re)allocate the row arrays for ``cap`` rows, keeping the rows in use."""
        spec = {"ring": ((self.ring_cap,), np.float32, np.nan),  # evidence, mV
                "recent": ((self.two,), np.float64, 0.0),  # the newest 2 s, mV
                "bbuf": ((BEATS_KEPT,), np.int64, 0), "nbeats": ((), np.int64, 0),
                "clock_from": ((), np.int64, 0), "next_eval": ((), np.int64, 0),
                "judged": ((), np.int64, 0), "qflags": ((), np.int64, 0),
                "slot_of_row": ((), np.int64, -1), "ring_n": ((), np.int64, 0)}
        for name, (shape, dtype, fill) in spec.items():
            new = np.full((cap, *shape), fill, dtype)
            old = getattr(self, name, None)
            if old is not None:
                new[:old.shape[0]] = old
            setattr(self, name, new)

    def add(self, slot: int) -> int:
        """A row for ``slot`` (call :meth:`restart` on it before use)."""
        r = self.bank.add()
        if self.bank.capacity > self.ring.shape[0]:
            self._alloc(self.bank.capacity)
        self.slot_of_row[r] = slot
        return r  # the caller restarts it (EcgBatch._restart, in bulk)

    def remove(self, row: int) -> None:
        self.bank.remove(row)
        self.slot_of_row[row] = -1

    def restart(self, rows: np.ndarray) -> None:
        """Fresh detector and rule state for ``rows`` (EcgAnalyser._restart)."""
        self.bank.reset(rows)
        self.ring[rows] = np.nan
        self.recent[rows] = 0.0
        self.nbeats[rows] = 0
        self.clock_from[rows] = round(2.0 * self.fs)  # learning phase
        self.next_eval[rows] = self.fs
        self.judged[rows] = 0
        self.qflags[rows] = 0
        self.ring_n[rows] = 0


@dataclass(frozen=True)
class Judgement:
    """One pass's per-second judgements (arrays aligned, one entry per judged device).

    ``bits`` holds VFIB | ASYSTOLE | PAUSE | BRADY | TACHY; ``silence_s`` the asystole
    silence or the pause RR (s); ``hr_bpm`` the averaged rate of brady/tachy; ``ts_us`` the
    data time of the judgement; ``qflags`` the ECG quality flags of the newest 2 s window;
    ``gap_s`` the longest hole in device time since the previous judgement (s).
    """

    device_id: np.ndarray
    ts_us: np.ndarray
    bits: np.ndarray
    silence_s: np.ndarray
    hr_bpm: np.ndarray
    qflags: np.ndarray
    gap_s: np.ndarray


class EcgLead:
    """The engine's per-device view of a lead analysed by an :class:`EcgBatch`."""

    __slots__ = ("_batch", "slot", "channel")

    def __init__(self, batch: EcgBatch, slot: int, channel: int) -> None:
        self._batch = batch
        self.slot = slot
        self.channel = channel  #: the primary lead (the first ECG channel seen)

    @property
    def ring(self) -> WaveRing:
        """A copy of the last ``ring_s`` of the lead (mV, device time), as a WaveRing."""
        return self._batch.ring_of(self.slot)

    def leads_off(self) -> None:
        """The device reports leads off: restart the asystole clock (next pass)."""
        self._batch.leads_off(self.slot)


class EcgBatch:
    """Batched arrhythmia analysis of the primary ECG lead of every device.

    Parameters
    ----------
    config : ArrhythmiaConfig
        Rule thresholds (shared by all devices).
    capacity : int
        Devices allocated up front (grows by doubling).
    lock : context manager, optional
        Held while :meth:`step` writes the evidence rings or moves rows and by
        :meth:`ring_of`, so another thread may read a lead's ring (the engine passes a
        lock of its own for this; never one held while waiting for the ECG thread).

    Notes
    -----
    One thread calls the methods, except :meth:`ring_of` (under ``lock``) and
    :meth:`leads_off` (a set add). The heavy work of :meth:`step` runs in numba kernels
    without the GIL.
    """

    def __init__(self, config: ArrhythmiaConfig, capacity: int = 1024,
                 lock: AbstractContextManager | None = None) -> None:
        self.config = config
        self._ring_lock = lock if lock is not None else nullcontext()
        self._cfg = np.array([config.asystole_s, config.beat_lag_s, config.pause_s,
                              config.brady_bpm, config.tachy_bpm])
        self._slot_of: dict[int, int] = {}
        self._map_dev = np.zeros(0, np.uint64)  # sorted device ids
        self._map_slot = np.zeros(0, np.int64)
        self._map_dirty = False
        self._dev = np.zeros(capacity, np.uint64)
        self._chan = np.zeros(capacity, np.int64)  # the primary lead's channel
        self._inuse = np.zeros(capacity, np.bool_)
        self._fs = np.zeros(capacity, np.int64)  # placement state per slot
        self._live = np.zeros(capacity, np.bool_)
        self._next = np.zeros(capacity, np.int64)
        self._origin = np.zeros(capacity, np.int64)
        self._gap = np.zeros(capacity)
        self._group = np.full(capacity, -1, np.int64)  # sampling rate of the slot's row
        self._row = np.full(capacity, -1, np.int64)
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._groups: dict[int, _Group] = {}
        self._log: list[tuple[np.ndarray, ...]] = []
        self._log_samples = 0
        self._leads_off: set[int] = set()
        self.late_frames = 0
        self.restarts = 0

    # -- devices ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot_of)

    def lead(self, device_id: int, channel: int) -> EcgLead:
        """Start analysing ``device_id`` (its primary lead is ``channel``)."""
        if device_id in self._slot_of:
            raise KeyError(f"device {device_id} already has a lead")
        if not self._free:
            self._grow(2 * self._dev.size)
        s = self._free.pop()
        self._slot_of[device_id] = s
        self._dev[s] = device_id
        self._inuse[s] = True
        self._chan[s] = channel
        self._live[s] = False
        self._fs[s] = 0
        self._gap[s] = 0.0
        self._map_dirty = True
        return EcgLead(self, s, channel)

    def forget(self, device_id: int) -> None:
        """Stop analysing ``device_id`` (discharge); frames already logged are dropped."""
        s = self._slot_of.pop(device_id, None)
        if s is None:
            return
        g = self._groups.get(int(self._group[s]))
        if g is not None:
            g.remove(int(self._row[s]))
        self._group[s] = self._row[s] = -1
        self._live[s] = False
        self._inuse[s] = False
        self._free.append(s)
        self._map_dirty = True
        self._log = [_drop_slot(e, s) for e in self._log]

    def _grow(self, cap: int) -> None:
        old = self._dev.size
        for name, fill in (("_dev", 0), ("_chan", 0), ("_inuse", False), ("_fs", 0), ("_live", False), ("_next", 0),
                           ("_origin", 0), ("_gap", 0.0), ("_group", -1), ("_row", -1)):
            a = getattr(self, name)
            b = np.full(cap, fill, a.dtype)
            b[:old] = a
            setattr(self, name, b)
        self._free.extend(range(cap - 1, old - 1, -1))

    def slots(self, device_ids: np.ndarray) -> np.ndarray:
        """Slot of each device id (-1: not analysed); vectorised."""
        if self._map_dirty:
            items = sorted(self._slot_of.items())
            self._map_dev = np.array([d for d, _ in items], np.uint64)
            self._map_slot = np.array([s for _, s in items], np.int64)
            self._map_dirty = False
        if not self._map_dev.size:
            return np.full(len(device_ids), -1, np.int64)
        ids = device_ids.astype(np.uint64, copy=False)
        i = np.minimum(np.searchsorted(self._map_dev, ids), self._map_dev.size - 1)
        return np.where(self._map_dev[i] == ids, self._map_slot[i], -1)

    def channels(self, slots: np.ndarray) -> np.ndarray:
        """Primary-lead channel of each slot (-1 for slot -1)."""
        return np.where(slots >= 0, self._chan[slots], -1)

    def leads_off(self, slot: int) -> None:
        """Restart the slot's asystole clock (applied at the start of the next step)."""
        self._leads_off.add(slot)

    def ring_of(self, slot: int) -> WaveRing:
        """The slot's evidence ring as a :class:`WaveRing` copy (for snippets, plugins)."""
        ring = WaveRing(self.config.ring_s)
        with self._ring_lock:
            g = self._groups.get(int(self._group[slot]))
            if g is None or not self._live[slot]:
                return ring
            r = int(self._row[slot])
            ring.fs = g.fs
            ring.buf = g.ring[r].copy()
            ring.n = int(g.ring_n[r])
            ring.origin_us = int(self._origin[slot])
            ring.next_us = int(self._next[slot])
            ring.live = True
        return ring

    # -- ingest -------------------------------------------------------------------------------
    def add_frames(self, slot: np.ndarray, ts_us: np.ndarray, fs_hz: np.ndarray,
                   gain: np.ndarray, offset: np.ndarray, raw: np.ndarray,
                   start: np.ndarray, n: np.ndarray) -> None:
        """Log ECG frames of analysed slots (columns, commit order): ``raw[start:start + n]``
        int16 counts with ``value = raw * gain + offset`` µV. Frames at a rate outside
        125-1000 Hz are ignored (the detector cannot run on them).

        Raises
        ------
        vitalcore.errors.UsageError
            Columns of different lengths, a slot not in use, or samples outside ``raw``;
            nothing is logged then.
        """
        cols = (ts_us, fs_hz, gain, offset, start, n)
        if slot.ndim != 1 or any(c.shape != slot.shape for c in cols):
            raise UsageError("frame columns must be 1-D arrays of one length")
        if slot.size and (slot.min() < 0 or slot.max() >= self._dev.size
                          or not self._inuse[slot].all()):
            raise UsageError("frames of a slot not in use (see lead())")
        if slot.size and (start.min() < 0 or (start.astype(np.int64) + n).max() > raw.size
                          or n.min() < 0):
            raise UsageError("frame samples out of range of raw")
        ok = (fs_hz >= _FS_LO) & (fs_hz <= _FS_HI)
        if not ok.all():
            slot, ts_us, fs_hz, gain, offset, start, n = (
                a[ok] for a in (slot, ts_us, fs_hz, gain, offset, start, n))
        if not slot.size:
            return
        self._log.append((slot.astype(np.int64), ts_us.astype(np.int64),
                          fs_hz.astype(np.int64), gain.astype(np.float64) * 1e-3,
                          offset.astype(np.float64) * 1e-3, raw, start.astype(np.int64),
                          n.astype(np.int64)))
        self._log_samples += int(n.sum())

    @property
    def pending_samples(self) -> int:
        """Samples logged and not yet analysed."""
        return self._log_samples

    # -- the pass -----------------------------------------------------------------------------
    def step(self) -> Judgement | None:
        """Analyse everything logged; returns the judgements due (None: nothing logged)."""
        lo, self._leads_off = self._leads_off, set()
        for s in lo:
            g = self._groups.get(int(self._group[s]))
            if g is not None:
                r = int(self._row[s])
                g.clock_from[r] = g.bank.samples_seen(r)[0]
        if not self._log:
            return None
        log, self._log, self._log_samples = self._log, [], 0
        slot, ts, fs, gain, off, start, n, raw = _concat(log)
        m = slot.size
        keep = np.empty(m, np.bool_)
        hole = np.empty(m, np.int64)
        restart_at = np.full(self._dev.size, -1, np.int64)
        self.late_frames += _place(slot, ts, n, fs, self._fs, self._live, self._next,
                                   self._origin, self._gap, keep, hole, restart_at)
        restarted = np.flatnonzero(restart_at >= 0)
        if restarted.size:
            keep &= np.arange(m) >= restart_at[slot]  # frames before a restart: dropped
            with self._ring_lock:  # rows may move or the arrays grow
                self._restart(restarted)
        touched: list[tuple[_Group, np.ndarray, np.ndarray]] = []
        kept = fs[keep]
        rates = [int(kept[0])] if kept.size and kept.min() == kept.max() else np.unique(kept)
        for f in list(rates):  # (usually one rate: no sort)
            sel = np.flatnonzero(keep & (fs == f))
            g = self._groups[f]
            rows = self._row[slot[sel]]
            bounds = np.zeros(sel.size + 1, np.int64)
            x = np.empty(int(hole[sel].sum() + n[sel].sum()))
            _assemble(sel, hole, start, n, gain, off, raw, bounds, x)
            beats, counts = g.bank.process(rows, x, bounds)
            # samples seen after each segment: the row's count minus what follows it
            seen = g.bank._si[rows, _N]
            after = _seen_after(rows, np.diff(bounds), seen)
            mark = np.zeros(g.bank.capacity, np.bool_)  # distinct rows, no sort
            mark[rows] = True
            urows = np.flatnonzero(mark)
            with self._ring_lock:  # readers see rings and their lengths together
                _after_step(rows, x, bounds, beats, counts, after, g.ring, g.recent, g.bbuf,
                            g.nbeats)
                g.ring_n[urows] = g.bank._si[urows, _N]
            touched.append((g, urows, g.ring_n[urows]))
        return self._judge_due(touched)

    def _restart(self, slots: np.ndarray) -> None:
        self.restarts += slots.size
        for s in slots.tolist():
            f = int(self._fs[s])
            g = self._groups.get(f)
            if g is None:
                g = self._groups[f] = _Group(f, self.config.ring_s, 64)
            if int(self._group[s]) != f:
                old = self._groups.get(int(self._group[s]))
                if old is not None:
                    old.remove(int(self._row[s]))
                self._group[s] = f
                self._row[s] = g.add(s)
        for f, g in self._groups.items():
            mine = slots[self._group[slots] == f]
            if mine.size:
                g.restart(self._row[mine])

    def _judge_due(self, touched: Iterable[tuple[_Group, np.ndarray, np.ndarray]]
                   ) -> Judgement:
        parts = []
        for g, rows, n_now in touched:
            due = n_now >= g.next_eval[rows]
            rows, n_now = rows[due], n_now[due]
            if not rows.size:
                continue
            g.next_eval[rows] = n_now + g.fs
            slots = g.slot_of_row[rows]
            vf = g.bank.in_vf(rows)
            for k in np.flatnonzero(vf).tolist():  # rare: the amplitude check of VF
                vf[k] = self._vf_amplitude(g, int(rows[k]), int(n_now[k]))
            bits = np.zeros(rows.size, np.int64)
            va = np.zeros(rows.size)
            vb = np.zeros(rows.size)
            _judge(rows, n_now, vf, float(g.fs), self._cfg, g.recent, g.bbuf, g.nbeats,
                   g.clock_from, g.judged, g.qflags, bits, va, vb, g.q_args)
            ts = self._origin[slots] + np.rint(n_now * (1e6 / g.fs)).astype(np.int64)
            gap = self._gap[slots].copy()
            self._gap[slots] = 0.0
            parts.append((self._dev[slots], ts, bits, va, vb, g.qflags[rows].copy(), gap))
        if not parts:
            e = np.zeros(0)
            return Judgement(e.astype(np.uint64), e.astype(np.int64), e.astype(np.int64),
                             e, e, e.astype(np.int64), e)
        return Judgement(*(np.concatenate(c) for c in zip(*parts, strict=True)))

    def _vf_amplitude(self, g: _Group, r: int, n: int) -> bool:
        """VF/VFL counts only with >= vf_min_mv of 5-95 % range in the last 2 s."""
        k = min(n, g.two)
        last2 = g.recent[r, (np.arange(n - k, n)) % g.two]
        if np.isfinite(last2).any():
            lo, hi = np.nanpercentile(last2, [5, 95])
        else:
            lo = hi = 0.0
        return bool(hi - lo >= self.config.vf_min_mv)


def _seen_after(rows: np.ndarray, lens: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Samples each row had seen right after each of its segments (segments in order):
    the row's final count minus the lengths of its later segments."""
    order = np.argsort(rows, kind="stable")  # segments grouped by row, in feeding order
    r, ln = rows[order], lens[order]
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    sizes = np.diff(np.r_[starts, r.size])
    csum = np.cumsum(ln)
    upto = csum - np.repeat(np.r_[0, csum][starts], sizes)  # the row's samples so far
    total = np.repeat(upto[np.r_[starts[1:], r.size] - 1], sizes)
    out = np.empty(rows.size, np.int64)
    out[order] = final[order] - (total - upto)
    return out


def _concat(log: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """One array per column over the logged batches; ``start`` made to index ``raw``."""
    if len(log) == 1:
        slot, ts, fs, gain, off, raw, start, n = log[0]
        return slot, ts, fs, gain, off, start, n, np.ascontiguousarray(raw)
    base = np.cumsum([0] + [e[5].size for e in log[:-1]])
    cols = [np.concatenate([e[i] for e in log]) for i in range(5)]
    start = np.concatenate([e[6] + b for e, b in zip(log, base.tolist(), strict=True)])
    n = np.concatenate([e[7] for e in log])
    raw = np.concatenate([e[5] for e in log])
    return (*cols, start, n, raw)


def _drop_slot(entry: tuple[np.ndarray, ...], s: int) -> tuple[np.ndarray, ...]:
    keep = entry[0] != s
    if keep.all():
        return entry
    return tuple(a if i == 5 else a[keep] for i, a in enumerate(entry))
