"""A simulated ward through the whole pipeline, printed for a newcomer.

``python -m vitalcore demo`` (also what ``python -m vitalcore`` runs until the embedded
server lands): N virtual wearables send ``--seconds`` of device time as wire-format v1
frames (one of them over a flaky link that corrupts some frames, one speaking JSON);
every message goes through the :class:`~vitalcore.storage.Store` (decoder, duplicate
check, write-ahead log, live buffers, Parquet), then the demo reads the history back
and checks it against what the devices really measured: heart rate from the stored ECG
by the QRS detector, SpO2 from the stored red/IR pleth, numerics as sent.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from . import protocol as P
from .dsp import detect_qrs, estimate_spo2
from .jsonframes import from_binary
from .simulator import VirtualWearable
from .storage import Store

START_US = 1_764_115_200_000_000  # 2025-11-26T00:00:00Z


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(devices: int = 12, seconds: int = 60, data_dir: str | None = None) -> dict:
    """Run the demo; return the figures it prints (for tests)."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="vitalcore-demo-")
        data_dir = tmp.name
    root = Path(data_dir)
    rng = random.Random(7)
    ward = [
        VirtualWearable(
            device_id=1000 + i,
            start_us=START_US,
            hr_bpm=rng.choice([52, 64, 72, 88, 104, 118]),
            spo2=rng.choice([91, 94, 96, 98, 99]),
            seed=i,
        )
        for i in range(devices)
    ]
    flaky, json_device = ward[0].device_id, ward[-1].device_id
    print(f"vitalcore demo: {devices} virtual wearables, {seconds} s of monitoring, store in {root}")
    print(f"  device {flaky} has a flaky link (1 frame in 50 corrupted); device {json_device} speaks JSON")
    sent_bytes = corrupted = 0
    t0 = time.perf_counter()
    with Store(root, flush_interval_s=0) as store:
        for step in range(1, seconds + 1):  # one second of device time per step
            t_us = START_US + step * 1_000_000
            for w in ward:
                for frame in w.frames_until(t_us):  # one MQTT-like message per frame
                    if w.device_id == flaky and rng.random() < 0.02:
                        bad = bytearray(frame)
                        bad[rng.randrange(len(bad))] ^= 0x10
                        frame, corrupted = bytes(bad), corrupted + 1
                    if w.device_id == json_device:
                        store.feed_json(from_binary(frame), device_id=w.device_id)
                    else:
                        store.feed(frame, device_id=w.device_id)
                    sent_bytes += len(frame)
            store.wait_durable(store.commit())
            if step % 20 == 0:
                store.flush()
        store.flush()
        elapsed = time.perf_counter() - t0
        stats = store.stats()
        print(
            f"ingested {stats['frames']:,} frames ({sent_bytes / 1e6:.1f} MB) in {elapsed:.1f} s; "
            f"rejected {stats['decoder']['rejected']}; WAL records {stats['wal']['records']:,}"
        )
        t_end = START_US + seconds * 1_000_000
        print(f"\n{'device':>8} {'ECG samples':>12} {'HR true':>8} {'HR from ECG':>12} "
              f"{'SpO2 true':>10} {'SpO2 from pleth':>16} {'numerics':>9}")
        rows = []
        for w in ward:
            _, ecg = store.read_samples(w.device_id, P.FrameType.ECG, P.EcgLead.II, START_US, t_end)
            beats = detect_qrs(ecg / 1000.0, w.ecg_fs)  # µV -> mV
            hr = 60.0 * w.ecg_fs / float(np.median(np.diff(beats))) if len(beats) > 2 else float("nan")
            _, red = store.read_samples(w.device_id, P.FrameType.PLETH, P.PlethChannel.RED, START_US, t_end)
            _, ir = store.read_samples(w.device_id, P.FrameType.PLETH, P.PlethChannel.IR, START_US, t_end)
            n = min(len(red), len(ir))
            spo2 = estimate_spo2(red[:n], ir[:n], w.pleth_fs).spo2_median if n else float("nan")
            numerics = store.read_numerics(w.device_id, START_US, t_end).num_rows
            rows.append((w.device_id, len(ecg), w.hr_bpm, hr, w.spo2, spo2, numerics))
            print(f"{w.device_id:>8} {len(ecg):>12,} {w.hr_bpm:>8.0f} {hr:>12.1f} "
                  f"{w.spo2:>10.0f} {spo2:>16.1f} {numerics:>9,}")
        history = _dir_bytes(root / "history")
        samples = sum(
            store.read_waveforms(w.device_id, START_US, t_end).column("n_samples").to_numpy().sum()
            for w in ward
        )
        print(f"\nParquet history: {history / 1e6:.2f} MB for {samples:,} waveform samples plus numerics"
              f" and status ({history / samples:.2f} bytes/sample; raw int16 would be 2, and short"
              " runs pay Parquet's per-file overhead)")
        print(f"kept rejected frames for inspection: {len(store.decoder.rejected_frames)}; "
              f"corrupted on the flaky link: {corrupted}")
    if tmp is not None:
        tmp.cleanup()
    return {"rows": rows, "corrupted": corrupted, "stats": stats}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m vitalcore demo", description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=12)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--data", default=os.environ.get("VITALCORE_DATA"),
                    help="store directory (default: a temporary one)")
    a = ap.parse_args(argv)
    run(a.devices, a.seconds, a.data)
