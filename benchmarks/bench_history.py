"""History queries on months of data: a patient's 24 h of numerics and 1 h of ECG.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bench_history.py [--dir D] [--keep] [--patients 300]
        [--days 30] [--ecg-buckets 1] [--queries 20]

The store (built in a temporary directory, or ``--dir``; deleted afterwards unless
``--keep``) has the layout of :class:`vitalcore.storage.HistoryStore` with 16 buckets,
as left by the daily compaction (one file per table, UTC day and bucket, every device
in row groups of its own), written with the store's own Parquet writer settings:

- **numerics**: ``--patients`` x ``--days`` x 24 h; HR, PR, SpO2 and respiration rate
  at 1 Hz, temperature every minute, NIBP sys/dia/mean every 15 min (347,328 rows per
  patient-day), for the patients of ``--numerics-buckets`` of the 16 buckets. Default
  4 (75 of 300 patients, 120 files, ~0.8 G rows); ``--numerics-buckets 16`` builds the
  full store (480 files, 3.13 G rows, 2 GB: 12.5 min on the shared 2-core VM at load
  average ~8, CPU-bound in Parquet encoding). A one-patient query opens only its own
  bucket's files, which are the same in both. Each patient's monitor is swapped for a new one at
  the start of day ``days // 2``, so every patient has two devices and the queries
  crossing that day stitch them.
- **ECG, scaled**: 30 days of 250 Hz ECG for 300 patients is 194 G samples, too much
  for this machine. The store holds lead II of the last day, 24 h, for every patient
  whose device falls in ``--ecg-buckets`` buckets (default 1: ~19 patients), in 1/4 s
  frames (62/63 samples, 4 frames/s) of simulated ECG (``vitalcore.dsp.simulate``) with
  per-patient noise: that bucket's day file is exactly what the compaction writes for
  300 patients (same devices, frames and row groups), so a one-patient query reads the
  same bytes and footer as in the full store; the other buckets' files, which such a
  query never opens, are left out. The layout of the full 30 days (files, row groups,
  size at the measured bytes/sample) is computed and printed.

Queries go through :class:`vitalcore.clinical.records.Records` (patient spans ->
device reads -> clipped, labelled Arrow tables) over random patients and windows:
24 h of numerics starting at a random second of days 1..days-2, and 1 h of ECG
samples starting at a random second of the last day (up to 23:00) of a patient with ECG. *Warm*: the same process and
store object, repeated. *Cold-ish*: a new ``HistoryStore`` and ``Records`` per query
in a new process (the OS page cache stays warm; this machine cannot drop it for a
shared benchmark). Baselines in the same run: the naive read (the day/bucket files the
range touches, read whole with ``pyarrow.parquet.read_table`` and filtered with Arrow
compute), and a generic ``pyarrow.dataset`` over the hive-partitioned tree (discovery
of every file each time, filter pushed down). Next to the wall times, the CPU time per
query (``time.process_time``: every thread of the process) is printed: on a shared
machine it moves much less with the load average than wall time does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from vitalcore import protocol as P
from vitalcore.clinical.records import Records
from vitalcore.clinical.spans import DeviceSpan
from vitalcore.storage.history import DAY_US, SCHEMAS, HistoryStore, _day_name, _write_parquet

BUCKETS = 16
HOUR_US = 3_600_000_000
DAY0 = 19_675  # 2023-11-14
ECG_FS = 250
TARGET_NUMERICS_MS, TARGET_ECG_MS = 100.0, 200.0
CODES_1HZ = (P.NumericCode.HR, P.NumericCode.PR, P.NumericCode.SPO2, P.NumericCode.RESP_RATE)
NIBP = (P.NumericCode.NIBP_SYS, P.NumericCode.NIBP_DIA, P.NumericCode.NIBP_MAP)


# ------------------------------------------------------------------------------- patients
def devices_of(patient: int) -> tuple[int, int]:
    """The monitor before and after the mid-month swap."""
    return 100_000 + patient, 200_000 + patient


def spans_of(patient: int, days: int) -> list[DeviceSpan]:
    swap = (DAY0 + days // 2) * DAY_US
    first, second = devices_of(patient)
    pid = f"patient-{patient:04d}"
    return [
        DeviceSpan(pid, first, DAY0 * DAY_US, swap, f"ward-{patient % 10}"),
        DeviceSpan(pid, second, swap, None, f"ward-{patient % 10}"),
    ]


def device_on(patient: int, day: int, days: int) -> int:
    return devices_of(patient)[0 if day < days // 2 else 1]


# ------------------------------------------------------------------------------- numerics
def numerics_template() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """One device-day: (ts offset µs, code, seq, row indices of each code), sorted by
    (ts, code) as the store sorts them."""
    sec = np.arange(86_400, dtype=np.int64)
    parts = [(sec, np.full(86_400, c, np.uint8)) for c in CODES_1HZ]
    minute = sec[::60]
    parts.append((minute, np.full(len(minute), P.NumericCode.TEMP, np.uint8)))
    quarter = sec[::900]
    parts += [(quarter, np.full(len(quarter), c, np.uint8)) for c in NIBP]
    s = np.concatenate([p[0] for p in parts])
    code = np.concatenate([p[1] for p in parts])
    order = np.lexsort((code, s))
    s, code = s[order], code[order]
    index = {int(c): np.flatnonzero(code == c) for c in np.unique(code)}
    return s * 1_000_000, code, s.astype(np.uint32), index


def value_pools(rng: np.random.Generator, n: int) -> dict[int, np.ndarray]:
    """Long plausible series per code (random walks), sliced per device-day."""
    walk = np.cumsum(rng.normal(0, 0.3, n)).astype(np.float32)
    c = np.concatenate([[0.0], np.cumsum(walk, dtype=np.float64)])
    k = np.clip(np.arange(n), 300, n - 300)
    walk -= ((c[k + 300] - c[k - 300]) / 600).astype(np.float32)  # minus a 10-min mean: no drift
    return {
        P.NumericCode.HR: np.round(75 + 3 * walk),
        P.NumericCode.PR: np.round(75 + 3 * walk + rng.normal(0, 1, n).astype(np.float32)),
        P.NumericCode.SPO2: np.clip(np.round(97 + walk / 2), 85, 100),
        P.NumericCode.RESP_RATE: np.round(16 + walk),
        P.NumericCode.TEMP: np.round(36.8 + walk / 20, 1),
        P.NumericCode.NIBP_SYS: np.round(120 + 4 * walk),
        P.NumericCode.NIBP_DIA: np.round(75 + 3 * walk),
        P.NumericCode.NIBP_MAP: np.round(90 + 3 * walk),
    }


def numerics_bucket_day(
    devs: list[int], day: int, template, pools, rng: np.random.Generator
) -> pa.Table:
    ts_off, code, seq, index = template
    per = len(ts_off)
    n = per * len(devs)
    value = np.empty(n, np.float32)
    pool_n = len(pools[P.NumericCode.HR])
    for i in range(len(devs)):
        base = i * per
        for c, rows in index.items():
            off = int(rng.integers(0, pool_n - len(rows)))
            value[base + rows] = pools[c][off : off + len(rows)]
    arrays = [
        np.repeat(np.asarray(devs, np.uint64), per),
        np.tile(seq, len(devs)),
        np.tile(ts_off + day * DAY_US, len(devs)),
        np.tile(code, len(devs)),
        np.zeros(n, np.uint8),
        value,
    ]
    return pa.table(arrays, schema=SCHEMAS["numerics"])


# ------------------------------------------------------------------------------- ECG
def ecg_bucket(devs: list[int], t0: int, template: np.ndarray,
               rng: np.random.Generator) -> pa.Table:  # fmt: skip
    """24 h of lead-II frames (1/4 s) of each device from ``t0``, sorted by device."""
    frames = 86_400 * 4
    k = np.arange(frames, dtype=np.int64)
    a = k * ECG_FS // 4
    n = ((k + 1) * ECG_FS // 4 - a).astype(np.uint32)
    per = int(n.sum())
    samples = np.empty(per * len(devs), np.int16)
    for i in range(len(devs)):
        shifted = np.resize(np.roll(template, int(rng.integers(len(template)))), per)
        samples[i * per : (i + 1) * per] = shifted + rng.integers(-3, 4, per, dtype=np.int16)
    ts = t0 + a * 4000
    end = ts + np.round(n * (1e6 / ECG_FS)).astype(np.int64)
    rows = frames * len(devs)
    offsets = np.zeros(rows + 1, np.int32)
    np.cumsum(np.tile(n, len(devs)), out=offsets[1:])
    arrays = [
        np.repeat(np.asarray(devs, np.uint64), frames),
        np.full(rows, P.FrameType.ECG, np.uint8),
        np.full(rows, P.EcgLead.II, np.uint8),
        np.tile(k.astype(np.uint32), len(devs)),
        np.tile(ts, len(devs)),
        np.tile(end, len(devs)),
        np.full(rows, ECG_FS, np.uint16),
        np.full(rows, 2.5, np.float32),
        np.zeros(rows, np.float32),
        np.tile(n, len(devs)),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(samples)),
    ]
    return pa.table(arrays, schema=SCHEMAS["waveforms"])


def ecg_template(seed: int) -> np.ndarray:
    """An hour of simulated lead II at 250 Hz in counts of 2.5 µV (repeated per patient,
    from a random phase, with noise)."""
    from vitalcore.dsp.simulate import simulate_ecg

    mv = simulate_ecg(3600, ECG_FS, 72.0, seed=seed)[0]
    return np.round(mv * 1000 / 2.5).clip(-32768, 32767).astype(np.int16)


# ------------------------------------------------------------------------------- build
def build(
    root: Path, patients: int, days: int, ecg_buckets: int, numerics_buckets: int, seed: int
) -> dict:
    rng = np.random.default_rng(seed)
    HistoryStore(root, buckets=BUCKETS, sync="none")  # layout.json
    template, pools = numerics_template(), value_pools(rng, 1 << 22)
    jobs = []
    for d in range(days):
        day = DAY0 + d
        by_bucket: dict[int, list[int]] = {}
        for p in range(patients):
            dev = device_on(p, d, days)
            by_bucket.setdefault(dev % BUCKETS, []).append(dev)
        for b, devs in sorted(by_bucket.items()):
            if b < numerics_buckets:
                jobs.append(("numerics", day, b, sorted(devs)))
    ecg_day = DAY0 + days - 1
    ecg_t0 = ecg_day * DAY_US
    wave = ecg_template(seed)
    by_bucket = {}
    for p in range(patients):
        dev = device_on(p, days - 1, days)
        by_bucket.setdefault(dev % BUCKETS, []).append(dev)
    ecg = [(b, devs) for b, devs in sorted(by_bucket.items()) if b < ecg_buckets]
    jobs = [("waveforms", ecg_day, b, sorted(devs)) for b, devs in ecg] + jobs  # longest first
    ecg_patients = [p for p in range(patients) if device_on(p, days - 1, days) % BUCKETS in dict(ecg)]

    def run(job, seed_k):
        table, day, b, devs = job
        local = np.random.default_rng(seed_k)
        if table == "numerics":
            t = numerics_bucket_day(devs, day, template, pools, local)
        else:
            t = ecg_bucket(devs, ecg_t0, wave, local)
        d = root / table / f"day={_day_name(day)}" / f"bucket={b}"
        d.mkdir(parents=True, exist_ok=True)
        lsn = (day - DAY0) * 10_000
        path = d / f"{lsn + 1:020d}-{lsn + 9_999:020d}.parquet"
        _write_parquet(t, path, table, 3)
        samples = int(np.sum(t.column("n_samples").to_numpy())) if table == "waveforms" else 0
        return table, t.num_rows, samples, path.stat().st_size

    t0 = time.perf_counter()
    totals: dict[str, list[int]] = {"numerics": [0, 0, 0, 0], "waveforms": [0, 0, 0, 0]}
    with ThreadPoolExecutor(2) as pool:
        for table, rows, samples, size in pool.map(run, jobs, range(len(jobs))):
            tot = totals[table]
            tot[0] += 1
            tot[1] += rows
            tot[2] += samples
            tot[3] += size
    numerics_patients = [p for p in range(patients) if devices_of(p)[0] % BUCKETS < numerics_buckets]
    return {
        "seconds": time.perf_counter() - t0, "totals": totals, "ecg_t0": ecg_t0,
        "ecg_patients": ecg_patients, "numerics_patients": numerics_patients,
    }


def describe(root: Path, info: dict, patients: int, days: int) -> None:
    import pyarrow.parquet as pq

    n, w = info["totals"]["numerics"], info["totals"]["waveforms"]
    print(f"built in {info['seconds']:.0f} s under {root}")
    one = next((root / "numerics").glob("day=*/bucket=*/*.parquet"))
    rg = pq.ParquetFile(one).metadata.num_row_groups
    nb = len({int(p) % BUCKETS for p in info["numerics_patients"]})
    print(
        f"numerics: {n[0]} files ({days} days x {nb} of {BUCKETS} buckets,"
        f" {len(info['numerics_patients'])} of {patients} patients), {n[1] / 1e9:.2f} G rows,"
        f" {n[3] / 1e9:.2f} GB ({n[3] / n[1]:.2f} B/row); {rg} row groups per file (one per device)"
    )
    if nb < BUCKETS:
        print(f"  full store (not built): {days * BUCKETS} files, {n[1] * BUCKETS / nb / 1e9:.2f} G rows")
    one = next((root / "waveforms").glob("day=*/bucket=*/*.parquet"))
    meta = pq.ParquetFile(one).metadata
    bps = w[3] / w[2]
    print(
        f"ECG (scaled): {w[0]} file(s), {len(info['ecg_patients'])} patients x 24 h of the last day,"
        f" {w[2] / 1e6:.0f} M samples, {w[3] / 1e9:.2f} GB ({bps:.2f} B/sample);"
        f" {meta.num_row_groups} row groups in {one.relative_to(root)}"
    )
    frames_day = 86_400 * 4
    groups = -(-frames_day // 16_384)
    full = patients * days * 86_400 * ECG_FS
    print(
        f"ECG at full size (not built): {days * BUCKETS} files, ~{patients // BUCKETS} devices x"
        f" {groups} row groups of <= 16,384 frames per file, {full / 1e9:.0f} G samples,"
        f" ~{full * bps / 1e12:.2f} TB at {bps:.2f} B/sample"
    )


# ------------------------------------------------------------------------------- queries
def windows(kind: str, k: int, days: int, info: dict, seed: int) -> list[tuple[int, int, int]]:
    """(patient, t0, t1) of ``k`` random queries."""
    rng = np.random.default_rng(seed + (1 if kind == "ecg" else 2))
    out = []
    for _ in range(k):
        if kind == "numerics":
            p = int(rng.choice(info["numerics_patients"]))
            t0 = (DAY0 + 1) * DAY_US + int(rng.integers(0, (days - 3) * 86_400)) * 1_000_000
            out.append((p, t0, t0 + DAY_US))
        else:
            p = int(rng.choice(info["ecg_patients"]))
            t0 = info["ecg_t0"] + int(rng.integers(0, 23 * 3600 + 1)) * 1_000_000
            out.append((p, t0, t0 + HOUR_US))
    return out


def query(records: Records, kind: str, p: int, t0: int, t1: int, days: int) -> int:
    spans = spans_of(p, days)
    if kind == "numerics":
        return records.numerics(spans, t0, t1).num_rows
    w = records.waveforms(spans, t0, t1, P.FrameType.ECG, P.EcgLead.II)
    return sum(t.num_rows for t in w.values())


def naive(root: Path, kind: str, p: int, t0: int, t1: int, days: int) -> int:
    """Read the day/bucket files the range touches whole, filter with Arrow compute."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from vitalcore.storage.history import samples_of

    table = "numerics" if kind == "numerics" else "waveforms"
    out = 0
    for span in spans_of(p, days):
        lo, hi = max(t0, span.start_us), min(t1, span.end_us or t1)
        if lo >= hi:
            continue
        for day in range(lo // DAY_US, (hi - 1) // DAY_US + 1):
            d = root / table / f"day={_day_name(day)}" / f"bucket={span.device_id % BUCKETS}"
            for f in sorted(d.glob("*.parquet")) if d.is_dir() else []:
                t = pq.read_table(f)
                dev = pc.equal(t.column("device_id"), pa.scalar(span.device_id, pa.uint64()))
                ts = t.column("ts_us")
                if kind == "numerics":
                    keep = pc.and_(dev, pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
                    out += t.filter(keep).num_rows
                else:
                    keep = pc.and_(dev, pc.and_(pc.less(ts, hi), pc.greater(t.column("end_ts_us"), lo)))
                    out += len(samples_of(t.filter(keep), lo, hi)[0])
    return out


def generic_dataset(root: Path, kind: str, p: int, t0: int, t1: int, days: int) -> int:
    """One hive-partitioned pyarrow.dataset over the whole table, discovered per query."""
    import pyarrow.dataset as ds

    from vitalcore.storage.history import samples_of

    table = "numerics" if kind == "numerics" else "waveforms"
    dataset = ds.dataset(root / table, format="parquet", partitioning="hive")
    out = 0
    for span in spans_of(p, days):
        lo, hi = max(t0, span.start_us), min(t1, span.end_us or t1)
        if lo >= hi:
            continue
        days_ = [_day_name(d) for d in range(lo // DAY_US, (hi - 1) // DAY_US + 1)]
        f = (ds.field("day").isin(days_)) & (ds.field("bucket") == span.device_id % BUCKETS)
        f &= ds.field("device_id") == pa.scalar(span.device_id, pa.uint64())
        if kind == "numerics":
            f &= (ds.field("ts_us") >= lo) & (ds.field("ts_us") < hi)
            out += dataset.to_table(filter=f).num_rows
        else:
            f &= (ds.field("ts_us") < hi) & (ds.field("end_ts_us") > lo)
            t = dataset.to_table(filter=f, columns=SCHEMAS["waveforms"].names)
            out += len(samples_of(t.sort_by("ts_us"), lo, hi)[0])
    return out


def timed(fn, *args) -> tuple[float, int, float]:
    """(wall ms, result, CPU ms of this process: all its threads)."""
    t, c = time.perf_counter(), time.process_time()
    n = fn(*args)
    return (time.perf_counter() - t) * 1000, n, (time.process_time() - c) * 1000


def summary(ms: list[float]) -> str:
    q = np.percentile(ms, [50, 95])
    return f"p50 {q[0]:7.1f} ms  p95 {q[1]:7.1f} ms  (n={len(ms)})"


def cold_child(args: argparse.Namespace) -> None:
    """In a new process: one query per new HistoryStore + Records; print JSON timings."""
    t = time.perf_counter()
    import pyarrow.compute  # noqa: F401  (imports are not part of a query)
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    imports_ms = (time.perf_counter() - t) * 1000

    spec = json.loads(args.child)
    out = []
    for p, t0, t1 in spec["windows"]:
        t, c = time.perf_counter(), time.process_time()
        records = Records(HistoryStore(args.dir, buckets=BUCKETS, sync="none"))
        n = query(records, spec["kind"], p, t0, t1, args.days)
        out.append(((time.perf_counter() - t) * 1000, n, (time.process_time() - c) * 1000))
    print(json.dumps({"imports_ms": imports_ms, "queries": out}))


def measure(root: Path, args: argparse.Namespace, info: dict) -> None:
    import pyarrow.compute  # noqa: F401  (imported by the first query otherwise)
    import pyarrow.dataset  # noqa: F401

    records = Records(HistoryStore(root, buckets=BUCKETS, sync="none"))
    for kind, target in (("numerics", TARGET_NUMERICS_MS), ("ecg", TARGET_ECG_MS)):
        wins = windows(kind, args.queries, args.days, info, args.seed)
        label = "24 h numerics" if kind == "numerics" else "1 h ECG 250 Hz"
        first_ms, first_n, _ = timed(query, records, kind, *wins[0], args.days)
        spec = json.dumps({"kind": kind, "windows": wins})
        child = subprocess.run(
            [sys.executable, __file__, "--dir", str(root), "--days", str(args.days), "--child", spec],
            capture_output=True, text=True, check=True, env={**os.environ},
        )
        reply = json.loads(child.stdout.strip().splitlines()[-1])
        cold = reply["queries"]
        warm, warm_cpu, rows = [], [], []
        for w in wins:
            for _ in range(3):
                ms, n, cpu = timed(query, records, kind, *w, args.days)
                warm.append(ms)
                warm_cpu.append(cpu)
            rows.append(n)
        # reading whole ECG day files takes ~10 s per query here: one is enough
        k_naive = args.baseline_queries if kind == "numerics" else 1
        base = [timed(naive, root, kind, *w, args.days) for w in wins[:k_naive]]
        generic = [timed(generic_dataset, root, kind, *w, args.days) for w in wins[: args.baseline_queries]]
        checked = wins[:k_naive] + wins[: args.baseline_queries]
        for (_, n, _), w in zip(base + generic, checked, strict=True):
            if n != rows[wins.index(w)]:
                raise SystemExit(f"baseline disagrees with Records on {kind} {w}: {n} rows")
        for (_, n, _), want in zip(cold, rows, strict=True):
            if n != want:
                raise SystemExit(f"cold query disagrees on {kind}: {n} != {want}")
        unit = "rows" if kind == "numerics" else "samples"
        print(f"\n{label} of one patient (Records, median {int(np.median(rows)):,} {unit}; target < {target:.0f} ms)")
        print(
            f"  cold-ish, new process, first query      {cold[0][0]:7.1f} ms"
            f" (after {reply['imports_ms']:.0f} ms of pyarrow imports)"
        )
        print(f"  cold-ish, new store object per query     {summary([c[0] for c in cold])}")
        print(f"  warm (same store, 3 repeats each)        {summary(warm)}")
        cold_cpu = np.median([c[2] for c in cold])
        print(
            f"  CPU time per query (all threads): cold-ish p50 {cold_cpu:.1f} ms, warm p50"
            f" {np.median(warm_cpu):.1f} ms (less sensitive to the machine's load than wall time)"
        )
        print(f"  first query of this process's store      {first_ms:7.1f} ms ({first_n:,} {unit})")
        print(f"  baseline: read the day/bucket files + filter   {summary([b[0] for b in base])}")
        print(f"  baseline: generic hive pyarrow.dataset          {summary([g[0] for g in generic])}")
        print(f"  load average during this section: {os.getloadavg()[0]:.1f} (2 cores, shared)")
        verdict = "met" if np.percentile(warm, 95) < target and np.percentile([c[0] for c in cold], 95) < target else "MISSED"
        print(f"  target {verdict} (p95 warm and cold-ish)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", help="build the store here (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the store afterwards")
    ap.add_argument("--reuse", action="store_true", help="query an existing --dir, do not build")
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--ecg-buckets", type=int, default=1, help="buckets with 24 h of ECG")
    ap.add_argument(
        "--numerics-buckets", type=int, default=4,
        help="buckets with numerics (16: the full store of --patients)",
    )
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--baseline-queries", type=int, default=5)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return cold_child(args)
    if args.days < 4 or args.patients < 1 or not (
        1 <= args.ecg_buckets <= BUCKETS and 1 <= args.numerics_buckets <= BUCKETS
    ):
        raise SystemExit(f"need --days >= 4, --patients >= 1, 1 <= --*-buckets <= {BUCKETS}")
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="vc-bench-history-"))
    try:
        if args.reuse:
            info = json.loads((root / "bench.json").read_text())
        else:
            if args.dir and root.exists() and any(root.iterdir()):
                raise SystemExit(f"{root} is not empty (use --reuse to query it)")
            info = build(
                root, args.patients, args.days, args.ecg_buckets, args.numerics_buckets, args.seed
            )
            (root / "bench.json").write_text(json.dumps(info))
        describe(root, info, args.patients, args.days)
        measure(root, args, info)
    finally:
        if not args.keep and not args.reuse:
            shutil.rmtree(root, ignore_errors=True)
            print(f"\nremoved {root}")


if __name__ == "__main__":
    sys.exit(main())
