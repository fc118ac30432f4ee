from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.dsp import NIBP_REASONS, estimate_nibp, simulate_cuff_deflation
from vitalcore.errors import UsageError


def test_mean_error_within_5_mmhg():
    rng = np.random.default_rng(11)
    errs = []
    for k in range(40):
        s = rng.uniform(90, 190)
        d = rng.uniform(45, s - 25)
        hr = rng.uniform(45, 130)
        r = estimate_nibp(simulate_cuff_deflation(s, d, hr, fs=100, seed=k), 100)
        assert r.ok, r
        errs.append((r.systolic - s, r.diastolic - d, r.mean - (d + (s - d) / 3),
                     r.pulse_rate - hr))
    e = np.array(errs)
    assert np.all(np.abs(e.mean(0)) < 5.0), e.mean(0)
    assert np.all(e[:, :2].std(0) < 8.0)


@pytest.mark.parametrize(("kw", "reason"), [
    ({"motion": [(8, 4, 3.0), (18, 5, 3.0)]}, "motion"),
    ({"leak_mmhg_s": 12.0}, "cuff_leak"),
    ({"amp_mmhg": 0.05}, "no_oscillations"),
    ({"start_mmhg": 110.0}, "out_of_range"),
])
def test_failure_reasons(kw, reason):
    r = estimate_nibp(simulate_cuff_deflation(130, 85, 70, fs=100, seed=1, **kw), 100)
    assert not r.ok and r.reason == reason and np.isnan(r.systolic)


def test_bad_input():
    assert estimate_nibp(np.full(500, 10.0), 100).reason == "not_inflated"
    p = simulate_cuff_deflation(120, 80, 70, fs=100, seed=0)
    p[100] = np.nan
    assert estimate_nibp(p, 100).reason == "bad_signal"
    for bad in (lambda: estimate_nibp(np.ones(10), 100), lambda: estimate_nibp(p, 5),
                lambda: estimate_nibp(p[:, None], 100), lambda: estimate_nibp(p, 100, ks=2)):
        with pytest.raises(UsageError):
            bad()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=True), min_size=200, max_size=3000))
def test_random_input_never_crashes(data):
    r = estimate_nibp(np.array(data), 100.0)
    assert r.reason in NIBP_REASONS
