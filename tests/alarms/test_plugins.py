"""Plugin rules: API validation, garbage output, exceptions, hangs, disabling."""

from __future__ import annotations

import threading
import time

import pytest
from alarm_helpers import START
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore.alarms.model import AlarmPriority
from vitalcore.alarms.plugins import (
    AlarmRule,
    PluginAlarm,
    PluginHost,
    RuleContext,
    alarm_rule,
    validate_output,
)
from vitalcore.errors import ConfigError, PluginError
from vitalcore.protocol import NumericCode
from vitalcore.sim.wearable import ScenarioWearable

RULE = AlarmRule("r", ("a", "b"), lambda ctx: [])

garbage = st.one_of(
    st.integers(), st.text(max_size=5), st.binary(max_size=5), st.floats(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none(), st.tuples(st.text())),
             min_size=1, max_size=4),
    st.lists(st.builds(PluginAlarm, st.sampled_from(["c", "zz", "a.b"])), min_size=1,
             max_size=3),
    st.just([PluginAlarm("a")] * 40),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(out=garbage)
def test_garbage_output_is_rejected(out):
    with pytest.raises(PluginError):
        validate_output(RULE, out)


def test_valid_output():
    assert validate_output(RULE, None) == []
    got = validate_output(RULE, (PluginAlarm("a", AlarmPriority.HIGH, "x", 1, 2),))
    assert got[0].value == 1.0 and got[0].priority is AlarmPriority.HIGH


@settings(max_examples=100, deadline=None)
@given(code=st.text(max_size=8), prio=st.one_of(st.integers(-2, 6), st.text(max_size=2)),
       msg=st.one_of(st.text(max_size=3), st.integers(), st.text(min_size=201, max_size=202)),
       value=st.one_of(st.floats(), st.text(max_size=2), st.booleans()))
def test_plugin_alarm_construction_validates(code, prio, msg, value):
    try:
        a = PluginAlarm(code, prio, msg, value)
    except PluginError:
        return
    assert a.priority in (1, 2, 3) and isinstance(a.message, str) and isinstance(a.value, float)


@pytest.mark.parametrize("kw", [dict(name="Bad Name"), dict(codes=()), dict(codes=("A",)),
                                dict(evaluate=5), dict(period_s=0), dict(timeout_s=60)])
def test_bad_rules(kw):
    args = dict(name="ok", codes=("a",), evaluate=lambda c: [], period_s=1.0, timeout_s=0.1)
    args.update(kw)
    with pytest.raises(ConfigError):
        AlarmRule(**args)


def _ctx(dev=1):
    return RuleContext(dev, 0, None, {}, None, None)


def _pump(host, until, timeout=5.0):
    deadline = time.monotonic() + timeout
    results, disabled = [], []
    while time.monotonic() < deadline:
        r, d = host.poll(time.monotonic())
        results += r
        disabled += d
        if until(results, disabled):
            break
        time.sleep(0.005)
    return results, disabled


def test_raising_rule_is_disabled_after_max_failures():
    host = PluginHost(max_failures=3)
    host.add(AlarmRule("boom", ("x",), lambda ctx: 1 / 0))
    for i in range(3):
        host.submit("boom", _ctx(i + 1), 0, 0.0)
    _, disabled = _pump(host, lambda r, d: d)
    assert disabled == ["boom"]
    s = host.stats()["boom"]
    assert s["errors"] == 3 and "ZeroDivisionError" in s["disabled"]
    assert not host.due("boom", 1, 1e9)
    host.close()


def test_hung_rule_is_abandoned_without_blocking_and_others_go_on():
    release = threading.Event()
    host = PluginHost(max_failures=2)
    host.add(AlarmRule("hang", ("x",), lambda ctx: release.wait(30) and [], timeout_s=0.05))
    host.add(AlarmRule("fine", ("y",), lambda ctx: [PluginAlarm("y")]))
    t0 = time.monotonic()
    host.submit("hang", _ctx(1), 0, 0.0)
    host.submit("hang", _ctx(2), 0, 0.0)
    host.submit("fine", _ctx(1), 0, 0.0)
    results, disabled = _pump(host, lambda r, d: d and r)
    assert time.monotonic() - t0 < 3.0
    assert disabled == ["hang"] and [(r[0].name, r[1]) for r in results] == [("fine", 1)]
    assert host.stats()["hang"]["abandoned_threads"] == 2
    release.set()
    host.close()


def test_slow_result_counts_as_timeout():
    host = PluginHost(max_failures=5)
    host.add(AlarmRule("slow", ("x",), lambda ctx: time.sleep(0.05) or [], timeout_s=0.01))
    host.submit("slow", _ctx(), 0, 0.0)
    _pump(host, lambda r, d: host.stats()["slow"]["timeouts"] >= 1)
    assert host.stats()["slow"]["timeouts"] >= 1 and host.stats()["slow"]["ok"] == 0
    host.close()


def test_garbage_rule_counted_and_disabled():
    host = PluginHost(max_failures=2)
    host.add(AlarmRule("junk", ("x",), lambda ctx: {"x": 1}))
    host.submit("junk", _ctx(1), 0, 0.0)
    host.submit("junk", _ctx(2), 0, 0.0)
    _, disabled = _pump(host, lambda r, d: d)
    assert disabled == ["junk"] and host.stats()["junk"]["garbage"] == 2
    host.close()


def test_plugin_through_engine_with_store_and_disable_alarm(rig):
    @alarm_rule("shock", codes=("index_high",), period_s=1.0)
    def shock(ctx):
        hr = ctx.latest.get(NumericCode.HR)
        assert ctx.ecg is not None and ctx.ecg.fs == 250 and ctx.numerics.num_rows > 0
        return [PluginAlarm("index_high", message="HR high")] if hr and hr[1] > 100 else []

    calls = []

    @alarm_rule("flaky", codes=("x",))
    def flaky(ctx):
        calls.append(ctx.device_id)
        raise RuntimeError("bug in plugin")

    rig.engine.add_rule(shock)
    rig.engine.add_rule(flaky)
    with pytest.raises(ConfigError):
        rig.engine.add_rule(shock)
    fast = ScenarioWearable(device_id=41, start_us=START, hr_bpm=130, seed=1)
    slow = ScenarioWearable(device_id=42, start_us=START, hr_bpm=70, seed=2)
    for _ in range(40):
        rig.run([fast, slow], 0.25)
        time.sleep(0.005)  # let the workers answer
    assert [e.alarm.device_id for e in rig.raised("plugin.shock.index_high")] == [41]
    dis = rig.raised("plugin.flaky.disabled")
    assert len(dis) == 1 and dis[0].alarm.device_id == 0 and "bug in plugin" in dis[0].alarm.message
    n = len(calls)
    assert 3 <= n <= 4  # 3 failures disable it (a 4th run may have been under way)
    rig.run([fast, slow], 3)
    assert len(calls) == n  # never called again
    assert rig.engine.stats()["plugins"]["flaky"]["errors"] == 3
