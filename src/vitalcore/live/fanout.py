"""In-process fan-out of decoded live waveforms to many subscribers (dashboards).

:class:`LiveFanout` is a :meth:`~vitalcore.storage.store.Store.add_commit_listener`
hook: each committed :class:`~vitalcore.batch.DecodedBatch` is scanned (numpy masks, a
Python step per kept frame only) for the waveform streams in ``streams``, of devices
some subscriber wants. Each stream is decimated by its factor with a boxcar mean
(``factor`` consecutive samples averaged: the anti-alias filter and the down-sampler in
one; the remainder is carried to the next frame, so the output is seamless across
frames) and held until the next :meth:`LiveFanout.flush`. A flush (every ``period_s``
once :meth:`LiveFanout.start` ran) encodes each device's pending segments once
(:mod:`vitalcore.live.wire`) and hands every :class:`LiveSubscription` one message with
the packets of its devices.

Bounds: a stream holds at most ``max_pending_s`` of decimated samples between flushes
(the oldest are dropped and counted); a subscription holds at most ``maxsize`` messages
(a slow consumer loses the oldest, counted in ``dropped``); neither grows without limit.
A gap in a stream's device time (a lost frame, a reconnect) or a change of its rate or
gain starts a new segment, so a timestamp is never smeared over missing data.

Threading: the commit listener may run on any thread (it takes a lock); flushes,
subscriptions and their queues belong to the event loop :meth:`start` ran on.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .. import protocol as P
from ..errors import UsageError
from .wire import MAX_PACKETS, MAX_SAMPLES, encode_message, encode_packet

if TYPE_CHECKING:
    from ..batch import DecodedBatch
    from ..storage.store import Store

__all__ = ["StreamSpec", "DEFAULT_STREAMS", "LiveFanout", "LiveSubscription"]


class StreamSpec(NamedTuple):
    """A waveform stream to fan out and its decimation factor (output fs = fs / factor)."""

    frame_type: int
    channel: int
    factor: int = 1


#: ECG lead II 250 Hz -> 125 Hz and pleth IR 100 Hz -> 50 Hz: enough for a 25 mm/s trace.
DEFAULT_STREAMS = (StreamSpec(P.FrameType.ECG, P.EcgLead.II, 2),
                   StreamSpec(P.FrameType.PLETH, P.PlethChannel.IR, 2))


@dataclass
class _Stream:
    factor: int
    fs: int = 0  #: input rate, Hz
    gain: float = 1.0
    offset: float = 0.0
    next_ts: int | None = None  #: expected device time of the next input sample, µs
    carry: np.ndarray = field(default_factory=lambda: np.empty(0, np.int16))
    carry_t0: int = 0
    segments: deque = field(default_factory=deque)  # [t0_us, list of int16 arrays, n]
    pending: int = 0  #: decimated samples held
    dropped: int = 0  #: decimated samples dropped by the max_pending_s bound

    def restart(self, fs: int, gain: float, offset: float) -> None:
        self.fs, self.gain, self.offset = fs, gain, offset
        self.carry = self.carry[:0]
        self.next_ts = None
        self.segments.append(None)  # marks a break: the next output opens a new segment

    def add(self, ts: int, raw: np.ndarray, max_pending: int) -> None:
        period = 1e6 / self.fs
        x = np.concatenate((self.carry, raw)) if len(self.carry) else raw
        t_x0 = self.carry_t0 if len(self.carry) else ts
        f = self.factor
        m = len(x) // f * f
        if f == 1:
            y = x.astype(np.int16, copy=True)
        else:
            y = np.rint(x[:m].reshape(-1, f).mean(axis=1)).astype(np.int16)
        self.carry = x[m:].copy()
        self.carry_t0 = t_x0 + round(m * period)
        self.next_ts = ts + round(len(raw) * period)
        if len(y):
            last = self.segments[-1] if self.segments else None
            if last is None:
                if self.segments:
                    self.segments.pop()
                self.segments.append([t_x0, [y], len(y)])
            else:
                last[1].append(y)
                last[2] += len(y)
            self.pending += len(y)
        self._bound(max_pending)

    def _bound(self, max_pending: int) -> None:
        while self.pending > max_pending:
            seg = self.segments[0]
            if seg is None:
                self.segments.popleft()
                continue
            over = self.pending - max_pending
            data = np.concatenate(seg[1])
            cut = min(over, len(data))
            seg[0] += round(cut * 1e6 * self.factor / self.fs)
            seg[1] = [data[cut:]]
            seg[2] -= cut
            self.pending -= cut
            self.dropped += cut
            if seg[2] == 0:
                self.segments.popleft()

    def take(self) -> list[tuple[int, np.ndarray]]:
        out = []
        keep_break = bool(self.segments) and self.segments[-1] is None
        for seg in self.segments:
            if seg is not None and seg[2]:
                out.append((seg[0], np.concatenate(seg[1])))
        self.segments.clear()
        self.pending = 0
        if out:  # output continues where this flush ended unless a break was pending
            t_end = out[-1][0] + round(len(out[-1][1]) * 1e6 * self.factor / self.fs)
            self.segments.append(None if keep_break else [t_end, [], 0])
        return out


class LiveSubscription:
    """A subscriber's queue of encoded messages for a set of devices.

    Get messages with ``await sub.get()`` (``None`` once closed). ``dropped`` counts
    messages lost because the consumer fell ``maxsize`` behind; ``bytes_out`` the bytes
    handed out.
    """

    def __init__(self, fanout: LiveFanout, device_ids: Iterable[int], maxsize: int,
                 frame_types: Iterable[int] | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or not 1 <= maxsize <= 10_000:
            raise UsageError(f"maxsize must be within 1-10000 messages, got {maxsize!r}")
        self._fanout = fanout
        self.devices = _device_set(device_ids)
        self.frame_types = None if frame_types is None else frozenset(int(t) for t in frame_types)
        self._queue: deque[bytes] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future | None = None
        self.closed = False
        self.dropped = 0
        self.bytes_out = 0
        self.messages_out = 0

    def set_devices(self, device_ids: Iterable[int]) -> None:
        """Replace the set of devices (e.g. after the user's scope changed)."""
        self.devices = _device_set(device_ids)
        self._fanout._recompute()

    def _put(self, message: bytes) -> None:
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(message)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_nowait(self) -> bytes | None:
        """The oldest queued message, or None if there is none."""
        if not self._queue:
            return None
        msg = self._queue.popleft()
        self.bytes_out += len(msg)
        self.messages_out += 1
        return msg

    async def get(self) -> bytes | None:
        """Wait for the next message; None once the subscription is closed."""
        while not self._queue:
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.get_nowait()

    def close(self) -> None:
        """Stop receiving; a waiting :meth:`get` returns None. Idempotent."""
        if not self.closed:
            self.closed = True
            self._fanout._unsubscribe(self)
            self._wake()


def _device_set(device_ids: Iterable[int]) -> frozenset[int]:
    out = frozenset(device_ids)
    for d in out:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 < d < 1 << 64:
            raise UsageError(f"device ids must be ints in 1..2^64-1, got {d!r}")
    return out


class LiveFanout:
    """Decimated live waveforms of a store's devices, fanned out to subscriptions.

    Parameters
    ----------
    streams : iterable of StreamSpec
        Waveform streams to forward, with decimation factors (1..16).
    max_pending_s : float
        Seconds of output one stream may hold between flushes (0.5..60).

    Attributes
    ----------
    counters : dict
        ``frames`` taken, ``samples_in`` (raw samples decimated), ``messages``,
        ``bytes`` (encoded, summed over subscriptions), ``dropped_samples``.
    """

    def __init__(self, streams: Iterable[StreamSpec] = DEFAULT_STREAMS, *,
                 max_pending_s: float = 5.0) -> None:
        self.streams = tuple(StreamSpec(*s) for s in streams)
        if not self.streams:
            raise UsageError("at least one stream to fan out")
        for s in self.streams:
            if s.frame_type not in (P.FrameType.ECG, P.FrameType.PLETH, P.FrameType.CUFF):
                raise UsageError(f"frame type {s.frame_type!r} is not a waveform")
            if isinstance(s.factor, bool) or not isinstance(s.factor, int) \
                    or not 1 <= s.factor <= 16:
                raise UsageError(f"decimation factor must be an int in 1..16, got {s.factor!r}")
        if not 0.5 <= max_pending_s <= 60:
            raise UsageError(f"max_pending_s must be in 0.5..60 s, got {max_pending_s!r}")
        self.max_pending_s = float(max_pending_s)
        self._factor = {(int(s.frame_type), int(s.channel)): s.factor for s in self.streams}
        self._state: dict[tuple[int, int, int], _Stream] = {}
        self._subs: list[LiveSubscription] = []
        self._wanted = np.empty(0, np.uint64)
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.counters = dict.fromkeys(("frames", "samples_in", "messages", "bytes",
                                       "dropped_samples"), 0)

    # -- wiring ---------------------------------------------------------------------------
    def attach(self, store: Store) -> None:
        """Receive every batch ``store`` commits."""
        if self._store is not None:
            raise UsageError("the fan-out is attached to a store already")
        store.add_commit_listener(self.on_batch)
        self._store = store

    def start(self, period_s: float = 0.25) -> None:
        """Flush every ``period_s`` (0.05..5 s) on the running event loop."""
        if not 0.05 <= period_s <= 5:
            raise UsageError(f"period_s must be in 0.05..5 s, got {period_s!r}")
        if self._timer is not None:
            raise UsageError("the fan-out is started already")
        loop = asyncio.get_running_loop()

        def tick() -> None:
            self._timer = loop.call_later(period_s, tick)
            self.flush()

        self._timer = loop.call_later(period_s, tick)

    def close(self) -> None:
        """Stop flushing, detach from the store, close every subscription. Idempotent."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._store is not None:
            self._store.remove_commit_listener(self.on_batch)
            self._store = None
        for sub in list(self._subs):
            sub.close()

    def subscribe(self, device_ids: Iterable[int], *, maxsize: int = 16,
                  frame_types: Iterable[int] | None = None) -> LiveSubscription:
        """A new subscription to the devices ``device_ids`` (its queue: ``maxsize`` messages).

        ``frame_types`` limits it to some of the fanned-out streams (e.g. ECG only for a
        compact overview); default all.
        """
        if frame_types is not None:
            known = {int(s.frame_type) for s in self.streams}
            frame_types = list(frame_types)
            if not set(map(int, frame_types)) <= known:
                raise UsageError(f"frame_types {frame_types!r} are not all fanned out "
                                 f"({sorted(known)})")
        sub = LiveSubscription(self, device_ids, maxsize, frame_types)
        self._subs.append(sub)
        self._recompute()
        return sub

    def _unsubscribe(self, sub: LiveSubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._recompute()

    def _recompute(self) -> None:
        wanted = set().union(*(s.devices for s in self._subs)) if self._subs else set()
        with self._lock:
            self._wanted = np.array(sorted(wanted), np.uint64)
            for key in [k for k in self._state if k[0] not in wanted]:
                del self._state[key]

    # -- input ----------------------------------------------------------------------------
    def on_batch(self, batch: DecodedBatch) -> None:
        """Commit listener: take the wanted waveform frames of ``batch``."""
        w = batch.tables["waveforms"]
        if not len(w["device_id"]) or not len(self._wanted):
            return
        with self._lock:
            keep = np.isin(w["device_id"], self._wanted)
            if not keep.any():
                return
            rows = np.flatnonzero(keep)
            ftype, chan = w["frame_type"][rows], w["channel"][rows]
            for (t, c), f in self._factor.items():
                for r in rows[(ftype == t) & (chan == c)].tolist():
                    self._take(batch, w, r, t, c, f)

    def _take(self, batch: DecodedBatch, w: dict, r: int, t: int, c: int, f: int) -> None:
        dev = int(w["device_id"][r])
        st = self._state.get((dev, t, c))
        if st is None:
            st = self._state[(dev, t, c)] = _Stream(f)
        fs, gain, offset = int(w["fs_hz"][r]), float(w["gain"][r]), float(w["offset"][r])
        ts = int(w["ts_us"][r])
        if fs != st.fs or gain != st.gain or offset != st.offset or (
                st.next_ts is not None and abs(ts - st.next_ts) * fs > 1_000_000):
            st.restart(fs, gain, offset)  # new stream, new calibration or a time gap
        start, n = int(w["sample_start"][r]), int(w["n_samples"][r])
        before = st.dropped
        st.add(ts, batch.samples[start:start + n],
               min(MAX_SAMPLES, max(1, round(self.max_pending_s * fs / f))))
        self.counters["frames"] += 1
        self.counters["samples_in"] += n
        self.counters["dropped_samples"] += st.dropped - before

    # -- output ---------------------------------------------------------------------------
    def flush(self) -> int:
        """Encode what is pending and queue one message per subscription with data.

        Returns the bytes queued (summed over subscriptions).
        """
        with self._lock:
            per_device: dict[int, list[tuple[int, bytes]]] = {}
            for (dev, t, c), st in self._state.items():
                for t0, y in st.take():
                    per_device.setdefault(dev, []).append(
                        (t, encode_packet(dev, t0, t, c, st.fs // st.factor, st.gain, st.offset,
                                          y)))
        if not per_device:
            return 0
        total = 0
        for sub in self._subs:
            types = sub.frame_types
            packets = [p for d in sorted(sub.devices & per_device.keys())
                       for t, p in per_device[d] if types is None or t in types]
            for i in range(0, len(packets), MAX_PACKETS):
                msg = encode_message(packets[i:i + MAX_PACKETS])
                sub._put(msg)
                total += len(msg)
                self.counters["messages"] += 1
        self.counters["bytes"] += total
        return total
