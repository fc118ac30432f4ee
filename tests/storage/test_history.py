"""History store: Parquet round trip, partitions, compaction atomicity, restart cleanup."""

from __future__ import annotations

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
from vitalcore.storage import HistoryStore
from vitalcore.storage.history import DAY_US, SCHEMAS

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


def test_files_are_partitioned_by_utc_day_and_device(store):
    batch = decode(device_frames(1, 0, 24) + device_frames(2, 0, 4))  # 6 s across midnight
    store.write(batch, 1, 1)
    root = store.root
    assert sorted(os.listdir(root / "waveforms")) == [f"day={DAY1}", f"day={DAY2}"]
    assert sorted(os.listdir(root / "waveforms" / f"day={DAY2}")) == ["device=1"]
    before = pq.read_table(root / "waveforms" / f"day={DAY1}" / "device=1" / parquet_names(root / "waveforms" / f"day={DAY1}" / "device=1")[0])
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


def test_reads_open_only_the_requested_days_and_devices(store):
    store.write(decode(device_frames(1, 0, 24) + device_frames(2, 0, 24)), 1, 1)
    # corrupt everything outside device 1 / day 2: a read that opened it would fail
    for p in store.root.rglob("*.parquet"):
        if "device=2" in str(p):
            p.write_bytes(b"not parquet")
    assert store.read_numerics(1, MIDNIGHT, MIDNIGHT + 10**6).num_rows == 2
    for p in store.root.rglob("*.parquet"):
        if f"day={DAY1}" in str(p) and "numerics" in str(p):
            p.write_bytes(b"not parquet")
    assert store.read_numerics(1, MIDNIGHT, MIDNIGHT + 10**6).num_rows == 2
    assert all(f"day={DAY2}" in str(f) and "device=1" in str(f) for f in store.files("numerics", 1, MIDNIGHT, MIDNIGHT + 1))
    with pytest.raises(StorageError):
        store.read_numerics(2, MIDNIGHT, MIDNIGHT + 10**6)


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
    real = pq.write_table
    calls = []

    def flaky(table, where, **kw):
        calls.append(where)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", flaky)
    store.threads = 1
    with pytest.raises(StorageError, match="No space left"):
        store.write(batch, 1, 1)
    assert list(store.root.rglob("*.parquet")) == [] and list(store.root.rglob("*.tmp")) == []
    assert os.listdir(store.root / "_journal") == []
    monkeypatch.setattr(pq, "write_table", real)
    assert len(store.write(batch, 1, 1)) == 10  # 5 tables x 2 devices, all on day 1


# ---------------------------------------------------------------------------- compaction
def write_flushes(store, n: int = 4, devices=(1, 2)) -> DecodedBatch:
    """n flushes of 2 s each (LSN 10i+1..10i+10), all on day 1; returns everything."""
    batches = []
    for i in range(n):
        frames = sum((device_frames(d, 8 * i, 8 * i + 8, NOON1) for d in devices), [])
        batches.append(decode(frames))
        store.write(batches[-1], 10 * i + 1, 10 * i + 10)
    return DecodedBatch.concat(batches)


def test_compact_merges_a_day_into_one_file_per_device_and_table(store):
    everything = write_flushes(store)
    d = store.root / "waveforms" / f"day={DAY1}" / "device=1"
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


def test_compact_respects_max_lsn(store):
    write_flushes(store)
    store.compact(DAY1, "numerics", max_lsn=25)
    d = store.root / "numerics" / f"day={DAY1}" / "device=2"
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
    d = store.root / "waveforms" / f"day={DAY1}" / "device=1"
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
    d = store.root / "waveforms" / f"day={DAY1}" / "device=1"
    before = store.read_waveforms(1, *ALL_DAY1)
    stale = d / ".00000000000000000001-00000000000000000040.parquet.deadbeef.tmp"
    stale.write_bytes(b"half a parquet file")
    fresh = d / ".00000000000000000041-00000000000000000041.parquet.cafe0000.tmp"
    fresh.write_bytes(b"being written right now")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    rel = "waveforms_day=2023-11-14_device=1_00000000000000000001-00000000000000000040.parquet"
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
    store = HistoryStore(tmp_path_factory.mktemp("h"), sync="none")
    data = []
    for i, (dev, dt, ft, n, fs) in enumerate(frames):
        samples = rng.integers(-32768, 32768, n)
        data.append(encode_waveform(ft, dev, i, MIDNIGHT + dt, 0, samples, fs, float(rng.uniform(0.1, 5))))
    batch = decode(data)
    store.write(batch, 1, 1)
    everything = (MIDNIGHT - 3 * DAY_US, MIDNIGHT + 3 * DAY_US)
    for dev in (1, 2, 3):
        assert store.read_waveforms(dev, *everything).equals(expected(batch, "waveforms", dev))
