from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.dsp import SpO2Estimator, estimate_spo2, score_beats, simulate_ppg
from vitalcore.dsp.spo2 import BAD_SAMPLES, MOTION, NO_PULSE
from vitalcore.errors import UsageError

SEEDS = range(1, 21)


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


@pytest.mark.parametrize("fs", [50.0, 125.0, 500.0])
@pytest.mark.parametrize("hr", [30.0, 35.0, 52.0, 60.0, 100.0, 180.0, 240.0])
def test_pulse_rate_30_to_240_bpm(hr, fs):
    # the dicrotic wave must not be counted at low rates, no beat skipped at high ones
    for seed in (1, 2, 3):
        red, ir, beats = simulate_ppg(30.0, fs, spo2=95.0, hr=hr, perfusion=2.0, seed=seed)
        res = estimate_spo2(red, ir, fs)
        # the simulator's first pulses are shaped for 72 bpm; the last pulse of the record
        # is decided only after its peak and 128 ms more
        # cut midway between beats so that no pair straddles a cut
        a = int(np.searchsorted(beats, 4 * fs))
        b = int(np.searchsorted(beats, red.size - 0.5 * fs)) - 1
        lo, hi = (beats[a - 1] + beats[a]) // 2, (beats[b - 1] + beats[b]) // 2
        sc = score_beats(beats, res.pulse_indices, fs, 0.1,
                         exclude=[(0, lo), (hi, red.size)])
        assert sc.ppv > 0.97 and sc.se > (0.9 if hr == 240.0 else 0.97)
        # at 240 bpm a few narrow low-passed pulses are missed (documented)
        assert abs(np.median(res.pulse_rate) - hr) < (0.05 if hr == 240.0 else 0.03) * hr + 1
        if hr < 200:
            assert res.valid.mean() > 0.9


@pytest.mark.parametrize("hr", [35.0, 52.0])
@pytest.mark.parametrize("pi", [0.3, 10.0])
def test_low_heart_rate_across_seeds(hr, pi):
    # formerly: every window at ~2x the rate, flagged MOTION, SpO2 NaN (hr=52, seed=3)
    for seed in SEEDS:
        red, ir, _ = simulate_ppg(30.0, 100.0, spo2=95.0, hr=hr, perfusion=pi, seed=seed)
        res = estimate_spo2(red, ir, 100.0)
        later = res.end_index > 900  # windows without the simulator's first pulse
        assert np.all(np.abs(res.pulse_rate[later] - hr) < 3.0), seed
        assert res.valid.mean() >= 0.9, seed
        assert np.all(np.abs(res.spo2[res.valid] - 95.0) < 2.0), seed


@pytest.mark.parametrize("truth", [100.0, 95.0, 70.0])
@pytest.mark.parametrize("motion", [0.5, 1.0, 2.0])
def test_motion_never_passes_a_wrong_spo2(truth, motion):
    # a false "valid" desaturation becomes a false alarm; an invalid window only costs
    # availability
    for seed in SEEDS:
        red, ir, _ = simulate_ppg(30.0, 100.0, spo2=truth, hr=70.0, motion=motion,
                                  seed=seed)
        res = estimate_spo2(red, ir, 100.0)
        assert np.all(np.abs(res.spo2[res.valid] - truth) <= 3.0), seed


@pytest.mark.parametrize("hr", [40.0, 180.0])
@pytest.mark.parametrize("pi", [0.5, 10.0])
def test_clean_signal_stays_available(hr, pi):
    for seed in SEEDS:
        red, ir, _ = simulate_ppg(30.0, 100.0, spo2=92.0, hr=hr, perfusion=pi, seed=seed)
        res = estimate_spo2(red, ir, 100.0)
        good = res.valid & (np.abs(res.spo2 - 92.0) < 2.0)
        assert good.mean() >= 0.9, seed
        assert np.all(res.pulse_quality[res.valid] >= 0.86)
        assert np.all((res.spectral_purity[res.valid] >= 0.8)
                      & (res.spectral_purity[res.valid] <= 1.0 + 1e-9))


def _chunked(red, ir, fs, sizes):
    est = SpO2Estimator(fs)
    parts, i, k = [], 0, 0
    while i < red.size:
        n = sizes[k % len(sizes)]
        parts.append(est.process(red[i:i + n], ir[i:i + n]))
        i, k = i + n, k + 1
    return parts


def test_streaming_equals_batch():
    red, ir, _ = simulate_ppg(40.0, 100.0, seed=4)
    ref = estimate_spo2(red, ir, 100.0)
    parts = _chunked(red, ir, 100.0, [37])
    np.testing.assert_array_equal(np.concatenate([p.spo2 for p in parts]), ref.spo2)
    np.testing.assert_array_equal(np.concatenate([p.flags for p in parts]), ref.flags)
    np.testing.assert_array_equal(np.concatenate([p.pulse_indices for p in parts]),
                                  ref.pulse_indices)


_SIG = {k: simulate_ppg(30.0, 125.0, spo2=90.0, hr=hr, motion=m, seed=7)
        for k, (hr, m) in enumerate([(35.0, 0.0), (70.0, 0.4), (200.0, 0.0)])}


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(sorted(_SIG)), st.lists(st.integers(1, 700), min_size=1, max_size=8))
def test_any_chunking_gives_identical_output(which, sizes):
    red, ir, _ = _SIG[which]
    ref = estimate_spo2(red, ir, 125.0)
    parts = _chunked(red, ir, 125.0, sizes)
    for name in ("end_index", "spo2", "pulse_rate", "flags", "pulse_quality",
                 "spectral_purity", "pulse_indices"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]),
                                      getattr(ref, name), err_msg=name)


def test_bidmc_pulse_rate(data_dir):
    folder = data_dir / "bidmc"
    if not folder.is_dir():
        pytest.skip("bidmc not found")
    errs = []
    for k in range(1, 21):
        pleth = np.loadtxt(folder / f"bidmc_{k:02d}_Signals.csv", delimiter=",",
                           skiprows=1, usecols=2) + 10.0
        num = np.loadtxt(folder / f"bidmc_{k:02d}_Numerics.csv", delimiter=",",
                         skiprows=1, usecols=(0, 2))
        res = estimate_spo2(pleth, pleth, 125.0)
        ok = (res.flags & (NO_PULSE | MOTION | BAD_SAMPLES)) == 0
        ref = np.interp(res.end_index[ok] / 125.0, num[:, 0], num[:, 1])
        errs.append((res.pulse_rate[ok] - ref)[np.isfinite(ref)])
    err = np.abs(np.concatenate(errs))
    assert err.mean() <= 1.0  # before the slope-sum detector: 1.00 bpm
    assert np.percentile(err, 95) < 3.0


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
