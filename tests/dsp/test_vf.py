from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore.dsp import (
    BEAT_SYMBOLS,
    BeatScore,
    QRSDetector,
    VFDetector,
    detect_qrs,
    detect_vf,
    flutter_episodes,
    score_beats,
    score_vf_windows,
    simulate_ecg,
    vf_episodes,
)
from vitalcore.errors import UsageError

wfdb = pytest.importorskip("wfdb")

FS = 250.0


def _ecg_with_flutter(seed: int = 2):
    """Simulated sinus ECG with a 12 s 4.2 Hz (250/min) sinusoidal flutter from 30 s."""
    x, truth = simulate_ecg(70.0, FS, seed=seed, noise_mv=0.02)
    lo, hi = int(30 * FS), int(42 * FS)
    t = np.arange(hi - lo) / FS
    x[lo:hi] = 1.2 * np.sin(2 * np.pi * 4.2 * t) + 0.1 * np.sin(2 * np.pi * 0.3 * t)
    return x, truth, lo, hi


def test_flutter_detected_and_beats_muted():
    x, truth, lo, hi = _ecg_with_flutter()
    v = detect_vf(x, FS)
    assert v.episodes.shape == (1, 2), v.episodes
    on, off = v.episodes[0]
    assert lo - FS <= on <= lo + 2 * FS and hi - 2 * FS <= off <= hi + FS
    assert v.start_index.size == x.size // int(FS) - 1
    beats = detect_qrs(x, FS)
    raw = detect_qrs(x, FS, suppress_vf=False)
    assert np.sum((raw > lo) & (raw < hi)) > 15          # the flutter waves are "beats"...
    assert not np.any((beats > on) & (beats < off))      # ...until the VF episode mutes them
    # suppression removes exactly the beats inside the episode, nothing else
    np.testing.assert_array_equal(beats, raw[(raw < on) | (raw >= off)])
    s = score_beats(truth, beats, FS, exclude=[(lo - int(FS), hi + int(FS))])
    assert s.se == 1.0 and s.ppv > 0.9, s


def test_sinus_and_fast_rhythms_are_not_vf():
    for kw in ({}, {"hr_bpm": 180.0}, {"af": True}, {"pvc_rate": 0.2},
               {"noise_mv": 0.1, "mains_mv": 0.1}):
        x, _ = simulate_ecg(60.0, FS, seed=5, **kw)
        v = detect_vf(x, FS)
        assert v.episodes.size == 0 and v.vf.mean() < 0.1, (kw, v.vf.sum())


@settings(max_examples=12, deadline=None)
@given(chunk=st.integers(1, 3000), seed=st.integers(0, 50))
def test_streaming_equals_batch_with_vf(chunk, seed):
    x, _, _, _ = _ecg_with_flutter(seed)
    det = QRSDetector(FS)
    got = np.concatenate([det.process(x[i:i + chunk]) for i in range(0, x.size, chunk)]
                         + [det.flush()])
    np.testing.assert_array_equal(got, detect_qrs(x, FS))
    vd = VFDetector(FS)
    w = np.concatenate([vd.process(x[i:i + chunk]) for i in range(0, x.size, chunk)]
                       + [vd.flush()])
    ref = detect_vf(x, FS)
    np.testing.assert_array_equal(w[:, 0].astype(np.int64), ref.start_index)
    np.testing.assert_array_equal(w[:, 1] > 0.5, ref.vf)


def test_in_vf_alarm_state_and_bad_samples():
    x, _, lo, hi = _ecg_with_flutter()
    det = VFDetector(FS)
    det.process(x[:hi])
    assert det.in_vf
    det.process(x[hi:])
    assert not det.in_vf
    y = x.copy()
    y[lo + 1000:lo + 1010] = np.nan  # dropout inside the flutter: those windows are not VF
    v = detect_vf(y, FS)
    bad = (v.start_index <= lo + 1010) & (v.start_index + 2 * int(FS) > lo + 1000)
    assert bad.any() and not v.vf[bad].any()


def test_vf_episodes_runs():
    s = np.arange(10) * 100
    f = [0, 1, 1, 1, 0, 1, 1, 0, 1, 1]
    assert vf_episodes(s, f, 100).tolist() == [[100, 500]]
    assert vf_episodes(s, f, 100, min_run=2).tolist() == [[100, 500], [500, 800], [800, 1100]]


@pytest.mark.parametrize("bad", [
    lambda: detect_vf(np.zeros(10), 50.0),
    lambda: detect_vf(np.zeros((3, 3)), FS),
    lambda: VFDetector(FS).process("x"),
    lambda: QRSDetector(FS, suppress_vf="yes"),
])
def test_usage_errors(bad):
    with pytest.raises(UsageError):
        bad()


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(floats, min_size=0, max_size=4000), fs=st.sampled_from([125.0, 360.0]))
def test_random_input_never_crashes(data, fs):
    x = np.array(data, dtype=np.float64)
    v = detect_vf(x, fs)
    assert v.start_index.size == max(x.size // int(fs) - 1, 0)
    assert v.vf.dtype == bool and v.episodes.shape[1] == 2


def test_mitbih_vf_and_strict_beats(data_dir):
    """All provided MIT-BIH records, lead MLII: VF windows vs `[`...`]`, beats strict."""
    before = after = after_ex = BeatScore(0, 0, 0)
    win = np.zeros(4, dtype=np.int64)  # tp, fn, fp, tn over windows fully in/out of VFL
    for hea in sorted((data_dir / "mitdb").glob("*.hea")):
        rec = wfdb.rdrecord(str(hea.with_suffix("")))
        ann = wfdb.rdann(str(hea.with_suffix("")), "atr")
        ch = rec.sig_name.index("MLII") if "MLII" in rec.sig_name else 0
        x, fs = rec.p_signal[:, ch], float(rec.fs)
        ref = [s for s, y in zip(ann.sample, ann.symbol, strict=True) if y in BEAT_SYMBOLS]
        vfl = flutter_episodes(ann.sample, ann.symbol)
        v = detect_vf(x, fs)
        win += score_vf_windows(v.start_index, v.vf, fs, 2.0, vfl)
        if vfl.size == 0:  # no false VF episode (it would mute real beats)
            assert v.episodes.size == 0, (hea.stem, v.episodes)
        s0 = score_beats(ref, detect_qrs(x, fs, suppress_vf=False), fs)
        det = detect_qrs(x, fs)
        s1 = score_beats(ref, det, fs)
        assert s1.se >= s0.se - 0.001, (hea.stem, s0, s1)  # suppression costs no beats
        before, after = before + s0, after + s1
        after_ex += score_beats(ref, det, fs, exclude=vfl)
    tp, fn, fp, tn = win.tolist()
    assert tp / (tp + fn) >= 0.8 and tn / (tn + fp) >= 0.999, win
    assert before.fp - after.fp > 300                 # flutter waves counted as beats...
    assert after.se >= 0.995 and after.ppv >= 0.995, after   # ...muted: strict target met
    assert after_ex.ppv >= 0.995, after_ex


def test_score_vf_windows_counts_inside_outside_and_skips_edges():
    start = np.array([0, 100, 200, 300, 400])  # 2 s windows at fs 100 -> 200 samples long
    vf = np.array([False, True, True, False, True])
    # episode [100, 400): windows at 100 and 200 lie inside; 0 and 300 straddle an edge
    assert score_vf_windows(start, vf, 100.0, 2.0, [[100, 400]]) == (2, 0, 1, 0)
    assert score_vf_windows(start, vf, 100.0, 2.0, np.empty((0, 2))) == (0, 0, 3, 2)
