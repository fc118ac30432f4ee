"""NIBP measurement schedules per patient (ambulatory BP monitoring) and "measure now".

A :class:`BPScheduleConfig` says when a patient's cuff inflates: every
``day_interval_s`` between the local wall-clock times ``day_start`` and ``day_end`` of
the ward's time zone, every ``night_interval_s`` otherwise. :class:`BPScheduler` keeps
one such schedule per patient and issues ``START_NIBP`` through a
:class:`~vitalcore.server.commands.CommandCenter` when each is due, and starts a
measurement on one patient or every patient of a ward at once on request. Every
command is tracked by the center until the device's final ACK or its timeout; the
:class:`~vitalcore.server.commands.CommandRound` of each issue is exposed for progress.

Timing rules (docs/abpm.md, "Schedule"):

- Period boundaries are local wall-clock times, converted to UTC per calendar date with
  :mod:`zoneinfo`, so they follow daylight-saving changes: on the night clocks go
  forward the night lasts an hour less in real time, on the night they go back an hour
  more. A boundary time that does not exist that day (in the DST gap) is resolved as
  PEP 495 does with ``fold=0`` (it lands after the gap); one that exists twice takes
  its first occurrence.
- Each period starts with a measurement at its boundary, then one every interval of
  real elapsed time (µs since the Unix epoch, not wall-clock arithmetic), until the next
  boundary. A measurement is never due at the same instant twice.
- A timer firing late (a busy loop, a suspended host, a fake clock jumping) issues one
  measurement, not a burst of catch-up measurements, and the next is the first grid
  point after the current time.

The scheduler is callback-driven on the event loop through an injectable
:class:`Clock`: :class:`WallClock` (real time, ``loop.call_later`` in bounded steps that
re-read the wall clock) or :class:`FakeClock` (tests and simulations advance it by hand;
no real sleeping). Patients and wards are resolved to device ids by injectable
callables, so a clinical organisation store plugs in (:func:`devices_from_spans`).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import UsageError
from ..protocol import CommandKind

if TYPE_CHECKING:
    import asyncio

    from ..server.commands import CommandCenter, CommandResult, CommandRound, Progress
    from .schedule_book import ScheduleBook
    from .spans import DeviceSpan

__all__ = [
    "MIN_INTERVAL_S",
    "MAX_INTERVAL_S",
    "Clock",
    "Timer",
    "WallClock",
    "FakeClock",
    "BPScheduleConfig",
    "Period",
    "ScheduleStatus",
    "BPScheduler",
    "devices_from_spans",
]

log = logging.getLogger("vitalcore.clinical")

MIN_INTERVAL_S = 60  #: shortest measurement interval, s (a deflation alone takes ~30-60 s)
MAX_INTERVAL_S = 24 * 3600  #: longest measurement interval, s
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_WALL_STEP_S = 60.0  #: WallClock re-reads the wall clock at least this often, s


# -- clocks ---------------------------------------------------------------------------------
class Timer(Protocol):
    """A pending :meth:`Clock.call_at` callback."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Where the scheduler reads the time and arms its timer."""

    def now_us(self) -> int:
        """Current time, µs since the Unix epoch (UTC)."""
        ...

    def call_at(self, t_us: int, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` once, on the event loop, when the time reaches ``t_us``."""
        ...


class _WallTimer:
    def __init__(self, clock: WallClock, t_us: int, callback: Callable[[], None]) -> None:
        self._clock = clock
        self._t_us = t_us
        self._callback = callback
        self._handle: asyncio.Handle | None = None
        self._arm()

    def _arm(self) -> None:
        delay = (self._t_us - self._clock.now_us()) / 1e6
        loop = self._clock.loop
        if delay <= 0:
            self._handle = loop.call_soon(self._fire)
        else:  # bounded steps: a wall-clock step (NTP) is noticed within _WALL_STEP_S
            self._handle = loop.call_later(min(delay, _WALL_STEP_S), self._check)

    def _check(self) -> None:
        if self._clock.now_us() >= self._t_us:
            self._fire()
        else:
            self._arm()

    def _fire(self) -> None:
        self._handle = None
        self._callback()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class WallClock:
    """The real wall clock (``time.time_ns``) with timers on an asyncio event loop.

    Timers sleep with ``loop.call_later`` in steps of at most 60 s and re-read the wall
    clock after each, so a wall-clock step (NTP correction) delays or advances a
    measurement by at most a minute.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def now_us(self) -> int:
        return time.time_ns() // 1000

    def call_at(self, t_us: int, callback: Callable[[], None]) -> Timer:
        return _WallTimer(self, int(t_us), callback)


class _FakeTimer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that only moves when told to: for tests and simulated days.

    :meth:`advance` runs the due callbacks synchronously, in time order (ties in the
    order they were armed), with :meth:`now_us` set to each callback's time while it
    runs; a callback may arm further ones, which run in the same call if due. A callback
    armed in the past runs at the current time on the next advance.

    Parameters
    ----------
    start_us : int
        Initial time, µs since the Unix epoch (UTC).
    """

    def __init__(self, start_us: int) -> None:
        self._now = int(start_us)
        self._heap: list[tuple[int, int, _FakeTimer, Callable[[], None]]] = []
        self._order = itertools.count()

    def now_us(self) -> int:
        return self._now

    def call_at(self, t_us: int, callback: Callable[[], None]) -> Timer:
        timer = _FakeTimer()
        heapq.heappush(self._heap, (max(int(t_us), self._now), next(self._order), timer, callback))
        return timer

    def next_at(self) -> int | None:
        """Time of the earliest armed callback (``None`` if none)."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def advance(self, seconds: float, *, max_callbacks: int = 10_000_000) -> int:
        """Move the time forward by ``seconds``; returns the callbacks run."""
        if not seconds >= 0:
            raise UsageError(f"a clock only moves forward; got {seconds!r} s")
        return self.advance_to(self._now + round(seconds * 1e6), max_callbacks=max_callbacks)

    def advance_to(self, t_us: int, *, max_callbacks: int = 10_000_000) -> int:
        """Move the time forward to ``t_us`` (µs), running every callback due by then."""
        if t_us < self._now:
            raise UsageError(f"a clock only moves forward: {t_us} < now {self._now}")
        n = 0
        while (due := self.next_at()) is not None and due <= t_us:
            if n >= max_callbacks:
                raise UsageError(f"more than {max_callbacks} callbacks before {t_us}: "
                                 "a callback re-arming itself at the same time?")
            _, _, timer, callback = heapq.heappop(self._heap)
            self._now = due
            timer.cancelled = True  # ran: cancelling it later is a no-op
            callback()
            n += 1
        self._now = t_us
        return n


# -- configuration --------------------------------------------------------------------------
def _us_of(dt: datetime) -> int:
    """µs since the Unix epoch of an aware datetime, exactly."""
    return (dt - _EPOCH) // _US


class Period(NamedTuple):
    """The day or night period holding an instant: ``[start_us, end_us)`` (UTC µs)."""

    is_day: bool
    start_us: int
    end_us: int


@dataclass(frozen=True)
class BPScheduleConfig:
    """When a patient's NIBP measurements are due.

    Parameters
    ----------
    tz : str
        IANA time zone of the ward (e.g. ``"Europe/Berlin"``); day and night boundaries
        are local wall-clock times of this zone.
    day_start, day_end : datetime.time
        Local start and end of the day period (naive times). ``day_start > day_end``
        is allowed (a day period across midnight, e.g. for night-shift workers); they
        must differ.
    day_interval_s, night_interval_s : float
        Seconds between measurements in each period, within
        ``MIN_INTERVAL_S..MAX_INTERVAL_S`` (60 s..24 h), whole µs.

    Raises
    ------
    UsageError
        An unknown time zone, aware or equal boundary times, or an interval out of range.
    """

    tz: str
    day_start: dtime = dtime(7, 0)
    day_end: dtime = dtime(22, 0)
    day_interval_s: float = 900
    night_interval_s: float = 1800

    def __post_init__(self) -> None:
        if not isinstance(self.tz, str) or not self.tz:
            raise UsageError(f"tz must be an IANA time zone name, got {self.tz!r}")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise UsageError(f"unknown time zone {self.tz!r}") from exc
        for name in ("day_start", "day_end"):
            t = getattr(self, name)
            if not isinstance(t, dtime) or t.tzinfo is not None:
                raise UsageError(f"{name} must be a naive datetime.time (local to tz), got {t!r}")
        if self.day_start == self.day_end:
            raise UsageError(f"day_start and day_end must differ, both are {self.day_start}")
        for name in ("day_interval_s", "night_interval_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise UsageError(f"{name} must be a number of seconds, got {v!r}")
            if not MIN_INTERVAL_S <= v <= MAX_INTERVAL_S:
                raise UsageError(f"{name} must be within {MIN_INTERVAL_S}..{MAX_INTERVAL_S} s, "
                                 f"got {v!r}")

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def interval_us(self, is_day: bool) -> int:
        """The measurement interval of the day or night period, µs."""
        return round((self.day_interval_s if is_day else self.night_interval_s) * 1e6)

    def _boundaries(self, d: date) -> list[tuple[int, bool]]:
        """(UTC µs, starts the day period) of the local date ``d``."""
        z = self.zone
        return [(_us_of(datetime.combine(d, self.day_start, z)), True),
                (_us_of(datetime.combine(d, self.day_end, z)), False)]

    def period_at(self, t_us: int) -> Period:
        """The day or night period holding instant ``t_us`` (µs since the epoch, UTC)."""
        local = (_EPOCH + timedelta(microseconds=int(t_us))).astimezone(self.zone).date()
        marks = sorted(m for k in (-1, 0, 1) for m in self._boundaries(local + timedelta(days=k)))
        i = bisect.bisect_right(marks, (int(t_us), True))  # last boundary <= t_us
        start, is_day = marks[i - 1]
        return Period(is_day, start, marks[i][0])

    def next_due(self, after_us: int) -> int:
        """The first measurement time strictly after ``after_us`` (UTC µs)."""
        p = self.period_at(after_us)
        step = self.interval_us(p.is_day)
        due = p.start_us + ((after_us - p.start_us) // step + 1) * step
        return due if due < p.end_us else p.end_us


# -- scheduler ------------------------------------------------------------------------------
class ScheduleStatus(NamedTuple):
    """A snapshot of one patient's schedule."""

    patient_id: str
    config: BPScheduleConfig
    next_due_us: int  #: UTC µs of the next measurement
    next_in_day: bool  #: whether that measurement falls in the day period
    issued: int  #: measurement rounds issued by the schedule
    skipped: int  #: due times with no device to measure (resolver gave none or failed)
    outcomes: dict[str, int]  #: final command statuses of its rounds (CommandStatus values)
    last_progress: Progress | None  #: progress of the latest round
    last_note: str  #: why the latest due time issued nothing ("" if it did)


@dataclass
class _Schedule:
    patient_id: str
    config: BPScheduleConfig
    next_due_us: int
    issued: int = 0
    skipped: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    last_round: CommandRound | None = None
    last_note: str = ""


DeviceResolver = Callable[[str, int], Iterable[int]]


class BPScheduler:
    """NIBP schedules per patient and one-click measurements, through a CommandCenter.

    Parameters
    ----------
    center : CommandCenter
        Sends ``START_NIBP`` and tracks each device's ACKs.
    patient_devices : callable ``(patient_id, t_us) -> iterable of int``
        Device ids bound to a patient at ``t_us`` (UTC µs); may be empty.
    ward_devices : callable ``(ward_id, t_us) -> iterable of int``, optional
        Device ids of a ward's patients at ``t_us``; needed by :meth:`measure_ward_now`.
    clock : Clock, optional
        Default :class:`WallClock` on the center's loop; :class:`FakeClock` in tests.
    timeout_s : float
        Seconds a measurement may take from the command to the device's final ACK
        (inflation plus deflation is typically 30-60 s; default 180).
    on_round : callable ``(patient_id or None, ward_id or None, CommandRound)``, optional
        Called whenever a round is issued (scheduled or on request); its exceptions are
        logged, never raised.
    book : ScheduleBook, optional
        Keeps the schedules in the clinical database: :meth:`start` and :meth:`stop`
        write it before changing anything here, and the schedules recorded in it resume
        now (each at the next grid point of its period).

    Notes
    -----
    Callback-driven: one clock timer at the earliest due time of all schedules, no task.
    A resolver that raises or returns no device at a due time makes that time
    ``skipped`` (logged, noted in :meth:`status`) and the schedule goes on. A device that
    is still measuring answers BUSY; one without a session is NOT_CONNECTED: both are
    counted in ``outcomes``.
    """

    def __init__(self, center: CommandCenter, patient_devices: DeviceResolver, *,
                 ward_devices: DeviceResolver | None = None, clock: Clock | None = None,
                 timeout_s: float = 180.0,
                 on_round: Callable[[str | None, str | None, CommandRound], None] | None = None,
                 book: ScheduleBook | None = None) -> None:
        if not timeout_s > 0:
            raise UsageError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.center = center
        self.clock: Clock = clock if clock is not None else WallClock(center.loop)
        self.timeout_s = float(timeout_s)
        self._patient_devices = patient_devices
        self._ward_devices = ward_devices
        self._on_round = on_round
        self._schedules: dict[str, _Schedule] = {}
        self._timer: Timer | None = None
        self._timer_at: int | None = None
        self._closed = False
        self._book = book
        if book is not None:
            now = self.clock.now_us()
            for patient_id, config in book.load().items():
                self._schedules[patient_id] = _Schedule(patient_id, config,
                                                        config.next_due(now))
            self._rearm()

    # -- schedules --------------------------------------------------------------------------
    def start(self, patient_id: str, config: BPScheduleConfig,
              by: str = "system") -> ScheduleStatus:
        """Start (or reconfigure) the patient's schedule; the first measurement is at the
        next grid point of the current period (use :meth:`measure_now` for one at once).
        ``by`` (who asked) is recorded in the book, if there is one."""
        self._check_open()
        if not isinstance(patient_id, str) or not patient_id:
            raise UsageError(f"patient_id must be a non-empty str, got {patient_id!r}")
        if not isinstance(config, BPScheduleConfig):
            raise UsageError(f"config must be a BPScheduleConfig, got {type(config).__name__}")
        due = config.next_due(self.clock.now_us())
        if self._book is not None:
            self._book.put(patient_id, config, by)
        old = self._schedules.get(patient_id)
        if old is None:
            self._schedules[patient_id] = _Schedule(patient_id, config, due)
        else:
            old.config, old.next_due_us = config, due
        self._rearm()
        return self.status(patient_id)

    def stop(self, patient_id: str) -> bool:
        """Stop the patient's schedule (a running measurement goes on). Returns whether
        there was one."""
        if self._book is not None:
            self._book.remove(patient_id)
        removed = self._schedules.pop(patient_id, None) is not None
        if removed:
            self._rearm()
        return removed

    def status(self, patient_id: str) -> ScheduleStatus:
        """The patient's schedule (UsageError if none)."""
        s = self._schedules.get(patient_id)
        if s is None:
            raise UsageError(f"no BP schedule for patient {patient_id!r}")
        return ScheduleStatus(
            s.patient_id, s.config, s.next_due_us, s.config.period_at(s.next_due_us).is_day,
            s.issued, s.skipped, dict(s.outcomes),
            s.last_round.progress() if s.last_round is not None else None, s.last_note)

    def schedules(self) -> list[ScheduleStatus]:
        """Every schedule, by next due time."""
        return sorted((self.status(p) for p in self._schedules), key=lambda s: s.next_due_us)

    # -- on request ---------------------------------------------------------------------------
    def measure_now(self, patient_id: str) -> CommandRound:
        """Start a measurement on the patient's device(s) now.

        Raises
        ------
        UsageError
            No device is bound to the patient, or the scheduler is closed. An exception
            of the resolver itself is passed on (the caller asked for this patient).
        """
        self._check_open()
        devices = list(self._patient_devices(patient_id, self.clock.now_us()))
        if not devices:
            raise UsageError(f"no device is bound to patient {patient_id!r}")
        return self._issue(devices, patient_id, None)

    def measure_ward_now(self, ward_id: str) -> CommandRound:
        """Start a measurement on every device of the ward now; the round's
        :meth:`~vitalcore.server.commands.CommandRound.progress` says "n of N done".

        Raises
        ------
        UsageError
            No ``ward_devices`` resolver, an empty ward, or the scheduler is closed.
        """
        self._check_open()
        if self._ward_devices is None:
            raise UsageError("measure_ward_now needs a ward_devices resolver")
        devices = list(self._ward_devices(ward_id, self.clock.now_us()))
        if not devices:
            raise UsageError(f"ward {ward_id!r} has no device to measure")
        return self._issue(devices, None, ward_id)

    def close(self) -> None:
        """Stop every schedule and the timer (running measurements go on). Idempotent."""
        self._closed = True
        self._schedules.clear()
        self._rearm()

    # -- internals ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("the BP scheduler is closed")

    def _issue(self, devices: list[int], patient_id: str | None, ward_id: str | None,
               on_update: Callable[[CommandResult], None] | None = None) -> CommandRound:
        rnd = self.center.start(devices, CommandKind.START_NIBP, 0, self.timeout_s, on_update)
        if self._on_round is not None:
            try:
                self._on_round(patient_id, ward_id, rnd)
            except Exception:
                log.exception("BP scheduler on_round callback failed")
        return rnd

    def _rearm(self) -> None:
        due = min((s.next_due_us for s in self._schedules.values()), default=None)
        if due == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, due
        if due is not None:
            self._timer = self.clock.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = self.clock.now_us()
        for s in sorted(self._schedules.values(), key=lambda s: s.next_due_us):
            # on_round may stop or replace schedules while we go
            if s.next_due_us <= now and self._schedules.get(s.patient_id) is s:
                self._fire(s, now)
        self._rearm()

    def _fire(self, s: _Schedule, now: int) -> None:
        s.next_due_us = s.config.next_due(now)
        try:
            devices = list(self._patient_devices(s.patient_id, now))
        except Exception as exc:  # the organisation store's fault must not stop the others
            log.exception("resolving the devices of patient %r failed", s.patient_id)
            devices, note = [], f"device lookup failed: {exc!r}"
        else:
            note = "no device bound to the patient"
        if not devices:
            s.skipped += 1
            s.last_note = note
            return

        def count(result: CommandResult, s: _Schedule = s) -> None:
            if result.done:
                s.outcomes[result.status.value] += 1

        try:
            rnd = self._issue(devices, s.patient_id, None, count)
        except Exception as exc:  # e.g. the command center was closed under us
            log.exception("issuing the scheduled measurement of %r failed", s.patient_id)
            s.skipped += 1
            s.last_note = f"command not sent: {exc}"
            return
        for r in rnd.results:  # NOT_CONNECTED is final before any update
            if r.done:
                count(r)
        s.issued += 1
        s.last_round = rnd
        s.last_note = ""


def devices_from_spans(
        device_spans: Callable[[str, int, int], Iterable[DeviceSpan]]) -> DeviceResolver:
    """A ``patient_devices`` resolver from an organisation store's
    ``device_spans(patient_id, t0_us, t1_us)``: the devices bound at ``t_us``."""

    def resolve(patient_id: str, t_us: int) -> list[int]:
        return [sp.device_id for sp in device_spans(patient_id, t_us, t_us + 1)
                if sp.start_us <= t_us and (sp.end_us is None or t_us < sp.end_us)]

    return resolve
