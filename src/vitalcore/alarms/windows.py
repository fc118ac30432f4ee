"""The engine's own recent waveform and numeric windows per device.

The alarm engine runs on its own thread, so it does not read the store's
:class:`~vitalcore.buffers.StreamBuffers` (appended on the event loop, not thread-safe);
it keeps what it needs from the committed batches it is handed: a short ring of each
analysed waveform stream (evidence snippets, plugin windows, ECG quality) and the recent
numerics of each device.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["WaveRing", "NumericWindow", "FeedResult"]

#: Tolerance (µs) within which a frame continues the previous one.
SNAP_US = 20_000


class FeedResult:
    """What :meth:`WaveRing.feed` did with one frame."""

    __slots__ = ("samples", "gap_s", "restarted", "late")

    def __init__(self, samples: np.ndarray | None, gap_s: float, restarted: bool, late: bool):
        self.samples = samples  #: samples appended (NaN-filled hole first), None if dropped
        self.gap_s = gap_s  #: length of a hole before the frame, s (0: none)
        self.restarted = restarted  #: the ring started over (first frame, long gap, new fs)
        self.late = late  #: the frame was older than the ring's end: dropped


class WaveRing:
    """The last ``seconds`` of one waveform stream, in physical units, placed by device time.

    Parameters
    ----------
    seconds : float
        Ring length, s.
    max_fill_s : float
        A hole up to this long is filled with NaN; a longer one (or a new ``fs``)
        restarts the ring.
    """

    __slots__ = ("seconds", "max_fill_s", "fs", "buf", "n", "origin_us", "next_us", "live")

    def __init__(self, seconds: float = 8.0, max_fill_s: float = 2.0) -> None:
        self.seconds = seconds
        self.max_fill_s = max_fill_s
        self.fs = 0
        self.buf = np.empty(0, np.float32)
        self.n = 0  #: samples written since the (re)start
        self.origin_us = 0  #: device time of sample 0 since the (re)start
        self.next_us = 0  #: device time expected of the next sample
        self.live = False  #: a frame was placed since construction
    def _restart(self, ts_us: int, fs: int) -> None:
        if fs != self.fs:
            self.fs = fs
            self.buf = np.full(max(1, math.ceil(self.seconds * fs)), np.nan, np.float32)
        else:
            self.buf.fill(np.nan)
        self.n = 0
        self.origin_us = ts_us
        self.next_us = ts_us
        self.live = True

    def time_of(self, index: int) -> int:
        """Device time (µs) of sample ``index`` (counted from the restart)."""
        return self.origin_us + round(index * 1e6 / self.fs)

    def place(self, ts_us: int, n: int, fs: int) -> tuple[int, float, bool, bool]:
        """Place a frame of ``n`` samples at device time ``ts_us`` (no samples written).

        Returns ``(hole samples to fill with NaN first, hole length s, restarted, late)``;
        a late frame (older than the ring's end: a retry) is to be dropped. A hole longer
        than ``max_fill_s`` or a new ``fs`` restarts the ring (``hole`` 0, ``restarted``).
        The next frame is expected right after this one's own time stamp, so a device
        clock a little off its nominal ``fs`` never accumulates into a false gap.
        """
        hole, gap_s, restarted = 0, 0.0, False
        if fs != self.fs or not self.live:
            self._restart(ts_us, fs)
            restarted = True
        else:
            delta = ts_us - self.next_us
            if delta < -SNAP_US:
                return 0, 0.0, False, True
            if delta > SNAP_US:
                gap_s = delta / 1e6
                if gap_s > self.max_fill_s:
                    self._restart(ts_us, fs)
                    restarted = True
                else:
                    hole = round(delta * fs / 1e6)
        self.next_us = ts_us + round(n * 1e6 / fs)
        return hole, gap_s, restarted, False

    def feed(self, ts_us: int, values: np.ndarray, fs: int) -> FeedResult:
        """Append one frame's samples (physical units) starting at device time ``ts_us``."""
        hole, gap_s, restarted, late = self.place(ts_us, len(values), fs)
        if late:
            return FeedResult(None, 0.0, False, True)
        values = values.astype(np.float32, copy=False)
        if hole:
            values = np.concatenate([np.full(hole, np.nan, np.float32), values])
        self.write(values)
        return FeedResult(values, gap_s, restarted, False)

    def write(self, v: np.ndarray) -> None:
        """Append samples placed with :meth:`place` (its hole first, if any)."""
        cap = len(self.buf)
        if len(v) >= cap:
            v = v[len(v) - cap:]
            skip = len(v) - cap
        else:
            skip = 0
        i = (self.n + skip) % cap
        k = min(len(v), cap - i)
        self.buf[i:i + k] = v[:k]
        self.buf[:len(v) - k] = v[k:]
        self.n += skip + len(v)

    def last(self, seconds: float | None = None) -> tuple[int, np.ndarray]:
        """``(device time of the first sample, copy of the newest samples)`` in time order."""
        cap = len(self.buf)
        k = min(self.n, cap)
        if seconds is not None:
            k = min(k, math.ceil(seconds * self.fs))
        if k == 0:
            return self.next_us, np.empty(0, np.float32)
        end = self.n % cap
        if end >= k:
            out = self.buf[end - k:end].copy()
        else:
            out = np.concatenate([self.buf[cap - (k - end):], self.buf[:end]])
        return self.time_of(self.n - k), out


class NumericWindow:
    """Recent numeric rows of one device (fixed-size ring) and the latest value per code."""

    __slots__ = ("ts", "code", "status", "value", "n", "latest")

    def __init__(self, rows: int = 512) -> None:
        self.ts = np.zeros(rows, np.int64)
        self.code = np.zeros(rows, np.uint8)
        self.status = np.zeros(rows, np.uint8)
        self.value = np.zeros(rows, np.float32)
        self.n = 0
        self.latest: dict[int, tuple[int, float]] = {}  #: code -> (ts_us, value) if VALID

    def add(self, ts: int, code: int, status: int, value: float) -> None:
        i = self.n % len(self.ts)
        self.ts[i], self.code[i], self.status[i], self.value[i] = ts, code, status, value
        self.n += 1
        if status == 0 and math.isfinite(value):
            prev = self.latest.get(code)
            if prev is None or ts >= prev[0]:
                self.latest[code] = (ts, value)

    def columns(self) -> dict[str, np.ndarray]:
        """Rows in insertion order, as copies: ts_us, code, status, value."""
        cap = len(self.ts)
        k = min(self.n, cap)
        idx = np.arange(self.n - k, self.n) % cap
        return {"ts_us": self.ts[idx], "code": self.code[idx], "status": self.status[idx],
                "value": self.value[idx]}
