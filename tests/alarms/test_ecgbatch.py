"""The batched ECG analysis gives the alarms of the per-device reference twin."""

from __future__ import annotations

import time

import numpy as np
import pytest
from alarm_helpers import START, Rig, put_ecg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore.alarms import AlarmConfig
from vitalcore.alarms.arrhythmia import ArrhythmiaConfig, EcgAnalyser
from vitalcore.alarms.ecgbatch import ASYSTOLE, EcgBatch
from vitalcore.sim.wearable import ScenarioWearable

FS = 250


def _scenario():
    """Seven devices: asystole, flutter, brady, tachy, a pause, leads off and low SpO2;
    one has a 1.5 s data gap."""
    ws = [ScenarioWearable(device_id=40 + i, start_us=START, seed=i, **kw)
          for i, kw in enumerate([{}, {}, {"hr_bpm": 35}, {"hr_bpm": 175}, {},
                                  {"leads_off_s": (12, 20)}, {"spo2": 82.0}])]
    rng = np.random.default_rng(1)
    put_ecg(ws[0], 14.0, rng.normal(0, 0.02, 16 * FS))
    t = np.arange(10 * FS) / FS
    put_ecg(ws[1], 12.0, 1.2 * np.sin(2 * np.pi * 4.2 * t))
    put_ecg(ws[4], 15.0, np.zeros(int(3.6 * FS)) + 0.01 * rng.normal(size=int(3.6 * FS)))
    return ws


def _raised(tmp_path, batched):
    rig = Rig(tmp_path / str(batched), config=AlarmConfig(batched=batched))
    try:
        rig.run(_scenario(), 36, skip=lambda d, t: d == 44 and 25 <= t < 26.5)
        return {(e.alarm.device_id, e.alarm.code): ((e.ts_us - START) / 1e6, e.evidence)
                for e in rig.events if e.kind == "raised"}
    finally:
        rig.close()


def test_batched_raises_what_the_per_device_twin_raises(tmp_path):
    new, ref = _raised(tmp_path, True), _raised(tmp_path, False)
    assert new.keys() == ref.keys()
    codes = {c for _, c in ref}
    assert {"asystole", "vfib", "brady.extreme", "tachy.extreme", "data.gap", "spo2.low",
            "leads_off"} <= codes, ref
    for k, (t, ev) in ref.items():  # judged once per second of ECG: at most a second apart
        assert abs(new[k][0] - t) <= 1.0, (k, new[k][0], t)
        if k[1] not in ("asystole", "vfib", "brady.extreme", "tachy.extreme", "pause",
                        "data.gap", "ecg.no_signal", "ecg.noisy"):  # raised on the same batch
            assert new[k][1].numerics == ev.numerics, k
        if k[1] == "spo2.low":  # pleth evidence: the same frames, the same snippet
            got = new[k][1]
            assert got.wave_type == ev.wave_type == 2 and got.wave_start_us == ev.wave_start_us
            np.testing.assert_array_equal(got.wave, ev.wave)


def _feed_both(frames, cfg=None):
    """Feed (ts_us, raw int16) frames to an EcgBatch and to an EcgAnalyser, one second
    of ECG at a time; returns both judgement sequences as (ts, codes found)."""
    cfg = cfg or ArrhythmiaConfig()
    eb = EcgBatch(cfg, capacity=1)
    slot = np.array([eb.lead(7, 0).slot])
    twin = EcgAnalyser(cfg, 0)
    got, ref = [], []
    for ts, raw in frames:
        eb.add_frames(slot, np.array([ts]), np.array([FS]), np.array([2.0]),
                      np.array([-1.0]), raw, np.array([0]), np.array([raw.size]))
        j = eb.step()
        if j is not None:
            got += [(int(t), int(b)) for t, b in zip(j.ts_us, j.bits, strict=True)]
        if twin.add(ts, raw, 2.0, -1.0, FS):
            r = twin.process()
            if r is not None:
                ref.append((r[0], sum(1 << i for i, c in enumerate(
                    ("vfib", "asystole", "pause", "brady.extreme", "tachy.extreme"))
                    if c in {f.code for f in r[2]})))
    return eb, got, ref


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000),
       events=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(
           ["late", "hole", "long_hole", "nan", "flat", "fs"])), max_size=5))
def test_hostile_frames_judged_like_the_twin(seed, events):
    """1 s frames with retransmissions, short and long holes, NaN and flat runs and a
    change of rate: the batched judgements equal the twin's, second by second."""
    rng = np.random.default_rng(seed)
    from vitalcore.dsp import simulate_ecg

    x, _ = simulate_ecg(45.0, FS, hr_bpm=float(rng.integers(30, 190)), seed=seed)
    raw = np.round((x * 1000 + 1.0) / 2.0).astype(np.int16)  # value = raw * 2 - 1 µV
    kinds = dict(events)
    frames, ts = [], START
    for k in range(45):
        seg = raw[k * FS:(k + 1) * FS].copy()
        kind = kinds.get(k)
        if kind == "nan":
            seg[:] = 0  # a zero second (the wire carries no NaN; holes become NaN)
        elif kind == "flat":
            seg[FS // 2:] = seg[FS // 2]
        elif kind == "hole":
            ts += 600_000
        elif kind == "long_hole":
            ts += 3_000_000
        frames.append((ts, seg))
        if kind == "late":
            frames.append((ts - 2_000_000, seg))  # a retransmission: dropped by both
        ts += 1_000_000
    eb, got, ref = _feed_both(frames)
    assert got == ref
    assert eb.late_frames == sum(1 for v in kinds.values() if v == "late")


def test_asystole_bit_and_evidence_ring():
    """Flat noise after 10 s of sinus: ASYSTOLE once silence exceeds 4 + 5 s; the lead's
    ring holds the newest 8 s in device time order."""
    from vitalcore.dsp import simulate_ecg

    x, _ = simulate_ecg(10.0, FS, hr_bpm=70.0, seed=2)
    quiet = np.random.default_rng(0).normal(0, 0.02, 15 * FS)
    raw = np.round(np.concatenate([x, quiet]) * 1000 / 2.0).astype(np.int16)
    frames = [(START + k * 1_000_000, raw[k * FS:(k + 1) * FS]) for k in range(25)]
    eb, got, ref = _feed_both(frames)
    assert got == ref
    first = next(t for t, b in got if b & ASYSTOLE)
    assert 18.0 <= (first - START) / 1e6 <= 21.0
    ring = eb.ring_of(0)
    start, vals = ring.last()
    assert start == START + 17 * 1_000_000 and vals.size == 8 * FS
    np.testing.assert_allclose(vals, (raw[17 * FS:] * 2.0 - 1.0) * 1e-3, rtol=1e-6)


def test_forget_and_reuse_slot():
    eb = EcgBatch(ArrhythmiaConfig(), capacity=1)
    a = eb.lead(1, 0)
    raw = np.zeros(FS, np.int16)
    eb.add_frames(np.array([a.slot]), np.array([START]), np.array([FS]), np.array([1.0]),
                  np.array([0.0]), raw, np.array([0]), np.array([FS]))
    eb.forget(1)
    j = eb.step()  # the logged frame of a forgotten device is dropped: nothing judged
    assert j is None or j.device_id.size == 0
    assert len(eb) == 0 and eb.slots(np.array([1], np.uint64)).tolist() == [-1]
    b = eb.lead(2, 0)
    assert b.slot == a.slot and eb.slots(np.array([2, 1], np.uint64)).tolist() == [a.slot, -1]
    with pytest.raises(KeyError):
        eb.lead(2, 0)


def test_ecg_thread_far_behind_sheds_and_raises_overload(tmp_path, monkeypatch):
    """ECG batches beyond MAX_ECG_QUEUE are shed, counted and alarmed; the fast rules
    go on (hr.high still raised)."""
    import vitalcore.alarms.engine as eng

    monkeypatch.setattr(eng, "MAX_ECG_QUEUE", 0)  # as if the ECG thread never caught up
    rig = Rig(tmp_path, config=AlarmConfig(batched=True))
    try:
        rig.run([ScenarioWearable(device_id=60, start_us=START, seed=1, hr_bpm=150)], 6)
        over = rig.raised("engine.overload")
        assert over and "ECG frame(s) shed" in over[0].alarm.message
        assert rig.engine.stats()["ecg_frames_shed"] == 6 * 4
        assert rig.raised("hr.high", 60)
        assert not rig.raised("asystole")  # nothing analysed: no ECG alarm invented
    finally:
        rig.close()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), per_step=st.integers(2, 12))
def test_many_frames_per_device_in_one_pass(seed, per_step):
    """Several frames of each device logged before one step (an engine behind): the same
    beats and evidence ring as stepping after every frame."""
    from vitalcore.dsp import simulate_ecg

    devs = (3, 9)
    raws = [np.round(simulate_ecg(20.0, FS, hr_bpm=60.0 + 40 * i, seed=seed + i)[0] * 500)
            .astype(np.int16) for i in range(2)]
    bs = [EcgBatch(ArrhythmiaConfig(), capacity=1) for _ in range(2)]
    slots = [[b.lead(d, 0).slot for d in devs] for b in bs]
    for k in range(80):  # 250 ms frames, both devices, interleaved
        for i in range(2):
            seg = raws[i][k * 62:(k + 1) * 62]
            for b, sl in zip(bs, slots, strict=True):
                b.add_frames(np.array([sl[i]]), np.array([START + k * 248_000]),
                             np.array([FS]), np.array([2.0]), np.array([0.0]), seg,
                             np.array([0]), np.array([seg.size]))
        bs[0].step()
        if k % per_step == per_step - 1:
            bs[1].step()
    bs[1].step()
    for i in range(2):
        a, b = bs[0].ring_of(slots[0][i]), bs[1].ring_of(slots[1][i])
        assert a.n == b.n == 80 * 62
        np.testing.assert_array_equal(a.last()[1], b.last()[1])
    ga, gb = bs[0]._groups[FS], bs[1]._groups[FS]
    np.testing.assert_array_equal(ga.bbuf, gb.bbuf)
    np.testing.assert_array_equal(ga.nbeats, gb.nbeats)
    assert ga.nbeats.sum() > 0


def test_growth_keeps_every_device_state():
    """200 devices (the per-rate group starts at 64 rows): rows added while others hold
    state keep that state; each device's ring holds its own samples."""
    eb = EcgBatch(ArrhythmiaConfig(), capacity=8)
    n_dev = 200
    for k in range(3):
        for d in range(n_dev):
            if k == 0:
                eb.lead(1000 + d, 0)
        slots = eb.slots(np.arange(1000, 1000 + n_dev, dtype=np.uint64))
        raw = np.repeat(np.arange(n_dev, dtype=np.int16) + 100 * k, FS)
        eb.add_frames(slots, np.full(n_dev, START + k * 1_000_000), np.full(n_dev, FS),
                      np.full(n_dev, 1.0), np.zeros(n_dev), raw,
                      np.arange(n_dev) * FS, np.full(n_dev, FS))
        j = eb.step()
        assert j is not None and j.device_id.size == n_dev  # each judged once a second
    for d in (0, 63, 64, 199):
        start, vals = eb.ring_of(int(eb.slots(np.array([1000 + d], np.uint64))[0])).last()
        assert start == START and vals.size == 3 * FS
        np.testing.assert_allclose(vals, np.repeat(d + 100 * np.arange(3), FS) * 1e-3,
                                   rtol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (dict(slot=np.array([5])), "slot not in use"),
    (dict(slot=np.array([-1])), "slot not in use"),
    (dict(n=np.array([300])), "out of range"),
    (dict(start=np.array([-1])), "out of range"),
    (dict(ts_us=np.array([START, START])), "one length"),
])
def test_bad_frame_columns_raise_and_log_nothing(bad, match):
    from vitalcore.errors import UsageError

    eb = EcgBatch(ArrhythmiaConfig(), capacity=4)
    lead = eb.lead(1, 0)
    cols = dict(slot=np.array([lead.slot]), ts_us=np.array([START]), fs_hz=np.array([FS]),
                gain=np.array([1.0]), offset=np.array([0.0]), raw=np.zeros(FS, np.int16),
                start=np.array([0]), n=np.array([FS]))
    with pytest.raises(UsageError, match=match):
        eb.add_frames(**{**cols, **bad})
    assert eb.pending_samples == 0
    eb.add_frames(**cols)  # the good frame afterwards is analysed
    assert eb.pending_samples == FS and eb.step() is not None


def test_batches_queued_for_the_ecg_thread_are_logged_together(tmp_path):
    """Ticks fed without waiting (the ECG thread then merges many batches of frames per
    pass): the asystole is still found, with a full evidence snippet, as in lockstep."""
    w = ScenarioWearable(device_id=70, start_us=START, seed=3)
    calm = ScenarioWearable(device_id=71, start_us=START, seed=4)
    put_ecg(w, 20.0, np.random.default_rng(1).normal(0, 0.02, 20 * FS))
    rig = Rig(tmp_path, config=AlarmConfig(batched=True))
    sizes = []
    log_frames = rig.engine._ecg_log
    # a slow ECG thread: batches queue up meanwhile and are logged together
    rig.engine._ecg_log = lambda frames: (sizes.append(len(frames)), time.sleep(0.03),
                                          log_frames(frames))
    try:
        for k in range(32 * 4):
            for dev in (w, calm):
                rig.store.feed(b"".join(dev.next_tick()), dev.device_id)
            rig.store.commit()
            rig.clock.t += 0.25
            if k % 24 == 23:
                assert rig.engine.wait_idle(60)
        assert rig.engine.wait_idle(60)
        got = rig.raised("asystole")
        assert [e.alarm.device_id for e in got] == [70]
        assert got[0].evidence.wave_fs == FS and len(got[0].evidence.wave) == 8 * FS
        assert rig.engine.stats()["ecg_late_frames"] == 0
        assert max(sizes) > 1 and sum(sizes) == 32 * 4  # merged, none lost
    finally:
        rig.close()
