"""History store: Parquet round trip, bucket partitions, layout, compaction atomicity,
restart cleanup."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import protocol as P
from vitalcore._refcodec import (
    RefFrameDecoder,
    encode_ack,
    encode_numerics,
    encode_status,
    encode_waveform,
)
from vitalcore.batch import DecodedBatch
from vitalcore.errors import StorageError, UsageError
from vitalcore.storage import HistoryStore, history
from vitalcore.storage.history import DAY_US, MAX_BUCKETS, SCHEMAS

ECG, PLETH = int(P.FrameType.ECG), int(P.FrameType.PLETH)
MIDNIGHT = 19_676 * DAY_US  # 2023-11-15T00:00:00Z
T0 = MIDNIGHT - 2_900_000  # 2.9 s before midnight: ECG frame 11 spans it
NOON1 = MIDNIGHT - DAY_US // 2
DAY1, DAY2 = "2023-11-14", "2023-11-15"
ALL_DAY1 = (MIDNIGHT - DAY_US, MIDNIGHT)


def ecg_samples(first: int, n: int) -> np.ndarray:
    i = np.arange(first, first + n)
    return (800 * np.sin(i / 9.0) + (i % 17)).astype(np.int16)


def device_frames(dev: int, k0: int, k1: int, t0: int = T0) -> list[bytes]:
    """Frames k0..k1-1 (1/4 s each) of one device: ECG II at 250 Hz, pleth red/IR at
    100 Hz, numerics every second, status every 2 s, and one ack."""
    out = []
    for k in range(k0, k1):
        a, b = k * 250 // 4, (k + 1) * 250 // 4
        ts = t0 + a * 4000
        out.append(encode_waveform(ECG, dev, k, ts, P.EcgLead.II, ecg_samples(a, b - a), 250, 2.5))
        for ch in (P.PlethChannel.RED, P.PlethChannel.IR):
            out.append(
                encode_waveform(PLETH, dev, k, t0 + k * 250_000, ch, np.arange(25) + 100 * ch + k, 100, 1.0, 5.0)
            )
        if k % 4 == 0:
            out.append(
                encode_numerics(dev, k // 4, t0 + k * 250_000, [(P.NumericCode.HR, 60 + k % 7), (P.NumericCode.SPO2, 97.0)])
            )
        if k % 8 == 0:
            out.append(
                encode_status(dev, k // 8, t0 + k * 250_000, battery=90, accessories=[(P.AccessoryKind.BATTERY, f"B{dev}", k)])
            )
    if k0 == 0:
        out.append(encode_ack(dev, 0, t0 + 1, 77, P.CommandKind.START_NIBP, P.AckStatus.ACCEPTED))
    return out


def decode(frames: list[bytes]) -> DecodedBatch:
    return RefFrameDecoder().decode(b"".join(frames))


def expected(batch: DecodedBatch, table: str, device_id: int) -> pa.Table:
    """What the store must return for ``table`` of one device: the batch's rows, sorted."""
    t = batch.to_arrow(table).drop_columns(["frame"])
    if table == "waveforms":
        end = t.column("ts_us").to_numpy() + np.round(
            t.column("n_samples").to_numpy() * 1e6 / t.column("fs_hz").to_numpy()
        ).astype(np.int64)
        t = t.append_column("end_ts_us", pa.array(end))
    t = t.select(SCHEMAS[table].names).cast(SCHEMAS[table])
    t = t.filter(pa.compute.equal(t.column("device_id"), pa.scalar(device_id, pa.uint64())))
    keys = {"waveforms": ["ts_us", "frame_type", "channel", "seq"], "numerics": ["ts_us", "code"]}
    keys["accessories"] = ["ts_us", "kind"]
    return t.sort_by([(k, "ascending") for k in keys.get(table, ["ts_us"])])  # stable


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    return HistoryStore(tmp_path / "history")


def parquet_names(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.endswith(".parquet"))


def row_group_devices(path: Path) -> list[tuple[int, int]]:
    """(min, max) device_id statistics of each row group of a file."""
    meta = pq.ParquetFile(path).metadata
    col = meta.schema.names.index("device_id")
    out = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(col).statistics
        assert stats is not None and stats.has_min_max
        out.append((stats.min, stats.max))
    return out


# ---------------------------------------------------------------------------- round trip
def test_round_trip_every_table(store):
    batch = decode(device_frames(1, 0, 24) + device_frames(2, 0, 24))
    paths = store.write(batch, 1, 5)
    assert all(p.name == "00000000000000000001-00000000000000000005.parquet" for p in paths)
    wide = (T0 - DAY_US, T0 + DAY_US)
    for dev in (1, 2):
        assert store.read_waveforms(dev, *wide).equals(expected(batch, "waveforms", dev))
        assert store.read_numerics(dev, *wide).equals(expected(batch, "numerics", dev))
        assert store.read_status(dev, *wide).equals(expected(batch, "status", dev))
        assert store.read_accessories(dev, *wide).equals(expected(batch, "accessories", dev))
        assert store.read_acks(dev, *wide).equals(expected(batch, "acks", dev))
    assert store.read("commands", None, *wide).num_rows == 0


def test_files_are_partitioned_by_utc_day_and_device_bucket(store):
    batch = decode(device_frames(1, 0, 24) + device_frames(2, 0, 4))  # 6 s across midnight
    store.write(batch, 1, 1)
    root = store.root
    assert sorted(os.listdir(root / "waveforms")) == [f"day={DAY1}", f"day={DAY2}"]
    assert sorted(os.listdir(root / "waveforms" / f"day={DAY2}")) == ["bucket=1"]
    d1 = root / "waveforms" / f"day={DAY1}" / "bucket=1"
    before = pq.read_table(d1 / parquet_names(d1)[0])
    assert (before.column("ts_us").to_numpy() < MIDNIGHT).all()
    assert np.all(np.diff(before.column("ts_us").to_numpy()) >= 0)
    after = store.read_waveforms(1, MIDNIGHT, MIDNIGHT + DAY_US)
    # the ECG frame that starts before midnight and ends after it is included
    ecg = after.filter(pa.compute.equal(after.column("frame_type"), ECG))
    assert ecg.column("ts_us")[0].as_py() < MIDNIGHT < ecg.column("end_ts_us")[0].as_py()


def test_read_samples_flattens_frames_with_per_sample_times(store):
    batch = decode(device_frames(3, 0, 16))
    store.write(batch, 1, 1)
    t0, t1 = T0 + 100_000, T0 + 3_000_000
    ts, values = store.read_samples(3, ECG, P.EcgLead.II, t0, t1)
    first = -(-(t0 - T0) // 4000)  # first sample index at or after t0
    idx = np.arange(first, first + len(ts))
    assert np.array_equal(ts, T0 + idx * 4000)
    assert ts[-1] < t1 <= ts[-1] + 4000
    np.testing.assert_array_equal(values, ecg_samples(first, len(ts)).astype(np.float32) * np.float32(2.5))
    ts, values = store.read_samples(3, PLETH, P.PlethChannel.IR, T0, T0 + 1_000_000)
    assert len(ts) == 100 and values.dtype == np.float32
    assert values[0] == 100 + 5.0  # raw 100 (IR), gain 1, offset 5
    empty = store.read_samples(3, ECG, P.EcgLead.V1, T0, t1)
    assert len(empty[0]) == len(empty[1]) == 0


def test_read_filters_and_device_sets(store):
    store.write(decode(device_frames(1, 0, 8) + device_frames(2, 0, 8)), 1, 1)
    wide = (T0 - 10**9, T0 + 10**9)
    red = store.read_waveforms(1, *wide, frame_type=PLETH, channel=P.PlethChannel.RED)
    assert red.num_rows == 8 and set(red.column("channel").to_pylist()) == {0}
    hr = store.read_numerics(1, *wide, codes=[P.NumericCode.HR])
    assert set(hr.column("code").to_pylist()) == {P.NumericCode.HR} and hr.num_rows == 2
    both = store.read("numerics", [1, 2], *wide)
    assert set(both.column("device_id").to_pylist()) == {1, 2}
    assert store.read("numerics", None, *wide).equals(both)
    slim = store.read("waveforms", 1, *wide, columns=["n_samples", "channel"])
    assert slim.column_names == ["n_samples", "channel"] and slim.num_rows == 24
    with pytest.raises(UsageError, match="no column"):
        store.read("waveforms", 1, *wide, columns=["nope"])
    narrow = store.read_numerics(1, T0, T0 + 1)
    assert narrow.column("ts_us").to_pylist() == [T0, T0]
    with pytest.raises(UsageError):
        store.read_waveforms(1, T0, T0, frame_type=ECG)
    with pytest.raises(UsageError):
        store.read_waveforms(1, T0, T0 + 1, frame_type=P.FrameType.STATUS)
    with pytest.raises(UsageError):
        store.read("frames", 1, T0, T0 + 1)


def test_reads_open_only_the_requested_days_and_buckets(store):
    # devices 1 and 17 share bucket 1 (of 16), device 2 has bucket 2
    store.write(decode(device_frames(1, 0, 24) + device_frames(2, 0, 24) + device_frames(17, 0, 24)), 1, 1)
    assert sorted(os.listdir(store.root / "numerics" / f"day={DAY2}")) == ["bucket=1", "bucket=2"]
    # corrupt everything outside bucket 1 / day 2: a read that opened it would fail
    for p in store.root.rglob("*.parquet"):
        if "bucket=2" in str(p):
            p.write_bytes(b"not parquet")
    assert store.read_numerics(1, MIDNIGHT, MIDNIGHT + 10**6).num_rows == 2
    assert store.read_numerics(17, MIDNIGHT, MIDNIGHT + 10**6).num_rows == 2
    for p in store.root.rglob("*.parquet"):
        if f"day={DAY1}" in str(p) and "numerics" in str(p):
            p.write_bytes(b"not parquet")
    assert store.read_numerics(1, MIDNIGHT, MIDNIGHT + 10**6).num_rows == 2
    listed = store.files("numerics", [1, 17, 33], MIDNIGHT, MIDNIGHT + 1)
    assert len(listed) == 1 and listed[0].parent == store.root / "numerics" / f"day={DAY2}" / "bucket=1"
    assert len(store.files("numerics", None, MIDNIGHT, MIDNIGHT + 1)) == 2
    with pytest.raises(StorageError):
        store.read_numerics(2, MIDNIGHT, MIDNIGHT + 10**6)


@pytest.mark.parametrize("min_rows", [None, 1])
def test_devices_sharing_a_bucket_read_back_per_device(tmp_path, monkeypatch, min_rows):
    if min_rows is not None:  # every device in row groups of its own
        monkeypatch.setattr(history, "_MIN_GROUP_ROWS_OTHER", min_rows)
        monkeypatch.setattr(history, "_MIN_GROUP_ROWS", {})
    store = HistoryStore(tmp_path / "h", buckets=3)
    devices = (1, 4, 7, 2)  # 1, 4, 7 share bucket 1; 2 is alone in bucket 2
    batch = decode(sum((device_frames(d, 0, 24) for d in reversed(devices)), []))
    store.write(batch, 1, 1)
    wide = (T0 - DAY_US, T0 + DAY_US)
    for dev in devices:
        for table in ("waveforms", "numerics", "status", "accessories", "acks"):
            got = store.read(table, dev, *wide)
            assert got.num_rows > 0 and got.equals(expected(batch, table, dev)), (dev, table)
    assert store.read_numerics(10, *wide).num_rows == 0  # bucket 1, no rows of its own
    ward = store.read("numerics", [7, 1], *wide)
    assert sorted(set(ward.column("device_id").to_pylist())) == [1, 7]
    assert ward.num_rows == expected(batch, "numerics", 1).num_rows * 2
    # in the file: rows sorted by (device_id, ts_us); 72 frames a device: one row group
    # for all by default, one per device when that is the minimum
    d = store.root / "waveforms" / f"day={DAY1}" / "bucket=1"
    f = d / parquet_names(d)[0]
    rows = pq.read_table(f)
    key = rows.column("device_id").to_numpy() * 2**40 + (rows.column("ts_us").to_numpy() - T0)
    assert np.all(np.diff(key) >= 0)
    groups = [(1, 7)] if min_rows is None else [(1, 1), (4, 4), (7, 7)]
    assert row_group_devices(f) == groups


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), max_size=30), min_rows=st.integers(1, 20))
def test_row_groups_split_only_between_devices(sizes, min_rows):
    device_id = np.repeat(np.arange(len(sizes), dtype=np.uint64), sizes)
    bounds = history._group_bounds(device_id, min_rows)
    n = len(device_id)
    assert bounds[0] == 0 and bounds[-1] == n and bounds == sorted(set(bounds))
    assert len(bounds) >= 2 or n == 0
    starts = set(np.cumsum([0, *sizes[:-1]]).tolist())
    for a, b, c in zip(bounds, bounds[1:], [*bounds[2:], None], strict=False):
        assert a in starts  # a group starts where a device starts
        devices = np.unique(device_id[a:b])
        big = [dev for dev in devices.tolist() if sizes[dev] >= min_rows]
        assert not big or len(devices) == 1  # a big device is alone
        if c is not None:  # a group is closed early only before a big device
            assert b - a >= min_rows or sizes[int(device_id[b])] >= min_rows


# ---------------------------------------------------------------------------- layout
def test_layout_is_recorded_and_cannot_change(tmp_path):
    root = tmp_path / "h"
    store = HistoryStore(root, buckets=8)
    layout = json.loads((root / "layout.json").read_text())
    assert layout == {"format": "vitalcore-history", "version": 2, "buckets": 8}
    store.write(decode(device_frames(9, 0, 4)), 1, 1)
    with pytest.raises(UsageError, match="buckets=8"):
        HistoryStore(root)  # default 16
    with pytest.raises(UsageError, match="buckets=8"):
        HistoryStore(root, buckets=4)
    again = HistoryStore(root, buckets=8)
    assert again.read_numerics(9, T0, T0 + 10**6).equals(store.read_numerics(9, T0, T0 + 10**6))
    assert (root / "numerics" / f"day={DAY1}" / "bucket=1").is_dir()
    assert json.loads((root / "layout.json").read_text()) == layout  # not rewritten


@pytest.mark.parametrize("buckets", [0, -1, MAX_BUCKETS + 1, 2.0, True, "16", None])
def test_bad_bucket_counts_are_refused(tmp_path, buckets):
    with pytest.raises(UsageError, match="buckets"):
        HistoryStore(tmp_path / "h", buckets=buckets)
    assert not (tmp_path / "h" / "layout.json").exists()


@pytest.mark.parametrize(
    "text",
    ["", "{", "[16]", '{"format": "vitalcore-history", "version": 1, "buckets": 16}',
     '{"format": "vitalcore-history", "version": 2, "buckets": "16"}', '{"buckets": 16}',
     '{"format": "vitalcore-history", "version": 2, "buckets": 0}', "\u00e9"],
)
def test_unreadable_layout_is_a_storage_error(tmp_path, text):
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "layout.json").write_text(text)
    with pytest.raises(StorageError, match="layout"):
        HistoryStore(tmp_path / "h")


def test_store_of_the_per_device_layout_is_refused(tmp_path):
    old = tmp_path / "h" / "numerics" / f"day={DAY1}" / "device=1"
    old.mkdir(parents=True)
    (old / "00000000000000000001-00000000000000000001.parquet").write_bytes(b"PAR1")
    with pytest.raises(StorageError, match="per-device layout"):
        HistoryStore(tmp_path / "h")
    assert not (tmp_path / "h" / "layout.json").exists()


# ---------------------------------------------------------------------------- writing errors
def test_write_rejects_bad_ranges_and_rewrites(store):
    batch = decode(device_frames(1, 0, 4))
    with pytest.raises(UsageError):
        store.write(batch, 5, 4)
    with pytest.raises(UsageError):
        store.write(batch, -1, 4)
    with pytest.raises(UsageError):
        store.write(b"frames", 1, 1)
    assert store.write(DecodedBatch.empty(), 1, 1) == []
    store.write(batch, 1, 1)
    with pytest.raises(StorageError, match="already written"):
        store.write(batch, 1, 1)
    broken = decode(device_frames(1, 4, 8))
    broken.tables["waveforms"]["sample_start"][0] = len(broken.samples)
    with pytest.raises(UsageError, match="inconsistent"):
        store.write(broken, 2, 2)
    assert store.files_after(1) == []


def test_failed_write_leaves_no_visible_file(store, monkeypatch):
    batch = decode(device_frames(1, 0, 8) + device_frames(2, 0, 8))
    real = history._write_parquet
    calls = []

    def flaky(t, where, *args):
        calls.append(where)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(t, where, *args)

    monkeypatch.setattr(history, "_write_parquet", flaky)
    store.threads = 1
    with pytest.raises(StorageError, match="No space left"):
        store.write(batch, 1, 1)
    assert list(store.root.rglob("*.parquet")) == [] and list(store.root.rglob("*.tmp")) == []
    assert os.listdir(store.root / "_journal") == []
    monkeypatch.setattr(history, "_write_parquet", real)
    assert len(store.write(batch, 1, 1)) == 10  # 5 tables x 2 buckets, all on day 1


# ---------------------------------------------------------------------------- compaction
def write_flushes(store, n: int = 4, devices=(1, 2)) -> DecodedBatch:
    """n flushes of 2 s each (LSN 10i+1..10i+10), all on day 1; returns everything."""
    batches = []
    for i in range(n):
        frames = sum((device_frames(d, 8 * i, 8 * i + 8, NOON1) for d in devices), [])
        batches.append(decode(frames))
        store.write(batches[-1], 10 * i + 1, 10 * i + 10)
    return DecodedBatch.concat(batches)


def test_compact_merges_a_day_into_one_file_per_bucket_and_table(store):
    everything = write_flushes(store)
    d = store.root / "waveforms" / f"day={DAY1}" / "bucket=1"
    assert len(parquet_names(d)) == 4
    before = {t: store.read(t, 1, *ALL_DAY1) for t in SCHEMAS}
    merged = store.compact(DAY1)
    assert len(merged) == 4 * 2  # acks came in one flush: nothing to merge
    assert parquet_names(d) == ["00000000000000000001-00000000000000000040.parquet"]
    for t, table in before.items():
        assert store.read(t, 1, *ALL_DAY1).equals(table)
    assert before["waveforms"].equals(expected(everything, "waveforms", 1))
    assert store.compact(DAY1) == []  # nothing left to merge
    # late frames for the closed day land in a new file and the next compaction merges them
    store.write(decode(device_frames(1, 40, 44, NOON1)), 41, 41)
    assert len(parquet_names(d)) == 2
    store.compact(DAY1, "waveforms")
    assert parquet_names(d) == ["00000000000000000001-00000000000000000041.parquet"]


def test_compact_merges_devices_sharing_a_bucket(tmp_path):
    store = HistoryStore(tmp_path / "h", buckets=2)
    everything = write_flushes(store, devices=(3, 1, 5, 2))  # 1, 3, 5 share bucket 1
    before = {(t, dev): store.read(t, dev, *ALL_DAY1) for t in SCHEMAS for dev in (1, 2, 3, 5)}
    assert len(store.compact(DAY1)) == 4 * 2  # 4 tables with several flushes x 2 buckets
    d = store.root / "waveforms" / f"day={DAY1}" / "bucket=1"
    assert parquet_names(d) == ["00000000000000000001-00000000000000000040.parquet"]
    assert row_group_devices(d / parquet_names(d)[0]) == [(1, 1), (3, 3), (5, 5)]
    for (t, dev), table in before.items():
        assert store.read(t, dev, *ALL_DAY1).equals(table), (t, dev)
    assert before[("waveforms", 5)].equals(expected(everything, "waveforms", 5))


def test_compact_respects_max_lsn(store):
    write_flushes(store)
    store.compact(DAY1, "numerics", max_lsn=25)
    d = store.root / "numerics" / f"day={DAY1}" / "bucket=2"
    assert parquet_names(d) == [
        "00000000000000000001-00000000000000000020.parquet",
        "00000000000000000021-00000000000000000030.parquet",
        "00000000000000000031-00000000000000000040.parquet",
    ]
    with pytest.raises(UsageError):
        store.compact("14/11/2023")
    with pytest.raises(UsageError):
        store.compact(DAY1, "nope")


def test_compaction_crash_after_the_merged_file_keeps_reads_exact(store):
    write_flushes(store)
    d = store.root / "waveforms" / f"day={DAY1}" / "bucket=1"
    before = store.read_waveforms(1, *ALL_DAY1)
    inputs = [(int(n[:20]), int(n[21:41]), n) for n in parquet_names(d)]
    store._compact_write(d, "waveforms", inputs)  # crash here: old files not yet deleted
    assert len(parquet_names(d)) == 5
    assert store.read_waveforms(1, *ALL_DAY1).equals(before)  # no duplicates
    store.compact(DAY1, "waveforms")  # the next run finishes the job
    assert parquet_names(d) == ["00000000000000000001-00000000000000000040.parquet"]
    assert store.read_waveforms(1, *ALL_DAY1).equals(before)


def test_compaction_crash_before_the_rename_leaves_the_old_files(store):
    write_flushes(store)
    d = store.root / "waveforms" / f"day={DAY1}" / "bucket=1"
    before = store.read_waveforms(1, *ALL_DAY1)
    stale = d / ".00000000000000000001-00000000000000000040.parquet.deadbeef.tmp"
    stale.write_bytes(b"half a parquet file")
    fresh = d / ".00000000000000000041-00000000000000000041.parquet.cafe0000.tmp"
    fresh.write_bytes(b"being written right now")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    rel = "waveforms_day=2023-11-14_bucket=1_00000000000000000001-00000000000000000040.parquet"
    store._journal(store.root / "_journal" / f"00000000000000000001-00000000000000000040.{rel}.txt", [])
    assert store.read_waveforms(1, *ALL_DAY1).equals(before)
    store.compact(DAY1, "waveforms")
    assert not stale.exists() and fresh.exists()  # a recent temporary may be a live write
    assert store.read_waveforms(1, *ALL_DAY1).equals(before)


def test_read_racing_a_compaction_lists_again(store, monkeypatch):
    write_flushes(store)
    before = store.read_waveforms(1, *ALL_DAY1)
    real = HistoryStore.files
    calls = []

    def stale_listing(self, *args):
        listing = real(self, *args)
        if not calls:  # the compaction finishes between listing and opening
            self.compact(DAY1, "waveforms")
        calls.append(listing)
        return listing

    monkeypatch.setattr(HistoryStore, "files", stale_listing)
    assert store.read_waveforms(1, *ALL_DAY1).equals(before)
    assert len(calls) == 2 and len(calls[0]) == 4 and len(calls[1]) == 1


# ---------------------------------------------------------------------------- restart
def test_files_after_and_remove_after(store):
    write_flushes(store, n=3)
    after = store.files_after(20)
    assert after and all(p.name.startswith("00000000000000000021-") for p in after)
    assert after == store.files_after(20, full_scan=True)
    assert store.files_after(30) == []
    kept = store.read_numerics(1, *ALL_DAY1)
    (after[0].parent / ".00000000000000000021-00000000000000000030.parquet.0000.tmp").write_bytes(b"x")
    removed = store.remove_after(20)
    assert removed == after
    assert not any(store.root.rglob("*.tmp"))
    assert os.listdir(store.root / "_journal") == []
    now = store.read_numerics(1, *ALL_DAY1)
    assert now.num_rows == 2 * kept.num_rows // 3
    assert now.equals(kept.slice(0, now.num_rows))
    # the WAL replay can now write the same range again
    store.write(decode(device_frames(1, 16, 24, NOON1)), 21, 30)
    assert store.read_numerics(1, *ALL_DAY1).equals(kept)


def test_remove_after_refuses_files_straddling_the_checkpoint(store):
    write_flushes(store, n=3)
    store.compact(DAY1, "numerics")  # merges 1..30 although only 1..20 may be checkpointed
    with pytest.raises(StorageError, match="both sides"):
        store.remove_after(20)
    assert len(store.files_after(20)) > 1  # nothing was deleted


def test_checkpoint_forgets_journal_entries(store):
    write_flushes(store, n=3)
    assert store.checkpoint(20) == 2
    assert [n[:41] for n in sorted(os.listdir(store.root / "_journal"))] == [
        "00000000000000000021-00000000000000000030"
    ]
    assert store.files_after(0) == store.files_after(20)  # journal: only what is not final
    everything = sorted(store.root.rglob("*.parquet"))
    assert store.files_after(0, full_scan=True) == everything
    assert len(everything) > len(store.files_after(20))


# ---------------------------------------------------------------------------- property
_frame = st.tuples(
    st.integers(1, 3),  # device
    st.one_of(  # ts offset from midnight: ties and day edges are likely
        st.sampled_from([-DAY_US, -1, 0, 1, DAY_US - 1]), st.integers(-2 * DAY_US, 2 * DAY_US)
    ),
    st.sampled_from([ECG, PLETH, P.FrameType.CUFF]),
    st.integers(1, 40),  # samples
    st.sampled_from([1, 100, 250, 500]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(_frame, min_size=1, max_size=25), seed=st.integers(0, 2**16))
def test_random_batches_read_back_identical(tmp_path_factory, frames, seed):
    rng = np.random.default_rng(seed)
    store = HistoryStore(tmp_path_factory.mktemp("h"), sync="none", buckets=2)  # 1, 3 share
    data = []
    for i, (dev, dt, ft, n, fs) in enumerate(frames):
        samples = rng.integers(-32768, 32768, n)
        data.append(encode_waveform(ft, dev, i, MIDNIGHT + dt, 0, samples, fs, float(rng.uniform(0.1, 5))))
    batch = decode(data)
    store.write(batch, 1, 1)
    everything = (MIDNIGHT - 3 * DAY_US, MIDNIGHT + 3 * DAY_US)
    for dev in (1, 2, 3):
        assert store.read_waveforms(dev, *everything).equals(expected(batch, "waveforms", dev))
