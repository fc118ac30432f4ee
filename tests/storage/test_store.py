"""Store: decode -> de-duplicate -> WAL -> buffers -> Parquet, exactly once across crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore.errors import BackPressureError, UsageError
from vitalcore.simulator import VirtualWearable
from vitalcore.storage import Store

START = 1_764_115_200_000_000
ROOT = Path(__file__).resolve().parents[2]


def ward(n=3, seconds=4):
    """Frames of n virtual wearables over `seconds` s, in arrival order per device."""
    devs = [VirtualWearable(device_id=100 + i, start_us=START, seed=i) for i in range(n)]
    return devs, {d.device_id: d.frames_until(START + seconds * 1_000_000) for d in devs}


def stored_ecg(store, dev, seconds):
    return store.read_samples(dev.device_id, P.FrameType.ECG, P.EcgLead.II, START,
                              START + seconds * 1_000_000)


def sent_ecg(frames):
    b = codec.FrameDecoder().decode(b"".join(frames))
    w = b["waveforms"]
    rows = np.flatnonzero(w["frame_type"] == P.FrameType.ECG)
    return np.concatenate([b.waveform_values(int(r)) for r in rows])


def test_round_trip_through_wal_buffers_and_parquet(tmp_path):
    devs, traffic = ward()
    with Store(tmp_path, flush_interval_s=0) as store:
        for dev_id, frames in traffic.items():
            for f in frames:
                store.feed(f, device_id=dev_id)
        assert store.durable_lsn == 0
        lsn = store.commit()
        store.wait_durable(lsn)
        assert store.durable_lsn == store.wal.durable_lsn >= lsn > 0
        # readable before the flush (pending) ...
        ts_before, v_before = stored_ecg(store, devs[0], 4)
        store.flush()
        # ... and after it (Parquet), identical
        ts_after, v_after = stored_ecg(store, devs[0], 4)
        live = store.buffers.window(devs[0].device_id, P.FrameType.ECG, P.EcgLead.II)
        numerics = store.read_numerics(devs[1].device_id, START, START + 4_000_000)
    expected = sent_ecg(traffic[devs[0].device_id])
    assert np.array_equal(v_before, expected) and np.array_equal(v_after, expected)
    assert np.array_equal(ts_before, ts_after) and np.all(np.diff(ts_after) > 0)
    assert np.array_equal(live.values(), expected[-len(live.values()):])
    assert numerics.num_rows == 4 * 5  # 4 s x 5 numeric codes


def test_duplicates_are_dropped_before_the_wal(tmp_path):
    devs, traffic = ward(n=1)
    frames = traffic[devs[0].device_id]
    with Store(tmp_path, flush_interval_s=0) as store:
        for f in frames + frames[:10]:  # a retransmission of the first 10 frames
            store.feed(f)
        store.commit()
        assert store.counters["duplicates"] == 10
        assert store.counters["frames"] == len(frames)
        store.flush()
        _, v = stored_ecg(store, devs[0], 4)
    assert np.array_equal(v, sent_ecg(frames))


def test_a_gateway_resending_hundreds_of_frames_per_stream_stores_each_once(tmp_path):
    """64 messages of 4 ECG frames in flight (a batching gateway): after a restart the
    device resends all of them, up to 255 sequence numbers behind the newest; every
    copy is dropped (the window was 64 wide and stored ~190 of them twice)."""
    devs, traffic = ward(n=1, seconds=80)
    frames = traffic[devs[0].device_id]
    with Store(tmp_path, flush_interval_s=0) as store:
        for f in frames:
            store.feed(f)
        store.wait_durable(store.commit())
        store.close(flush=False)
    table = codec.FrameDecoder().decode(b"".join(frames))["frames"]  # a row per frame
    assert len(table["seq"]) == len(frames)
    ecg_seq = np.where(table["frame_type"] == P.FrameType.ECG, table["seq"].astype(np.int64), -1)
    first = int(np.flatnonzero(ecg_seq == ecg_seq.max() - 255)[0])
    resent = frames[first:]  # the last 64 s: 256 ECG frames, up to 255 behind the newest
    with Store(tmp_path, flush_interval_s=0) as store:
        for f in resent:
            store.feed(f)
        store.commit()
        assert store.counters["duplicates"] == len(resent)
        store.flush()
        t = store.read_waveforms(devs[0].device_id, START, START + 80_000_000)
        key = list(zip(t.column("frame_type").to_pylist(), t.column("channel").to_pylist(),
                       t.column("seq").to_pylist(), strict=True))
        assert len(key) == len(set(key)), "a frame stored twice"
        _, v = stored_ecg(store, devs[0], 80)
    assert np.array_equal(v, sent_ecg(frames))


def test_a_commit_larger_than_one_wal_record_is_split_and_survives_a_restart(tmp_path,
                                                                           monkeypatch):
    from vitalcore.storage import wal

    monkeypatch.setattr(wal, "MAX_RECORD_BYTES", 8 << 10)  # 8 KiB records
    devs, traffic = ward(n=3, seconds=8)
    seen = []
    with Store(tmp_path, flush_interval_s=0) as store:
        store.add_commit_listener(lambda b: seen.append(b.n_frames))
        for dev_id, frames in traffic.items():
            for f in frames:
                store.feed(f, device_id=dev_id)
        store.wait_durable(store.commit())  # one commit of about 30 KiB of frames
        assert store.wal.last_lsn >= 3  # logged as several records
        assert sum(seen) == sum(map(len, traffic.values())) and len(seen) == store.wal.last_lsn
        store.close(flush=False)  # no Parquet: the restart must replay every record
    with Store(tmp_path, flush_interval_s=0) as store:
        for dev in devs:
            _, v = stored_ecg(store, dev, 8)
            assert np.array_equal(v, sent_ecg(traffic[dev.device_id]))


def test_restart_replays_the_wal_and_remembers_sequence_state(tmp_path):
    devs, traffic = ward(n=2)
    frames = traffic[devs[0].device_id]
    half = len(frames) // 2
    store = Store(tmp_path, flush_interval_s=0)
    for f in frames[:half]:
        store.feed(f)
    store.wait_durable(store.commit())
    store.flush()  # the checkpoint covers the first half
    for f in frames[half:]:
        store.feed(f)
    store.wait_durable(store.commit())
    store.close(flush=False)  # the second half is only in the WAL

    with Store(tmp_path, flush_interval_s=0) as store:
        for f in frames:  # the device retransmits everything after the restart
            store.feed(f)
        store.commit()
        assert store.counters["duplicates"] == len(frames)
        store.flush()
        _, v = stored_ecg(store, devs[0], 4)
    assert np.array_equal(v, sent_ecg(frames))


def test_back_pressure_takes_nothing_and_loses_nothing(tmp_path):
    devs, traffic = ward(n=1, seconds=8)
    frames = traffic[devs[0].device_id]
    with Store(tmp_path, flush_interval_s=0, max_unflushed_bytes=4000) as store:
        refused = 0
        for f in frames:
            while True:
                try:
                    store.feed(f)
                    break
                except BackPressureError:
                    refused += 1
                    store.wait_durable(store.commit())
                    store.flush()
            store.commit()
        store.flush()
        assert refused > 0
        _, v = stored_ecg(store, devs[0], 8)
    assert np.array_equal(v, sent_ecg(frames))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux")
def test_the_flusher_and_its_encoder_threads_run_below_the_rest(tmp_path, monkeypatch):
    """The flusher's nice level is raised by ``flush_nice``, the encoder threads it starts
    (``flush_threads``, default one per CPU) inherit it, and the rest of the process keeps
    its priority; the flush still works."""
    import threading

    from vitalcore.storage.history import HistoryStore

    devs, traffic = ward(n=2, seconds=2)
    me = threading.get_native_id()
    base = os.getpriority(os.PRIO_PROCESS, me)
    seen: list[tuple[str, int]] = []
    encode = HistoryStore._encode

    def spy(self, *args):  # runs in the encoder threads the flush starts
        tid = threading.get_native_id()
        seen.append((threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, tid)))
        return encode(self, *args)

    monkeypatch.setattr(HistoryStore, "_encode", spy)
    store = Store(tmp_path, flush_interval_s=0.05, flush_nice=7, flush_threads=3)
    assert store.history.threads == 3
    try:
        for frames in traffic.values():
            for f in frames:
                store.feed(f)
        store.wait_durable(store.commit())  # one commit: the first flush takes it all
        deadline = time.monotonic() + 10
        while store.stats()["flushes"] == 0:
            assert time.monotonic() < deadline, "the flusher never flushed"
            time.sleep(0.02)
    finally:
        store.close(flush=False)
    assert seen and {nice for _, nice in seen} == {min(19, base + 7)}
    assert all(name != "MainThread" for name, _ in seen)
    assert os.getpriority(os.PRIO_PROCESS, me) == base
    with Store(tmp_path, flush_interval_s=0) as store:
        assert store.history.threads == (os.cpu_count() or 2)  # one encoder per CPU
        _, v = stored_ecg(store, devs[0], 2)
    assert np.array_equal(v, sent_ecg(traffic[devs[0].device_id]))
    with pytest.raises(UsageError, match="flush_nice"):
        Store(tmp_path / "x", flush_nice=20)


def test_rejects_are_counted_and_others_kept(tmp_path):
    devs, traffic = ward(n=1)
    frames = traffic[devs[0].device_id]
    bad = bytearray(frames[5])
    bad[40] ^= 1
    with Store(tmp_path, flush_interval_s=0) as store:
        for i, f in enumerate(frames):
            store.feed(bytes(bad) if i == 5 else f, device_id=devs[0].device_id)
        store.feed(frames[6], device_id=devs[0].device_id + 1)  # not this connection's device
        store.commit()
        assert store.decoder.stats()["rejected"]["checksum"] == 1
        assert store.decoder.stats()["rejected"]["device_mismatch"] == 1
        assert store.counters["frames"] == len(frames) - 1


WRITER = textwrap.dedent(
    """
    import sys
    from vitalcore.simulator import VirtualWearable
    from vitalcore.storage import Store
    root, first = sys.argv[1], int(sys.argv[2])  # resume where the acknowledgements stopped
    devs = [VirtualWearable(device_id=500 + i, start_us={start}, seed=i) for i in range(4)]
    traffic = [f for d in devs for f in d.frames_until({start} + 30_000_000)]
    store = Store(root, sync="group", flush_interval_s=0.05)
    print("ready", flush=True)
    for i in range(first, len(traffic), 7):
        for f in traffic[i:i + 7]:
            store.feed(f)
        store.wait_durable(store.commit())
        print("acked", i, min(i + 7, len(traffic)), flush=True)
    print("done", flush=True)
    """
).format(start=START)


@pytest.mark.slow
def test_kill_minus_nine_loses_no_acknowledged_frame_and_stores_none_twice(tmp_path):
    """A writer process is SIGKILLed mid-stream, several times, and resumes (like a
    device) after its last acknowledged frame, so frames that were durable but not yet
    acknowledged are sent again. Afterwards every acknowledged frame is in the store
    exactly once, and a retransmission of the last acknowledged ones is a duplicate."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    root = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    devs = [VirtualWearable(device_id=500 + i, start_us=START, seed=i) for i in range(4)]
    traffic = [f for d in devs for f in d.frames_until(START + 30_000_000)]
    rng = np.random.default_rng(3)
    acked = 0
    for _cycle in range(4):
        p = subprocess.Popen([sys.executable, str(script), str(root), str(acked)],
                             stdout=subprocess.PIPE, text=True, env=env)
        assert p.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + float(rng.uniform(0.3, 1.5))
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line or line.startswith("done"):
                break
            acked = max(acked, int(line.split()[2]))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    assert acked > 0
    with Store(root, flush_interval_s=0) as store:
        resent = traffic[max(0, acked - 40) : acked]  # within the duplicate window
        for f in resent:
            store.feed(f)
        store.commit()
        assert store.counters["duplicates"] == len(resent)
        store.flush()
        got = {}
        for d in devs:
            t = store.read_waveforms(d.device_id, START, START + 30_000_000)
            key = list(zip(t.column("frame_type").to_pylist(), t.column("channel").to_pylist(),
                           t.column("seq").to_pylist(), strict=True))
            assert len(key) == len(set(key)), "a frame stored twice"
            got[d.device_id] = set(key)
    sent = codec.FrameDecoder().decode(b"".join(traffic[:acked]))["waveforms"]
    for dev, ft, ch, seq in zip(sent["device_id"], sent["frame_type"], sent["channel"], sent["seq"],
                                strict=True):
        assert (int(ft), int(ch), int(seq)) in got[int(dev)], "an acknowledged frame was lost"
