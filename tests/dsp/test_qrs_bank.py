"""QRSBank: many streaming detectors stepped together give the single detector's beats."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore.dsp import BEAT_SYMBOLS, QRSDetector, detect_qrs, score_beats, simulate_ecg
from vitalcore.dsp.qrs_bank import QRSBank
from vitalcore.errors import UsageError

MITBIH_RECORDS = ("100", "106", "203", "207")  # normal, PVCs, noisy multiform, VF/flutter


def _feed_interleaved(bank, rows, sigs, rng, max_chunk):
    """Feed every signal to its row in random chunks, rows interleaved in random order
    (a row may get several segments in one call); returns the beats per row, flushed."""
    got = [[] for _ in sigs]
    pos = [0] * len(sigs)
    while any(p < s.size for p, s in zip(pos, sigs, strict=True)):
        seg_rows, parts, bounds = [], [], [0]
        for i in rng.choice(len(sigs), size=len(sigs) + 2).tolist():
            if pos[i] >= sigs[i].size:
                continue
            n = int(rng.integers(0, max_chunk + 1))
            part = sigs[i][pos[i]:pos[i] + n]
            pos[i] += part.size
            seg_rows.append(rows[i])
            parts.append(part)
            bounds.append(bounds[-1] + part.size)
        if not seg_rows:
            continue
        beats, counts = bank.process(np.array(seg_rows), np.concatenate(parts), bounds)
        for r, b in zip(seg_rows, np.split(beats, np.cumsum(counts)[:-1]), strict=True):
            got[rows.index(r)].extend(b.tolist())
    beats, counts = bank.flush(np.array(rows))
    for i, b in enumerate(np.split(beats, np.cumsum(counts)[:-1])):
        got[i].extend(b.tolist())
    return [np.array(g, np.int64) for g in got]


def test_mitbih_records_in_random_chunks_equal_offline(data_dir):
    """Records as rows of one bank, cut into random chunks (0-2000 samples) and
    interleaved: beats identical to detect_qrs on the whole record, and so are Se/+P."""
    wfdb = pytest.importorskip("wfdb")
    sigs, refs = [], []
    for name in MITBIH_RECORDS:
        path = data_dir / "mitdb" / name
        if not path.with_suffix(".hea").exists():
            pytest.skip(f"mitdb/{name} not provided")
        rec = wfdb.rdrecord(str(path), sampto=360 * 300)  # the first 5 minutes
        ann = wfdb.rdann(str(path), "atr", sampto=360 * 300)
        ch = rec.sig_name.index("MLII") if "MLII" in rec.sig_name else 0
        sigs.append(np.ascontiguousarray(rec.p_signal[:, ch]))
        refs.append([s for s, y in zip(ann.sample, ann.symbol, strict=True)
                     if y in BEAT_SYMBOLS])
    bank = QRSBank(360.0, capacity=2)  # grows while rows are added
    rows = [bank.add() for _ in sigs]
    got = _feed_interleaved(bank, rows, sigs, np.random.default_rng(11), 2000)
    for name, sig, ref, g in zip(MITBIH_RECORDS, sigs, refs, got, strict=True):
        offline = detect_qrs(sig, 360.0)
        np.testing.assert_array_equal(g, offline, err_msg=name)
        assert score_beats(ref, g, 360.0) == score_beats(ref, offline, 360.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), max_chunk=st.sampled_from([1, 7, 250, 1000, 5000]),
       fs=st.sampled_from([125.0, 250.0, 500.0]),
       damage=st.lists(st.tuples(st.sampled_from(["nan", "inf", "flat", "clip", "zero"]),
                                 st.floats(0, 1), st.floats(0, 0.3)), max_size=4))
def test_hostile_chunking_nan_flat_match_single_detectors(seed, max_chunk, fs, damage):
    """Rows fed damaged ECG (NaN, inf, flat lines, clipping, zeros) in hostile chunkings
    (single samples, empty segments, whole records) report exactly what one QRSDetector
    per signal reports for the unchunked signal."""
    rng = np.random.default_rng(seed)
    sigs = []
    for i in range(3):
        x, _ = simulate_ecg(12.0, fs, hr_bpm=float(rng.integers(30, 200)), seed=seed % 1000 + i)
        for kind, where, length in damage:
            a = int(where * x.size)
            b = min(x.size, a + int(length * x.size))
            x[a:b] = {"nan": np.nan, "inf": np.inf, "flat": x[a] if a < x.size else 0.0,
                      "clip": 80.0, "zero": 0.0}[kind]
        sigs.append(x)
    bank = QRSBank(fs)
    rows = [bank.add() for _ in sigs]
    got = _feed_interleaved(bank, rows, sigs, rng, max_chunk)
    for x, g in zip(sigs, got, strict=True):
        det = QRSDetector(fs)
        ref = np.concatenate([det.process(x), det.flush()])
        np.testing.assert_array_equal(g, ref)
        assert np.all(np.diff(g) > 0) and (g.size == 0 or (g[0] >= 0 and g[-1] < x.size))


def test_rows_are_independent_and_reusable():
    x, truth = simulate_ecg(20.0, 250.0, hr_bpm=72.0, seed=3)
    bank = QRSBank(250.0, capacity=1)
    a, b = bank.add(), bank.add()
    assert bank.capacity == 2 and len(bank) == 2
    # row b sees garbage; row a must be unaffected
    beats, counts = bank.process([a, b], np.concatenate([x, np.full(x.size, np.nan)]),
                                 [0, x.size, 2 * x.size])
    assert counts[1] == 0 and beats.size == counts[0]
    fa, _ = bank.flush([a])
    np.testing.assert_array_equal(np.concatenate([beats, fa]), detect_qrs(x, 250.0))
    assert bank.samples_seen([a, b]).tolist() == [x.size + 250, x.size]
    bank.remove(b)
    c = bank.add()
    assert c == b and bank.samples_seen(c).tolist() == [0]  # a fresh detector
    bank.reset(a)
    assert bank.samples_seen(a).tolist() == [0]
    assert not bank.in_vf([a, c]).any()


def test_vf_is_reported_per_row():
    fs = 250.0
    t = np.arange(int(20 * fs)) / fs
    vf = 0.8 * np.sin(2 * np.pi * 5.0 * t)  # coarse VF-like 5 Hz oscillation
    sinus, _ = simulate_ecg(20.0, fs, hr_bpm=70.0, seed=1)
    bank = QRSBank(fs)
    rows = np.array([bank.add(), bank.add()])
    bank.process(rows, np.concatenate([vf, sinus]), [0, vf.size, 2 * vf.size])
    det = QRSDetector(fs)
    det.process(vf)
    assert bank.in_vf(rows).tolist() == [det.in_vf, False]
    assert det.in_vf


@pytest.mark.parametrize("call, match", [
    (lambda b, r: b.process([r + 5], np.zeros(3), [0, 3]), "not an allocated row"),
    (lambda b, r: b.process([r], np.zeros(3), [0, 2]), "rise from 0"),
    (lambda b, r: b.process([r], np.zeros(3), [0, 4, 3][:2]), "rise from 0"),
    (lambda b, r: b.process([r, r], np.zeros(3), [0, 2, 1, 3][:3]), "without decreasing"),
    (lambda b, r: b.process([r], np.zeros(3), [0, 1, 3]), "must be 2 integers"),
    (lambda b, r: b.process([r], np.zeros((3, 1)), [0, 3]), "1-D"),
    (lambda b, r: b.process([r], ["a", "b"], [0, 2]), "numeric"),
    (lambda b, r: b.process([[r]], np.zeros(3), [0, 3]), "1-D array of integers"),
    (lambda b, r: b.process([0.5], np.zeros(3), [0, 3]), "1-D array of integers"),
    (lambda b, r: b.remove(True), "not an allocated row"),
    (lambda b, r: b.flush([r, r]), "distinct rows"),
    (lambda b, r: QRSBank(250.0, capacity=0), "capacity"),
    (lambda b, r: QRSBank(50.0), "fs must be within"),
])
def test_bad_calls_raise_usage_error_and_feed_nothing(call, match):
    bank = QRSBank(250.0)
    r = bank.add()
    with pytest.raises(UsageError, match=match):
        call(bank, r)
    assert bank.samples_seen(r).tolist() == [0]
