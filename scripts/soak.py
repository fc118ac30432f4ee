"""Soak test: ``python -m vitalcore serve`` under a constant wearable load, a row a minute.

Run from the repository root (not in CI: it runs for ``--minutes``)::

    PYTHONPATH=src python scripts/soak.py [--devices 10000] [--minutes 60]
        [--batch-ticks 1|2|4] [--processes 2] [--warmup-minutes 5] [--out FILE] [--no-alarms]

What it does
    Provisions ``--devices`` device accounts (scrypt ln=10, as ``bench_ingest.py``),
    starts the server as a subprocess with a fresh ``--data`` directory, and offers
    the load of :func:`vitalcore.sim.load.run_load` (QoS 1, 13 frames/s per device, in
    ``--batch-ticks`` ticks per PUBLISH) from ``--processes`` generator processes on the
    same machine. Every ``--interval-s`` (60) it prints one row: the server's resident
    memory (RSS, from ``/proc/<pid>/status``) sampled every second of the interval as
    min-max (the store's periodic Parquet flush makes a sawtooth), the generators' RSS,
    CPU % of one core of each (from ``/proc/<pid>/stat``), messages/s and frames/s
    acknowledged in that interval, publish-to-PUBACK p50/p99/max of the messages acked
    in it (a PUBACK means the frames are durable in the WAL), messages in flight,
    skipped ticks (a device whose 64-message window was full), and the cumulative frames
    acknowledged.

At the end
    The generators disconnect, the server is stopped (SIGTERM), the store is reopened
    and every frame of the soak's devices is counted (``count_stored`` of
    ``benchmarks/bench_ingest.py``): loss = frames acknowledged but not stored (must be
    0; frames sent but never acknowledged are reported apart). Memory growth after
    warm-up = the server's RSS floor (a row's minimum) in the last row against the row
    at ``--warmup-minutes`` (the live buffers fill their windows and the WAL/Parquet
    writers their buffers first), in %; the target is < 5 %.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_ingest import (  # noqa: E402  (the benchmark's process helpers, not duplicated)
    count_stored,
    cpu_seconds,
    env_with_src,
    free_port,
    stop,
    wait_port,
)

HEAD = ("| min | server RSS MB min-max | gen RSS MB | server CPU % | gen CPU % | msgs/s | frames/s "
        "| p50 ms | p99 ms | max ms | in flight | skipped | frames acked |")
RULE = "|" + "|".join("---:" for _ in range(HEAD.count("|") - 1)) + "|"


def rss_mb(pid: int) -> float:
    """Resident set size of a process (MB), from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _generator(conn, n: int, port: int, creds: dict[int, str], seconds: float,
               kw: dict) -> None:
    """A generator process: connect, report ready, start at the given time, run; send
    every interval and the final report up the pipe."""

    import uvloop

    from vitalcore.sim.load import run_load

    def on_phase(phase: str) -> None:
        if phase == "ready":
            conn.send(("ready", None))

    def on_interval(iv) -> None:
        conn.send(("interval", iv))

    async def go():
        return await run_load(n, "127.0.0.1", port, creds, seconds, on_phase=on_phase,
                              start_at=conn.recv, on_interval=on_interval, **kw)

    try:
        rep = uvloop.run(go())
    except (TimeoutError, OSError) as exc:  # report, do not hang the parent
        conn.send(("error", repr(exc)))
        return
    conn.send(("done", rep.summary()))


class Soak:
    """The server subprocess, the generator processes and the figures of every row."""

    def __init__(self, a: argparse.Namespace, work: Path) -> None:
        from vitalcore.server import Accounts
        from vitalcore.sim.ward import provision_ward

        self.a = a
        self.work = work
        t0 = time.monotonic()
        accounts = Accounts(log2_n=10)
        self.creds = provision_ward(a.devices, accounts)
        accounts.save(work / "accounts.json")
        self.provision_s = time.monotonic() - t0
        self.data = work / "data"
        self.port = free_port()
        self.server = subprocess.Popen(
            [sys.executable, "-m", "vitalcore", "serve", "--data", str(self.data),
             "--accounts", str(work / "accounts.json"), "--port", str(self.port),
             "--log-level", "WARNING", *(("--no-alarms",) if a.no_alarms else ())],
            env=env_with_src())
        wait_port(self.port, self.server)
        self.pipes: list = []
        self.procs: list = []
        self.rows: list[dict] = []

    def start_generators(self) -> None:
        a = self.a
        ids = sorted(self.creds)
        kw = dict(qos=1, window=a.window, batch_ticks=a.batch_ticks, interval_s=a.interval_s,
                  warmup_s=3.0)
        ctx = multiprocessing.get_context("spawn")
        for i in range(a.processes):
            mine = {d: self.creds[d] for d in ids[i::a.processes]}
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_generator, daemon=True,
                               args=(child, len(mine), self.port, mine, a.minutes * 60.0, kw))
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            if not pipe.poll(900) or pipe.recv()[0] != "ready":
                raise RuntimeError("a generator process did not connect its devices")
        start_at = time.time() + 0.5
        for pipe in self.pipes:
            pipe.send(start_at)
        time.sleep(max(0.0, start_at - time.time()))

    def cpu(self) -> tuple[float, float]:
        gen = sum(cpu_seconds(p.pid) for p in self.procs if p.is_alive())
        return cpu_seconds(self.server.pid), gen

    def run(self, out) -> list[dict]:
        a = self.a
        prev_t, (prev_srv, prev_gen) = time.monotonic(), self.cpu()
        prev_acked = prev_frames = 0
        minute = 0
        while True:
            got = []
            rss = []  # the server's RSS every second of the interval (flushes make a sawtooth)
            for pipe in self.pipes:
                deadline = time.monotonic() + a.interval_s + 300
                while not pipe.poll(1.0):
                    rss.append(rss_mb(self.server.pid))
                    if time.monotonic() > deadline:
                        raise RuntimeError("a generator process stopped reporting")
                kind, msg = pipe.recv()
                if kind == "error":
                    raise RuntimeError(f"a generator process failed: {msg}")
                got.append((kind, msg))
            if got[0][0] == "done":
                self.reports = [m for _, m in got]
                return self.rows
            now = time.monotonic()
            srv, gen = self.cpu()
            ivs = [m for _, m in got]
            lat = np.concatenate([iv.latencies_ms for iv in ivs])
            acked = sum(iv.messages_acked for iv in ivs)
            frames = sum(iv.frames_acked for iv in ivs)
            dt = now - prev_t
            minute += a.interval_s / 60
            r = dict(
                minute=minute, server_rss=rss_mb(self.server.pid),
                rss_min=min(rss, default=float("nan")), rss_max=max(rss, default=float("nan")),
                gen_rss=sum(rss_mb(p.pid) for p in self.procs),
                server_cpu=100 * (srv - prev_srv) / dt, gen_cpu=100 * (gen - prev_gen) / dt,
                msgs_s=(acked - prev_acked) / dt, frames_s=(frames - prev_frames) / dt,
                p50=float(np.percentile(lat, 50)) if lat.size else float("nan"),
                p99=float(np.percentile(lat, 99)) if lat.size else float("nan"),
                max=float(lat.max()) if lat.size else float("nan"),
                in_flight=sum(iv.in_flight for iv in ivs),
                skipped=sum(iv.skipped_ticks for iv in ivs), frames_acked=frames,
                messages_sent=sum(iv.messages_sent for iv in ivs), messages_acked=acked,
                frames_sent=sum(iv.frames_sent for iv in ivs))
            self.rows.append(r)
            emit(out, f"| {r['minute']:g} | {r['rss_min']:,.0f}-{r['rss_max']:,.0f} | "
                      f"{r['gen_rss']:,.0f} | "
                      f"{r['server_cpu']:.0f} | {r['gen_cpu']:.0f} | {r['msgs_s']:,.0f} | "
                      f"{r['frames_s']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                      f"{r['max']:.0f} | {r['in_flight']:,} | {r['skipped']:,} | "
                      f"{r['frames_acked']:,} |")
            prev_t, prev_srv, prev_gen = now, srv, gen
            prev_acked, prev_frames = acked, frames

    def close(self) -> None:
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        stop(self.server)


def emit(out, line: str) -> None:
    print(line, flush=True)
    if out is not None:
        out.write(line + "\n")
        out.flush()


def summary(a: argparse.Namespace, soak: Soak, rows: list[dict], frames_stored: int,
            warm_rss: float) -> list[str]:
    reps = soak.reports
    sent = sum(r["messages_sent"] for r in reps)
    acked = sum(r["messages_acked"] for r in reps)
    frames_sent = sum(r["frames_sent"] for r in reps)
    # frames acked, exact when every message has as many frames (batch_ticks 4);
    # warm-up messages (3 s, before minute 0) are stored too
    per_msg = frames_sent / max(sent, 1)
    frames_acked = round(acked * per_msg)
    warm_frames = round(sum(r["warmup_messages"] for r in reps) * per_msg)
    last = rows[-1]["rss_min"] if rows else float("nan")
    peak = max((r["rss_max"] for r in rows), default=float("nan"))
    lines = [
        f"- run: {a.devices:,} devices, {a.minutes:g} min, {a.batch_ticks} tick(s) per "
        f"message ({4 / a.batch_ticks:g} msgs/s and 13 frames/s per device), "
        f"{a.processes} generator process(es), QoS 1",
        f"- messages: {sent:,} sent, {acked:,} acknowledged ({sent - acked:,} not); "
        f"frames: {frames_sent:,} sent, ~{frames_acked:,} acknowledged",
        f"- stored after restart: {frames_stored:,} frames (incl. {warm_frames:,} of the 3 s "
        f"warm-up): loss (acknowledged, not stored) = "
        f"{max(0, frames_acked + warm_frames - frames_stored):,} frames",
        f"- latency over the run's minutes: worst p99 {max(r['p99'] for r in rows):.1f} ms, "
        f"median of the minutes' p99 {np.median([r['p99'] for r in rows]):.1f} ms",
        f"- server RSS floor (minimum of a row): {warm_rss:,.0f} MB after "
        f"{a.warmup_minutes:g} min warm-up, {last:,.0f} MB in the last row; peak "
        f"{peak:,.0f} MB: growth of the floor after warm-up "
        f"{100 * (last - warm_rss) / warm_rss:+.1f} % (peak {100 * (peak - warm_rss) / warm_rss:+.1f} %;"
        f" target < 5 %)",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--batch-ticks", type=int, default=1, choices=(1, 2, 4),
                    help="250 ms ticks per PUBLISH (4: one message/s per device)")
    ap.add_argument("--processes", type=int, default=2, help="generator processes")
    ap.add_argument("--window", type=int, default=64, help="messages in flight per device")
    ap.add_argument("--warmup-minutes", type=float, default=5.0,
                    help="memory growth is measured from this row on")
    ap.add_argument("--interval-s", type=float, default=60.0, help="seconds per row")
    ap.add_argument("--out", type=Path, help="also write the table here")
    ap.add_argument("--no-alarms", action="store_true",
                    help="serve --no-alarms: ingest and storage only, no alarm engine")
    a = ap.parse_args(argv)
    if not (1 <= a.devices <= 20_000 and 0 < a.minutes <= 24 * 60
            and 1 <= a.processes <= a.devices and a.interval_s >= 1
            and 0 <= a.warmup_minutes < a.minutes):
        ap.error("devices in 1..20000, minutes in (0, 1440], 1 <= processes <= devices, "
                 "interval_s >= 1, 0 <= warmup-minutes < minutes")
    work = Path(tempfile.mkdtemp(prefix="vitalcore-soak-"))
    out = a.out.open("w") if a.out else None
    soak = None
    try:
        soak = Soak(a, work)
        emit(out, f"# soak {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
                  f"{os.cpu_count()} CPUs shared by server and generators; {a.devices:,} "
                  f"devices, {a.batch_ticks} tick(s) per message, {a.minutes:g} min, alarm "
                  f"engine {'off' if a.no_alarms else 'on'}; "
                  f"accounts provisioned in {soak.provision_s:.0f} s")
        soak.start_generators()
        emit(out, HEAD)
        emit(out, RULE)
        rows = soak.run(out)
        soak.close()
        server_exit = soak.server.returncode
        frames_stored, _ = count_stored(soak.data, sorted(soak.creds))
        warm = [r for r in rows if r["minute"] >= a.warmup_minutes - 1e-9]
        warm_rss = warm[0]["rss_min"] if warm else float("nan")
        emit(out, "")
        for line in summary(a, soak, rows, frames_stored, warm_rss):
            emit(out, line)
        if server_exit:
            emit(out, f"- server exit status {server_exit}")
    finally:
        if soak is not None:
            soak.close()
        if out is not None:
            out.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
