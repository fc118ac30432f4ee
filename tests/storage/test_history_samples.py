"""samples_of: the fast path (one fs dividing 1 s, one scale) equals the general formula."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.storage.history import SCHEMAS, samples_of


def frames_table(ts, n, fs, gain, offset, seed=0) -> pa.Table:
    rng = np.random.default_rng(seed)
    k = len(ts)
    offsets = np.zeros(k + 1, np.int32)
    np.cumsum(n, out=offsets[1:])
    samples = rng.integers(-32768, 32767, int(offsets[-1]), dtype=np.int16)
    end = np.asarray(ts) + np.round(np.asarray(n) * 1e6 / np.asarray(fs)).astype(np.int64)
    cols = {
        "device_id": np.ones(k, np.uint64), "frame_type": np.ones(k, np.uint8),
        "channel": np.zeros(k, np.uint8), "seq": np.arange(k, dtype=np.uint32),
        "ts_us": np.asarray(ts, np.int64), "end_ts_us": end, "fs_hz": np.asarray(fs, np.uint16),
        "gain": np.asarray(gain, np.float32), "offset": np.asarray(offset, np.float32),
        "n_samples": np.asarray(n, np.uint32),
        "samples": pa.ListArray.from_arrays(pa.array(offsets), pa.array(samples)),
    }
    return pa.table(cols, schema=SCHEMAS["waveforms"])


def reference(t: pa.Table, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented formula, sample by sample."""
    ts_out, v_out = [], []
    for row in t.to_pylist():
        for k, s in enumerate(row["samples"]):
            ts = row["ts_us"] + round(k * 1e6 / row["fs_hz"])
            if t0 <= ts < t1:
                ts_out.append(ts)
                v_out.append(np.float32(s) * np.float32(row["gain"]) + np.float32(row["offset"]))
    return np.array(ts_out, np.int64), np.array(v_out, np.float32)


@settings(max_examples=60, deadline=None)
@given(
    fs=st.sampled_from([250, 500, 100, 300, 360, 1]),
    mixed_fs=st.booleans(),
    mixed_scale=st.booleans(),
    n=st.lists(st.integers(0, 40), min_size=1, max_size=12),
    gaps=st.lists(st.integers(-50_000, 300_000), min_size=12, max_size=12),
    window=st.tuples(st.integers(-100_000, 2_000_000), st.integers(1, 3_000_000)),
    seed=st.integers(0, 1000),
)
def test_samples_of_matches_the_formula(fs, mixed_fs, mixed_scale, n, gaps, window, seed):
    k = len(n)
    ts = 10**15 + np.cumsum(gaps[:k])
    fs_col = [fs if not (mixed_fs and i % 2) else 500 for i in range(k)]
    gain = [2.5 if not (mixed_scale and i % 3 == 1) else 1.25 for i in range(k)]
    offset = [0.0 if not (mixed_scale and i % 3 == 2) else -3.0 for i in range(k)]
    t = frames_table(ts, n, fs_col, gain, offset, seed)
    t0 = 10**15 + window[0]
    t1 = t0 + window[1]
    got_ts, got_v = samples_of(t, t0, t1)
    want_ts, want_v = reference(t, t0, t1)
    assert got_ts.dtype == np.int64 and got_v.dtype == np.float32
    np.testing.assert_array_equal(got_ts, want_ts)
    np.testing.assert_array_equal(got_v, want_v)


def test_empty_and_fully_inside():
    t = frames_table([10**15, 10**15 + 248_000], [62, 63], [250, 250], [2.5, 2.5], [0.0, 0.0])
    ts, v = samples_of(t, 0, 2**62)
    assert len(ts) == 125 and (np.diff(ts) == 4000).all()
    ts, v = samples_of(t.slice(0, 0), 0, 1)
    assert ts.dtype == np.int64 and len(ts) == 0 and len(v) == 0


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 2)), max_size=30)
)
def test_lex_sorted_agrees_with_sorting(rows):
    from vitalcore.storage.history import _lex_sorted

    if len(rows) < 2:
        return
    keys = [np.array(c) for c in zip(*rows, strict=True)]
    assert _lex_sorted(keys) == (rows == sorted(rows))


@settings(max_examples=80, deadline=None)
@given(
    fs=st.sampled_from([250, 500, 100, 1000, 1]),
    n=st.lists(st.integers(0, 30), min_size=1, max_size=10),
    gaps=st.lists(st.sampled_from([0, 0, 0, 1, -1, 3, 999_999]), min_size=10, max_size=10),
    edges=st.tuples(
        st.integers(0, 320), st.integers(-1, 1), st.integers(0, 320), st.integers(-1, 1)
    ),
    cuts=st.lists(st.integers(1, 10), max_size=4),
    seed=st.integers(0, 1000),
)
def test_windows_ending_at_or_next_to_a_sample(fs, n, gaps, edges, cuts, seed):
    """Frames mostly back to back (the one-run fast path), windows whose ends fall on a
    sample's time or 1 µs either side, tables in several chunks: same as the formula."""
    step = 1_000_000 // fs
    ts = [10**15]
    for k in range(1, len(n)):
        ts.append(ts[-1] + n[k - 1] * step + gaps[k])
    t = frames_table(ts, n, [fs] * len(n), [2.5] * len(n), [-1.0] * len(n), seed)
    first = ts[0]
    a, da, b, db = edges
    t0, t1 = sorted((first + a * step + da, first + b * step + db))
    if t0 == t1:
        t1 += 1
    pieces, at = [], 0
    for c in cuts:  # the same rows in several chunks, as a read in batches returns them
        pieces.append(t.slice(at, c))
        at += c
    chunked = pa.concat_tables([*pieces, t.slice(at)])
    want_ts, want_v = reference(t, t0, t1)
    for table in (t, chunked):
        got_ts, got_v = samples_of(table, t0, t1)
        np.testing.assert_array_equal(got_ts, want_ts)
        np.testing.assert_array_equal(got_v, want_v)
        assert got_ts.dtype == np.int64 and got_v.dtype == np.float32
