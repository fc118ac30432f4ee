"""Patient, device and ward queries: stitching across device swaps, clipping to spans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import protocol as P
from vitalcore._refcodec import RefFrameDecoder, encode_numerics, encode_status, encode_waveform
from vitalcore.clinical.records import SAMPLE_SCHEMA, AlarmLogSource, Channel, Records
from vitalcore.clinical.spans import DeviceSpan
from vitalcore.errors import StorageError, UsageError
from vitalcore.storage import HistoryStore, Store
from vitalcore.storage.history import DAY_US

ECG, PLETH = int(P.FrameType.ECG), int(P.FrameType.PLETH)
T0 = 19_676 * DAY_US - 30_000_000  # 30 s before midnight: data crosses a UTC day
SECONDS = 60
DEVICES = (11, 12, 13)
HR, SPO2 = int(P.NumericCode.HR), int(P.NumericCode.SPO2)


def device_frames(dev: int, t0: int = T0, seconds: int = SECONDS) -> list[bytes]:
    """Per 1/4 s: an ECG II frame (250 Hz); per second: pleth IR, numerics, status."""
    out = []
    for k in range(seconds * 4):
        a, b = k * 250 // 4, (k + 1) * 250 // 4
        samples = (np.arange(a, b) % 1000 + dev).astype(np.int16)
        out.append(encode_waveform(ECG, dev, k, t0 + a * 4000, P.EcgLead.II, samples, 250, 2.5))
        if k % 4 == 0:
            s = k // 4
            ts = t0 + s * 1_000_000
            pleth = (np.arange(100) + s).astype(np.int16)
            out.append(encode_waveform(PLETH, dev, s, ts, P.PlethChannel.IR, pleth, 100, 1.0))
            out.append(encode_numerics(dev, s, ts + 500, [(HR, 60 + dev % 7 + s % 5), (SPO2, 97)]))
            out.append(encode_status(dev, s, ts + 700, battery=80 - s % 10))
    return out


def decode(frames: list[bytes]):
    return RefFrameDecoder().decode(b"".join(frames))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> HistoryStore:
    store = HistoryStore(tmp_path_factory.mktemp("records") / "history", sync="none", buckets=2)
    for i, dev in enumerate(DEVICES):
        store.write(decode(device_frames(dev)), i * 10 + 1, i * 10 + 9)
    return store


@pytest.fixture(scope="module")
def records(history) -> Records:
    return Records(history)


def at(s: float) -> int:
    return T0 + int(s * 1_000_000)


# a swap from device 11 to 12 at 20 s, a transfer to another ward at 40 s (same device)
SWAP = [
    DeviceSpan("p-1", 11, at(0), at(20), "ICU"),
    DeviceSpan("p-1", 12, at(20), at(40), "ICU"),
    DeviceSpan("p-1", 12, at(40), None, None),
]


def device_rows(history, table: str, dev: int, lo: int, hi: int) -> pa.Table:
    return getattr(history, f"read_{table}")(dev, lo, hi)


# ------------------------------------------------------------------------- numerics
def test_patient_numerics_are_the_spans_device_rows_stitched(records, history):
    t = records.numerics(SWAP, at(10), at(50))
    parts = [
        device_rows(history, "numerics", 11, at(10), at(20)),
        device_rows(history, "numerics", 12, at(20), at(40)),
        device_rows(history, "numerics", 12, at(40), at(50)),
    ]
    want = pa.concat_tables(parts)
    assert t.column_names == ["patient_id", "ward_id", *want.column_names]
    assert t.drop_columns(["patient_id", "ward_id"]).equals(want)
    assert t.num_rows == 40 * 2
    assert set(t.column("patient_id").to_pylist()) == {"p-1"}
    wards = t.column("ward_id").to_pylist()
    assert wards[: 30 * 2] == ["ICU"] * 60 and wards[60:] == [None] * 20
    ts = t.column("ts_us").to_numpy()
    assert (np.diff(ts) >= 0).all() and ts[0] >= at(10) and ts[-1] < at(50)
    dev = t.column("device_id").to_numpy()
    assert (dev[ts < at(20)] == 11).all() and (dev[ts >= at(20)] == 12).all()


def test_codes_filter_and_device_scope_has_no_labels(records, history):
    t = records.numerics(12, at(5), at(15), codes=[P.NumericCode.SPO2])
    assert t.column_names == history.read_numerics(12, at(5), at(15)).column_names
    assert t.num_rows == 10 and set(t.column("code").to_pylist()) == {SPO2}
    assert t.equals(history.read_numerics(12, at(5), at(15), [SPO2]))


def test_ward_query_orders_by_patient_then_time(records):
    ward = [
        DeviceSpan("p-2", 13, at(0), at(30), "ICU"),
        *SWAP[:2],
        DeviceSpan("p-0", 11, at(25), at(35), "ICU"),  # 11 reused after p-1's swap
    ]
    t = records.numerics(ward, at(0), at(60), codes=[HR])
    pid = t.column("patient_id").to_pylist()
    assert pid == ["p-0"] * 10 + ["p-1"] * 40 + ["p-2"] * 30
    for p in ("p-0", "p-1", "p-2"):
        ts = t.filter(pc.equal(t.column("patient_id").cast(pa.string()), p)).column("ts_us")
        assert (np.diff(ts.to_numpy()) > 0).all()
    p0 = t.slice(0, 10)
    assert set(p0.column("device_id").to_pylist()) == {11}
    assert p0.column("ts_us").to_numpy().min() >= at(25)


def test_overlapping_spans_of_one_patient_are_merged_by_time(records):
    both = [DeviceSpan("p-1", 11, at(0), at(30), "ICU"), DeviceSpan("p-1", 12, at(10), at(20), "ICU")]
    t = records.numerics(both, at(0), at(30), codes=[HR])
    assert t.num_rows == 30 + 10
    assert (np.diff(t.column("ts_us").to_numpy()) >= 0).all()
    dev = t.column("device_id").to_numpy()
    assert (dev == 12).sum() == 10


def test_spans_outside_the_range_give_an_empty_labelled_table(records):
    t = records.numerics([DeviceSpan("p-9", 11, at(100), at(200), "ICU")], at(0), at(60))
    assert t.num_rows == 0 and t.column_names[:2] == ["patient_id", "ward_id"]
    assert records.numerics([], at(0), at(60)).num_rows == 0


# ------------------------------------------------------------------------- waveforms
def test_patient_waveforms_are_samples_clipped_at_the_swap(records, history):
    # 20.002 s is inside an ECG frame of each device: the cut is per sample
    spans = [DeviceSpan("p-1", 11, at(0), at(20.002), "ICU"), DeviceSpan("p-1", 12, at(20.002), None, "ICU")]
    w = records.waveforms(spans, at(19), at(21))
    assert list(w) == [Channel(ECG, P.EcgLead.II), Channel(PLETH, P.PlethChannel.IR)]
    ecg = w[Channel(ECG, P.EcgLead.II)]
    assert ecg.column_names == ["patient_id", "ward_id", *SAMPLE_SCHEMA.names]
    ts, dev = ecg.column("ts_us").to_numpy(), ecg.column("device_id").to_numpy()
    assert ecg.num_rows == 500 and (np.diff(ts) == 4000).all()
    assert (dev[ts < at(20.002)] == 11).all() and (dev[ts >= at(20.002)] == 12).all()
    ts11, v11 = history.read_samples(11, ECG, P.EcgLead.II, at(19), at(20.002))
    ts12, v12 = history.read_samples(12, ECG, P.EcgLead.II, at(20.002), at(21))
    np.testing.assert_array_equal(ts, np.concatenate([ts11, ts12]))
    np.testing.assert_array_equal(ecg.column("value").to_numpy(), np.concatenate([v11, v12]))


def test_waveform_filters_and_device_scope(records):
    w = records.waveforms(13, at(1), at(3), frame_type=PLETH)
    assert list(w) == [Channel(PLETH, P.PlethChannel.IR)]
    t = w[Channel(PLETH, P.PlethChannel.IR)]
    assert t.schema == SAMPLE_SCHEMA and t.num_rows == 200
    assert records.waveforms(13, at(1), at(3), channel=5) == {}
    with pytest.raises(UsageError):
        records.waveforms(13, at(1), at(3), frame_type=int(P.FrameType.NUMERICS))


# ------------------------------------------------------------------------- status
def test_status_is_stitched_like_numerics(records, history):
    t = records.status(SWAP, at(15), at(25))
    want = pa.concat_tables(
        [history.read_status(11, at(15), at(20)), history.read_status(12, at(20), at(25))]
    )
    assert t.drop_columns(["patient_id", "ward_id"]).equals(want) and t.num_rows == 10


# ------------------------------------------------------------------------- alarms
class FakeAlarms:
    """An alarm log that also returns rows it should not (other devices, outside range)."""

    def __init__(self):
        self.calls = []

    def read(self, device_ids, t0_us, t1_us):
        self.calls.append((list(device_ids), t0_us, t1_us))
        ts = np.arange(at(0), at(60), 5_000_000, dtype=np.int64)
        devs = np.repeat(np.array(DEVICES, np.uint64), len(ts))
        return pa.table(
            {
                "device_id": devs,
                "ts_us": np.tile(ts, len(DEVICES)),
                "priority": pa.array(["high"] * len(devs)),
            }
        )


def test_alarms_are_clipped_to_each_span_whatever_the_source_returns(history):
    source = FakeAlarms()
    t = Records(history, source).alarms(SWAP[:2], at(10), at(30))
    assert source.calls == [([11], at(10), at(20)), ([12], at(20), at(30))]
    assert t.column_names == ["patient_id", "ward_id", "device_id", "ts_us", "priority"]
    assert t.column("device_id").to_pylist() == [11, 11, 12, 12]
    assert t.column("ts_us").to_pylist() == [at(10), at(15), at(20), at(25)]


def test_alarms_need_a_conforming_source(history):
    with pytest.raises(UsageError, match="without an alarm source"):
        Records(history).alarms(SWAP, at(0), at(10))
    with pytest.raises(UsageError, match="read"):
        Records(history, alarms=object())

    class Bad:
        def read(self, device_ids, t0_us, t1_us):
            return pa.table({"when": [1]})

    with pytest.raises(StorageError, match="device_id and ts_us"):
        Records(history, Bad()).alarms(SWAP, at(0), at(10))
    empty = Records(history, FakeAlarms()).alarms([], at(0), at(10))
    assert empty.num_rows == 0 and "priority" in empty.column_names


class LogLike:
    """The read signature of vitalcore.alarms.AlarmLog: (t0_us, t1_us, device_id=None)."""

    def __init__(self):
        self.calls = []

    def read(self, t0_us, t1_us, device_id=None):
        self.calls.append((t0_us, t1_us, device_id))
        t = FakeAlarms().read([], t0_us, t1_us)
        ts, dev = t.column("ts_us").to_numpy(), t.column("device_id").to_numpy()
        keep = (ts >= t0_us) & (ts < t1_us) & ((dev == device_id) if device_id else True)
        return t.filter(pa.array(keep))


def test_a_log_with_the_alarm_log_signature_plugs_in_through_the_adapter(history):
    log = LogLike()
    with pytest.raises(UsageError, match="AlarmLogSource"):
        Records(history, log)
    t = Records(history, AlarmLogSource(log)).alarms(SWAP[:2], at(10), at(30))
    assert log.calls == [(at(10), at(20), 11), (at(20), at(30), 12)]
    assert t.column("device_id").to_pylist() == [11, 11, 12, 12]
    both = AlarmLogSource(log).read([11, 13], at(0), at(10))
    assert sorted(set(both.column("device_id").to_pylist())) == [11, 13]
    assert AlarmLogSource(log).read([], at(0), at(10)).num_rows == 0
    with pytest.raises(UsageError):
        AlarmLogSource(object())


def test_the_alarm_log_of_vitalcore_alarms_plugs_in(history, tmp_path):
    alarm_log = pytest.importorskip("vitalcore.alarms.log")
    log = alarm_log.AlarmLog(tmp_path / "alarms", fsync=False)
    with pytest.raises(UsageError, match="AlarmLogSource"):
        Records(history, log)
    t = Records(history, AlarmLogSource(log)).alarms(SWAP, at(0), at(60))
    assert t.num_rows == 0 and {"patient_id", "device_id", "ts_us"} <= set(t.column_names)


# ------------------------------------------------------------------------- sources
def test_a_store_source_includes_unflushed_data(tmp_path: Path):
    with Store(tmp_path / "s", sync="none", flush_interval_s=0) as store:
        store.ingest(b"".join(device_frames(21, seconds=4)))
        store.flush()
        store.ingest(b"".join(device_frames(22, t0=at(4), seconds=4)))  # not flushed
        spans = [DeviceSpan("p", 21, at(0), at(4), "W"), DeviceSpan("p", 22, at(4), at(8), "W")]
        t = Records(store).numerics(spans, at(0), at(8), codes=[HR])
        assert t.column("device_id").to_pylist() == [21] * 4 + [22] * 4


def test_history_must_have_the_readers():
    with pytest.raises(UsageError, match="read_numerics"):
        Records(object())


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "scope",
    [
        "p-1",
        b"\x01",
        3.5,
        True,
        0,
        2**64,
        -1,
        [("p-1", 11, 0, 10, "ICU")],
        [DeviceSpan("", 11, at(0), at(1), "ICU")],
        [DeviceSpan(7, 11, at(0), at(1), "ICU")],
        [DeviceSpan("p", 0, at(0), at(1), "ICU")],
        [DeviceSpan("p", True, at(0), at(1), "ICU")],
        [DeviceSpan("p", 11, at(1), at(1), "ICU")],
        [DeviceSpan("p", 11, at(2), at(1), "ICU")],
        [DeviceSpan("p", 11, 1.5, at(1), "ICU")],
        [DeviceSpan("p", 11, at(0), at(1), 5)],
    ],
)
def test_bad_scopes_are_usage_errors(records, scope):
    for query in (records.numerics, records.status, records.waveforms):
        with pytest.raises(UsageError):
            query(scope, at(0), at(10))


@pytest.mark.parametrize("t0, t1", [(at(10), at(10)), (at(10), at(0)), (1.5, at(1)), (None, at(1))])
def test_bad_ranges_are_usage_errors(records, t0, t1):
    with pytest.raises(UsageError):
        records.numerics(SWAP, t0, t1)


# ------------------------------------------------------------------------- property
span_st = st.builds(
    lambda pid, dev, a, d, ward, open_: DeviceSpan(pid, dev, at(a), None if open_ else at(a + d), ward),
    st.sampled_from(["a", "b"]),
    st.sampled_from(DEVICES),
    st.integers(-10, 65),
    st.integers(1, 40),
    st.sampled_from(["W1", "W2", None]),
    st.booleans(),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spans=st.lists(span_st, max_size=5), a=st.integers(-5, 60), d=st.integers(1, 70))
def test_numerics_equal_a_brute_force_union(records, history, spans, a, d):
    t0, t1 = at(a), at(a + d)
    got = records.numerics(spans, t0, t1)
    everything = pa.concat_tables([history.read_numerics(dev, at(-100), at(100)) for dev in DEVICES])
    want = []
    for s in sorted(spans, key=lambda s: (s.patient_id, s.start_us)):
        lo, hi = max(t0, s.start_us), min(t1, s.end_us if s.end_us is not None else t1)
        ts, dev = everything.column("ts_us").to_numpy(), everything.column("device_id").to_numpy()
        rows = everything.filter(pa.array((dev == s.device_id) & (ts >= lo) & (ts < hi)))
        want += [(s.patient_id, s.ward_id, *r.values()) for r in rows.to_pylist()]
    rows = [tuple(r.values()) for r in got.to_pylist()]
    key = lambda r: (r[0], r[4], r[2], r[5], r[1] or "")  # patient, ts, device, code, ward  # noqa: E731
    assert sorted(rows, key=key) == sorted(want, key=key)
    for p in ("a", "b"):  # time-ordered within each patient
        ts = [r[4] for r in rows if r[0] == p]
        assert ts == sorted(ts)
