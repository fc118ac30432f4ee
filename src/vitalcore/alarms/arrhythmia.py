"""Arrhythmia alarms from the streaming ECG detectors of :mod:`vitalcore.dsp`.

One :class:`EcgAnalyser` per device runs a :class:`~vitalcore.dsp.QRSDetector` with VF
suppression (its VF/VFL analysis runs in the same kernel) on the device's primary ECG
lead as committed frames arrive, and judges, about once per second of ECG:

=================  ========  ================================================================
code               priority  condition
=================  ========  ================================================================
``asystole``       HIGH      no beat for ``asystole_s`` (default 4 s) of usable ECG
``vfib``           HIGH      a VF/VFL episode (>= 3 consecutive 2 s VF windows, docs/dsp.md)
                             whose last 2 s span at least ``vf_min_mv`` (0.1 mV, 5-95 %
                             percentile range): the published VF criteria are amplitude-free
                             and call low-amplitude noise VF; below it, it is asystole
``brady.extreme``  HIGH      averaged HR (last 8 RR) below ``brady_bpm`` (default 40)
``tachy.extreme``  HIGH      averaged HR above ``tachy_bpm`` (default 160)
``pause``          MEDIUM    last RR interval longer than ``pause_s`` (default 3 s)
=================  ========  ================================================================

Decision lag: with VF suppression the detector holds each beat 3-5 s (up to 7 s while a
short run of VF windows is pending) until the VF decision covering it is final, so beats
are "decided" up to ``beat_lag_s`` (default 5 s) late. Asystole is therefore called when
no beat was decided for ``asystole_s + beat_lag_s`` samples: the alarm comes about
``asystole_s + 5 s`` after the last beat (about 9 s with the defaults; the onset time it
reports is the data time of that decision). VF/VFL is called when the detector's latest
decided windows form an episode: about 4 s of fibrillation plus 3 s of decision lag.

Flat, clipped or non-finite ECG (leads off: :func:`vitalcore.dsp.ecg_quality`) is not
asystole: a bad 2 s window restarts the asystole clock, as do a detector restart (a hole
over 2 s in device time or a new sampling rate) and its 2 s learning phase. A device that
reports LEADS_OFF in its status does the same (the engine calls :meth:`leads_off`).

Not done: monomorphic ventricular tachycardia with discrete QRS complexes is not told
apart from other fast rhythms (vitalcore.dsp has no beat morphology classification); it
raises ``tachy.extreme`` by rate. VF/VFL-like polymorphic VT raises ``vfib``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dsp import QRSDetector, ecg_quality
from ..dsp.quality import LEADS_OFF, NOISY
from ..errors import ConfigError
from .model import AlarmCategory, AlarmPriority, Finding, Timing
from .windows import WaveRing

__all__ = ["ArrhythmiaConfig", "EcgAnalyser", "ARRHYTHMIA_CODES", "ARRHYTHMIA_TIMING"]

ARRHYTHMIA_CODES = ("asystole", "vfib", "brady.extreme", "tachy.extreme", "pause")

#: Per-code timing defaults (the others use the ARRHYTHMIA category default: latching).
ARRHYTHMIA_TIMING = {"pause": Timing(onset_delay_s=0.0, offset_delay_s=2.0, latching=False)}

_MV_PER_UV = 1e-3
#: ECG queued per device beyond this (s) while the engine is behind is shed, oldest first.
MAX_QUEUED_S = 30.0
_A = AlarmCategory.ARRHYTHMIA
_H, _M = AlarmPriority.HIGH, AlarmPriority.MEDIUM


@dataclass(frozen=True, slots=True)
class ArrhythmiaConfig:
    """Thresholds of the arrhythmia rules (see the module docstring)."""

    asystole_s: float = 4.0
    brady_bpm: float = 40.0
    tachy_bpm: float = 160.0
    pause_s: float = 3.0
    beat_lag_s: float = 5.0
    ring_s: float = 8.0
    vf_min_mv: float = 0.1

    def __post_init__(self) -> None:
        checks = (("asystole_s", 2.0, 15.0), ("brady_bpm", 15.0, 100.0),
                  ("tachy_bpm", 100.0, 350.0), ("pause_s", 1.5, 15.0),
                  ("beat_lag_s", 0.0, 10.0), ("ring_s", 2.0, 60.0),
                  ("vf_min_mv", 0.0, 2.0))
        for name, lo, hi in checks:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ConfigError(f"{name} must be within {lo:g}-{hi:g}, got {v!r}")
        if self.pause_s >= self.asystole_s + self.beat_lag_s:
            raise ConfigError("pause_s must be shorter than asystole_s + beat_lag_s")


class EcgAnalyser:
    """Arrhythmia analysis of one device's primary ECG lead.

    :meth:`add` every committed frame of the lead (cheap: it only queues it); once a
    second of ECG is queued :meth:`add` returns True and :meth:`process` runs the
    detector on it and returns ``(data time µs, evaluated codes, findings)`` for the
    state machine. Processing a second at a time keeps the per-frame cost of the engine
    at a list append (alarms come at most 1 s later; the detector's own decision lag
    is 3-5 s). ``quality_flags`` holds the flags of the newest 2 s window
    (:mod:`vitalcore.dsp.quality`, judged every 2 s), read by the technical rules; ``gap_s`` the longest
    hole in device time since the last :meth:`process`.
    """

    def __init__(self, config: ArrhythmiaConfig, channel: int) -> None:
        self.config = config
        self.channel = channel
        self.ring = WaveRing(config.ring_s)
        self.det: QRSDetector | None = None
        self.beats: list[int] = []  # last decided beats (detector sample indices)
        self._recent = np.zeros(0)  # the newest 2 s of ECG, mV
        self.clock_from = 0  # sample index from which silence counts as asystole
        self.next_eval = 0
        self.quality_flags = 0
        self.gap_s = 0.0
        self.restarts = 0
        self.late_frames = 0
        self.shed_frames = 0
        self._judged = 0
        self._pending: list[tuple[int, np.ndarray, float, float, int]] = []
        self._pending_n = 0

    def leads_off(self) -> None:
        """The device reports leads off: restart the asystole clock."""
        self.clock_from = self.ring.n

    def add(self, ts_us: int, raw: np.ndarray, gain: float, offset: float, fs: int) -> bool:
        """Queue one frame (raw int16 counts, ``value = raw * gain + offset`` µV).

        Returns True when a second or more of ECG is queued (call :meth:`process`).
        """
        self._pending.append((ts_us, raw, gain, offset, fs))
        self._pending_n += len(raw)
        while self._pending_n > MAX_QUEUED_S * fs:  # the engine is far behind: shed
            self._pending_n -= len(self._pending.pop(0)[1])  # the oldest (counted)
            self.shed_frames += 1
        return self._pending_n >= fs

    def process(self) -> tuple[int, tuple[str, ...], list[Finding]] | None:
        """Run the queued frames through the detector; judge once per second of ECG."""
        parts: list[tuple[np.ndarray, float, float]] = []  # (samples, gain, offset)
        fs = self.ring.fs
        for ts_us, raw, gain, offset, f in self._pending:
            hole, gap_s, restarted, late = self.ring.place(ts_us, len(raw), f)
            if late:  # a retransmission older than what was analysed
                self.late_frames += 1
                continue
            self.gap_s = max(self.gap_s, gap_s)
            if restarted or self.det is None:  # a hole > 2 s or a new fs: start over (the
                parts = []  # < 1 s queued before the hole is not analysed)
                fs = f
                self._restart(fs)
            if hole:
                parts.append((np.full(hole, np.nan), 1e3, 0.0))  # NaN stays NaN in mV
            parts.append((raw, gain, offset))
        self._pending.clear()
        self._pending_n = 0
        if parts and self.det is not None:
            g0, o0 = parts[0][1], parts[0][2]
            if all(g == g0 and o == o0 for _, g, o in parts):  # the usual case: one scale
                x = np.concatenate([p for p, _, _ in parts]) * (g0 * _MV_PER_UV) + o0 * _MV_PER_UV
            else:
                x = np.concatenate([(p * g + o) * _MV_PER_UV for p, g, o in parts])
            self._run(x)
        if self.det is None or self.ring.n < self.next_eval:
            return None
        self.next_eval = self.ring.n + fs
        return self._judge(fs)

    def _restart(self, fs: int) -> None:
        self.det = QRSDetector(fs)  # ~1 ms of CPU (its filter lag is computed in Python)
        self.beats: list[int] = []
        self.clock_from = round(2.0 * fs)  # learning phase
        self.next_eval = fs
        self.restarts += 1
        self._recent = np.zeros(0)
        self.quality_flags = 0
        self._judged = 0

    def _run(self, x: np.ndarray) -> None:
        self.ring.write(x)
        beats = self.det.process(x)
        if beats.size:
            self.beats = (self.beats + beats.tolist())[-10:]
        two = 2 * round(self.det.fs)
        self._recent = np.concatenate([self._recent[-two:], x])[-two:]

    def _judge(self, fs: int) -> tuple[int, tuple[str, ...], list[Finding]]:
        c = self.config
        n = self.ring.n
        last2 = self._recent
        self._judged += 1
        if self._judged % 2 == 0:  # quality of consecutive 2 s windows: every 2nd second
            q = ecg_quality(last2, float(fs), 2.0).flags if len(last2) >= 2 * fs else ()
            self.quality_flags = int(q[-1]) if len(q) else 0
        if self.quality_flags & LEADS_OFF:
            self.clock_from = n
        ts = self.ring.time_of(n)
        out: list[Finding] = []
        vf = self.det is not None and self.det.in_vf
        if vf:  # the VF criteria are amplitude-free: low-amplitude noise is asystole
            span = np.nanpercentile(last2, [5, 95]) if np.isfinite(last2).any() else (0, 0)
            vf = bool(span[1] - span[0] >= c.vf_min_mv)
        if vf:  # beats are muted in VF: silence after it counts from its end
            out.append(Finding("vfib", _H, _A, "VF/VFL", ts))
            self.clock_from = n
        last = self.beats[-1] if self.beats else -1
        quiet = (n - max(last, self.clock_from)) / fs
        asystole = not vf and quiet > c.asystole_s + c.beat_lag_s
        if asystole:
            out.append(Finding("asystole", _H, _A,
                               f"asystole: no beat for {quiet - c.beat_lag_s:.1f} s", ts,
                               quiet - c.beat_lag_s, c.asystole_s))
        usable = [b for b in self.beats if b >= self.clock_from]
        if not vf and not asystole and len(usable) >= 2:
            rr = [(b - a) / fs for a, b in zip(usable, usable[1:], strict=False)]
            # a pause long enough to be asystole was (or will be) reported as asystole
            if c.pause_s < rr[-1] <= c.asystole_s + c.beat_lag_s:
                out.append(Finding("pause", _M, _A, f"pause {rr[-1]:.1f} s", ts,
                                   rr[-1], c.pause_s))
            regular = [r for r in rr if r <= c.pause_s][-8:]  # pauses are not part of the rate
            if len(regular) >= 4:
                hr = 60.0 * len(regular) / sum(regular)
                if hr < c.brady_bpm:
                    out.append(Finding("brady.extreme", _H, _A, f"extreme bradycardia "
                                       f"{hr:.0f} bpm", ts, hr, c.brady_bpm))
                elif hr > c.tachy_bpm:
                    out.append(Finding("tachy.extreme", _H, _A, f"extreme tachycardia "
                                       f"{hr:.0f} bpm", ts, hr, c.tachy_bpm))
        return ts, ARRHYTHMIA_CODES, out

    @property
    def noisy(self) -> bool:
        return bool(self.quality_flags & NOISY)

    @property
    def signal_lost(self) -> bool:
        return bool(self.quality_flags & LEADS_OFF)

