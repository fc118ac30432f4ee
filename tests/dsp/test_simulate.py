from __future__ import annotations

import numpy as np
import pytest

from vitalcore.dsp import simulate_cuff_deflation, simulate_ecg, simulate_ppg, spo2_to_ratio
from vitalcore.errors import UsageError


def test_ecg_ground_truth_and_determinism():
    x, b = simulate_ecg(60.0, 500.0, hr_bpm=60.0, hrv=0.0, noise_mv=0.0, wander_mv=0.0,
                        seed=1)
    assert x.size == 30000 and b.dtype == np.int64
    np.testing.assert_allclose(np.diff(b), 500, atol=1)
    assert np.all(x[b] > 1.0)               # R apex at the reported index
    x2, b2 = simulate_ecg(60.0, 500.0, hr_bpm=60.0, hrv=0.0, noise_mv=0.0, wander_mv=0.0,
                          seed=1)
    np.testing.assert_array_equal(x, x2)
    _, fast = simulate_ecg(60.0, 250.0, hr_bpm=[(0, 60), (60, 120)], seed=2)
    rr = np.diff(fast) / 250.0
    assert rr[:5].mean() > 0.9 and rr[-5:].mean() < 0.6


def test_ppg_ratio_matches_calibration():
    red, ir, b = simulate_ppg(30.0, 100.0, spo2=90.0, perfusion=2.0, noise=0.0, seed=0)
    assert red.size == ir.size == 3000 and b.size > 30

    def ac(x):  # RMS of the 0.6-5 Hz band (the pulse, not the breathing)
        spec = np.fft.rfft(x)
        f = np.fft.rfftfreq(x.size, 0.01)
        spec[(f < 0.6) | (f > 5)] = 0
        return np.std(np.fft.irfft(spec, x.size))

    r = (ac(red) / red.mean()) / (ac(ir) / ir.mean())
    assert abs(r - spo2_to_ratio(90.0)) < 0.03


def test_cuff_shape():
    p = simulate_cuff_deflation(120, 80, 70, fs=100, seed=0)
    assert 145 < p.max() < 155 and p[-1] < 5


def test_cheap_enough_for_thousands_of_devices():
    import time

    t = time.perf_counter()
    simulate_ecg(60.0, 250.0, seed=0)
    simulate_ppg(60.0, 100.0, seed=0)
    assert time.perf_counter() - t < 0.5  # one device-minute of ECG+PPG


def test_usage_errors():
    with pytest.raises(UsageError):
        simulate_ecg(-1.0, 250.0)
    with pytest.raises(UsageError):
        simulate_ecg(10.0, 250.0, hr_bpm=500.0)
    with pytest.raises(UsageError):
        simulate_cuff_deflation(80, 120)
