"""Alarm engine benchmark: frame-received-to-alarm-emitted latency through a real Store.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bench_alarms.py [--devices 1000 10000] [--seconds 12]

For each device count, three runs on the same pre-encoded traffic, in this order:

baseline
    A :class:`~vitalcore.storage.Store` (``sync="group"``, fresh tmp dir) fed in real time:
    every device sends one message per 250 ms tick (ECG lead II 250 Hz, red/IR pleth
    100 Hz, numerics 1 Hz, status every 10 s: a :class:`~vitalcore.simulator.VirtualWearable`),
    devices spread over 50 slots 5 ms apart, one ``feed`` per message and one ``commit``
    per slot (what the broker's commit batcher does per loop iteration).
engine
    The same with an :class:`~vitalcore.alarms.AlarmEngine` attached (ward default
    limits on 8 numerics = 16 limit codes, 5 arrhythmia rules with a streaming QRS/VF
    detector per device, 15 technical rules, an fsync'd alarm log). From a time after
    warm-up, 2 % of the devices (at least 50) start sending HR 150 bpm (limit 120);
    ``hr.high`` gets onset delay 0 so the latency is processing only, not a configured
    delay. Latency = perf_counter at the engine listener's sight of the RAISED event minus
    perf_counter just before the ``feed`` of the message carrying the value.
    Two engine runs: ``per-dev`` is the old path (``AlarmConfig(batched=False)``: one
    EcgAnalyser per device, numerics, pleth frames and liveness in Python per row),
    ``batched`` the new default (one numba pass over all devices' ECG on the engine's ECG
    thread without the GIL, numerics/pleth/liveness as columns).

The process's cyclic garbage collector is tuned as in a server process
(:func:`vitalcore.server.ingest.tune_gc`: start-up objects frozen, gen-0 threshold
20,000; the pre-encoded traffic, which a server would not hold, frozen too);
``--gc default`` leaves Python's schedule (measured: full collections of up to
0.6 s in the batched run at 10,000 devices). ``--runs`` picks runs (all three by default).

``--switch-ms 1 2`` adds batched runs with the GIL switch interval set to 1 and 2 ms
(named ``batched/1``...), to see how much of the tail is threads waiting for the GIL.

Printed per run: commit() p50/p99 (ms, the ingest path), slots late (> 50 ms behind
schedule), rate (% of the devices' real-time message rate actually fed: below 100 % the
feeding loop itself could not keep up, so the load offered was lower), process CPU s per
s, full (gen-2) collections and the longest collector pause (ms) during the feeding, and
for the engine runs the engine thread's and (batched) its ECG thread's CPU s per s of
feeding, the alarm latency p50/p99/max (ms), alarms missed, batches dropped by the
engine, and the time it took to finish its backlog after the feeding ended (drain). The
load average of the machine is printed first: the figures mean little above ~2.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

from vitalcore import codec
from vitalcore.alarms import AlarmConfig, AlarmEngine, AlarmLog, TechnicalConfig, Timing
from vitalcore.protocol import FrameType, NumericCode
from vitalcore.server.ingest import GcStats, tune_gc
from vitalcore.simulator import VirtualWearable
from vitalcore.storage import Store

T0 = int(time.time()) * 1_000_000  # device clocks in sync with the server's
SLOTS = 50
TEMPLATES = 16
TARGET_P99_MS = 50.0


def _frame_spans(msg: bytes) -> list[tuple[int, int, int]]:
    """(offset, length, frame type) of each frame in a message of back-to-back frames."""
    out, o = [], 0
    while o < len(msg):
        n = 28 + int.from_bytes(msg[o + 6:o + 8], "little") + 4
        out.append((o, n, msg[o + 4]))
        o += n
    return out


def _patch(msg: bytes, spans, device_id: int) -> bytes:
    b = bytearray(msg)
    dev = device_id.to_bytes(8, "little")
    for o, n, _ in spans:
        b[o + 8:o + 16] = dev
        b[o + n - 4:o + n] = codec.crc32c(memoryview(b)[o:o + n - 4]).to_bytes(4, "little")
    return bytes(b)


def _alarm_numerics(msg: bytes, spans) -> bytes:
    """The message with its NUMERICS frame re-encoded with HR 150 bpm (device id 1)."""
    parts = []
    for o, n, ftype in spans:
        frame = msg[o:o + n]
        if ftype == FrameType.NUMERICS:
            seq = int.from_bytes(frame[16:20], "little")
            ts = int.from_bytes(frame[20:28], "little", signed=True)
            frame = codec.encode_numerics(1, seq, ts, [(NumericCode.HR, 150.0),
                                                       (NumericCode.PR, 150.0),
                                                       (NumericCode.SPO2, 97.0)])
        parts.append(frame)
    return b"".join(parts)


def build_traffic(n_dev: int, ticks: int, alarm_from: int, rng: np.random.Generator):
    """messages[d][tick] (bytes) and {device: first alarm tick}."""
    t0 = time.perf_counter()
    tmpl = []
    for j in range(TEMPLATES):
        w = VirtualWearable(device_id=1, start_us=T0, seed=j, hr_bpm=60 + 3 * j, signal_s=20)
        msgs = [b"".join(w.frames_until(T0 + (k + 1) * 250_000)) for k in range(ticks)]
        spans = [_frame_spans(m) for m in msgs]
        alarm = [_alarm_numerics(m, s) for m, s in zip(msgs, spans, strict=True)]
        tmpl.append((msgs, spans, alarm))
    n_alarm = min(n_dev, max(50, n_dev // 50))
    alarm_devs = rng.choice(np.arange(1, n_dev + 1), n_alarm, replace=False)
    # alarm starts on numerics ticks (multiples of 4), spread over the measured span
    starts = {int(d): int(alarm_from + 4 * rng.integers(0, max(1, (ticks - alarm_from - 8) // 4)))
              for d in alarm_devs}
    messages = []
    for d in range(1, n_dev + 1):
        msgs, spans, alarm = tmpl[d % TEMPLATES]
        a = starts.get(d, ticks)
        messages.append([_patch(alarm[k] if k >= a else msgs[k], spans[k] if k < a
                                else _frame_spans(alarm[k]), d) for k in range(ticks)])
    print(f"  traffic: {n_dev:,} devices x {ticks} ticks encoded in "
          f"{time.perf_counter() - t0:.1f} s ({n_alarm} alarm devices)", flush=True)
    return messages, starts


def _thread_cpu(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(messages, starts, ticks: int, with_engine: bool, batched: bool = True) -> dict:
    root = tempfile.mkdtemp(prefix="bench_alarms_")
    store = Store(os.path.join(root, "store"), sync="group", flush_interval_s=60.0)
    engine = None
    feed_at: dict[int, float] = {}
    seen: dict[int, float] = {}
    if with_engine:
        # runs replay traffic encoded up to a minute earlier: device time lags the wall
        # clock by that much, which is not the clock drift the rule is for
        cfg = AlarmConfig(timing={"hr.high": Timing(onset_delay_s=0.0, offset_delay_s=2.0)},
                          technical=TechnicalConfig(clock_drift_s=3600.0), batched=batched)
        engine = AlarmEngine(cfg, alarm_log=AlarmLog(os.path.join(root, "alarms")))

        def on_event(ev):
            if ev.kind == "raised" and ev.alarm.code == "hr.high":
                seen.setdefault(ev.alarm.device_id, time.perf_counter())

        engine.add_listener(on_event)
        engine.attach(store)
    n_dev = len(messages)
    slots = np.array_split(np.arange(1, n_dev + 1), SLOTS)
    start_tick = {}
    for d, k in starts.items():
        start_tick.setdefault(k, []).append(d)
    commit_s = []
    late = 0
    gcs = GcStats()
    gc.callbacks.append(gcs)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    e_cpu0 = _thread_cpu(engine._thread.native_id) if engine else 0.0
    ecg_thread = engine._ecg_thread if engine else None
    g_cpu0 = _thread_cpu(ecg_thread.native_id) if ecg_thread else 0.0
    t_start = time.perf_counter() + 0.05
    for tick in range(ticks):
        alarm_now = set(start_tick.get(tick, ()))
        for s, devs in enumerate(slots):
            due = t_start + tick * 0.25 + s * 0.25 / SLOTS
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.05:
                late += 1
            for d in devs.tolist():
                if d in alarm_now:
                    feed_at[d] = time.perf_counter()
                store.feed(messages[d - 1][tick], d)
            c = time.perf_counter()
            store.commit()
            commit_s.append(time.perf_counter() - c)
    elapsed = time.perf_counter() - t_start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    gc.callbacks.remove(gcs)
    out = {
        "commit_p50_ms": float(np.percentile(commit_s, 50) * 1e3),
        "commit_p99_ms": float(np.percentile(commit_s, 99) * 1e3),
        "late_slots": late, "slots": ticks * SLOTS,
        "rate_pct": 100.0 * ticks * 0.25 / elapsed,  # of the devices' real-time rate
        "cpu_s_per_s": (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / elapsed,
        "gc2": gcs.collections[2], "gc_max_ms": max(gcs.pause_max_ms),
    }
    if engine is not None:
        out["engine_cpu_s_per_s"] = (_thread_cpu(engine._thread.native_id) - e_cpu0) / elapsed
        out["ecg_cpu_s_per_s"] = ((_thread_cpu(ecg_thread.native_id) - g_cpu0) / elapsed
                                  if ecg_thread else 0.0)
        t = time.perf_counter()
        engine.wait_idle(120)
        out["drain_s"] = time.perf_counter() - t  # backlog left when the feeding ended
        lat = np.array([seen[d] - feed_at[d] for d in feed_at if d in seen]) * 1e3
        out.update(alarms=len(feed_at), missed=len(set(feed_at) - set(seen)),
                   dropped=engine.dropped_batches)
        if lat.size:
            out.update(lat_p50_ms=float(np.percentile(lat, 50)),
                       lat_p99_ms=float(np.percentile(lat, 99)), lat_max_ms=float(lat.max()))
        engine.close()
    store.close(flush=False)
    shutil.rmtree(root, ignore_errors=True)
    return out


def warm_up() -> None:
    """Load (or compile) the numba kernels of both ECG paths before timing anything."""
    from vitalcore.alarms import ArrhythmiaConfig
    from vitalcore.alarms.arrhythmia import EcgAnalyser
    from vitalcore.alarms.ecgbatch import EcgBatch

    raw = (np.sin(np.arange(2500) / 10.0) * 1000).astype(np.int16)
    eb = EcgBatch(ArrhythmiaConfig())
    slot = np.array([eb.lead(1, 0).slot])
    a = EcgAnalyser(ArrhythmiaConfig(), 0)
    for k in range(10):
        ts = np.array([T0 + k * 1_000_000])
        eb.add_frames(slot, ts, np.array([250]), np.array([1.0]), np.array([0.0]), raw,
                      np.array([250 * k]), np.array([250]))
        eb.step()
        if a.add(int(ts[0]), raw[250 * k:250 * (k + 1)], 1.0, 0.0, 250):
            a.process()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--warmup", type=float, default=4.0, help="seconds before the first alarm")
    ap.add_argument("--switch-ms", type=float, nargs="+", default=[],
                    help="also run the engine runs at these GIL switch intervals "
                         "(sys.setswitchinterval, ms; Python's default is 5)")
    ap.add_argument("--runs", nargs="+", choices=("baseline", "per-dev", "batched"),
                    default=["baseline", "per-dev", "batched"], help="which runs (all three)")
    ap.add_argument("--gc", choices=("server", "default"), default="server",
                    help="server: the collector tuned as in a server process "
                         "(vitalcore.server.ingest.tune_gc, the default); default: as Python "
                         "sets it")
    args = ap.parse_args()
    default_switch = sys.getswitchinterval()
    ticks = int(args.seconds * 4)
    rng = np.random.default_rng(5)
    warm_up()
    if args.gc == "server":
        tune_gc()
    print(f"bench_alarms: {args.seconds:g} s per run, alarms from {args.warmup:g} s; "
          f"rules per patient: 16 limit codes (8 numerics), 5 arrhythmia, 15 technical; "
          f"{os.cpu_count()} cores (shared), load average {os.getloadavg()[0]:.1f}; "
          f"GC {args.gc}")
    print(f"{'devices':>8} {'run':<9} {'commit p50':>10} {'p99 ms':>7} {'late':>9} {'rate':>5} "
          f"{'CPU s/s':>7} {'gc2':>3} {'gc ms':>5} {'engine s/s':>10} {'ecg s/s':>7} {'alarm p50':>9} {'p99':>7} {'max ms':>8} "
          f"{'missed':>7} {'dropped':>7} {'drain s':>7}")
    for n in args.devices:
        messages, starts = build_traffic(n, ticks, int(args.warmup * 4), rng)
        if args.gc == "server":  # the traffic is the devices' data (in a server, another
            gc.collect()         # process's): the collector must not traverse its 10,000
            gc.freeze()          # lists of messages at every gen-1 and full collection
        runs = [(name, None) for name in args.runs]
        runs += [(f"batched/{ms:g}", ms) for ms in args.switch_ms]
        for name, switch_ms in runs:
            with_engine = name != "baseline"
            sys.setswitchinterval(default_switch if switch_ms is None else switch_ms / 1e3)
            r = run(messages, starts, ticks, with_engine, name.startswith("batched"))
            line = (f"{n:>8,} {name:<9} "
                    f"{r['commit_p50_ms']:>10.2f} {r['commit_p99_ms']:>7.2f} "
                    f"{r['late_slots']:>4}/{r['slots']:<4} {r['rate_pct']:>4.0f}% "
                    f"{r['cpu_s_per_s']:>7.2f} {r['gc2']:>3} {r['gc_max_ms']:>5.0f}")
            if with_engine:
                line += (f" {r['engine_cpu_s_per_s']:>10.2f} {r['ecg_cpu_s_per_s']:>7.2f}"
                         f" {r.get('lat_p50_ms', float('nan')):>9.1f}"
                         f" {r.get('lat_p99_ms', float('nan')):>7.1f}"
                         f" {r.get('lat_max_ms', float('nan')):>8.1f} {r['missed']:>3}/{r['alarms']:<3}"
                         f" {r['dropped']:>7} {r['drain_s']:>7.2f}")
                ok = (r["missed"] == 0 and r.get("lat_p99_ms", 1e9) < TARGET_P99_MS
                      and r["rate_pct"] > 97)
                line += ("  target met" if ok else
                         f"  target (p99 < {TARGET_P99_MS:g} ms at > 97 % of the rate) NOT met")
            print(line, flush=True)
        del messages


if __name__ == "__main__":
    threading.stack_size(0)
    main()
