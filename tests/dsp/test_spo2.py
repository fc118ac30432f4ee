from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.dsp import SpO2Estimator, estimate_spo2, score_beats, simulate_ppg
from vitalcore.dsp.spo2 import BAD_SAMPLES, MOTION, NO_PULSE
from vitalcore.errors import UsageError


@pytest.mark.parametrize("spo2", [100.0, 95.0, 88.0, 80.0, 70.0])
@pytest.mark.parametrize("pi", [0.3, 2.0, 8.0])
def test_spo2_within_2_percent(spo2, pi):
    red, ir, beats = simulate_ppg(60.0, 100.0, spo2=spo2, hr=70.0, perfusion=pi, seed=5)
    res = estimate_spo2(red, ir, 100.0)
    assert res.valid.mean() > 0.8
    assert np.all(np.abs(res.spo2[res.valid] - spo2) < 2.0)
    assert abs(res.pulse_rate_median - 70.0) < 2.0
    assert abs(res.perfusion_index_median - pi) < 0.25 * pi
    assert score_beats(beats, res.pulse_indices, 100.0, 0.1).se > 0.97


def test_desaturation_is_tracked_and_quadratic_curve():
    cal = (112.0, -20.0, -5.0)
    red, ir, _ = simulate_ppg(90.0, 125.0, spo2=[(0, 98), (30, 98), (50, 75), (90, 75)],
                              hr=90.0, seed=2, calibration=cal)
    res = estimate_spo2(red, ir, 125.0, calibration=cal)
    t = res.end_index / 125.0
    assert abs(np.median(res.spo2[res.valid & (t < 30)]) - 98) < 2
    assert abs(np.median(res.spo2[res.valid & (t > 60)]) - 75) < 2


def test_motion_and_probe_off_are_flagged():
    red, ir, _ = simulate_ppg(60.0, 100.0, spo2=97.0, motion=0.3, seed=1)
    res = estimate_spo2(red, ir, 100.0)
    assert np.mean((res.flags & MOTION) != 0) > 0.8
    flat = estimate_spo2(np.full(3000, 0.7), np.full(3000, 1.0), 100.0)
    assert np.all(flat.flags & (NO_PULSE | BAD_SAMPLES))
    red[1000:1500] = np.nan
    res = estimate_spo2(red, ir, 100.0)
    assert np.all(res.flags[(res.end_index > 1000) & (res.end_index < 2300)] & BAD_SAMPLES)


def test_streaming_equals_batch():
    red, ir, _ = simulate_ppg(40.0, 100.0, seed=4)
    ref = estimate_spo2(red, ir, 100.0)
    est = SpO2Estimator(100.0)
    parts = [est.process(red[i:i + 37], ir[i:i + 37]) for i in range(0, red.size, 37)]
    np.testing.assert_array_equal(np.concatenate([p.spo2 for p in parts]), ref.spo2)
    np.testing.assert_array_equal(np.concatenate([p.flags for p in parts]), ref.flags)
    np.testing.assert_array_equal(np.concatenate([p.pulse_indices for p in parts]),
                                  ref.pulse_indices)


def test_usage_errors():
    with pytest.raises(UsageError):
        estimate_spo2(np.ones(10), np.ones(11), 100.0)
    with pytest.raises(UsageError):
        estimate_spo2(np.ones(10), np.ones(10), 5.0)
    with pytest.raises(UsageError):
        SpO2Estimator(100.0, window_s=8.0, hop_s=3.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=2000),
       st.sampled_from([25.0, 100.0, 500.0]))
def test_random_input_never_crashes(data, fs):
    x = np.array(data, dtype=np.float64)
    res = estimate_spo2(x, x[::-1].copy(), fs)
    assert np.all((res.pulse_indices >= 0) & (res.pulse_indices < max(x.size, 1)))
    assert np.all(res.spo2[res.valid] <= 100.0)
