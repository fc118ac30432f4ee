"""The alarm engine: committed batches in, alarm events out, off the commit path.

:meth:`AlarmEngine.attach` registers a commit listener on a
:class:`~vitalcore.storage.Store`. The listener only puts the batch on the engine's queue
(a ``SimpleQueue.put``, about a microsecond; when the queue holds ``max_queue`` batches it
drops the batch, counts it and raises the ``engine.overload`` system alarm). The engine's
thread takes batches in commit order: it runs the fast rules (limits, status flags,
liveness, clock) on every queued batch, then the arrhythmia analysis in slices of
:data:`ANALYSIS_SLICE_S` (so limit and technical alarms never wait behind ECG work),
queues plugin runs (:mod:`vitalcore.alarms.plugins`), advances the state machine
(:mod:`vitalcore.alarms.semantics`), hands every event to the :class:`AlarmLog`'s writer
(group-committed with fsync) and then to listeners, async subscribers and the MQTT
publisher. See docs/alarms.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, UsageError
from ..protocol import FrameType, PlethChannel
from .arrhythmia import ARRHYTHMIA_TIMING, ArrhythmiaConfig, EcgAnalyser
from .limits import LimitTable, limit_codes
from .model import (
    SYSTEM_DEVICE,
    Alarm,
    AlarmCategory,
    AlarmEvent,
    AlarmPriority,
    EscalationStep,
    Evidence,
    Finding,
    Timing,
)
from .plugins import ENTRY_POINT_GROUP, AlarmRule, PluginHost, RuleContext, WaveSnapshot
from .plugins import load_entry_points as _load_eps
from .semantics import AlarmStates
from .technical import (
    OFFLINE,
    STATUS_CODES,
    TECHNICAL_TIMING,
    Liveness,
    TechnicalConfig,
    status_findings,
)
from .windows import NumericWindow, WaveRing

if TYPE_CHECKING:
    from ..batch import DecodedBatch
    from ..storage import Store
    from .log import AlarmLog

__all__ = ["AlarmEngine", "AlarmConfig", "Subscription"]

log = logging.getLogger("vitalcore.alarms")

_T = AlarmCategory.TECHNICAL
_PLETH_CODES = frozenset({"spo2.low", "spo2.high", "pr.low", "pr.high", "probe_off"})
_ECG_TECH = ("ecg.no_signal", "ecg.noisy", "data.gap")
#: Time the engine thread spends on ECG analysis after each batch while batches wait, s.
ANALYSIS_SLICE_S = 0.005


@dataclass(frozen=True)
class AlarmConfig:
    """Engine configuration (limits live in a :class:`~vitalcore.alarms.limits.LimitTable`).

    Attributes
    ----------
    arrhythmia, technical : rule thresholds
    timing : mapping of code to Timing
        Overrides of the per-code timing (defaults: semantics.DEFAULT_TIMING by category,
        arrhythmia.ARRHYTHMIA_TIMING, technical.TECHNICAL_TIMING).
    escalation : tuple of EscalationStep
        For unacknowledged HIGH-priority alarms.
    tick_s : float
        Period of the time-driven checks (silence expiry, escalation, offline), s.
    max_queue : int
        Committed batches waiting for the engine before new ones are dropped (counted).
    snippet_s : float
        Seconds of waveform kept per device and stored as evidence.
    """

    arrhythmia: ArrhythmiaConfig = field(default_factory=ArrhythmiaConfig)
    technical: TechnicalConfig = field(default_factory=TechnicalConfig)
    timing: Mapping[str, Timing] = field(default_factory=dict)
    escalation: tuple[EscalationStep, ...] = ()
    tick_s: float = 0.25
    max_queue: int = 100_000
    snippet_s: float = 8.0

    def __post_init__(self) -> None:
        if not isinstance(self.arrhythmia, ArrhythmiaConfig):
            raise ConfigError("arrhythmia must be an ArrhythmiaConfig")
        if not isinstance(self.technical, TechnicalConfig):
            raise ConfigError("technical must be a TechnicalConfig")
        if not 0.01 <= self.tick_s <= 5:
            raise ConfigError("tick_s must be within 0.01-5 s")
        if not 10 <= self.max_queue <= 10_000_000:
            raise ConfigError("max_queue must be within 10-10,000,000")
        if not 1 <= self.snippet_s <= 60:
            raise ConfigError("snippet_s must be within 1-60 s")


class _Device:
    __slots__ = ("ecg", "pleth", "latest", "history", "battery", "flags", "last_gap_us",
                 "drift_next")

    def __init__(self, engine: AlarmEngine) -> None:
        self.ecg: EcgAnalyser | None = None
        # recent IR pleth frames, kept as received (ts, raw, gain, offset, fs): assembled
        # into a window only when evidence or a plugin needs it
        self.pleth: deque[tuple[int, np.ndarray, float, float, int]] = deque(
            maxlen=math.ceil(engine.config.snippet_s * 4) + 4)
        self.latest: dict[int, tuple[int, float]] = {}  # code -> (ts_us, value), VALID only
        self.history = NumericWindow() if engine.plugins.rules else None
        self.battery = 255
        self.flags = 0
        self.last_gap_us = -(2**62)
        self.drift_next = 0.0


class Subscription:
    """Async iterator of alarm events (from :meth:`AlarmEngine.subscribe`).

    Events are filtered by device and minimum priority. If the consumer falls
    ``maxsize`` events behind, the oldest are dropped and counted in ``dropped``
    (every event stays in the durable log).
    """

    def __init__(self, engine: AlarmEngine, device_ids: Iterable[int] | None,
                 min_priority: AlarmPriority, maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or not 1 <= maxsize <= 10**6:
            raise UsageError(f"maxsize must be within 1-1,000,000, got {maxsize!r}")
        try:
            min_priority = AlarmPriority(min_priority)
        except ValueError:
            raise UsageError(f"min_priority must be an AlarmPriority, got {min_priority!r}") from None
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[AlarmEvent | None] = asyncio.Queue()
        self._maxsize = maxsize
        self.devices = None if device_ids is None else frozenset(device_ids)
        self.min_priority = AlarmPriority(min_priority)
        self.dropped = 0
        self.closed = False

    def _offer(self, ev: AlarmEvent) -> None:  # engine thread
        a = ev.alarm
        if a.priority < self.min_priority or (self.devices is not None
                                             and a.device_id not in self.devices):
            return
        try:
            self._loop.call_soon_threadsafe(self._put, ev)
        except RuntimeError:  # its event loop is closed: nobody is listening any more
            self.closed = True
            self._engine._unsubscribe(self)

    def _put(self, ev: AlarmEvent | None) -> None:
        if ev is not None and self._queue.qsize() >= self._maxsize:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(ev)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._engine._unsubscribe(self)
            try:
                self._loop.call_soon_threadsafe(self._put, None)
            except RuntimeError:  # loop already closed
                pass

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> AlarmEvent:
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        ev = await self._queue.get()
        if ev is None:
            raise StopAsyncIteration
        return ev


class AlarmEngine:
    """Physiological, arrhythmia, technical and plugin alarms for every device of a store.

    Parameters
    ----------
    config : AlarmConfig, optional
    limits : LimitTable, optional
        Ward defaults and per-patient limits (default: ward defaults of limits.py).
    alarm_log : AlarmLog, optional
        Durable log of every event (strongly recommended; None keeps events in memory
        only for subscribers).
    clock : callable
        Wall clock in seconds (``time.time``); tests pass a fake one.
    monotonic : callable
        Monotonic clock in seconds for silence detection (``time.monotonic``).

    Notes
    -----
    Thread model: one engine thread; :meth:`acknowledge`, :meth:`silence` and the
    queries take the engine's lock briefly and may be called from any thread (the event
    loop included). Listeners added with :meth:`add_listener` run on the engine thread
    and must be quick (exceptions are logged and counted).
    """

    def __init__(self, config: AlarmConfig | None = None, *, limits: LimitTable | None = None,
                 alarm_log: AlarmLog | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config or AlarmConfig()
        self.limits = limits if limits is not None else LimitTable()
        self.log = alarm_log
        self._clock = clock
        self._mono = monotonic
        timing = {**ARRHYTHMIA_TIMING, **TECHNICAL_TIMING, **self.config.timing}
        self.states = AlarmStates(timing, self.config.escalation, self._evidence)
        self.liveness = Liveness(self.config.technical)
        self.plugins = PluginHost()
        self._devices: dict[int, _Device] = {}
        self._lim_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._watch_arr: np.ndarray | None = None
        self._limit_cond: dict[int, set[str]] = {}  # device -> limit codes in condition
        self._ready: dict[int, None] = {}  # devices with a second or more of ECG queued
        self._shed_seen = 0
        self._lock = threading.RLock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._listeners: list[Callable[[AlarmEvent], None]] = []
        self._subs: list[Subscription] = []
        self._store: Store | None = None
        self._thread: threading.Thread | None = None
        self._next_tick = 0.0
        self._next_live = 0.0
        self._next_storage = 0.0
        self._flush_errors = 0
        self._dropped_seen = 0
        self.dropped_batches = 0
        self.latency_s: deque[float] = deque(maxlen=100_000)  # commit -> RAISED emitted
        self.counters = dict.fromkeys(("batches", "frames", "events", "listener_errors",
                                       "log_errors", "ecg_frames_shed"), 0)

    # -- lifecycle -------------------------------------------------------------------------
    def attach(self, store: Store) -> None:
        """Start analysing every batch ``store`` commits (starts the engine thread)."""
        if self._store is not None:
            raise UsageError("engine is already attached to a store")
        self._store = store
        store.add_commit_listener(self._on_commit)
        self.start()

    def start(self) -> None:
        """Start the engine thread (attach() does; call it when feeding with :meth:`submit`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vitalcore-alarms",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Detach, process what is queued, stop the thread and plugins, close the log."""
        if self._store is not None:
            try:
                self._store.remove_commit_listener(self._on_commit)
            except UsageError:
                pass
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
        self.plugins.close()
        for s in list(self._subs):
            s.close()
        if self.log is not None:
            self.log.close()

    # -- commit path -------------------------------------------------------------------------
    def _on_commit(self, batch: DecodedBatch) -> None:
        """Commit listener: enqueue only (never blocks, never raises)."""
        if self._queue.qsize() >= self.config.max_queue:
            self.dropped_batches += 1
            return
        self._queue.put((time.perf_counter(), batch))

    def submit(self, batch: DecodedBatch) -> None:
        """Hand a committed batch to the engine yourself (what the commit listener does)."""
        self._on_commit(batch)

    def device_presence(self, device_id: int, online: bool) -> None:
        """Transport hook: the device (re)connected, or its connection ended (keep-alive
        timeout, Will, closed link); thread-safe. Fits
        :meth:`vitalcore.server.Broker.add_presence_listener`."""
        self._queue.put(("conn", device_id, online))

    def device_connected(self, device_id: int) -> None:
        """``device_presence(device_id, True)``."""
        self.device_presence(device_id, True)

    def device_disconnected(self, device_id: int) -> None:
        """``device_presence(device_id, False)``."""
        self.device_presence(device_id, False)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far was processed (tests, shutdown)."""
        marker = threading.Event()
        self._queue.put(("mark", marker))
        return marker.wait(timeout)

    # -- API ----------------------------------------------------------------------------------
    def add_rule(self, rule: AlarmRule) -> None:
        """Register a custom rule (see plugins.py)."""
        with self._lock:
            self.plugins.add(rule)

    def load_plugins(self, group: str = ENTRY_POINT_GROUP) -> list[tuple[str, str]]:
        """Register every rule of an entry-point group; returns the load failures, each
        also raised as a ``plugin.<name>.disabled`` system alarm."""
        rules, errors = _load_eps(group)
        for r in rules:
            try:
                self.add_rule(r)
            except ConfigError as exc:
                errors.append((r.name, str(exc)))
        with self._lock:
            for name, why in errors:
                self._system(f"plugin.{_safe(name)}.disabled", AlarmPriority.MEDIUM,
                             f"plugin {name} failed to load: {why}", True)
        return errors

    def add_listener(self, callback: Callable[[AlarmEvent], None]) -> None:
        """Call ``callback(event)`` on the engine thread for every event (after logging)."""
        self._listeners.append(callback)

    def subscribe(self, *, device_ids: Iterable[int] | None = None,
                  min_priority: AlarmPriority = AlarmPriority.LOW,
                  maxsize: int = 10_000) -> Subscription:
        """Async iterator of events; call on the event loop that will consume it."""
        sub = Subscription(self, device_ids, min_priority, maxsize)
        with self._lock:
            self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def acknowledge(self, alarm_id: str, user: str) -> list[AlarmEvent]:
        """Acknowledge an alarm (who: ``user``; when: now). Returns the events made."""
        with self._lock:
            events = self.states.acknowledge(alarm_id, user, self._now_us())
            self._emit(events, None)
        return events

    def silence(self, alarm_id: str, user: str, duration_s: float = 120.0) -> list[AlarmEvent]:
        """Pause an alarm's audio for ``duration_s`` (1-600 s); not an acknowledgement."""
        with self._lock:
            events = self.states.silence(alarm_id, user, duration_s, self._now_us())
            self._emit(events, None)
        return events

    def end_device(self, device_id: int, user: str = "") -> list[AlarmEvent]:
        """Discharge: end the device's alarms and forget its state (no offline alarm)."""
        with self._lock:
            events = self.states.end_device(device_id, self._now_us(), user)
            self._devices.pop(device_id, None)
            self.liveness.forget(device_id)
            self._emit(events, None)
        return events

    def active_alarms(self, device_id: int | None = None) -> list[Alarm]:
        """Snapshots of the current (not ended) alarms."""
        with self._lock:
            return self.states.active(device_id)

    def stats(self) -> dict[str, Any]:
        lat = np.array(self.latency_s) if self.latency_s else np.zeros(0)
        with self._lock:
            out: dict[str, Any] = dict(self.counters)
            out.update(queued=self._queue.qsize(), dropped_batches=self.dropped_batches,
                       devices=len(self._devices), active=self.states.count(),
                       plugins=self.plugins.stats())
        if lat.size:
            out["latency_ms_p50"] = float(np.percentile(lat, 50) * 1e3)
            out["latency_ms_p99"] = float(np.percentile(lat, 99) * 1e3)
        return out

    # -- engine thread -------------------------------------------------------------------------
    def _now_us(self) -> int:
        return int(self._clock() * 1e6)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.config.tick_s)
            except queue.Empty:
                item = ()
            stop = False
            while True:  # the fast rules on everything queued, then a slice of ECG work
                if item is None:
                    stop = True
                    break
                try:
                    with self._lock:
                        self._handle(item)
                except Exception:  # a bug must not stop alarms for everyone else
                    log.exception("alarm engine failed on %r; going on", type(item))
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                with self._lock:
                    self._periodic()
                # arrhythmia analysis after the fast rules, ANALYSIS_SLICE_S at a time
                # while batches wait (all of it when none do), so limit and technical
                # alarms never wait behind ECG work; under overload, ECG queues per
                # device (bounded, then shed) and is analysed in bigger chunks
                self._analyse_ready(ANALYSIS_SLICE_S)
            except Exception:
                log.exception("alarm engine failed in its periodic work; going on")
            if stop:
                break
        with self._lock:
            self._analyse_ready(None)
            self._periodic()

    def _analyse_ready(self, budget_s: float | None) -> None:
        t0 = time.perf_counter()
        ready = self._ready
        while ready:
            if budget_s is not None and not self._queue.empty() \
                    and time.perf_counter() - t0 > budget_s:
                return
            with self._lock:
                events: list[AlarmEvent] = []
                for _ in range(min(4, len(ready))):  # a few devices per lock hold
                    dev = next(iter(ready))
                    del ready[dev]
                    d = self._devices.get(dev)
                    if d is not None and d.ecg is not None:
                        self._analyse(dev, d, events, self._now_us())
                self._emit(events, None)

    def _handle(self, item: Any) -> None:
        if not item:
            return
        if item[0] == "mark":
            self._analyse_ready(None)
            self._periodic(force=True)
            if self.log is not None:
                self.log.flush()
            item[1].set()
            return
        if item[0] == "conn":
            _, dev, up = item
            mono = self._mono()
            if up:
                self.liveness.connected(dev, mono)
            else:
                self.liveness.disconnected(dev, mono)
            return
        t_commit, batch = item
        self._batch(batch, t_commit)

    def _device(self, dev: int) -> _Device:
        d = self._devices.get(dev)
        if d is None:
            d = self._devices[dev] = _Device(self)
        return d

    def _batch(self, batch: DecodedBatch, t_commit: float) -> None:
        self.counters["batches"] += 1
        self.counters["frames"] += batch.n_frames
        now_us = self._now_us()
        mono = self._mono()
        events: list[AlarmEvent] = []
        st = self.states
        fr = batch.tables["frames"]
        devs, inv = np.unique(fr["device_id"], return_inverse=True)
        newest = np.full(len(devs), np.iinfo(np.int64).min, np.int64)
        np.maximum.at(newest, inv, fr["ts_us"])
        drift_s = self.config.technical.clock_drift_s
        for dev, ts in zip(devs.tolist(), newest.tolist(), strict=True):
            self.liveness.seen(dev, mono)
            d = self._device(dev)
            if mono >= d.drift_next:  # at most once a second per device
                d.drift_next = mono + 1.0
                off = (ts - now_us) / 1e6
                if abs(off) > drift_s:
                    f = Finding("clock.drift", AlarmPriority.LOW, _T,
                                f"device clock off by {off:+.1f} s", now_us, off, drift_s)
                    events += st.observe(dev, ("clock.drift",), [f], now_us, now_us)
                elif st.tracked(dev, "clock.drift"):
                    events += st.observe(dev, ("clock.drift",), (), now_us, now_us)
        self._numerics(batch, events, now_us)
        self._status(batch, events, now_us)
        self._waves(batch, events, now_us)
        if self.plugins.rules:
            self._plugins(devs.tolist(), now_us, mono)
        self._emit(events, t_commit)

    def _limit_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ward low/high limit per numeric code (NaN: none) and the devices judged in
        Python (per-patient limits or a limit condition under way); cached."""
        lim = self.limits
        if self._lim_cache is None or self._lim_cache[0] != lim.version:
            lo = np.full(256, np.nan, np.float32)
            hi = np.full(256, np.nan, np.float32)
            for code, limit in lim.ward_defaults().items():
                lo[code] = np.nan if limit.low is None else limit.low
                hi[code] = np.nan if limit.high is None else limit.high
            self._lim_cache = (lim.version, lo, hi)
            self._watch_arr = None
        if self._watch_arr is None:
            watch = set(self._limit_cond) | lim.patient_devices()
            self._watch_arr = np.fromiter(watch, np.uint64, len(watch))
        return self._lim_cache[1], self._lim_cache[2], self._watch_arr

    def _numerics(self, batch: DecodedBatch, events: list[AlarmEvent], now_us: int) -> None:
        t = batch.tables["numerics"]
        if not len(t["code"]):
            return
        devs, codes, status, vals = t["device_id"], t["code"], t["status"], t["value"]
        valid = (status == 0) & np.isfinite(vals)
        rows = np.flatnonzero(valid)
        hist = self.plugins.rules
        for dev, ts, code, value in zip(devs[rows].tolist(), t["ts_us"][rows].tolist(),
                                        codes[rows].tolist(), vals[rows].tolist(), strict=True):
            d = self._devices.get(dev) or self._device(dev)
            prev = d.latest.get(code)
            if prev is None or ts >= prev[0]:
                d.latest[code] = (ts, value)
        if hist:  # the rows plugins see (only kept while rules are registered)
            for dev, ts, code, st_, value in zip(devs.tolist(), t["ts_us"].tolist(),
                                                 codes.tolist(), status.tolist(), vals.tolist(),
                                                 strict=True):
                d = self._device(dev)
                if d.history is None:
                    d.history = NumericWindow()
                d.history.add(ts, code, st_, value)
        lo, hi, watch = self._limit_arrays()
        # only rows beyond a ward limit, or of a device with its own limits or a limit
        # condition under way, need the state machine: the rest are normal values
        with np.errstate(invalid="ignore"):
            beyond = valid & ((vals < lo[codes]) | (vals > hi[codes]))
        if watch.size:
            beyond |= np.isin(devs, watch)
        st, lim = self.states, self.limits
        for r in np.flatnonzero(beyond).tolist():
            dev, code = int(devs[r]), int(codes[r])
            limit = lim.limits_for(dev).get(code)
            if limit is None:
                continue
            ts, value = int(t["ts_us"][r]), float(vals[r])
            lc = limit_codes(limit.code)
            found = []
            if valid[r]:
                found = limit.judge(value, ts, st.in_condition(dev, lc[0]),
                                    st.in_condition(dev, lc[1]))
            events += st.observe(dev, lc, found, ts, now_us)
            self._track_condition(dev, lc)

    def _track_condition(self, dev: int, codes: tuple[str, ...]) -> None:
        held = self._limit_cond.get(dev)
        for c in codes:
            if self.states.in_condition(dev, c):
                if held is None:
                    held = self._limit_cond[dev] = set()
                    self._watch_arr = None
                held.add(c)
            elif held is not None:
                held.discard(c)
        if held is not None and not held:
            del self._limit_cond[dev]
            self._watch_arr = None

    def _status(self, batch: DecodedBatch, events: list[AlarmEvent], now_us: int) -> None:
        t = batch.tables["status"]
        cfg = self.config.technical
        for dev, ts, battery, flags in zip(t["device_id"].tolist(), t["ts_us"].tolist(),
                                           t["battery"].tolist(), t["flags"].tolist(),
                                           strict=True):
            d = self._device(dev)
            d.battery, d.flags = battery, flags
            found = status_findings(battery, flags, ts, cfg)
            if any(f.code == "leads_off" for f in found) and d.ecg is not None:
                d.ecg.leads_off()
            events += self.states.observe(dev, STATUS_CODES, found, ts, now_us)

    def _waves(self, batch: DecodedBatch, events: list[AlarmEvent], now_us: int) -> None:
        w = batch.tables["waveforms"]
        ftype = w["frame_type"]
        if not len(ftype):
            return
        rows = np.flatnonzero((ftype == FrameType.ECG)
                              | ((ftype == FrameType.PLETH) & (w["channel"] == PlethChannel.IR)))
        if not rows.size:
            return
        samples = batch.samples
        acfg = self.config.arrhythmia
        ready = self._ready
        for dev, ft, ch, ts, fs, gain, off, s0, n in zip(
                *(w[c][rows].tolist() for c in ("device_id", "frame_type", "channel", "ts_us",
                                                "fs_hz", "gain", "offset", "sample_start",
                                                "n_samples")), strict=True):
            d = self._devices.get(dev) or self._device(dev)
            raw = samples[s0:s0 + n].copy()
            if ft != FrameType.ECG:
                d.pleth.append((ts, raw, gain, off, fs))
                continue
            a = d.ecg
            if a is None:
                a = d.ecg = EcgAnalyser(acfg, ch)  # the first lead seen is the primary one
            elif a.channel != ch or not 125 <= fs <= 1000:
                continue
            if a.add(ts, raw, gain, off, fs):
                ready[dev] = None

    def _analyse(self, dev: int, d: _Device, events: list[AlarmEvent], now_us: int) -> None:
        a = d.ecg
        assert a is not None
        res = a.process()
        if res is None:
            return
        t_data, codes, found = res
        st = self.states
        tcfg = self.config.technical
        events += st.observe(dev, codes, found, t_data, now_us)
        tech = []
        if a.signal_lost and not d.flags & 0x02:  # not already reported as leads off
            tech.append(Finding("ecg.no_signal", AlarmPriority.MEDIUM, _T,
                                "no usable ECG (flat, clipped or missing)", t_data))
        if a.noisy:
            tech.append(Finding("ecg.noisy", AlarmPriority.LOW, _T, "noisy ECG", t_data))
        gap = math.nan
        if a.gap_s >= tcfg.gap_alarm_s:
            d.last_gap_us = t_data
            gap = a.gap_s
        a.gap_s = 0.0
        if t_data - d.last_gap_us < tcfg.gap_hold_s * 1e6:
            tech.append(Finding("data.gap", AlarmPriority.LOW, _T, "gap in the ECG data",
                                t_data, gap))
        events += st.observe(dev, _ECG_TECH, tech, t_data, now_us)

    def _plugins(self, devs: list[int], now_us: int, mono: float) -> None:
        host = self.plugins
        for name in list(host.rules):
            for dev in devs:
                if not host.due(name, dev, mono):
                    continue
                d = self._devices[dev]
                if d.history is None:  # device seen before the first rule was added
                    d.history = NumericWindow()
                ctx = RuleContext(dev, now_us, pa.table(d.history.columns()), dict(d.latest),
                                  _snap(d.ecg.ring if d.ecg else None),
                                  _snap(_pleth_ring(d, self.config.snippet_s)),
                                  d.battery, d.flags)
                host.submit(name, ctx, now_us, mono)

    def _system(self, code: str, prio: AlarmPriority, message: str | None,
                evaluated: bool = True) -> None:
        now_us = self._now_us()
        if code not in self.states.timing:  # system conditions are already debounced
            self.states.timing[code] = Timing(0.0, 0.0, latching=code.startswith("plugin."))
        found = [Finding(code, prio, _T, message, now_us)] if message else []
        self._emit(self.states.observe(SYSTEM_DEVICE, (code,) if evaluated else (), found,
                                       now_us, now_us), None)

    def _periodic(self, force: bool = False) -> None:
        mono = self._mono()
        if self.plugins.rules:
            results, disabled = self.plugins.poll(mono)
            events: list[AlarmEvent] = []
            for rule, dev, ts, alarms in results:
                codes, found = self.plugins.findings(rule, alarms, ts)
                if dev in self._devices:
                    events += self.states.observe(dev, codes, found, ts, self._now_us())
            self._emit(events, None)
            for name in disabled:
                self._system(f"plugin.{name}.disabled", AlarmPriority.MEDIUM,
                             f"plugin rule {name} disabled: {self.plugins.rules[name].disabled}")
        if not force and mono < self._next_tick:
            return
        self._next_tick = mono + self.config.tick_s
        now_us = self._now_us()
        self._emit(self.states.tick(now_us), None)
        shed = self._shed_seen
        if force or mono >= self._next_live:  # once a second: a sum over the devices
            shed = sum(d.ecg.shed_frames for d in self._devices.values() if d.ecg is not None)
        if self.dropped_batches != self._dropped_seen or shed != self._shed_seen:
            n = self.dropped_batches - self._dropped_seen
            m = shed - self._shed_seen
            self._dropped_seen, self._shed_seen = self.dropped_batches, shed
            self.counters["ecg_frames_shed"] = shed
            self._system("engine.overload", AlarmPriority.HIGH,
                         f"alarm engine overloaded: {n} committed batch(es) not analysed, "
                         f"{m} ECG frame(s) shed")
        else:
            self._system("engine.overload", AlarmPriority.HIGH, None)
        if force or mono >= self._next_live:
            self._next_live = mono + 1.0
            events = []
            live, tracked = self.liveness, self.states.tracked
            quiet = mono - min(live.cfg.offline_after_s, live.cfg.reconnect_grace_s)
            for dev, seen in list(live.last_seen.items()):
                # only devices that may be offline, or whose offline alarm may end
                if seen <= quiet or dev in live.disconnected_at or tracked(dev, OFFLINE):
                    f = live.finding(dev, mono, now_us)
                    events += self.states.observe(dev, (OFFLINE,), [f] if f else [],
                                                  now_us, now_us)
            self._emit(events, None)
        if self._store is not None and (force or mono >= self._next_storage):
            self._next_storage = mono + self.config.technical.storage_check_s
            self._check_storage()

    def _check_storage(self) -> None:
        store = self._store
        assert store is not None
        try:
            failed = store.wal.stats().get("failed")
            errors = int(store.counters.get("flush_errors", 0))
        except Exception:  # noqa: BLE001 - a store being closed
            return
        self._system("storage.failed", AlarmPriority.HIGH,
                     f"write-ahead log failed: {failed}" if failed else None)
        new = errors - self._flush_errors
        self._flush_errors = errors
        self._system("storage.flush", AlarmPriority.MEDIUM,
                     f"{new} Parquet flush(es) failed" if new > 0 else None)

    # -- output --------------------------------------------------------------------------------
    def _evidence(self, alarm: Alarm) -> Evidence | None:
        d = self._devices.get(alarm.device_id)
        if d is None:
            return None
        if alarm.code not in _PLETH_CODES and d.ecg is not None:
            ring, wtype = d.ecg.ring, FrameType.ECG
        else:
            ring, wtype = _pleth_ring(d, self.config.snippet_s), FrameType.PLETH
        if ring.n == 0:
            return Evidence(dict(d.latest))
        start, values = ring.last(self.config.snippet_s)
        return Evidence(dict(d.latest), int(wtype), ring.fs, start, values)

    def _emit(self, events: list[AlarmEvent], t_commit: float | None) -> None:
        if not events:
            return
        self.counters["events"] += len(events)
        if self.log is not None:
            try:
                self.log.submit(events)  # group-committed by the log's writer thread
            except Exception:  # noqa: BLE001 - the alarm must still reach people
                self.counters["log_errors"] += 1
                log.exception("alarm log submit failed; publishing anyway")
        if t_commit is not None:
            dt = time.perf_counter() - t_commit
            self.latency_s.extend(dt for e in events if e.kind == "raised")
        for ev in events:
            for cb in tuple(self._listeners):
                try:
                    cb(ev)
                except Exception:  # noqa: BLE001
                    self.counters["listener_errors"] += 1
                    n = self.counters["listener_errors"]
                    if n & (n - 1) == 0:
                        log.exception("alarm listener %r failed (%d so far)", cb, n)
            for sub in tuple(self._subs):
                sub._offer(ev)


def _pleth_ring(d: _Device, seconds: float) -> WaveRing:
    """The device's recent IR pleth frames placed in a ring (built on demand)."""
    ring = WaveRing(seconds)
    for ts, raw, gain, off, fs in d.pleth:
        ring.feed(ts, raw * gain + off, fs)
    return ring


def _snap(ring: WaveRing | None) -> WaveSnapshot | None:
    if ring is None or ring.n == 0:
        return None
    start, values = ring.last()
    return WaveSnapshot(start, ring.fs, values)


def _safe(name: str) -> str:
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name.lower())[:32]
    return s or "unnamed"
