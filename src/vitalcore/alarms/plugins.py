"""Custom alarm rules: the plugin API, entry-point loading and guarded execution.

A rule is an :class:`AlarmRule`: a name, the alarm codes it may report, how often it runs
per device, a time budget, and ``evaluate(ctx) -> iterable of PluginAlarm``. Write one with
the :func:`alarm_rule` decorator, register it with ``AlarmEngine.add_rule``, or ship it in
a package that declares it in the ``vitalcore.alarms`` entry-point group (the entry point
names an :class:`AlarmRule`, or a callable returning one or a list of them).

Every code a rule declares is *evaluated* at each run: a code it does not return is
absent, and the state machine ends its alarm (after the offset delay). Reported codes
become ``plugin.<rule name>.<code>``.

Execution and isolation
-----------------------
Rules never run on the commit path or the engine thread. Each rule has a worker thread;
the engine queues one job per device and period and collects results later, so a slow
rule delays only its own alarms. A job running longer than ``timeout_s`` is a failure:
its result is discarded whenever it comes, the worker is abandoned and a new one takes
the rule's remaining jobs. A rule that raises, times out or returns anything but a list
of :class:`PluginAlarm` with declared codes (rejected, logged, counted as ``garbage``)
fails; after ``max_failures`` failures in a row the rule is disabled and a technical
system alarm ``plugin.<name>.disabled`` is raised.

What "isolated" means here, honestly: a Python thread cannot be killed. An abandoned
worker that never returns keeps its thread (at most ``max_failures`` per rule, since the
rule is disabled after that) and whatever memory it holds. Threads share the GIL: a rule
spinning in pure Python takes CPU from everything (the interpreter still switches threads
every 5 ms, so ingest goes on, slower); a C extension that holds the GIL for long, a
segfault, ``os._exit`` or corruption of shared objects would affect the whole process.
True isolation needs a process per plugin (windows sent as Arrow IPC); that is not done.
Rules get copies of the windows, never the engine's own arrays.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, PluginError
from .model import AlarmCategory, AlarmPriority, Finding, check_code

__all__ = ["AlarmRule", "PluginAlarm", "RuleContext", "WaveSnapshot", "alarm_rule",
           "PluginHost", "ENTRY_POINT_GROUP", "load_entry_points"]

log = logging.getLogger("vitalcore.alarms.plugins")

ENTRY_POINT_GROUP = "vitalcore.alarms"
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_ALARMS_PER_RUN = 32


@dataclass(frozen=True, slots=True, eq=False)
class WaveSnapshot:
    """A copy of the recent samples of one waveform stream."""

    start_us: int  #: device time of values[0], µs
    fs: int  #: Hz
    values: np.ndarray  #: float32, ECG in mV, pleth in a.u.; NaN where data was missing


@dataclass(frozen=True, slots=True, eq=False)
class RuleContext:
    """What a rule sees of one patient (device) when it runs.

    Attributes
    ----------
    device_id : int
    now_us : int
        Server time of the run, µs.
    numerics : pyarrow.Table
        Recent numeric rows of the device: ts_us, code, status, value (unit of the code).
    latest : dict of int to (ts_us, value)
        Latest VALID value per :class:`~vitalcore.protocol.NumericCode`.
    ecg, pleth_ir : WaveSnapshot or None
        Recent primary ECG lead and infrared pleth (up to the engine's ring length).
    battery, status_flags : int
        From the latest status frame (255 / 0 when none was seen).
    """

    device_id: int
    now_us: int
    numerics: Any
    latest: dict[int, tuple[int, float]]
    ecg: WaveSnapshot | None
    pleth_ir: WaveSnapshot | None
    battery: int = 255
    status_flags: int = 0


@dataclass(frozen=True, slots=True)
class PluginAlarm:
    """A condition a rule reports (validated on construction: PluginError if impossible)."""

    code: str
    priority: AlarmPriority = AlarmPriority.MEDIUM
    message: str = ""
    value: float = math.nan
    limit: float = math.nan
    category: AlarmCategory = AlarmCategory.PHYSIOLOGICAL

    def __post_init__(self) -> None:
        try:
            check_code(self.code)
            object.__setattr__(self, "priority", AlarmPriority(self.priority))
            object.__setattr__(self, "category", AlarmCategory(self.category))
        except (ConfigError, ValueError, TypeError) as exc:
            raise PluginError(f"bad plugin alarm: {exc}") from None
        if not isinstance(self.message, str) or len(self.message) > 200:
            raise PluginError("message must be a str of at most 200 characters")
        for name in ("value", "limit"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise PluginError(f"{name} must be a number, got {v!r}")
            object.__setattr__(self, name, float(v))


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """A custom rule.

    Parameters
    ----------
    name : str
        ``[a-z][a-z0-9_]{0,31}``, unique per engine.
    codes : tuple of str
        Codes the rule may report (each a valid alarm code).
    evaluate : callable
        ``evaluate(ctx: RuleContext) -> iterable of PluginAlarm`` (or None: nothing).
    period_s : float
        Runs per device at most this often (0.25-3600 s), when the device has new data.
    timeout_s : float
        Time budget of one run (0.001-10 s).
    """

    name: str
    codes: tuple[str, ...]
    evaluate: Callable[[RuleContext], Iterable[PluginAlarm] | None] = field(repr=False)
    period_s: float = 1.0
    timeout_s: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or _NAME_RE.fullmatch(self.name) is None:
            raise ConfigError(f"rule name must match {_NAME_RE.pattern}, got {self.name!r}")
        if not isinstance(self.codes, tuple) or not self.codes:
            raise ConfigError(f"codes of rule {self.name} must be a non-empty tuple")
        for c in self.codes:
            check_code(c)
        if not callable(self.evaluate):
            raise ConfigError(f"evaluate of rule {self.name} must be callable")
        for name, lo, hi in (("period_s", 0.25, 3600.0), ("timeout_s", 0.001, 10.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ConfigError(f"{name} of rule {self.name} must be within {lo:g}-{hi:g} s")


def alarm_rule(name: str, codes: Iterable[str], *, period_s: float = 1.0,
               timeout_s: float = 0.25) -> Callable[[Callable], AlarmRule]:
    """Decorator: turn ``def f(ctx) -> list[PluginAlarm]`` into an :class:`AlarmRule`.

    Examples
    --------
    >>> from vitalcore.alarms.plugins import PluginAlarm, alarm_rule
    >>> @alarm_rule("shock_index", codes=("high",))
    ... def shock_index(ctx):
    ...     hr, sys = ctx.latest.get(1), ctx.latest.get(4)
    ...     if hr and sys and hr[1] / sys[1] > 1.0:
    ...         return [PluginAlarm("high", message=f"shock index {hr[1] / sys[1]:.2f}")]
    ...     return []
    """
    def wrap(fn: Callable) -> AlarmRule:
        return AlarmRule(name, tuple(codes), fn, period_s, timeout_s)
    return wrap


def load_entry_points(group: str = ENTRY_POINT_GROUP
                      ) -> tuple[list[AlarmRule], list[tuple[str, str]]]:
    """Rules declared in an entry-point group, and ``(entry point name, error)`` of those
    that failed to load (a broken plugin never stops the engine)."""
    rules: list[AlarmRule] = []
    errors: list[tuple[str, str]] = []
    for ep in importlib.metadata.entry_points(group=group):
        try:
            obj = ep.load()
            if not isinstance(obj, AlarmRule) and callable(obj):
                obj = obj()
            got = [obj] if isinstance(obj, AlarmRule) else list(obj)
            if not got or not all(isinstance(r, AlarmRule) for r in got):
                raise PluginError(f"entry point gives {obj!r}, not AlarmRule(s)")
            rules.extend(got)
        except Exception as exc:  # noqa: BLE001 - any failure of third-party code
            log.error("alarm plugin entry point %r failed to load: %s", ep.name, exc)
            errors.append((ep.name, f"{type(exc).__name__}: {exc}"))
    return rules, errors


def validate_output(rule: AlarmRule, out: object) -> list[PluginAlarm]:
    """The rule's output as a list of PluginAlarm, or PluginError saying why it is garbage."""
    if out is None:
        return []
    if isinstance(out, (str, bytes, dict)) or not isinstance(out, Iterable):
        raise PluginError(f"returned {type(out).__name__}, not a list of PluginAlarm")
    items = []
    for i, item in enumerate(out):
        if i >= MAX_ALARMS_PER_RUN:
            raise PluginError(f"returned more than {MAX_ALARMS_PER_RUN} alarms")
        if not isinstance(item, PluginAlarm):
            raise PluginError(f"returned a {type(item).__name__}, not a PluginAlarm")
        if item.code not in rule.codes:
            raise PluginError(f"returned undeclared code {item.code!r}")
        items.append(item)
    return items


class _Worker:
    """One thread running one rule's jobs in order; abandoned (never killed) when hung."""

    def __init__(self, host: PluginHost, state: _RuleState, jobs: deque) -> None:
        self.host = host
        self.state = state
        self.jobs = jobs
        self.cond = threading.Condition()
        self.current: tuple[int, int, float] | None = None  # device, ts_us, started
        self.abandoned = False
        self.thread = threading.Thread(target=self._run, name=f"vitalcore-rule-{state.rule.name}",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rule = self.state.rule
        while True:
            with self.cond:
                while not self.jobs and not self.abandoned:
                    self.cond.wait()
                if self.abandoned:
                    return
                ctx, ts_us = self.jobs.popleft()
                self.current = (ctx.device_id, ts_us, time.monotonic())
            t0 = time.perf_counter()
            try:
                result: object = validate_output(rule, rule.evaluate(ctx))
            except PluginError as exc:
                result = exc
            except BaseException as exc:  # noqa: BLE001 - contain everything the plugin does
                result = exc
            elapsed = time.perf_counter() - t0
            with self.cond:
                self.current = None
                if self.abandoned:
                    return  # declared hung: the result is late and discarded
            self.host._done(self.state, ctx.device_id, ts_us, result, elapsed)


class _RuleState:
    def __init__(self, rule: AlarmRule) -> None:
        self.rule = rule
        self.worker: _Worker | None = None
        self.failures = 0  # in a row
        self.disabled = ""
        self.next_run: dict[int, float] = {}
        self.counters = dict.fromkeys(("runs", "ok", "errors", "timeouts", "garbage",
                                       "skipped", "abandoned_threads"), 0)
        self.max_s = 0.0


class PluginHost:
    """Runs rules off the engine thread, with deadlines and failure accounting.

    Parameters
    ----------
    max_failures : int
        Consecutive failures after which a rule is disabled.
    max_queued : int
        Jobs waiting per rule; beyond that a device's run is skipped (counted).
    """

    def __init__(self, max_failures: int = 3, max_queued: int = 20_000) -> None:
        if not 1 <= max_failures <= 100:
            raise ConfigError("max_failures must be within 1-100")
        self.max_failures = max_failures
        self.max_queued = max_queued
        self.rules: dict[str, _RuleState] = {}
        self._results: deque = deque()
        self._log_budget: dict[str, int] = {}

    def add(self, rule: AlarmRule) -> None:
        if not isinstance(rule, AlarmRule):
            raise ConfigError(f"expected an AlarmRule, got {rule!r}")
        if rule.name in self.rules:
            raise ConfigError(f"a rule named {rule.name!r} is already registered")
        st = _RuleState(rule)
        st.worker = _Worker(self, st, deque())
        self.rules[rule.name] = st

    def due(self, name: str, device_id: int, now: float) -> bool:
        st = self.rules[name]
        if st.disabled:
            return False
        return now >= st.next_run.get(device_id, 0.0)

    def submit(self, name: str, ctx: RuleContext, ts_us: int, now: float) -> None:
        """Queue a run of rule ``name`` on ``ctx`` (data time ``ts_us``)."""
        st = self.rules[name]
        st.next_run[ctx.device_id] = now + st.rule.period_s
        w = st.worker
        with w.cond:
            if len(w.jobs) >= self.max_queued:
                st.counters["skipped"] += 1
                return
            w.jobs.append((ctx, ts_us))
            w.cond.notify()

    def _done(self, st: _RuleState, device_id: int, ts_us: int, result: object,
              elapsed: float) -> None:  # on the worker thread
        self._results.append((st, device_id, ts_us, result, elapsed))

    def _fail(self, st: _RuleState, kind: str, why: str) -> str | None:
        st.counters[kind] += 1
        st.failures += 1
        n = st.counters[kind]
        if n & (n - 1) == 0:  # 1st, 2nd, 4th...: visible, never a flood
            log.error("alarm rule %r: %s (%s %d)", st.rule.name, why, kind, n)
        if st.failures >= self.max_failures and not st.disabled:
            st.disabled = f"{st.failures} failures in a row, last: {why}"
            log.error("alarm rule %r disabled: %s", st.rule.name, st.disabled)
            w = st.worker
            with w.cond:
                w.jobs.clear()
                w.abandoned = True
                w.cond.notify()
            return st.rule.name
        return None

    def poll(self, now: float) -> tuple[list[tuple[AlarmRule, int, int, list[PluginAlarm]]],
                                        list[str]]:
        """Collect finished runs and detect hung ones.

        Returns ``(results, newly disabled rule names)``; each result is ``(rule,
        device_id, ts_us, alarms)`` of a successful run.
        """
        out = []
        disabled = []
        while self._results:
            st, dev, ts_us, result, elapsed = self._results.popleft()
            if st.disabled:  # a run that was under way when the rule was disabled
                continue
            st.counters["runs"] += 1
            st.max_s = max(st.max_s, elapsed)
            if elapsed > st.rule.timeout_s:
                result = TimeoutError(f"run took {elapsed * 1e3:.0f} ms "
                                      f"(budget {st.rule.timeout_s * 1e3:.0f} ms)")
            if isinstance(result, BaseException):
                kind = ("garbage" if isinstance(result, PluginError)
                        else "timeouts" if isinstance(result, TimeoutError) else "errors")
                name = self._fail(st, kind, f"{type(result).__name__}: {result}")
                if name:
                    disabled.append(name)
                continue
            st.failures = 0
            st.counters["ok"] += 1
            out.append((st.rule, dev, ts_us, result))
        for st in self.rules.values():
            w = st.worker
            cur = w.current
            if st.disabled or cur is None or now - cur[2] <= st.rule.timeout_s:
                continue
            with w.cond:  # hung: abandon the thread, a new one takes the remaining jobs
                if w.current is not cur:
                    continue
                w.abandoned = True
                jobs = deque(w.jobs)
                w.jobs.clear()
                w.cond.notify()
            st.counters["abandoned_threads"] += 1
            st.worker = _Worker(self, st, jobs)
            name = self._fail(st, "timeouts", f"run on device {cur[0]:016x} still running "
                                              f"after {st.rule.timeout_s * 1e3:.0f} ms: abandoned")
            if name:
                disabled.append(name)
        return out, disabled

    def findings(self, rule: AlarmRule, alarms: list[PluginAlarm], ts_us: int
                 ) -> tuple[tuple[str, ...], list[Finding]]:
        """Evaluated codes and findings (namespaced ``plugin.<rule>.<code>``) of one run."""
        pre = f"plugin.{rule.name}."
        return (tuple(pre + c for c in rule.codes),
                [Finding(pre + a.code, a.priority, a.category,
                         a.message or f"{rule.name}: {a.code}", ts_us, a.value, a.limit)
                 for a in alarms])

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: {**st.counters, "disabled": st.disabled, "max_ms": st.max_s * 1e3}
                for name, st in self.rules.items()}

    def close(self) -> None:
        for st in self.rules.values():
            w = st.worker
            with w.cond:
                w.abandoned = True
                w.jobs.clear()
                w.cond.notify()
