"""Arrhythmia alarms end to end: scenario wearables -> real Store -> engine."""

from __future__ import annotations

import numpy as np
import pytest
from alarm_helpers import START, put_ecg

from vitalcore.alarms.arrhythmia import ArrhythmiaConfig
from vitalcore.errors import ConfigError
from vitalcore.sim.wearable import ScenarioWearable

FS = 250


def test_asystole_raised_within_bound_and_not_before(rig):
    w = ScenarioWearable(device_id=21, start_us=START, seed=3)
    rng = np.random.default_rng(1)
    put_ecg(w, 20.0, rng.normal(0, 0.02, 20 * FS))  # 20-40 s: baseline noise, no beats
    rig.run([w], 32)
    got = rig.raised("asystole", 21)
    assert len(got) == 1, [e.alarm.code for e in rig.events]
    e = got[0]
    t_raise = (e.ts_us - START) / 1e6
    # last beat before 20 s; asystole_s 4 + beat lag 5 => raised 9-11 s after the onset
    assert 24.0 <= t_raise <= 31.0, t_raise
    assert e.alarm.latching and e.alarm.priority == 3
    assert e.evidence is not None and e.evidence.wave_type == 1 and e.evidence.wave_fs == FS
    assert len(e.evidence.wave) == 8 * FS
    assert not rig.raised("vfib") and not rig.raised("brady.extreme")


def test_vf_raised_within_bound_and_sinus_quiet(rig):
    w = ScenarioWearable(device_id=22, start_us=START, seed=4)
    calm = ScenarioWearable(device_id=23, start_us=START, seed=5, hr_bpm=80)
    t = np.arange(12 * FS) / FS
    put_ecg(w, 20.0, 1.2 * np.sin(2 * np.pi * 4.2 * t))  # 20-32 s ventricular flutter
    rig.run([w, calm], 36)
    got = rig.raised("vfib", 22)
    assert len(got) == 1
    t_raise = (got[0].ts_us - START) / 1e6
    assert 23.0 <= t_raise <= 29.0, t_raise  # 3-window run (4 s) + decision lag
    assert not [e for e in rig.events if e.alarm.device_id == 23 and e.kind == "raised"]
    assert not rig.raised("asystole")


def test_leads_off_is_not_asystole(rig):
    w = ScenarioWearable(device_id=24, start_us=START, seed=6, leads_off_s=(10, 30))
    rig.run([w], 40)
    assert rig.raised("leads_off", 24)
    assert not rig.raised("asystole") and not rig.raised("ecg.no_signal")


@pytest.mark.parametrize("kw", [dict(asystole_s=1), dict(brady_bpm=float("nan")),
                                dict(tachy_bpm=50), dict(pause_s=14, asystole_s=4,
                                                         beat_lag_s=5)])
def test_bad_arrhythmia_config(kw):
    with pytest.raises(ConfigError):
        ArrhythmiaConfig(**kw)


def test_analyser_restarts_only_on_long_holes():
    from vitalcore.alarms.arrhythmia import EcgAnalyser
    from vitalcore.dsp import simulate_ecg

    x, _ = simulate_ecg(30, FS, seed=2)
    raw = np.round(x * 1000 / 2.5).astype(np.int16)
    a = EcgAnalyser(ArrhythmiaConfig(), 1)
    i = q = 0
    while i < raw.size:
        n = 63 if q % 2 == 0 else 62
        if 10 * FS <= i < 11 * FS:  # a 1 s hole: NaN-filled, no restart
            i, q = i + n, q + 1
            continue
        if 20 * FS <= i < 23 * FS:  # a 3 s hole: the detector starts over
            i, q = i + n, q + 1
            continue
        if a.add(START + i * 4000, raw[i:i + n], 2.5, 0.0, FS):
            a.process()
        i, q = i + n, q + 1
    assert a.restarts == 2 and a.late_frames == 0
    # a retransmitted (older) frame is dropped, not analysed twice
    a.add(START, raw[:63], 2.5, 0.0, FS)
    a.process()
    assert a.late_frames == 1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_low_amplitude_noise_is_asystole_not_vf(seed):
    from vitalcore.alarms.arrhythmia import EcgAnalyser

    rng = np.random.default_rng(seed)
    raw = np.round(rng.normal(0, 0.02, 40 * FS) * 1000 / 2.5).astype(np.int16)
    a = EcgAnalyser(ArrhythmiaConfig(), 1)
    codes = set()
    for k in range(0, raw.size, 125):
        if a.add(START + k * 4000, raw[k:k + 125], 2.5, 0.0, FS):
            r = a.process()
            codes |= {f.code for f in r[2]} if r else set()
    assert codes == {"asystole"}


def _analyse(x):
    from vitalcore.alarms.arrhythmia import EcgAnalyser

    raw = np.round(x * 1000 / 2.5).astype(np.int16)
    a = EcgAnalyser(ArrhythmiaConfig(), 1)
    codes = []
    for k in range(0, raw.size, 125):
        if a.add(START + k * 4000, raw[k:k + 125], 2.5, 0.0, FS):
            r = a.process()
            if r:
                codes.append(sorted(f.code for f in r[2]))
    return codes


@pytest.mark.parametrize("hr, code", [
    (38.0, "brady.extreme"), (185.0, "tachy.extreme"), (72.0, None),
    (33.0, "brady.extreme"),
])
def test_rate_alarms(hr, code):
    from vitalcore.dsp import simulate_ecg

    x, _ = simulate_ecg(40, FS, hr_bpm=hr, seed=7)
    seen = {c for codes in _analyse(x) for c in codes}
    assert seen == ({code} if code else set())


def test_pause_is_reported_and_ends():
    from vitalcore.dsp import simulate_ecg

    x, beats = simulate_ecg(40, FS, hr_bpm=60, seed=8)
    b = beats[(beats > 20 * FS) & (beats < 25.5 * FS)]
    lo, hi = b[0] + int(0.4 * FS), b[-1] - int(0.2 * FS)  # drop the beats between them
    x[lo:hi] = np.random.default_rng(0).normal(0, 0.02, hi - lo)
    codes = _analyse(x)
    flat = [c for cs in codes for c in cs]
    assert "pause" in flat and "asystole" not in flat
    assert codes[-1] == []  # regular rhythm again at the end


def test_ecg_queue_is_bounded_when_the_engine_falls_behind():
    from vitalcore.alarms.arrhythmia import MAX_QUEUED_S, EcgAnalyser

    a = EcgAnalyser(ArrhythmiaConfig(), 1)
    frame = np.zeros(125, np.int16)
    for k in range(int(40 * FS / 125)):  # 40 s queued, never processed
        a.add(START + k * 500_000, frame, 2.5, 0.0, FS)
    assert a.shed_frames == int(10 * FS / 125)
    assert a._pending_n <= MAX_QUEUED_S * FS
