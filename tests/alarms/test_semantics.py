from __future__ import annotations

import pytest

from vitalcore.alarms.model import (
    AlarmCategory,
    AlarmPriority,
    AlarmState,
    EscalationStep,
    Finding,
    Timing,
)
from vitalcore.alarms.semantics import AlarmStates
from vitalcore.errors import AlarmError, ConfigError, UsageError

S = 1_000_000
P, A, T = AlarmCategory.PHYSIOLOGICAL, AlarmCategory.ARRHYTHMIA, AlarmCategory.TECHNICAL


def f(code="hr.high", t=0, prio=AlarmPriority.MEDIUM, cat=P):
    return Finding(code, prio, cat, code, t, 130.0, 120.0)


def feed(states, pattern, code="hr.high", cat=P, prio=AlarmPriority.MEDIUM):
    """pattern: one char per second, '1' present, '0' absent; returns (second, kind)."""
    out = []
    for i, c in enumerate(pattern):
        found = [f(code, i * S, prio, cat)] if c == "1" else []
        for e in states.observe(9, (code,), found, i * S, i * S):
            out.append((i, str(e.kind)))
    return out


def test_onset_delay_filters_transients_and_raises_after_it():
    s = AlarmStates({"hr.high": Timing(onset_delay_s=3, offset_delay_s=2)})
    assert feed(s, "1110111") == []  # 3 s present then a gap: never 3 s continuously
    s = AlarmStates({"hr.high": Timing(onset_delay_s=3, offset_delay_s=2)})
    assert feed(s, "11110") == [(3, "raised")]
    a = s.active()[0]
    assert a.onset_us == 0 and a.raised_us == 3 * S and a.state is AlarmState.ACTIVE


def test_offset_hysteresis_no_chatter():
    s = AlarmStates({"hr.high": Timing(onset_delay_s=0, offset_delay_s=2)})
    ev = feed(s, "1010101" + "000")
    assert ev == [(0, "raised"), (9, "ended")]  # one alarm, not four


def test_latching_stays_until_ack_and_comes_back():
    s = AlarmStates()
    ev = feed(s, "1000", code="asystole", cat=A, prio=AlarmPriority.HIGH)
    assert ev == [(0, "raised"), (3, "latched")]
    a = s.active()[0]
    assert a.state is AlarmState.LATCHED and a.condition_end_us == 3 * S
    # returns before anyone acknowledged: same alarm active again
    assert [str(e.kind) for e in s.observe(9, ("asystole",), [f("asystole", 5 * S, cat=A)],
                                           5 * S, 5 * S)] == ["raised"]
    assert s.active()[0].alarm_id == a.alarm_id
    feed_end = [str(e.kind) for i in range(6, 9)
                for e in s.observe(9, ("asystole",), [], i * S, i * S)]
    assert feed_end == ["latched"]
    ev = s.acknowledge(a.alarm_id, "nurse.li", 10 * S)
    assert [str(e.kind) for e in ev] == ["acknowledged", "ended"]
    assert ev[0].user == "nurse.li" and ev[0].alarm.acked_us == 10 * S
    assert s.active() == []
    with pytest.raises(AlarmError):
        s.acknowledge(a.alarm_id, "nurse.li", 11 * S)


def test_ack_then_condition_end_ends_and_double_ack_is_quiet():
    s = AlarmStates()
    feed(s, "1", code="asystole", cat=A, prio=AlarmPriority.HIGH)
    aid = s.active()[0].alarm_id
    assert [str(e.kind) for e in s.acknowledge(aid, "dr.wu", 1 * S)] == ["acknowledged"]
    assert s.acknowledge(aid, "dr.wu", 2 * S) == []
    ev = [str(e.kind) for i in range(2, 6) for e in s.observe(9, ("asystole",), [], i * S, i * S)]
    assert ev == ["ended"]  # acknowledged alarms do not latch


@pytest.mark.parametrize("user", ["", "  ", None, 5, "x" * 129])
def test_bad_user_rejected(user):
    s = AlarmStates()
    feed(s, "1", code="asystole", cat=A)
    with pytest.raises(UsageError):
        s.acknowledge(s.active()[0].alarm_id, user, 0)


def test_silence_expires_and_is_not_an_ack():
    s = AlarmStates()
    feed(s, "1", code="asystole", cat=A, prio=AlarmPriority.HIGH)
    aid = s.active()[0].alarm_id
    for bad in (0, 0.5, 601, float("nan"), True):
        with pytest.raises(UsageError):
            s.silence(aid, "nurse", bad, 0)
    ev = s.silence(aid, "nurse", 60, 1 * S)
    assert str(ev[0].kind) == "silenced" and not ev[0].alarm.audible
    assert s.tick(30 * S) == []
    ev = s.tick(61 * S)
    assert [str(e.kind) for e in ev] == ["unsilenced"] and ev[0].alarm.audible
    assert s.active()[0].state is AlarmState.ACTIVE


def test_escalation_of_unacknowledged_high_priority():
    steps = (EscalationStep(30, ("charge-nurse",)), EscalationStep(90, ("physician", "icu")))
    s = AlarmStates(escalation=steps)
    feed(s, "1", code="asystole", cat=A, prio=AlarmPriority.HIGH)
    feed(s, "1", code="hr.high")  # medium: never escalated
    assert s.tick(29 * S) == []
    ev = s.tick(30 * S)
    assert [(str(e.kind), e.targets, e.alarm.code) for e in ev] == [
        ("escalated", ("charge-nurse",), "asystole")]
    assert s.tick(60 * S) == []
    assert s.tick(95 * S)[0].targets == ("physician", "icu")
    assert s.tick(500 * S) == []  # no more steps


def test_ack_stops_escalation():
    s = AlarmStates(escalation=(EscalationStep(10, ("x",)),))
    feed(s, "1", code="vfib", cat=A, prio=AlarmPriority.HIGH)
    s.acknowledge(s.active()[0].alarm_id, "n", 5 * S)
    assert s.tick(20 * S) == []


def test_bad_configuration():
    with pytest.raises(ConfigError):
        Timing(onset_delay_s=-1)
    with pytest.raises(ConfigError):
        Timing(offset_delay_s=float("nan"))
    with pytest.raises(ConfigError):
        EscalationStep(0, ("x",))
    with pytest.raises(ConfigError):
        EscalationStep(10, ())
    with pytest.raises(UsageError):
        AlarmStates(escalation=(EscalationStep(20, ("a",)), EscalationStep(10, ("b",))))
    with pytest.raises(UsageError):
        AlarmStates({"x": 5})


def test_end_device_ends_everything_of_that_device_only():
    s = AlarmStates()
    feed(s, "1", code="asystole", cat=A)
    s.observe(10, ("probe_off",), [f("probe_off", 0, cat=T)], 0, 0)
    s.observe(10, ("probe_off",), [f("probe_off", 3 * S, cat=T)], 3 * S, 3 * S)
    ev = s.end_device(9, 5 * S, "admit")
    assert [(str(e.kind), e.alarm.device_id) for e in ev] == [("ended", 9)]
    assert [a.device_id for a in s.active()] == [10]
