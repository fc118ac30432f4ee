"""IEC 60601-1-8 style alarm state machine: onset delay, hysteresis, latching, ack, silence, escalation.

One :class:`AlarmStates` holds every alarm of an engine, keyed by ``(device_id, code)``.
Rules report, per evaluation, which codes they *evaluated* and which of those they found
present (:meth:`AlarmStates.observe`); a code evaluated and not found is absent. Time
passes for the server-clock parts (silence expiry, escalation) in :meth:`AlarmStates.tick`.

Transitions (``t`` is the data time of the evaluation, µs)::

    (none) --present for >= onset_delay--> ACTIVE --ack--> ACKNOWLEDGED
    ACTIVE --absent for >= offset_delay--> ENDED, or LATCHED if the code latches
    ACKNOWLEDGED --absent for >= offset_delay--> ENDED
    LATCHED --ack--> ENDED;  LATCHED --present--> ACTIVE (raised again, same alarm)

A presence shorter than the onset delay raises nothing; an absence shorter than the
offset delay ends nothing (no chatter). Silence pauses the audio of an ACTIVE/LATCHED
alarm for a while; it is not an acknowledgement. A HIGH-priority alarm that is still
unacknowledged ``after_s`` seconds after it was raised is escalated to each
:class:`~vitalcore.alarms.model.EscalationStep`'s targets, in order.

Not thread-safe: the engine serialises calls under its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ..errors import AlarmError, UsageError
from .model import (
    Alarm,
    AlarmCategory,
    AlarmEvent,
    AlarmPriority,
    AlarmState,
    EscalationStep,
    EventKind,
    Evidence,
    Finding,
    Timing,
)

__all__ = ["AlarmStates", "DEFAULT_TIMING", "MAX_SILENCE_S"]

#: Timing per category, used for codes without an entry of their own.
DEFAULT_TIMING: dict[AlarmCategory, Timing] = {
    AlarmCategory.PHYSIOLOGICAL: Timing(onset_delay_s=5.0, offset_delay_s=2.0),
    AlarmCategory.ARRHYTHMIA: Timing(onset_delay_s=0.0, offset_delay_s=2.0, latching=True),
    AlarmCategory.TECHNICAL: Timing(onset_delay_s=2.0, offset_delay_s=2.0),
}

#: Longest audio pause a user may ask for, s.
MAX_SILENCE_S = 600.0


class _Track:
    __slots__ = ("present_since", "absent_since", "alarm")

    def __init__(self) -> None:
        self.present_since: int | None = None
        self.absent_since: int | None = None
        self.alarm: Alarm | None = None


def _check_user(user: object) -> str:
    if not isinstance(user, str) or not user.strip() or len(user) > 128:
        raise UsageError(f"user must be a non-empty name of at most 128 characters, got {user!r}")
    return user


class AlarmStates:
    """Every alarm of an engine and the rules for its changes.

    Parameters
    ----------
    timing : mapping of code to Timing, optional
        Per-code timing; other codes use :data:`DEFAULT_TIMING` of their category.
    escalation : sequence of EscalationStep
        Steps for unacknowledged HIGH-priority alarms, in increasing ``after_s``.
    evidence : callable, optional
        ``evidence(alarm) -> Evidence | None`` attached to RAISED events.
    """

    def __init__(self, timing: Mapping[str, Timing] | None = None,
                 escalation: Iterable[EscalationStep] = (),
                 evidence: Callable[[Alarm], Evidence | None] | None = None) -> None:
        self.timing = dict(timing or {})
        for code, t in self.timing.items():
            if not isinstance(t, Timing):
                raise UsageError(f"timing of {code!r} must be a Timing, got {t!r}")
        steps = tuple(escalation)
        if any(not isinstance(s, EscalationStep) for s in steps):
            raise UsageError("escalation must be a sequence of EscalationStep")
        if any(a.after_s >= b.after_s for a, b in zip(steps, steps[1:], strict=False)):
            raise UsageError("escalation steps must have increasing after_s")
        self.escalation = steps
        self._evidence = evidence
        self._tracks: dict[tuple[int, str], _Track] = {}
        self._by_id: dict[str, Alarm] = {}
        self._n = 0
        self._seq = 0

    # -- queries ----------------------------------------------------------------------------
    def timing_for(self, code: str, category: AlarmCategory) -> Timing:
        return self.timing.get(code) or DEFAULT_TIMING[category]

    def active(self, device_id: int | None = None) -> list[Alarm]:
        """Copies of the alarms not ENDED (of one device, or all), oldest first."""
        out = [a.copy() for a in self._by_id.values()
               if device_id is None or a.device_id == device_id]
        out.sort(key=lambda a: (a.raised_us, a.alarm_id))
        return out

    def count(self) -> int:
        """Number of current (not ended) alarms."""
        return len(self._by_id)

    def tracked(self, device_id: int, code: str) -> bool:
        """Whether ``code`` of the device is present, pending or alarming (any state)."""
        return (device_id, code) in self._tracks

    def in_condition(self, device_id: int, code: str) -> bool:
        """Whether ``code`` of the device is present or alarming (for value hysteresis)."""
        tr = self._tracks.get((device_id, code))
        if tr is None:
            return False
        a = tr.alarm
        return tr.present_since is not None or (a is not None and a.state is not AlarmState.LATCHED)

    def get(self, alarm_id: str) -> Alarm:
        try:
            return self._by_id[alarm_id]
        except KeyError:
            raise AlarmError(f"no current alarm {alarm_id!r} (unknown or ended)") from None

    # -- events -------------------------------------------------------------------------------
    def _event(self, kind: EventKind, alarm: Alarm, now_us: int, *, user: str = "",
               targets: tuple[str, ...] = (), evidence: Evidence | None = None) -> AlarmEvent:
        self._seq += 1
        return AlarmEvent(self._seq, kind, now_us, alarm.copy(), user, targets, evidence)

    def _raise(self, key: tuple[int, str], tr: _Track, f: Finding, now_us: int,
               latching: bool) -> AlarmEvent:
        self._n += 1
        a = Alarm(
            alarm_id=f"{key[0]:016x}-{f.code}-{self._n}", device_id=key[0], code=f.code,
            category=f.category, priority=f.priority, message=f.message,
            onset_us=tr.present_since if tr.present_since is not None else f.ts_us,
            raised_us=now_us, value=f.value, limit=f.limit, latching=latching,
        )
        tr.alarm = a
        self._by_id[a.alarm_id] = a
        ev = self._evidence(a) if self._evidence is not None else None
        return self._event(EventKind.RAISED, a, now_us, evidence=ev)

    def _end(self, key: tuple[int, str], tr: _Track, now_us: int) -> None:
        a = tr.alarm
        assert a is not None
        a.state = AlarmState.ENDED
        a.ended_us = now_us
        a.silenced_until_us = 0
        tr.alarm = None
        self._by_id.pop(a.alarm_id, None)
        if tr.present_since is None and tr.absent_since is None:
            self._tracks.pop(key, None)

    # -- rule results -------------------------------------------------------------------------
    def observe(self, device_id: int, evaluated: Iterable[str], findings: Iterable[Finding],
                ts_us: int, now_us: int) -> list[AlarmEvent]:
        """Apply one evaluation of a rule.

        Parameters
        ----------
        device_id : int
        evaluated : iterable of str
            Codes the rule judged at data time ``ts_us``; those without a finding are absent.
        findings : iterable of Finding
            Conditions present (their codes need not be listed in ``evaluated``).
        ts_us : int
            Data time of the evaluation, µs (used for onset and offset delays).
        now_us : int
            Server time, µs (raise, end and event times).
        """
        events: list[AlarmEvent] = []
        found = {f.code: f for f in findings}
        for f in found.values():
            self._present(device_id, f, now_us, events)
        for code in evaluated:
            if code not in found:
                self._absent(device_id, code, ts_us, now_us, events)
        return events

    def _present(self, device_id: int, f: Finding, now_us: int, events: list[AlarmEvent]) -> None:
        key = (device_id, f.code)
        tr = self._tracks.get(key)
        if tr is None:
            tr = self._tracks[key] = _Track()
        tr.absent_since = None
        a = tr.alarm
        timing = self.timing_for(f.code, f.category)
        if a is None:
            if tr.present_since is None or f.ts_us < tr.present_since:
                tr.present_since = f.ts_us
            if f.ts_us - tr.present_since >= timing.onset_delay_s * 1e6:
                events.append(self._raise(key, tr, f, now_us, timing.latching))
            return
        a.value, a.limit, a.message = f.value, f.limit, f.message
        if a.state is AlarmState.LATCHED:  # came back before anyone acknowledged it
            a.state = AlarmState.ACTIVE
            a.condition_end_us = 0
            events.append(self._event(EventKind.RAISED, a, now_us))

    def _absent(self, device_id: int, code: str, ts_us: int, now_us: int,
                events: list[AlarmEvent]) -> None:
        key = (device_id, code)
        tr = self._tracks.get(key)
        if tr is None:
            return
        tr.present_since = None
        a = tr.alarm
        if a is None:
            self._tracks.pop(key, None)
            return
        if a.state is AlarmState.LATCHED:
            return
        if tr.absent_since is None or ts_us < tr.absent_since:
            tr.absent_since = ts_us
        if ts_us - tr.absent_since < self.timing_for(code, a.category).offset_delay_s * 1e6:
            return
        tr.absent_since = None
        a.condition_end_us = ts_us
        if a.latching and a.state is AlarmState.ACTIVE:
            a.state = AlarmState.LATCHED
            events.append(self._event(EventKind.LATCHED, a, now_us))
            return
        self._end(key, tr, now_us)
        events.append(self._event(EventKind.ENDED, a, now_us))

    # -- user actions ---------------------------------------------------------------------------
    def acknowledge(self, alarm_id: str, user: str, now_us: int) -> list[AlarmEvent]:
        """Acknowledge an alarm: ACTIVE -> ACKNOWLEDGED, LATCHED -> ENDED.

        Acknowledging an already acknowledged alarm changes nothing (returns no event).
        Raises AlarmError for an unknown or ended alarm, UsageError for a bad ``user``.
        """
        user = _check_user(user)
        a = self.get(alarm_id)
        if a.state is AlarmState.ACKNOWLEDGED:
            return []
        a.acked_by, a.acked_us, a.silenced_until_us = user, now_us, 0
        if a.state is AlarmState.LATCHED:
            events = [self._event(EventKind.ACKNOWLEDGED, a, now_us, user=user)]
            tr = self._tracks[(a.device_id, a.code)]
            self._end((a.device_id, a.code), tr, now_us)
            events.append(self._event(EventKind.ENDED, a, now_us, user=user))
            return events
        a.state = AlarmState.ACKNOWLEDGED
        return [self._event(EventKind.ACKNOWLEDGED, a, now_us, user=user)]

    def silence(self, alarm_id: str, user: str, duration_s: float, now_us: int) -> list[AlarmEvent]:
        """Pause the audio of an ACTIVE or LATCHED alarm for ``duration_s`` (1-600 s)."""
        user = _check_user(user)
        if (isinstance(duration_s, bool) or not isinstance(duration_s, (int, float))
                or not 1.0 <= duration_s <= MAX_SILENCE_S):
            raise UsageError(f"duration_s must be within 1-{MAX_SILENCE_S:g} s, got {duration_s!r}")
        a = self.get(alarm_id)
        if a.state is AlarmState.ACKNOWLEDGED:
            return []
        a.silenced_until_us = now_us + int(duration_s * 1e6)
        a.silenced_by = user
        return [self._event(EventKind.SILENCED, a, now_us, user=user)]

    def end_device(self, device_id: int, now_us: int, user: str = "") -> list[AlarmEvent]:
        """End every alarm of a device at once (discharge, device released)."""
        events = []
        for key in [k for k in self._tracks if k[0] == device_id]:
            tr = self._tracks[key]
            if tr.alarm is not None:
                a = tr.alarm
                self._end(key, tr, now_us)
                events.append(self._event(EventKind.ENDED, a, now_us, user=user))
            self._tracks.pop(key, None)
        return events

    # -- time -------------------------------------------------------------------------------------
    def tick(self, now_us: int) -> list[AlarmEvent]:
        """Server-clock changes due at ``now_us``: silences running out, escalations."""
        events = []
        for a in list(self._by_id.values()):
            if a.silenced_until_us and a.silenced_until_us <= now_us:
                a.silenced_until_us = 0
                events.append(self._event(EventKind.UNSILENCED, a, now_us))
            if (a.priority is AlarmPriority.HIGH and not a.acked_by
                    and a.escalation_level < len(self.escalation)):
                step = self.escalation[a.escalation_level]
                if now_us - a.raised_us >= step.after_s * 1e6:
                    a.escalation_level += 1
                    events.append(self._event(EventKind.ESCALATED, a, now_us,
                                              targets=step.targets))
        return events
