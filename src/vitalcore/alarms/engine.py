"""The alarm engine: committed batches in, alarm events out, off the commit path.

:meth:`AlarmEngine.attach` registers a commit listener on a
:class:`~vitalcore.storage.Store`. The listener only puts the batch on the engine's queue
(a ``SimpleQueue.put``, about a microsecond; when the queue holds ``max_queue`` batches it
drops the batch, counts it and raises the ``engine.overload`` system alarm). The engine's
thread takes batches in commit order: it runs the fast rules (limits, status flags,
liveness, clock) on every queued batch, vectorised over its rows (latest numerics, pleth
frames and liveness kept as columns, :mod:`.columns`), and hands the batch's ECG frames to
the engine's ECG thread, which analyses all devices' ECG in one batched pass every
:data:`~vitalcore.alarms.ecgbatch.PASS_S` (numba without the GIL or the engine's lock,
:mod:`.ecgbatch`), so limit and technical alarms never wait behind ECG work. (With
``AlarmConfig(batched=False)`` the per-device reference twin runs instead: one
:class:`~.arrhythmia.EcgAnalyser` per device on the engine thread in slices of
:data:`ANALYSIS_SLICE_S`, Python per row.) It queues plugin runs (:mod:`vitalcore.alarms.plugins`), advances the state machine
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

from ..dsp.quality import LEADS_OFF, NOISY
from ..errors import ConfigError, UsageError
from ..protocol import FrameType, PlethChannel
from .arrhythmia import ARRHYTHMIA_CODES, ARRHYTHMIA_TIMING, ArrhythmiaConfig, EcgAnalyser
from .columns import DeviceIndex, LatestNumerics, PlethFrames, frames_for
from .ecgbatch import ASYSTOLE, BRADY, PASS_S, PAUSE, TACHY, VFIB, EcgBatch, EcgLead
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
_ECG_CODES = ARRHYTHMIA_CODES + _ECG_TECH
_A = AlarmCategory.ARRHYTHMIA
#: Time the engine thread spends on ECG analysis after each batch while batches wait, s.
ANALYSIS_SLICE_S = 0.005
#: Batches of ECG frames waiting for the ECG thread beyond which new ones are shed.
MAX_ECG_QUEUE = 2000


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
    batched : bool
        Do the per-batch work for all devices at once (the default): the ECG of every
        device in one numba pass without the GIL (:mod:`vitalcore.alarms.ecgbatch`), the
        latest numerics, pleth frames and liveness as columns (:mod:`.columns`). False
        runs the per-device reference twin (one
        :class:`~vitalcore.alarms.arrhythmia.EcgAnalyser` per device, Python per row):
        same rules and alarms, kept for equivalence tests and as the benchmark's baseline.
    """

    arrhythmia: ArrhythmiaConfig = field(default_factory=ArrhythmiaConfig)
    technical: TechnicalConfig = field(default_factory=TechnicalConfig)
    timing: Mapping[str, Timing] = field(default_factory=dict)
    escalation: tuple[EscalationStep, ...] = ()
    tick_s: float = 0.25
    max_queue: int = 100_000
    snippet_s: float = 8.0
    batched: bool = True

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
        if not isinstance(self.batched, bool):
            raise ConfigError(f"batched must be a bool, got {self.batched!r}")


class _Device:
    __slots__ = ("ecg", "pleth", "latest", "history", "battery", "flags", "last_gap_us",
                 "drift_next", "slot")

    def __init__(self, engine: AlarmEngine) -> None:
        self.ecg: EcgAnalyser | EcgLead | None = None
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
        self.slot = -1  # row in the engine's columns (batched mode)


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
        self._lock = threading.RLock()
        self._ready: dict[int, None] = {}  # devices with a second or more of ECG queued
        # the batched ECG analysis (None: one EcgAnalyser per device, the reference twin)
        # the ECG thread writes the evidence rings under a lock of their own, so the
        # engine thread waits for it only when it builds the evidence of an alarm
        self._ecgb = (EcgBatch(self.config.arrhythmia, lock=threading.Lock())
                      if self.config.batched else None)
        self._ecgq: queue.SimpleQueue = queue.SimpleQueue()  # to the ECG thread
        self._ecg_thread: threading.Thread | None = None
        self._ecg_shed = 0
        self._ecg_watch: set[int] = set()  # devices with an ECG condition under way
        self._gap_at: dict[int, int] = {}  # device -> data time of its last ECG gap, µs
        self._next_pass = 0.0
        self._index = DeviceIndex()
        self._latest = LatestNumerics()
        self._pleth = PlethFrames(frames_for(self.config.snippet_s))
        self._drift_watch: set[int] = set()
        self._shed_seen = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._listeners: list[Callable[[AlarmEvent], None]] = []
        self._subs: list[Subscription] = []
        self._store: Store | None = None
        self._thread: threading.Thread | None = None
        self._next_tick = 0.0
        self._next_live = 0.0
        self._next_storage = 0.0
        self._flush_errors = 0
        self._wal_reopens = 0
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
            if self._ecgb is not None:
                self._ecg_thread = threading.Thread(target=self._ecg_run,
                                                    name="vitalcore-alarms-ecg", daemon=True)
                self._ecg_thread.start()

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
        if self._ecg_thread is not None:
            self._ecgq.put(None)
            self._ecg_thread.join(timeout=30)
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
        # the wall clock at commit is the reference of clock.drift: a backlog of the
        # engine must not look like device clocks running late
        self._queue.put((time.perf_counter(), self._now_us(), batch))

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
            d = self._devices.pop(device_id, None)
            self.liveness.forget(device_id)
            if d is not None and d.slot >= 0:
                self._index.remove(device_id)
                self._latest.clear(d.slot)
                self._pleth.clear(d.slot)
                self._drift_watch.discard(device_id)
            if self._ecgb is not None:
                self._ecgq.put(("forget", device_id))
                self._ecg_watch.discard(device_id)
                self._gap_at.pop(device_id, None)
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
            if self._ecgb is not None:
                out.update(ecg_queued=self._ecgq.qsize(), ecg_late_frames=self._ecgb.late_frames,
                           ecg_restarts=self._ecgb.restarts)
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
                    if item and item[0] == "mark":
                        self._mark(item[1])
                    else:
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
                if self._ecgb is None:
                    self._analyse_ready(ANALYSIS_SLICE_S)
            except Exception:
                log.exception("alarm engine failed in its periodic work; going on")
            if stop:
                break
        self._sync_ecg()
        with self._lock:
            self._analyse_ready(None)
            self._periodic()

    def _mark(self, done: threading.Event) -> None:
        """wait_idle's marker: everything before it analysed (ECG thread included)."""
        self._sync_ecg()
        with self._lock:
            self._analyse_ready(None)
            self._periodic(force=True)
            if self.log is not None:
                self.log.flush()
        done.set()

    def _sync_ecg(self) -> None:
        """Wait until the ECG thread has analysed everything handed to it so far."""
        if self._ecg_thread is not None and self._ecg_thread.is_alive():
            ev = threading.Event()
            self._ecgq.put(("mark", ev))
            ev.wait(60)

    def _ecg_run(self) -> None:
        """The ECG thread: log frames, and every PASS_S (at once for a marker) run the
        batched pass; the numba work holds neither the GIL nor the engine's lock."""
        eb = self._ecgb
        assert eb is not None
        while True:
            wait = max(0.0, self._next_pass - time.perf_counter())
            try:
                item = self._ecgq.get(timeout=wait if eb.pending_samples else PASS_S)
            except queue.Empty:
                item = ()
            marks: list[threading.Event] = []
            frames: list[tuple[np.ndarray, ...]] = []  # logged together: one lookup
            stop = False
            while True:
                if item is None:
                    stop = True
                    break
                if item and item[0] == "frames":
                    frames.append(item[1:])
                elif item and item[0] == "forget":
                    self._ecg_log(frames)  # the frames before it first
                    eb.forget(item[1])
                elif item:
                    marks.append(item[1])
                if time.perf_counter() >= self._next_pass and (frames or eb.pending_samples):
                    break  # frames keep coming: analyse what is logged first
                try:
                    item = self._ecgq.get_nowait()
                except queue.Empty:
                    break
            self._ecg_log(frames)
            if marks or stop or time.perf_counter() >= self._next_pass:
                try:
                    self._ecg_pass()
                except Exception:  # noqa: BLE001
                    log.exception("ECG pass failed; going on")
            for m in marks:
                m.set()
            if stop:
                return

    def _ecg_log(self, frames: list[tuple[np.ndarray, ...]]) -> None:
        """ECG thread: log the ECG frames of several batches at once (columns merged)."""
        if not frames:
            return
        try:
            if len(frames) == 1:
                self._ecg_frames(*frames[0])
            else:
                cols = list(zip(*frames, strict=True))
                base = np.cumsum([0] + [a.size for a in cols[6][:-1]]).tolist()
                start = np.concatenate([st + b for st, b in zip(cols[7], base, strict=True)])
                merged = [np.concatenate(c) for c in cols]
                merged[7] = start
                self._ecg_frames(*merged)
        except Exception:  # noqa: BLE001 - ECG alarms must go on for the others
            log.exception("ECG analysis failed on %d batches of frames; going on", len(frames))
        frames.clear()

    def _ecg_frames(self, devs: np.ndarray, chans: np.ndarray, ts: np.ndarray,
                    fs: np.ndarray, gain: np.ndarray, off: np.ndarray, samples: np.ndarray,
                    start: np.ndarray, n: np.ndarray) -> None:
        """ECG thread: log a batch's ECG frames of each device's primary lead."""
        eb = self._ecgb
        assert eb is not None
        slots = eb.slots(devs)
        if (slots < 0).any():  # devices new to the analysis: the first lead seen is primary
            new = np.flatnonzero(slots < 0)
            udev, first = np.unique(devs[new], return_index=True)
            with self._lock:
                for dev, ch in zip(udev.tolist(), chans[new[first]].tolist(), strict=True):
                    lead = eb.lead(dev, ch)
                    d = self._devices.get(dev)
                    if d is not None and d.ecg is None:
                        d.ecg = lead
            slots = eb.slots(devs)
        ok = chans == eb.channels(slots)
        eb.add_frames(slots[ok], ts[ok], fs[ok], gain[ok], off[ok], samples, start[ok], n[ok])

    def _ecg_pass(self) -> None:
        """One batched pass over the ECG logged since the last (the numba work runs
        without the GIL and without the engine's lock); then the findings."""
        assert self._ecgb is not None
        self._next_pass = time.perf_counter() + PASS_S
        j = self._ecgb.step()
        if j is None or not j.device_id.size:
            return
        tcfg = self.config.technical
        new_gap = j.gap_s >= tcfg.gap_alarm_s
        look = (j.bits != 0) | ((j.qflags & (LEADS_OFF | NOISY)) != 0) | new_gap
        now_us = self._now_us()
        with self._lock:
            if self._ecg_watch or self._gap_at:
                watch = np.fromiter(self._ecg_watch | self._gap_at.keys(), np.uint64)
                look |= np.isin(j.device_id, watch)
            events: list[AlarmEvent] = []
            for k in np.flatnonzero(look).tolist():
                self._judged(int(j.device_id[k]), int(j.ts_us[k]), int(j.bits[k]),
                             float(j.silence_s[k]), float(j.hr_bpm[k]), int(j.qflags[k]),
                             float(j.gap_s[k]) if new_gap[k] else math.nan, events, now_us)
            self._emit(events, None)

    def _judged(self, dev: int, ts: int, bits: int, silence: float, hr: float, qflags: int,
                gap: float, events: list[AlarmEvent], now_us: int) -> None:
        """Findings of one device's batched judgement (what _analyse makes of the twin's)."""
        d = self._devices.get(dev)
        if d is None:
            return
        c = self.config.arrhythmia
        found = []
        if bits & VFIB:
            found.append(Finding("vfib", AlarmPriority.HIGH, _A, "VF/VFL", ts))
        if bits & ASYSTOLE:
            found.append(Finding("asystole", AlarmPriority.HIGH, _A,
                                 f"asystole: no beat for {silence:.1f} s", ts, silence,
                                 c.asystole_s))
        if bits & PAUSE:
            found.append(Finding("pause", AlarmPriority.MEDIUM, _A, f"pause {silence:.1f} s",
                                 ts, silence, c.pause_s))
        if bits & BRADY:
            found.append(Finding("brady.extreme", AlarmPriority.HIGH, _A,
                                 f"extreme bradycardia {hr:.0f} bpm", ts, hr, c.brady_bpm))
        if bits & TACHY:
            found.append(Finding("tachy.extreme", AlarmPriority.HIGH, _A,
                                 f"extreme tachycardia {hr:.0f} bpm", ts, hr, c.tachy_bpm))
        st = self.states
        events += st.observe(dev, ARRHYTHMIA_CODES, found, ts, now_us)
        tech = []
        if qflags & LEADS_OFF and not d.flags & 0x02:  # not already reported as leads off
            tech.append(Finding("ecg.no_signal", AlarmPriority.MEDIUM, _T,
                                "no usable ECG (flat, clipped or missing)", ts))
        if qflags & NOISY:
            tech.append(Finding("ecg.noisy", AlarmPriority.LOW, _T, "noisy ECG", ts))
        if not math.isnan(gap):
            self._gap_at[dev] = ts
        at = self._gap_at.get(dev)
        if at is not None:
            if ts - at < self.config.technical.gap_hold_s * 1e6:
                tech.append(Finding("data.gap", AlarmPriority.LOW, _T, "gap in the ECG data",
                                    ts, gap))
            else:
                del self._gap_at[dev]
        events += st.observe(dev, _ECG_TECH, tech, ts, now_us)
        if any(st.tracked(dev, code) for code in _ECG_CODES):
            self._ecg_watch.add(dev)
        else:
            self._ecg_watch.discard(dev)

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
        if item[0] == "conn":
            _, dev, up = item
            mono = self._mono()
            if up:
                self.liveness.connected(dev, mono)
            else:
                self.liveness.disconnected(dev, mono)
            return
        t_commit, commit_us, batch = item
        self._batch(batch, t_commit, commit_us)

    def _device(self, dev: int) -> _Device:
        d = self._devices.get(dev)
        if d is None:
            d = self._devices[dev] = _Device(self)
            if self._ecgb is not None:
                d.slot = self._index.add(dev)
        return d

    def _latest_of(self, d: _Device) -> dict[int, tuple[int, float]]:
        return self._latest.of(d.slot) if d.slot >= 0 else dict(d.latest)

    def _pleth_of(self, d: _Device) -> list[tuple[int, np.ndarray, float, float, int]]:
        return self._pleth.frames_of(d.slot) if d.slot >= 0 else list(d.pleth)

    def _batch(self, batch: DecodedBatch, t_commit: float, commit_us: int) -> None:
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
        all_devs = devs
        if self._ecgb is not None:
            dl = devs.tolist()
            for dev in [x for x in dl if x not in self._devices]:
                self._device(dev)
            self.liveness.seen_many(dl, mono)
            # only devices off by more than the limit, or with a drift condition under way
            look = np.abs(newest - commit_us) > drift_s * 1e6
            if self._drift_watch:
                look |= np.isin(devs, np.fromiter(self._drift_watch, np.uint64))
            devs, newest = devs[look], newest[look]
        for dev, ts in zip(devs.tolist(), newest.tolist(), strict=True):
            self.liveness.seen(dev, mono)
            d = self._device(dev)
            if mono >= d.drift_next:  # at most once a second per device
                d.drift_next = mono + 1.0
                off = (ts - commit_us) / 1e6
                if abs(off) > drift_s:
                    f = Finding("clock.drift", AlarmPriority.LOW, _T,
                                f"device clock off by {off:+.1f} s", now_us, off, drift_s)
                    events += st.observe(dev, ("clock.drift",), [f], now_us, now_us)
                elif st.tracked(dev, "clock.drift"):
                    events += st.observe(dev, ("clock.drift",), (), now_us, now_us)
                if st.tracked(dev, "clock.drift"):
                    self._drift_watch.add(dev)
                else:
                    self._drift_watch.discard(dev)
        self._numerics(batch, events, now_us)
        self._status(batch, events, now_us)
        self._waves(batch, events, now_us)
        if self.plugins.rules:
            self._plugins(all_devs.tolist(), now_us, mono)
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
        if self._ecgb is not None:  # every device of the batch has a slot (see _batch)
            self._latest.update(self._index.lookup(devs[rows]), t["ts_us"][rows],
                                codes[rows], vals[rows], self._index.size)
            rows = rows[:0]
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
        if self._ecgb is not None:
            self._waves_batched(w, rows, samples)
            p = rows[w["frame_type"][rows] != FrameType.ECG]
            self._pleth.add(self._index.lookup(w["device_id"][p]), w["ts_us"][p],
                            w["fs_hz"][p], w["gain"][p], w["offset"][p], samples,
                            w["sample_start"][p], w["n_samples"][p], self._index.size)
            return
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

    def _waves_batched(self, w: Mapping[str, np.ndarray], rows: np.ndarray,
                       samples: np.ndarray) -> None:
        """Hand the batch's ECG frames to the ECG thread (columns, no per-row work)."""
        rows = rows[w["frame_type"][rows] == FrameType.ECG]
        if rows.size and self._ecgq.qsize() >= MAX_ECG_QUEUE:  # the ECG thread is far behind
            self._ecg_shed += int(rows.size)  # shed (counted, engine.overload alarm)
        elif rows.size:
            self._ecgq.put(("frames", w["device_id"][rows], w["channel"][rows],
                            w["ts_us"][rows], w["fs_hz"][rows], w["gain"][rows],
                            w["offset"][rows], samples, w["sample_start"][rows],
                            w["n_samples"][rows]))

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
                ctx = RuleContext(dev, now_us, pa.table(d.history.columns()),
                                  self._latest_of(d), _snap(d.ecg.ring if d.ecg else None),
                                  _snap(_pleth_ring(self._pleth_of(d), self.config.snippet_s)),
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
            shed = self._ecg_shed if self._ecgb is not None else sum(
                d.ecg.shed_frames for d in self._devices.values() if d.ecg is not None)
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
            reopens = int(store.counters.get("wal_reopens", 0))
        except Exception:  # noqa: BLE001 - a store being closed
            return
        # A log that failed is reopened within seconds and may fail again at its next
        # write, so a check can fall between two failures: count the reopens too.
        failures = reopens - self._wal_reopens
        self._wal_reopens = reopens
        if failed:
            detail = f"write-ahead log failed: {failed}"
        elif failures > 0:
            detail = f"write-ahead log failed and was reopened {failures} time(s)"
        else:
            detail = None
        self._system("storage.failed", AlarmPriority.HIGH, detail)
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
            ring, wtype = _pleth_ring(self._pleth_of(d), self.config.snippet_s), FrameType.PLETH
        latest = self._latest_of(d)
        if ring.n == 0:
            return Evidence(latest)
        start, values = ring.last(self.config.snippet_s)
        return Evidence(latest, int(wtype), ring.fs, start, values)

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


def _pleth_ring(frames: Iterable[tuple[int, np.ndarray, float, float, int]],
                seconds: float) -> WaveRing:
    """A device's recent IR pleth frames placed in a ring (built on demand)."""
    ring = WaveRing(seconds)
    for ts, raw, gain, off, fs in frames:
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
