"""Alarm data model: priorities, states, findings, alarms, events and timing configuration.

A *rule* (physiological limit, arrhythmia, technical, plugin) looks at data and reports
the conditions it sees as :class:`Finding` objects. The state machine of
:mod:`vitalcore.alarms.semantics` turns the findings of one ``(device, code)`` key over
time into one :class:`Alarm` (onset delay, hysteresis, latching, acknowledgement,
silence, escalation) and reports every change as an :class:`AlarmEvent`.

Times: ``*_us`` are µs since the Unix epoch. Finding and onset times are device time
(the time of the data); raise, acknowledge, silence and escalation times are server
wall-clock time.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ConfigError

__all__ = [
    "AlarmPriority",
    "AlarmCategory",
    "AlarmState",
    "EventKind",
    "Finding",
    "Timing",
    "EscalationStep",
    "Alarm",
    "Evidence",
    "AlarmEvent",
    "SYSTEM_DEVICE",
    "CODE_RE",
    "check_code",
]

#: Device id of alarms that belong to no device (storage trouble, a disabled plugin).
SYSTEM_DEVICE = 0

#: Alarm codes: lower-case words, digits, ``_ . -``, 1-96 characters.
CODE_RE = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,95}")


def check_code(code: object) -> str:
    """Return ``code`` if it is a valid alarm code, else raise ConfigError."""
    if not isinstance(code, str) or CODE_RE.fullmatch(code) is None:
        raise ConfigError(f"alarm code must match {CODE_RE.pattern}, got {code!r}")
    return code


class AlarmPriority(enum.IntEnum):
    """IEC 60601-1-8 alarm priority (higher value, more urgent)."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


class AlarmCategory(enum.StrEnum):
    PHYSIOLOGICAL = "physiological"  #: a vital sign outside its limits
    ARRHYTHMIA = "arrhythmia"  #: a rhythm found in the ECG (asystole, VF, ...)
    TECHNICAL = "technical"  #: equipment or data trouble (leads off, offline, ...)


class AlarmState(enum.StrEnum):
    """State of an alarm (see docs/alarms.md for the transitions)."""

    ACTIVE = "active"  #: condition present, not acknowledged (audio on unless silenced)
    ACKNOWLEDGED = "acknowledged"  #: condition present, acknowledged by a user
    LATCHED = "latched"  #: condition gone, alarm kept until a user acknowledges it
    ENDED = "ended"  #: final: condition gone (and acknowledged if it latched)


class EventKind(enum.StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"  #: audio paused for a while (not an acknowledgement)
    UNSILENCED = "unsilenced"  #: the audio pause ran out while the alarm was active
    ESCALATED = "escalated"  #: unacknowledged too long: sent to more people
    LATCHED = "latched"  #: condition ended, alarm stays until acknowledged
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class Finding:
    """A condition a rule sees now.

    Attributes
    ----------
    code : str
        Alarm code (see :data:`CODE_RE`), e.g. ``"hr.high"``, ``"asystole"``.
    priority : AlarmPriority
    category : AlarmCategory
    message : str
        Human-readable text (at most 200 characters).
    ts_us : int
        Time of the data that shows the condition (device time), µs.
    value, limit : float
        Measured value and the limit it crossed, in the unit of the measurement
        (NaN when not applicable).
    """

    code: str
    priority: AlarmPriority
    category: AlarmCategory
    message: str
    ts_us: int
    value: float = math.nan
    limit: float = math.nan


def _check_delay(name: str, v: object, hi: float = 3600.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= hi:
        raise ConfigError(f"{name} must be a number of seconds in 0..{hi:g}, got {v!r}")
    return float(v)


@dataclass(frozen=True, slots=True)
class Timing:
    """How the state machine treats one alarm code.

    Attributes
    ----------
    onset_delay_s : float
        The condition must be seen continuously for this long (data time) before the
        alarm is raised (0: at once). Filters transients.
    offset_delay_s : float
        The condition must be absent continuously for this long before the alarm ends:
        time hysteresis, so an alarm does not chatter around its threshold.
    latching : bool
        After the condition ends the alarm stays (LATCHED) until a user acknowledges it.
    """

    onset_delay_s: float = 0.0
    offset_delay_s: float = 2.0
    latching: bool = False

    def __post_init__(self) -> None:
        _check_delay("onset_delay_s", self.onset_delay_s)
        _check_delay("offset_delay_s", self.offset_delay_s)
        if not isinstance(self.latching, bool):
            raise ConfigError(f"latching must be a bool, got {self.latching!r}")


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """Send a still unacknowledged alarm to ``targets`` ``after_s`` seconds after it was raised."""

    after_s: float
    targets: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_delay("after_s", self.after_s, 86400.0)
        if self.after_s <= 0:
            raise ConfigError("escalation after_s must be > 0")
        if (not isinstance(self.targets, tuple) or not self.targets
                or not all(isinstance(t, str) and t for t in self.targets)):
            raise ConfigError(f"targets must be a non-empty tuple of names, got {self.targets!r}")


@dataclass(frozen=True, slots=True, eq=False)
class Evidence:
    """What the engine saw when an alarm was raised.

    Attributes
    ----------
    numerics : dict of int to (ts_us, value)
        Latest value of each numeric code of the device (units of the code).
    wave_type : int
        :class:`~vitalcore.protocol.FrameType` of the snippet (0: no snippet).
    wave_fs : int
        Sampling rate of the snippet, Hz.
    wave_start_us : int
        Device time of the first snippet sample, µs.
    wave : numpy.ndarray of float32
        Snippet in physical units (ECG mV, pleth a.u.); NaN where data was missing.
    """

    numerics: dict[int, tuple[int, float]] = field(default_factory=dict)
    wave_type: int = 0
    wave_fs: int = 0
    wave_start_us: int = 0
    wave: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))


@dataclass(slots=True)
class Alarm:
    """One alarm: a ``(device_id, code)`` condition from raise to end.

    ``alarm_id`` is unique within an engine run (``"<device hex>-<code>-<n>"``).
    Snapshots handed out by the engine are copies (:meth:`copy`).
    """

    alarm_id: str
    device_id: int
    code: str
    category: AlarmCategory
    priority: AlarmPriority
    message: str
    onset_us: int  #: device time the condition was first seen
    raised_us: int  #: server time the alarm was raised
    value: float = math.nan
    limit: float = math.nan
    state: AlarmState = AlarmState.ACTIVE
    latching: bool = False
    silenced_until_us: int = 0  #: server time the audio pause ends (0: not silenced)
    silenced_by: str = ""
    acked_by: str = ""
    acked_us: int = 0
    escalation_level: int = 0  #: escalation steps taken
    condition_end_us: int = 0  #: device time the condition was last seen (0: present)
    ended_us: int = 0  #: server time it ended

    def copy(self) -> Alarm:
        return replace(self)

    @property
    def audible(self) -> bool:
        """Whether the alarm should sound now (active, latched, not silenced)."""
        return self.state in (AlarmState.ACTIVE, AlarmState.LATCHED) and not self.silenced_until_us


@dataclass(frozen=True, slots=True, eq=False)
class AlarmEvent:
    """One change of one alarm, as logged and published.

    Attributes
    ----------
    seq : int
        Event number within the engine run (increasing).
    kind : EventKind
    ts_us : int
        Server wall-clock time of the change, µs.
    alarm : Alarm
        Snapshot of the alarm after the change.
    user : str
        Who acknowledged or silenced ('' otherwise).
    targets : tuple of str
        Escalation targets (ESCALATED events).
    evidence : Evidence or None
        Numerics and waveform snippet (RAISED events).
    """

    seq: int
    kind: EventKind
    ts_us: int
    alarm: Alarm
    user: str = ""
    targets: tuple[str, ...] = ()
    evidence: Evidence | None = None
