"""HistoryStore's read path (footer statistics, bisection, early stop, numpy masks)
gives exactly what the pyarrow.dataset scan it replaced gave, on files written with
the current writer settings (rows declared sorted) and with the older ones (not).

Row groups and read batches are made tiny here so that every example has many row
groups per file, groups shared by devices, and reads that stop inside a file.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import protocol as P
from vitalcore._refcodec import RefFrameDecoder, encode_numerics, encode_waveform
from vitalcore.errors import StorageError, UsageError
from vitalcore.storage import HistoryStore, history
from vitalcore.storage.history import DAY_US, SCHEMAS, samples_of

MIDNIGHT = 19_676 * DAY_US
BASE = MIDNIGHT - 2_000_000  # rows on both sides of midnight: two day files
DEVICES = (1, 2, 17, 2**63 + 1)  # 1 and 17 share a bucket of 16; one id above 2**63
ECG, PLETH = int(P.FrameType.ECG), int(P.FrameType.PLETH)
NUMERIC_CODES = (int(P.NumericCode.HR), int(P.NumericCode.SPO2), int(P.NumericCode.TEMP))
SORT_KEYS = {"waveforms": ["ts_us", "frame_type", "channel", "seq"], "numerics": ["ts_us", "code"]}


@contextlib.contextmanager
def tiny_row_groups(declared: bool):
    """Row groups of <= 5 rows (devices with >= 3 rows get their own), read batches of
    2-3 rows; ``declared=False`` writes files as before (no ``sorting_columns``)."""
    real = history._writer_options

    def options(table: str, level: int):
        opts, _ = real(table, level)
        if not declared:
            del opts["sorting_columns"]
        return opts, 5

    with (
        mock.patch.object(history, "_writer_options", options),
        mock.patch.object(history, "_MIN_GROUP_ROWS", {"waveforms": 3}),
        mock.patch.object(history, "_MIN_GROUP_ROWS_OTHER", 3),
        mock.patch.object(history, "_BATCH_ROWS", {"waveforms": 2}),
        mock.patch.object(history, "_BATCH_ROWS_OTHER", 3),
    ):
        yield


def reference(store: HistoryStore, table: str, device_id, t0: int, t1: int, expr=None) -> pa.Table:
    """The read as it was done before: a pyarrow.dataset scan of the listed files with
    the filter pushed down, then a stable sort."""
    if table == "waveforms":
        f = (pc.field("ts_us") < t1) & (pc.field("end_ts_us") > t0)
    else:
        f = (pc.field("ts_us") >= t0) & (pc.field("ts_us") < t1)
    if device_id is not None:
        ids = [device_id] if isinstance(device_id, int) else list(device_id)
        f &= pc.field("device_id").isin(pa.array(ids, pa.uint64()))
    if expr is not None:
        f &= expr
    files = [str(p) for p in store.files(table, device_id, t0, t1)]
    if not files:
        return SCHEMAS[table].empty_table()
    t = ds.dataset(files, schema=SCHEMAS[table], format="parquet").to_table(filter=f)
    return t.sort_by([(k, "ascending") for k in SORT_KEYS.get(table, ["ts_us"])])


# per frame: device index, stream (0: ECG II 250 Hz, 1: pleth IR 100 Hz), time step in
# 1/4 s (0: same instant as the previous frame of the stream), samples
frames_st = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 1), st.integers(0, 3), st.integers(1, 70)),
    min_size=1,
    max_size=40,
)
numerics_st = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 8), st.sampled_from(NUMERIC_CODES)),
    min_size=1,
    max_size=60,
)
# (start from BASE, length), µs: windows that cut the data (a few seconds from BASE)
window_st = st.tuples(st.integers(-1_000_000, 8_000_000), st.integers(1, 6_000_000))


def write_batches(store: HistoryStore, frames: list[bytes], batches: int) -> None:
    """Write ``frames`` in ``batches`` LSN ranges (several files per directory)."""
    k = -(-len(frames) // batches)
    for i in range(batches):
        part = frames[i * k : (i + 1) * k]
        if part:
            store.write(RefFrameDecoder().decode(b"".join(part)), i + 1, i + 1)


def waveform_frames(spec) -> list[bytes]:
    out, clock, seq = [], {}, 0
    for dev_i, stream, step, n in spec:
        dev = DEVICES[dev_i]
        ts = clock.get((dev, stream), BASE) + step * 250_000
        clock[(dev, stream)] = ts
        samples = (np.arange(n) * 37 + seq) % 2000 - 1000
        if stream == 0:
            out.append(encode_waveform(ECG, dev, seq, ts, P.EcgLead.II, samples, 250, 2.5))
        else:
            ir = P.PlethChannel.IR
            out.append(encode_waveform(PLETH, dev, seq, ts, ir, samples, 100, 1.0, 5.0))
        seq += 1
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=frames_st,
    declared=st.booleans(),
    batches=st.integers(1, 3),
    compact=st.booleans(),
    windows=st.lists(window_st, min_size=1, max_size=4),
    query_dev=st.integers(0, 4),
)
def test_waveform_reads_equal_the_dataset_scan(
    spec, declared, batches, compact, windows, query_dev
):
    with tempfile.TemporaryDirectory() as tmp, tiny_row_groups(declared):
        store = HistoryStore(Path(tmp), sync="none", buckets=16)
        write_batches(store, waveform_frames(spec), batches)
        if compact:
            for day in ("2023-11-14", "2023-11-15"):
                store.compact(day)
        dev = DEVICES[query_dev] if query_dev < 4 else 99
        for start, length in windows:
            t0 = BASE + start
            t1 = t0 + length
            got = store.read_waveforms(dev, t0, t1)
            assert got.equals(reference(store, "waveforms", dev, t0, t1))
            ecg = store.read_waveforms(dev, t0, t1, ECG, int(P.EcgLead.II))
            want = reference(store, "waveforms", dev, t0, t1,
                             (pc.field("frame_type") == ECG) & (pc.field("channel") == 1))
            assert ecg.equals(want)
            ts, values = samples_of(ecg, t0, t1)
            want_ts, want_v = samples_of(want.combine_chunks(), t0, t1)
            np.testing.assert_array_equal(ts, want_ts)
            np.testing.assert_array_equal(values, want_v)
            several = [DEVICES[0], DEVICES[3]]
            assert store.read("waveforms", several, t0, t1).equals(
                reference(store, "waveforms", several, t0, t1)
            )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=numerics_st,
    declared=st.booleans(),
    batches=st.integers(1, 3),
    windows=st.lists(window_st, min_size=1, max_size=4),
    query_dev=st.integers(0, 4),
    codes=st.one_of(st.none(), st.lists(st.sampled_from(NUMERIC_CODES), max_size=3)),
)
def test_numeric_reads_equal_the_dataset_scan(rows, declared, batches, windows, query_dev, codes):
    frames = [
        encode_numerics(DEVICES[d], k, BASE + s * 1_000_000, [(code, 30.0 + k % 10)])
        for k, (d, s, code) in enumerate(rows)
    ]
    with tempfile.TemporaryDirectory() as tmp, tiny_row_groups(declared):
        store = HistoryStore(Path(tmp), sync="none", buckets=16)
        write_batches(store, frames, batches)
        dev = DEVICES[query_dev] if query_dev < 4 else 99
        for start, length in windows:
            t0 = BASE + start
            t1 = t0 + length
            expr = None if codes is None else pc.field("code").isin(pa.array(codes, pa.uint8()))
            want = reference(store, "numerics", dev, t0, t1, expr)
            assert store.read_numerics(dev, t0, t1, codes).equals(want)
            assert store.read("numerics", dev, t0, t1, filter=expr).equals(want)
            projected = store.read("numerics", None, t0, t1, columns=["value", "device_id"])
            assert projected.equals(
                reference(store, "numerics", None, t0, t1).select(["value", "device_id"])
            )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=frames_st, window=window_st, query_dev=st.integers(0, 3))
def test_bisection_picks_the_groups_a_full_check_picks(spec, window, query_dev):
    """On a file declared sorted, the bisection keeps exactly the row groups that
    checking every group's statistics keeps."""
    with tempfile.TemporaryDirectory() as tmp, tiny_row_groups(True):
        store = HistoryStore(Path(tmp), sync="none", buckets=1)
        write_batches(store, waveform_frames(spec), 1)
        t0 = BASE + window[0]
        t1 = t0 + window[1]
        dev = DEVICES[query_dev]
        for path in store.files("waveforms", dev, BASE - DAY_US, BASE + DAY_US):
            footer = store._footer(str(path))
            assert footer.sorted
            fast = footer.row_groups("waveforms", dev, t0, t1)
            footer.sorted = False
            assert fast == footer.row_groups("waveforms", dev, t0, t1)


def test_files_declare_their_order_and_old_files_do_not(tmp_path):
    frames = waveform_frames([(0, 0, 1, 62), (1, 0, 1, 63), (0, 1, 1, 25)])
    store = HistoryStore(tmp_path / "new", sync="none", buckets=1)
    write_batches(store, frames, 1)
    with tiny_row_groups(declared=False):
        old = HistoryStore(tmp_path / "old", sync="none", buckets=1)
        write_batches(old, frames, 1)
    wide = (BASE - DAY_US, BASE + DAY_US)
    (new_file,) = store.files("waveforms", None, *wide)
    (old_file,) = old.files("waveforms", None, *wide)
    assert store._footer(str(new_file)).sorted and not old._footer(str(old_file)).sorted
    for dev in DEVICES[:2]:
        assert store.read_waveforms(dev, *wide).equals(old.read_waveforms(dev, *wide))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.read("numerics", -1, 0, 10), "device ids"),
        (lambda s: s.read("numerics", 2**64, 0, 10), "device ids"),
        (lambda s: s.read("numerics", [1, "2"], 0, 10), "device ids"),
        (lambda s: s.read("numerics", "12", 0, 10), "device_id must be"),
        (lambda s: s.read_numerics(1, 0, 10, codes=[256]), "code"),
        (lambda s: s.read_numerics(1, 0, 10, codes=[1.5]), "code"),
        (lambda s: s.read_waveforms(1, 0, 10, ECG, channel=-1), "channel"),
        (lambda s: s.read_waveforms(1, 0, 10, 77), "frame_type"),
    ],
)
def test_bad_read_arguments_are_usage_errors(tmp_path, call, match):
    store = HistoryStore(tmp_path, sync="none")
    write_batches(store, waveform_frames([(0, 0, 1, 10)]), 1)
    with pytest.raises(UsageError, match=match):
        call(store)


def test_a_file_compacted_away_after_listing_is_listed_again(tmp_path):
    store = HistoryStore(tmp_path, sync="none", buckets=1)
    frames = waveform_frames([(0, 0, 1, 62)] * 8)
    write_batches(store, frames, 2)  # two files in one directory
    wide = (BASE - DAY_US, BASE + DAY_US)
    stale = store.files("waveforms", 1, *wide)
    want = store.read_waveforms(1, *wide)
    assert store.compact("2023-11-14", "waveforms")  # listed files of that day are gone
    assert not all(p.exists() for p in stale)
    listings = [stale]
    real = store.files
    with mock.patch.object(store, "files", lambda *a: listings.pop() if listings else real(*a)):
        assert store.read_waveforms(1, *wide).equals(want)
    with (
        mock.patch.object(store, "files", lambda *a: stale),
        pytest.raises(StorageError, match="keep vanishing"),
    ):
        store.read_waveforms(1, *wide)


def test_a_stored_file_missing_a_column_is_a_storage_error(tmp_path):
    store = HistoryStore(tmp_path, sync="none", buckets=1)
    hr = NUMERIC_CODES[0]
    rows = [encode_numerics(1, k, MIDNIGHT + k * 10**6, [(hr, 60.0)]) for k in range(3)]
    (path,) = store.write(RefFrameDecoder().decode(b"".join(rows)), 1, 1)
    pq.write_table(pq.read_table(path).drop_columns(["status"]), path)
    with pytest.raises(StorageError, match="lack column"):
        store.read_numerics(1, BASE - DAY_US, BASE + DAY_US)
