"""Storage benchmarks: write-ahead log throughput (and, later, the Parquet history store).

Run from the repository root::

    PYTHONPATH=src python benchmarks/bench_storage.py [--only wal] [--mb 192] [--producers 4]

WAL section
    Realistic records: ECG (250 Hz, 1 s per frame), pleth (100 Hz, 3 s per frame) and
    numerics frames of 120 patients simulated by ``vitalcore.dsp.simulate``, DELTA8-encoded
    once with ``vitalcore.codec`` (27,600 distinct frames of ~300 bytes). ``--producers`` threads
    append them concurrently, one record per ``append`` call or ``--batch`` records per
    ``append_many`` call (waiting for durability only when back-pressure pushes back),
    until ``--mb`` MB went in. A row is the best of ``--repeat`` runs (each run's MB/s
    shown too, as the machine may be shared): input MB/s from the first append until the
    last record is durable, per sync policy and zstd level, with the process CPU seconds
    per GB of input and those of the WAL's compressor thread alone (its inverse is the
    ceiling with one free core). Baselines measured in the same run on the same bytes:
    sequential ``write`` + ``fdatasync`` of 4 MiB chunks to a plain file (the raw disk),
    and single-threaded zstd per level (the compression cost).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
import zstandard

from vitalcore import codec
from vitalcore import protocol as P
from vitalcore.dsp.simulate import simulate_ecg, simulate_ppg
from vitalcore.errors import BackPressureError
from vitalcore.storage.wal import WriteAheadLog

MB = 1e6
TARGET_MB_S = 200.0


# --------------------------------------------------------------------- realistic frames
def ecg_uv(rng: np.random.Generator, seconds: int, fs: int, hr: float) -> np.ndarray:
    """Lead-II ECG in µV from :func:`vitalcore.dsp.simulate.simulate_ecg`."""
    return simulate_ecg(seconds, fs, hr, seed=int(rng.integers(1 << 31)))[0] * 1000.0


def pleth_au(rng: np.random.Generator, seconds: int, fs: int, hr: float) -> np.ndarray:
    """IR pleth in arbitrary units (peak 30000, int16-ready) from ``simulate_ppg``."""
    seed = int(rng.integers(1 << 31))
    ir = simulate_ppg(seconds, fs, spo2=rng.uniform(92, 99), hr=hr, seed=seed)[1]
    return ir * (30000.0 / ir.max())


def make_frames(devices: int = 120, seconds: int = 150, seed: int = 7) -> list[bytes]:
    """Distinct DELTA8 ECG and pleth frames and numerics of ``devices`` patients, shuffled.

    Per patient and second: one ECG frame (250 samples, ~300 B); every 3 s a pleth
    frame (300 samples); every 5 s a numerics frame (HR, PR, SpO2, PI, RR; 72 B).
    """
    rng = np.random.default_rng(seed)
    frames: list[bytes] = []
    for dev in range(1, devices + 1):
        hr = rng.uniform(55, 110)
        ts0 = P.TS_MIN_US + 10**15 + dev * 10**9
        ecg = np.round(ecg_uv(rng, seconds, 250, hr) / 2.5).clip(-32768, 32767).astype(np.int16)
        ppg = np.round(pleth_au(rng, seconds, 100, hr)).astype(np.int16)
        for s in range(seconds):
            ts = ts0 + s * 10**6
            frames.append(
                codec.encode_waveform(P.FrameType.ECG, dev, s, ts, P.EcgLead.II,
                                      ecg[s * 250 : (s + 1) * 250], 250, 2.5)
            )  # fmt: skip
            if s % 3 == 0:
                frames.append(
                    codec.encode_waveform(P.FrameType.PLETH, dev, s // 3, ts, P.PlethChannel.IR,
                                          ppg[s * 100 : (s + 3) * 100], 100, 1.0)
                )  # fmt: skip
            if s % 5 == 0:
                frames.append(
                    codec.encode_numerics(dev, s // 5, ts, [
                        (P.NumericCode.HR, round(hr + rng.normal(0, 1))),
                        (P.NumericCode.PR, round(hr + rng.normal(0, 1))),
                        (P.NumericCode.SPO2, float(min(100, round(rng.normal(97, 1))))),
                        (P.NumericCode.PERF_INDEX, round(rng.uniform(1, 5), 1)),
                        (P.NumericCode.RESP_RATE, float(round(rng.normal(16, 2)))),
                    ])
                )  # fmt: skip
    order = rng.permutation(len(frames))
    return [frames[i] for i in order]


# --------------------------------------------------------------------- measurements
def _raw_disk(data: list[bytes], directory: str, runs: int, chunk: int = 4 << 20) -> float:
    """Best MB/s of sequential write + fdatasync per ``chunk`` of the same bytes to a file."""
    blob = memoryview(b"".join(data))
    path = os.path.join(directory, "raw.bin")
    best = 0.0
    for _ in range(runs):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        t0 = time.perf_counter()
        try:
            for i in range(0, len(blob), chunk):
                os.write(fd, blob[i : i + chunk])
                os.fdatasync(fd)
            best = max(best, len(blob) / (time.perf_counter() - t0) / MB)
        finally:
            os.close(fd)
            os.unlink(path)
    return best


def _zstd_speed(data: list[bytes], level: int, block: int = 4 << 20) -> tuple[float, float, float]:
    """zstd on WAL-sized blocks of ``data``, 1 thread: wall MB/s, MB per CPU-second, ratio."""
    blob = b"".join(data)
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=False)
    out = 0
    t0, cpu0 = time.perf_counter(), time.thread_time()
    for i in range(0, len(blob), block):
        out += len(cctx.compress(blob[i : i + block]))
    wall, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    return len(blob) / wall / MB, len(blob) / cpu / MB, len(blob) / out


def _wal_run(frames: list[bytes], directory: str, total_bytes: int, producers: int,
             batch: int, **options) -> dict:  # fmt: skip
    """Producers append until ``total_bytes`` went in; wait until all is durable.

    ``batch`` 1 calls ``append`` per record; more calls ``append_many`` with that many
    records (as a server does with the frames of one network read).
    """
    shutil.rmtree(directory, ignore_errors=True)
    wal = WriteAheadLog(directory, **options)
    share = total_bytes // producers
    n = len(frames)
    waits = [0] * producers
    start = threading.Barrier(producers + 1)

    def produce_each(k: int) -> None:
        append, i, sent, last = wal.append, k * n // producers, 0, 0
        start.wait()
        while sent < share:
            rec = frames[i]
            try:
                last = append(rec)
            except BackPressureError:
                waits[k] += 1
                wal.wait_durable(last)
                continue
            sent += len(rec)
            i = i + 1 if i + 1 < n else 0

    def produce_batches(k: int) -> None:
        pool = frames + frames[:batch]
        size = [sum(map(len, pool[i : i + batch])) for i in range(n)]
        append_many, i, sent, last = wal.append_many, k * n // producers, 0, 0
        start.wait()
        while sent < share:
            try:
                last = append_many(pool[i : i + batch])[-1]
            except BackPressureError:
                waits[k] += 1
                wal.wait_durable(last)
                continue
            sent += size[i]
            i = (i + batch) % n

    target = produce_each if batch == 1 else produce_batches
    threads = [threading.Thread(target=target, args=(k,)) for k in range(producers)]
    for t in threads:
        t.start()
    start.wait()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wal.wait_durable(wal.last_lsn)
    dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stats = wal.stats()
    stats["compressor_cpu"] = _thread_cpu("vitalcore-wal-compress")
    wal.close()
    shutil.rmtree(directory, ignore_errors=True)
    stats.update(seconds=dt, cpu_seconds=cpu, backpressure_waits=sum(waits))
    return stats


def _thread_cpu(prefix: str) -> float:
    """CPU seconds used so far by the live threads whose name starts with ``prefix``."""
    return sum(
        time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        for t in threading.enumerate()
        if t.name.startswith(prefix) and t.ident is not None
    )


def _best(runs: int, *args, **options) -> dict:
    """Best of ``runs`` (the machine may be shared); keeps every run's MB/s."""
    results = [_wal_run(*args, **options) for _ in range(runs)]
    best = max(results, key=lambda s: s["bytes_in"] / s["seconds"])
    best["all_mbs"] = [s["bytes_in"] / s["seconds"] / MB for s in results]
    return best


def _row(label: str, s: dict, raw: float) -> float:
    mbs = s["bytes_in"] / s["seconds"] / MB
    runs = "/".join(f"{x:.0f}" for x in s["all_mbs"])
    print(f"{label:<30} {mbs:7.1f} {runs:>13} {s['records'] / s['seconds'] / 1e3:6.0f}k "
          f"{mbs / raw:5.2f}x {s['compression_ratio']:5.2f} {s['commits']:7d} {s['fsyncs']:6d} "
          f"{s['bytes_in'] / s['commits'] / 1024:5.0f} KiB "
          f"{s['cpu_seconds'] / (s['bytes_in'] / 1e9):6.2f} "
          f"{s['compressor_cpu'] / (s['bytes_in'] / 1e9):6.2f} {s['backpressure_waits']:5d}")  # fmt: skip
    return mbs


def bench_wal(args: argparse.Namespace) -> None:
    """Print WAL append MB/s per sync policy against the raw disk and zstd speed."""
    t0 = time.perf_counter()
    frames = make_frames()
    sizes = np.array([len(f) for f in frames])
    print(f"## WAL: {len(frames)} distinct frames (ECG, pleth, numerics), mean {sizes.mean():.0f} B, "
          f"{sizes.sum() / MB:.1f} MB pool, built in {time.perf_counter() - t0:.1f} s; "
          f"{args.producers} producer threads, {args.mb:.0f} MB per run; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    total = int(args.mb * MB)
    work = tempfile.mkdtemp(prefix="bench_wal_", dir=args.dir)
    try:
        raw = _raw_disk(frames * max(1, round(64 * MB / sizes.sum())), work, args.repeat)
        print(f"baseline raw disk ({work}): write + fdatasync per 4 MiB, same bytes: "
              f"{raw:7.1f} MB/s")  # fmt: skip
        for level in sorted({-3, -1, 1, 3, args.level}):
            speed, cpu_speed, ratio = _zstd_speed(frames, level)
            print(f"baseline zstd level {level:2d}, 1 thread, 4 MiB blocks: {speed:7.1f} MB/s "
                  f"({cpu_speed:.0f} MB per CPU-second), ratio {ratio:.2f}")  # fmt: skip
        print(f"{'run (best of ' + str(args.repeat) + ')':<30} {'MB/s':>7} {'each run':>13} "
              f"{'rec/s':>7} {'vs raw':>6} {'ratio':>5} {'commits':>7} {'fsyncs':>6} "
              f"{'block':>9} {'CPU s/GB':>8} {'compr.':>6} {'bp':>5}")  # fmt: skip
        group = {}
        for batch in (1, args.batch):
            api = "append" if batch == 1 else f"append_many({batch})"
            for policy in ("always", "group", "none"):
                s = _best(args.repeat, frames, os.path.join(work, policy), total, args.producers,
                          batch, sync=policy, group_commit_ms=args.group_ms, level=args.level)  # fmt: skip
                mbs = _row(f"{policy:<6} level {args.level:2d} {api}", s, raw)
                if policy == "group":
                    group[api] = (mbs, s)
        # the shape Store.commit() writes: one record holding the frames of many messages
        joined = [b"".join(frames[i : i + args.batch]) for i in range(0, len(frames), args.batch)]
        s = _best(args.repeat, joined, os.path.join(work, "store"), total, 1, 1, sync="group",
                  group_commit_ms=args.group_ms, level=args.level)  # fmt: skip
        api = f"append of {args.batch}-frame commit records, 1 producer (as Store.commit)"
        group[api] = (_row(f"group  level {args.level:2d} store commits", s, raw), s)
        for level in sorted({-3, -1, 1, 3} - {args.level}):
            s = _best(args.repeat, frames, os.path.join(work, "lvl"), total, args.producers,
                      args.batch, sync="group", group_commit_ms=args.group_ms, level=level)  # fmt: skip
            _row(f"group  level {level:2d} append_many({args.batch})", s, raw)
        for api, (mbs, s) in group.items():
            verdict = "met" if mbs >= TARGET_MB_S else "MISSED"
            gb = s["bytes_in"] / 1e9
            print(f"target WAL >= {TARGET_MB_S:.0f} MB/s, group commit, {api}: {verdict} "
                  f"({mbs:.1f} MB/s); compressor thread {s['compressor_cpu'] / gb:.2f} CPU-s/GB "
                  f"(ceiling {gb * 1e3 / s['compressor_cpu']:.0f} MB/s on a free core), rest of "
                  f"the process {(s['cpu_seconds'] - s['compressor_cpu']) / gb:.2f} CPU-s/GB")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------- Parquet section
# (history store flush/compression/read latency, live buffer append, sequence tracking)
PQ_TARGET_SAMPLES_S = 10e6
PQ_DAY0_US = 19_675 * 86_400_000_000  # 2023-11-14T00:00:00Z
PQ_BUCKETS = 16  # HistoryStore's default device buckets per table and day


def _pq_batch(dev, ftype, ch, seq, ts, fs, gain, n, samples, numerics=None):
    """A DecodedBatch straight from columns (encoding/decoding is bench_decode's job)."""
    from vitalcore.batch import TABLES, DecodedBatch

    rows = len(dev)
    tables = {name: {c: np.empty(0, dt) for c, dt in cols} for name, cols in TABLES.items()}
    ident = {"device_id": dev.astype(np.uint64), "frame_type": ftype.astype(np.uint8),
             "channel": ch.astype(np.uint8), "seq": seq.astype(np.uint32),
             "ts_us": ts.astype(np.int64)}  # fmt: skip
    starts = np.zeros(rows, np.int64)
    np.cumsum(n[:-1], out=starts[1:])
    tables["waveforms"] = {"frame": np.arange(rows, dtype=np.uint32), **ident,
                           "fs_hz": fs.astype(np.uint16), "gain": gain.astype(np.float32),
                           "offset": np.zeros(rows, np.float32), "sample_start": starts,
                           "n_samples": n.astype(np.uint32)}  # fmt: skip
    frames = dict(ident)
    if numerics is not None:
        k = len(numerics["device_id"])
        tables["numerics"] = {"frame": np.arange(rows, rows + k, dtype=np.uint32), **numerics}
        for c in ("device_id", "seq", "ts_us"):
            frames[c] = np.concatenate([frames[c], numerics[c]])
        frames["frame_type"] = np.concatenate([frames["frame_type"], np.full(k, 0x10, np.uint8)])
        frames["channel"] = np.concatenate([frames["channel"], np.zeros(k, np.uint8)])
    m = len(frames["device_id"])
    tables["frames"] = {**frames, "raw_offset": np.zeros(m, np.int64), "raw_length": np.zeros(m, np.uint32)}
    return DecodedBatch(tables, samples.astype(np.int16), np.empty(0, np.uint8),
                        np.zeros(len(P.REJECT_REASONS), np.int64))  # fmt: skip


def _pq_interval(signals: dict[int, np.ndarray], t0_us: int, sec0: int, seconds: int,
                 pleth: dict[int, np.ndarray] | None = None, leads=(P.EcgLead.II,)):  # fmt: skip
    """Frames of ``seconds`` from second ``sec0`` of every device, in arrival order.

    ECG ``leads`` at 250 Hz in 1/4 s frames (62/63 samples; leads other than II are the
    signal shifted and scaled), optionally pleth red and IR at 100 Hz (25 samples),
    numerics at 1 Hz (HR, PR, SpO2, RR, PI).
    """
    devs = np.array(sorted(signals), np.int64)
    cols = {k: [] for k in ("dev", "ft", "ch", "seq", "ts", "fs", "gain", "n", "samples")}

    def add(ft, ch, fs, gain, per_dev):
        for k in range(4 * sec0, 4 * (sec0 + seconds)):
            a, b = k * fs // 4, (k + 1) * fs // 4
            cols["samples"].append(np.stack([per_dev[d][a:b] for d in devs.tolist()]).ravel())
            for key, v in (("dev", devs), ("ft", ft), ("ch", ch), ("seq", k),
                           ("ts", t0_us + round(a * 1e6 / fs)), ("fs", fs), ("gain", gain), ("n", b - a)):  # fmt: skip
                cols[key].append(np.broadcast_to(v, devs.shape))

    for lead in leads:
        if lead == P.EcgLead.II:
            add(P.FrameType.ECG, lead, 250, 2.5, signals)
        else:
            other = {d: (np.roll(x, 7 * lead) * (0.5 + 0.1 * lead)).astype(np.int16) for d, x in signals.items()}
            add(P.FrameType.ECG, lead, 250, 2.5, other)
    if pleth is not None:
        for ch in (P.PlethChannel.RED, P.PlethChannel.IR):
            add(P.FrameType.PLETH, ch, 100, 1.0, {d: p + 300 * ch for d, p in pleth.items()})
    col = {k: np.concatenate(v) for k, v in cols.items()}
    secs = np.arange(sec0, sec0 + seconds)
    codes = np.array([P.NumericCode.HR, P.NumericCode.PR, P.NumericCode.SPO2,
                      P.NumericCode.RESP_RATE, P.NumericCode.PERF_INDEX], np.uint8)  # fmt: skip
    nd, ns, nc = len(devs), len(secs), len(codes)
    grid = np.meshgrid(secs, devs, codes, indexing="ij")
    values = np.array([72.0, 71.0, 97.0, 16.0, 2.5], np.float32)[None, None, :] + np.float32(
        np.sin(secs / 60.0)[:, None, None])  # fmt: skip
    numerics = {"device_id": grid[1].ravel().astype(np.uint64), "seq": grid[0].ravel().astype(np.uint32),
                "ts_us": (t0_us + grid[0] * 1_000_000).ravel().astype(np.int64),
                "code": grid[2].ravel(), "status": np.zeros(nd * ns * nc, np.uint8),
                "value": np.broadcast_to(values, (ns, nd, nc)).ravel().astype(np.float32)}  # fmt: skip
    return _pq_batch(col["dev"], col["ft"], col["ch"], col["seq"], col["ts"], col["fs"],
                     col["gain"], col["n"], col["samples"], numerics)  # fmt: skip


def _pq_ecg(rng: np.random.Generator, seconds: int) -> np.ndarray:
    """ECG lead II at 250 Hz in counts of 2.5 µV (as make_frames)."""
    mv, _ = simulate_ecg(seconds, 250, rng.uniform(55, 110), seed=int(rng.integers(1 << 31)))
    return np.round(mv * 1000.0 / 2.5).clip(-32768, 32767).astype(np.int16)


def _pq_ppg(rng: np.random.Generator, seconds: int) -> np.ndarray:
    """IR pleth at 100 Hz in counts (as make_frames)."""
    _, ir, _ = simulate_ppg(seconds, 100, seed=int(rng.integers(1 << 31)))
    return np.round(ir * 30000.0 / ir.max()).astype(np.int16)


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _pq_flush(args: argparse.Namespace, work: str) -> None:
    rng = np.random.default_rng(11)
    n_dev, flush_s, flushes = args.pq_flush_devices, 60, 3
    signals = {d: _pq_ecg(rng, flush_s * flushes) for d in range(1, n_dev + 1)}
    t0 = PQ_DAY0_US + 9 * 3600 * 10**6
    batches = [_pq_interval(signals, t0, f * flush_s, flush_s) for f in range(flushes)]
    _pq_flush_run(os.path.join(work, "one-lead"), "one ECG lead", batches, n_dev, flush_s)
    ppg = {d: _pq_ppg(rng, flush_s * flushes) for d in signals}
    leads = (P.EcgLead.I, P.EcgLead.II, P.EcgLead.III)
    batches = [_pq_interval(signals, t0, f * flush_s, flush_s, ppg, leads) for f in range(flushes)]
    _pq_flush_run(os.path.join(work, "full"), "ECG I/II/III + pleth red/IR", batches, n_dev, flush_s)


def _pq_flush_run(work: str, label: str, batches: list, n_dev: int, flush_s: int) -> None:
    import pyarrow as pa

    from vitalcore.storage import HistoryStore

    os.makedirs(work)
    flushes = len(batches)
    n_samples = sum(len(b.samples) for b in batches)
    raw_bytes = 2 * n_samples
    per_table = min(n_dev, PQ_BUCKETS)  # device ids 1..n_dev: one file per used bucket
    print(f"flush: {n_dev} devices, {label} (250/100 Hz, 1/4 s frames) + numerics 1 Hz, "
          f"{flushes} flushes of {flush_s} s ({PQ_BUCKETS} device buckets: {per_table} files per "
          f"table per flush), {n_samples / 1e6:.1f} M samples")  # fmt: skip
    # baseline: the same waveform rows as one uncompressed Arrow IPC file per flush
    ipc_dir = os.path.join(work, "ipc")
    os.makedirs(ipc_dir)
    t = time.perf_counter()
    for i, b in enumerate(batches):
        path = os.path.join(ipc_dir, f"{i}.arrow")
        table = b.to_arrow("waveforms")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    ipc_s = time.perf_counter() - t
    ipc_bytes = _dir_bytes(ipc_dir)
    t = time.perf_counter()
    for i, b in enumerate(batches):
        with open(os.path.join(ipc_dir, f"{i}.npy"), "wb") as f:
            np.save(f, b.samples)
            f.flush()
            os.fsync(f.fileno())
    npy_s = time.perf_counter() - t
    # the file-system share of the partition layout: create and write as many small files
    # as the old per-device layout made (2 tables x n_dev), for the per-file cost
    t = time.perf_counter()
    for i in range(2 * n_dev):
        sub = os.path.join(ipc_dir, "layout", str(i))
        os.makedirs(sub)
        with open(os.path.join(sub, "x.parquet"), "wb") as f:
            f.write(bytes(4096))
    create_ms = (time.perf_counter() - t) / (2 * n_dev) * 1e3
    print(f"baseline file system: mkdir + create + write 4 KiB, no fsync: {create_ms:.2f} ms per "
          f"file (per-device layout: {2 * n_dev} files per flush = {2 * n_dev * create_ms:.0f} ms; "
          f"bucket layout: {2 * per_table} = {2 * per_table * create_ms:.0f} ms)")  # fmt: skip
    print(f"baseline Arrow IPC uncompressed, 1 file/flush, fsync: {n_samples / ipc_s / 1e6:7.1f} "
          f"M samples/s, {ipc_bytes / n_samples:.2f} B/sample")  # fmt: skip
    print(f"baseline np.save of the raw int16 samples, fsync:    {n_samples / npy_s / 1e6:7.1f} "
          f"M samples/s, 2.00 B/sample")  # fmt: skip
    for sync in ("fsync", "syncfs", "none"):
        root = os.path.join(work, f"history-{sync}")
        store = HistoryStore(root, sync=sync, buckets=PQ_BUCKETS)
        t = time.perf_counter()
        for i, b in enumerate(batches):
            store.write(b, 1000 * i + 1, 1000 * i + 1000)
        dt = time.perf_counter() - t
        wave_bytes = _dir_bytes(os.path.join(root, "waveforms"))
        rate = n_samples / dt
        print(f"HistoryStore.write, zstd {store.compression_level}, {store.threads} threads, "
              f"sync={sync:6}: {rate / 1e6:7.1f} M samples/s ({rate / (n_samples / ipc_s):.2f}x IPC), "
              f"{wave_bytes / n_samples:.2f} B/sample, ratio vs raw int16 {raw_bytes / wave_bytes:.2f}, "
              f"vs IPC {ipc_bytes / wave_bytes:.2f}")  # fmt: skip
        if sync == "fsync":
            verdict = "met" if rate >= PQ_TARGET_SAMPLES_S else "MISSED"
            print(f"target Parquet flush >= {PQ_TARGET_SAMPLES_S / 1e6:.0f} M samples/s, per-file fsync: "
                  f"{verdict} ({rate / 1e6:.1f})")  # fmt: skip


def _pq_mitdb(work: str) -> None:
    """Compression ratio on real ECG (MIT-BIH, resampled to 250 Hz) if the records are here."""
    from vitalcore.storage import HistoryStore

    here = os.path.dirname(os.path.abspath(__file__))
    mitdb = os.path.join(here, "..", "..", "shared", "data", "mitdb")
    if not os.path.isdir(mitdb):
        print(f"MIT-BIH ratio: skipped, no records at {mitdb}")
        return
    try:
        import wfdb
    except ImportError:
        print("MIT-BIH ratio: skipped, wfdb is not installed (pip install vitalcore[bench])")
        return
    records = sorted(f[:-4] for f in os.listdir(mitdb) if f.endswith(".hea"))[:8]
    signals = {}
    for i, name in enumerate(records, 1):
        x = wfdb.rdrecord(os.path.join(mitdb, name), physical=False).d_signal[:, 0].astype(np.float64)
        t = np.arange(0, (len(x) - 1) / 360, 1 / 250)
        signals[i] = np.round(np.interp(t, np.arange(len(x)) / 360, x)).astype(np.int16)
    seconds = min(len(s) for s in signals.values()) // 250 - 1
    batch = _pq_interval(signals, PQ_DAY0_US, 0, seconds)
    root = os.path.join(work, "mitdb")
    HistoryStore(root, sync="none").write(batch, 1, 1)
    ratio = 2 * len(batch.samples) / _dir_bytes(os.path.join(root, "waveforms"))
    print(f"MIT-BIH records {records[0]}..{records[-1]} ({len(records)} x {seconds / 60:.0f} min, "
          f"lead 1, 360 -> 250 Hz, 5 µV/LSB): compression ratio vs raw int16 {ratio:.2f}")  # fmt: skip


def _pq_reads(args: argparse.Namespace, work: str) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from vitalcore.storage import HistoryStore

    n_dev, hours = args.pq_devices, args.pq_hours
    rng = np.random.default_rng(5)
    hour = {d: _pq_ecg(rng, 3600) for d in range(1, n_dev + 1)}
    root = os.path.join(work, "day")
    # as many devices per bucket as 300 devices in PQ_BUCKETS buckets (~19): a read then
    # skips the other devices' row groups of its bucket's files, as in production
    store = HistoryStore(root, buckets=max(1, n_dev * PQ_BUCKETS // 300))
    n, dt = 0, 0.0
    for h in range(hours):
        shifted = {d: np.roll(s, int(rng.integers(len(s)))) for d, s in hour.items()}
        batch = _pq_interval(shifted, PQ_DAY0_US + h * 3600 * 10**6, 0, 3600)
        t = time.perf_counter()
        store.write(batch, h + 1, h + 1)
        dt += time.perf_counter() - t
        n += len(batch.samples)
    print(f"store of {n_dev} devices x {hours} h (ECG II 250 Hz + numerics 1 Hz, hourly flushes, "
          f"{store.buckets} device buckets): "
          f"{n / 1e6:.0f} M samples written in {dt:.1f} s ({n / dt / 1e6:.1f} M samples/s), "
          f"{_dir_bytes(root) / 1e6:.0f} MB on disk")  # fmt: skip
    dev, t0 = n_dev // 2 + 1, PQ_DAY0_US + (hours // 2) * 3600 * 10**6
    day = (PQ_DAY0_US, PQ_DAY0_US + 86_400_000_000)

    def timed(fn, reps=5):
        best = float("inf")
        for _ in range(reps):
            s = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - s)
        return best, out

    # baseline: the device's day of waveform rows as one uncompressed IPC file, memory-mapped
    wave = store.read("waveforms", dev, *day)
    ipc = os.path.join(work, "device-day.arrow")
    with pa.OSFile(ipc, "wb") as sink, pa.ipc.new_file(sink, wave.schema) as w:
        w.write_table(wave)

    def ipc_hour():
        table = pa.ipc.open_file(pa.memory_map(ipc)).read_all()
        mask = pc.and_(pc.less(table["ts_us"], t0 + 3600 * 10**6), pc.greater(table["end_ts_us"], t0))
        return table.filter(mask)

    base_s, base = timed(ipc_hour)
    for label in ("hourly files", "compacted"):
        if label == "compacted":
            s = time.perf_counter()
            store.compact("2023-11-14")
            print(f"compact one day of {n_dev} devices: {time.perf_counter() - s:.1f} s")
        w_s, frames = timed(lambda: store.read_waveforms(dev, t0, t0 + 3600 * 10**6, P.FrameType.ECG))
        s_s, (ts, _) = timed(lambda: store.read_samples(dev, P.FrameType.ECG, P.EcgLead.II, t0, t0 + 3600 * 10**6))
        n_s, num = timed(lambda: store.read_numerics(dev, *day))
        assert frames.num_rows == base.num_rows and len(ts) == 900_000, (frames.num_rows, len(ts))
        print(f"read ({label}): 1 h ECG frames {w_s * 1e3:6.1f} ms ({frames.num_rows} rows), "
              f"as flat samples {s_s * 1e3:6.1f} ms ({len(ts)}), 24 h numerics {n_s * 1e3:6.1f} ms "
              f"({num.num_rows} rows); baseline mmap IPC device-day + filter {base_s * 1e3:6.1f} ms")  # fmt: skip


def _pq_buffers(work: str) -> None:
    from vitalcore._ext.streamtab import StreamTable, stream_ids
    from vitalcore._refstreamtab import RefStreamTable
    from vitalcore.buffers import StreamBuffers

    rng = np.random.default_rng(3)
    n_dev, seconds = 300, 40
    ecg = {d: _pq_ecg(rng, seconds) for d in range(1, n_dev + 1)}
    ppg = {d: _pq_ppg(rng, seconds) for d in ecg}
    batches = [_pq_interval(ecg, PQ_DAY0_US, s, 1, pleth=ppg) for s in range(seconds)]
    n = sum(len(b.samples) for b in batches[1:])
    buf = StreamBuffers(window_s=30.0)
    buf.append(batches[0])  # compiles the kernel if not cached
    t = time.perf_counter()
    for b in batches[1:]:
        buf.append(b)
    dt = time.perf_counter() - t
    # baseline: a per-frame Python loop writing numpy rings (what one writes first)
    rings: dict = {}
    t = time.perf_counter()
    for b in batches[1:]:
        w = b.tables["waveforms"]
        for i in range(len(w["device_id"])):
            key = (int(w["device_id"][i]), int(w["frame_type"][i]), int(w["channel"][i]))
            ring = rings.get(key)
            if ring is None:
                ring = rings[key] = [np.zeros(30 * int(w["fs_hz"][i]), np.int16), 0]
            x = b.samples[w["sample_start"][i] : w["sample_start"][i] + w["n_samples"][i]]
            p = ring[1] % len(ring[0])
            k = min(len(x), len(ring[0]) - p)
            ring[0][p : p + k] = x[:k]
            ring[0][: len(x) - k] = x[k:]
            ring[1] += len(x)
    base = time.perf_counter() - t
    per_frame = len(batches[1].tables["waveforms"]["device_id"])
    print(f"StreamBuffers.append, 1 s batches of {n_dev} devices (ECG 250 Hz + pleth red/IR "
          f"100 Hz, {per_frame} frames): {n / dt / 1e6:7.1f} M samples/s; baseline per-frame "
          f"numpy loop {n / base / 1e6:5.1f} M samples/s ({base / dt:.1f}x); "
          f"{buf.memory_bytes() / 1e6:.1f} MB for {len(buf.streams())} streams")  # fmt: skip
    frames = [b.tables["frames"] for b in batches]
    cols = [(f["device_id"], stream_ids(f["frame_type"], f["channel"]), f["seq"], f["ts_us"]) for f in frames]
    rates = []
    for table in (StreamTable(4096), RefStreamTable()):
        t = time.perf_counter()
        for c in cols:
            table.classify(*c)
        rates.append(sum(len(c[0]) for c in cols) / (time.perf_counter() - t))
    print(f"StreamTable.classify: {rates[0] / 1e6:.2f} M frames/s; baseline pure-Python twin "
          f"{rates[1] / 1e6:.3f} M frames/s ({rates[0] / rates[1]:.0f}x)")  # fmt: skip


def bench_parquet(args: argparse.Namespace) -> None:
    """Print Parquet flush/read figures and live-buffer append rates against baselines."""
    print(f"## Parquet history store and live buffers; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    work = tempfile.mkdtemp(prefix="bench_parquet_", dir=args.dir)
    try:
        _pq_flush(args, work)
        _pq_mitdb(work)
        _pq_buffers(work)
        _pq_reads(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


SECTIONS = {"wal": bench_wal, "parquet": bench_parquet}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), help="run one section")
    parser.add_argument("--dir", default=None, help="directory on the disk to measure")
    parser.add_argument("--mb", type=float, default=128.0, help="MB appended per WAL run")
    parser.add_argument("--batch", type=int, default=64, help="records per append_many call")
    parser.add_argument("--repeat", type=int, default=3, help="WAL runs per row (best shown)")
    parser.add_argument("--producers", type=int, default=4, help="WAL producer threads")
    parser.add_argument("--level", type=int, default=-1, help="WAL zstd level")
    parser.add_argument("--group-ms", type=float, default=2.0, help="WAL group window, ms")
    parser.add_argument("--pq-flush-devices", type=int, default=300, help="Parquet flush devices")
    parser.add_argument("--pq-devices", type=int, default=20, help="devices in the read store")
    parser.add_argument("--pq-hours", type=int, default=24, help="hours in the read store")
    args = parser.parse_args(argv)
    for name, section in SECTIONS.items():
        if args.only in (None, name):
            section(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
