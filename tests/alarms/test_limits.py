from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.alarms.limits import WARD_DEFAULTS, Limit, LimitTable
from vitalcore.errors import ConfigError
from vitalcore.protocol import NUMERIC_RANGES, NumericCode

numbers = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-10**6, 10**6), st.booleans(), st.text(max_size=3))


@settings(max_examples=300, deadline=None)
@given(code=st.sampled_from([c for c in NumericCode]), low=numbers, high=numbers,
       hyst=numbers)
def test_hostile_limits_raise_config_error_or_are_sane(code, low, high, hyst):
    try:
        lim = Limit(code, low, high, hysteresis=0.0 if hyst is None else hyst)
    except ConfigError:
        return
    lo, hi = NUMERIC_RANGES[code]
    assert lim.low is not None or lim.high is not None
    for v in (lim.low, lim.high):
        assert v is None or (math.isfinite(v) and lo <= v <= hi)
    if lim.low is not None and lim.high is not None:
        assert lim.low < lim.high and lim.hysteresis < lim.high - lim.low
    assert lim.hysteresis >= 0


@pytest.mark.parametrize("kw", [
    dict(low=120, high=50), dict(low=60, high=60), dict(low=math.nan), dict(high=math.inf),
    dict(low=-5), dict(high=400), dict(), dict(low=50, high=60, hysteresis=10),
    dict(low=50, hysteresis=-1), dict(low=True), dict(low="50"),
])
def test_impossible_hr_limits(kw):
    with pytest.raises(ConfigError):
        Limit(NumericCode.HR, **kw)


def test_codes_without_limits_and_bad_priority():
    with pytest.raises(ConfigError):
        Limit(NumericCode.PERF_INDEX, low=1)
    with pytest.raises(ConfigError):
        Limit(99, low=1)
    with pytest.raises(ConfigError):
        Limit(NumericCode.HR, low=40, priority_low=7)


def test_judge_value_hysteresis():
    lim = Limit(NumericCode.HR, 50, 120, hysteresis=5)
    assert [f.code for f in lim.judge(121, 0, False, False)] == ["hr.high"]
    assert lim.judge(118, 0, False, False) == []
    assert [f.code for f in lim.judge(118, 0, False, True)] == ["hr.high"]  # not back by 5
    assert lim.judge(114, 0, False, True) == []
    f = lim.judge(40, 7, False, False)[0]
    assert (f.code, f.value, f.limit, f.ts_us) == ("hr.low", 40.0, 50.0, 7)


def test_patient_limits_override_ward_and_bad_ones_change_nothing():
    t = LimitTable()
    assert t.limits_for(5) is t.limits_for(6)
    t.set_patient(5, {NumericCode.HR: Limit(NumericCode.HR, 40, 150)})
    assert t.limits_for(5)[NumericCode.HR].high == 150
    assert t.limits_for(5)[NumericCode.SPO2] == WARD_DEFAULTS[NumericCode.SPO2]
    assert t.limits_for(6)[NumericCode.HR].high == 120
    with pytest.raises(ConfigError):
        t.set_patient(5, {NumericCode.HR: Limit(NumericCode.PR, 40, 150)})
    with pytest.raises(ConfigError):
        t.set_patient(5, {NumericCode.HR: (40, 150)})
    with pytest.raises(ConfigError):
        t.set_patient(0, {})
    assert t.limits_for(5)[NumericCode.HR].high == 150
    t.clear_patient(5)
    assert t.limits_for(5)[NumericCode.HR].high == 120
    assert t.evaluated_codes(5, NumericCode.SPO2) == ("spo2.low", "spo2.high")
    t.set_ward_defaults({})
    assert t.evaluated_codes(5, NumericCode.SPO2) == ()
