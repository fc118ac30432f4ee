"""Ingest benchmark: vitalcore's MQTT server against mosquitto, the same wearable traffic.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bench_ingest.py [--devices 1000] [--seconds 20]
        [--ramp --max-devices 4000] [--p99-ms 250]

Load
    ``vitalcore.sim.load.run_load`` in this process: one MQTT 5 connection per device,
    4 QoS 1 PUBLISHes per second each (ECG 250 Hz, red/IR pleth 100 Hz, numerics 1 Hz;
    ~112.5 samples and ~3.25 frames per message), spread over the 250 ms period, at most
    ``--window`` messages in flight per device (a full window skips ticks). Everything on
    127.0.0.1; the generator shares the machine's cores with the server under test.

vitalcore
    ``python -m vitalcore serve`` as a subprocess with a fresh ``--data`` directory
    (``sync=group``) and an accounts file provisioned for the devices with scrypt
    ln=10 (the production default is 14: only the connect phase, which is not measured,
    is cheaper). A PUBACK means the message's frames are durable in the WAL. After the
    run the server is stopped with SIGTERM and the store is reopened with
    ``vitalcore.storage.Store`` to count the frames and samples of every device.
    Before each measured run, 20 spare devices send for 3 s (both servers) so that
    one-off start-up costs (numba compilation, first Parquet write) are not measured.

Baseline, same run, same load
    Debian's ``/usr/sbin/mosquitto`` as a subprocess (persistence off, anonymous,
    inflight/queue limits raised so it does not drop) with ONE subscriber on
    ``vc/v1/dev/+/up`` at QoS 1 (gmqtt, in its own process) receiving every message:
    "routing to one subscriber". Its PUBACK means routed, not durable.

Figures per run: acknowledged messages/s, samples/s stored (vitalcore) or messages/s
delivered (mosquitto), publish-to-PUBACK p50/p99/max, server CPU seconds per second and
per message (from ``/proc/<pid>/stat`` between the first tick and the drain). ``--ramp``
doubles the device count up to ``--max-devices``; a server stops ramping once it no
longer sustains the load (p99 above ``--p99-ms``, skipped ticks, unacknowledged
messages or failed connects).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = "/usr/sbin/mosquitto"
SUB_TOPIC = "vc/v1/dev/+/up"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLES_PER_MSG = (250 + 100 + 100) / 4  # ECG + red + IR samples per 250 ms tick
WARMUP_DEVICES, WARMUP_S = 20, 3.0


# ------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (s), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def stop(proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def env_with_src() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ------------------------------------------------------------------------ subscriber
def subscriber_main(port: int) -> int:
    """Child process: one gmqtt QoS 1 subscriber; prints its count for each stdin line."""
    import gmqtt
    import uvloop

    async def run() -> None:
        loop = asyncio.get_running_loop()
        count = 0
        ready = loop.create_future()
        done = asyncio.Event()
        c = gmqtt.Client("bench-subscriber", receive_maximum=65535)

        def on_message(client, topic, payload, qos, properties) -> int:
            nonlocal count
            count += 1
            return 0

        c.on_message = on_message
        c.on_subscribe = lambda *a: ready.done() or ready.set_result(None)
        await c.connect("127.0.0.1", port, version=gmqtt.constants.MQTTv50)
        c.subscribe(SUB_TOPIC, qos=1)
        await asyncio.wait_for(ready, 30)
        print("ready", flush=True)

        def on_stdin() -> None:
            if sys.stdin.readline():
                print(count, flush=True)
            else:
                done.set()

        loop.add_reader(sys.stdin.fileno(), on_stdin)
        await done.wait()
        await c.disconnect()

    uvloop.run(run())
    return 0


class Subscriber:
    """The subscriber child process; ``count()`` asks it for messages received so far."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--subscriber", str(port)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=env_with_src())
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"subscriber did not start: {line!r}")

    def count(self) -> int:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------------------ one run
@dataclass
class Result:
    target: str
    devices: int
    rep: object = None
    server_cpu_s: float = math.nan
    delivered: int = -1  #: messages received by the subscriber (mosquitto)
    frames_stored: int = -1  #: vitalcore
    samples_stored: int = -1
    notes: list[str] = field(default_factory=list)

    def sustained(self, p99_ms: float) -> bool:
        r = self.rep
        return (r is not None and r.connected == r.devices and r.skipped_ticks == 0
                and r.messages_acked == r.messages_sent and r.latency_p99_ms < p99_ms)


def drive(n: int, port: int, creds: dict[int, str], seconds: float, window: int,
          pid: int, res: Result, sub: Subscriber | None = None) -> None:
    """Warm up, then run the load against ``port``; sample the server's CPU per phase.

    The warm-up (``WARMUP_DEVICES`` spare accounts, not among the first ``n``, for
    ``WARMUP_S``) lets the server compile/load its hot paths (numba, Parquet) before the
    measured run; its messages are in no figure.
    """
    import uvloop

    from vitalcore.sim.load import run_load

    spare = dict(sorted(creds.items())[-WARMUP_DEVICES:])
    warm = uvloop.run(run_load(WARMUP_DEVICES, "127.0.0.1", port, spare, WARMUP_S))
    if warm.messages_acked != warm.messages_sent:
        res.notes.append(f"warm-up lost {warm.messages_sent - warm.messages_acked} acks")
    before = sub.count() if sub else 0
    marks: dict[str, tuple[float, int]] = {}

    def on_phase(phase: str) -> None:
        marks[phase] = (cpu_seconds(pid), sub.count() if sub else 0)

    res.rep = uvloop.run(run_load(n, "127.0.0.1", port, creds, seconds, window=window,
                                  on_phase=on_phase))
    if "start" in marks and "end" in marks:
        res.server_cpu_s = marks["end"][0] - marks["start"][0]
        res.delivered = marks["end"][1] - marks["start"][1]
        if marks["start"][1] != before:
            res.notes.append("subscriber received messages between warm-up and run")


def run_vitalcore(n: int, seconds: float, window: int, creds: dict[int, str],
                  accounts: Path, work: Path) -> Result:
    from vitalcore import protocol as P
    from vitalcore.storage.store import Store

    res = Result("vitalcore", n)
    data = work / f"vc-data-{n}"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalcore", "serve", "--data", str(data), "--accounts",
         str(accounts), "--port", str(port), "--log-level", "WARNING"], env=env_with_src())
    try:
        wait_port(port, proc)
        drive(n, port, creds, seconds, window, proc.pid, res)
    finally:
        stop(proc)
    if proc.returncode != 0:
        res.notes.append(f"server exit status {proc.returncode}")
    t_end = (time.time_ns() // 1000) + 3_600_000_000
    frames = samples = 0
    with Store(data, flush_interval_s=0) as store:
        for dev in sorted(creds)[:n]:  # the measured devices (not the warm-up's)
            w = store.read_waveforms(dev, P.TS_MIN_US, t_end)
            frames += w.num_rows + store.read_numerics(dev, P.TS_MIN_US, t_end).num_rows
            samples += int(w.column("n_samples").to_numpy().sum()) if w.num_rows else 0
    res.frames_stored, res.samples_stored = frames, samples
    shutil.rmtree(data, ignore_errors=True)
    return res


def run_mosquitto(n: int, seconds: float, window: int, creds: dict[int, str],
                  work: Path) -> Result:
    res = Result("mosquitto", n)
    port = free_port()
    conf = work / f"mosquitto-{n}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_inflight_messages 1000\nmax_queued_messages 1000000\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)])
    sub = None
    try:
        wait_port(port, proc)
        sub = Subscriber(port)
        drive(n, port, creds, seconds, window, proc.pid, res, sub)
    finally:
        if sub is not None:
            sub.close()
        stop(proc)
    return res


# ------------------------------------------------------------------------ report
HEAD = (f"{'server':<10} {'devices':>7} {'offered/s':>9} {'acked/s':>8} {'acked':>8} "
        f"{'skipped':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU s/s':>7} "
        f"{'µs/msg':>7} {'gen s/s':>7}  stored or delivered")


def row(r: Result) -> str:
    p = r.rep
    cpu_ss = r.server_cpu_s / p.seconds
    us_msg = r.server_cpu_s / max(p.messages_acked, 1) * 1e6
    if r.target == "vitalcore":
        expect = p.messages_acked * SAMPLES_PER_MSG
        tail = (f"{r.samples_stored / p.seconds:,.0f} samples/s stored ({r.frames_stored:,} "
                f"frames, {r.samples_stored:,} samples = {r.samples_stored / expect:.3f}"
                f" x acked)")
    else:
        tail = f"{r.delivered / p.seconds:,.0f} msgs/s delivered ({r.delivered:,})"
    if p.connect_failures:
        tail += f"; {p.connect_failures} connect failures"
    if r.notes:
        tail += "; " + "; ".join(r.notes)
    return (f"{r.target:<10} {p.connected:>7,} {p.offered_msgs_per_s:>9,.0f} "
            f"{p.msgs_per_s:>8,.0f} {p.messages_acked:>8,} {p.skipped_ticks:>7,} "
            f"{p.latency_p50_ms:>7.1f} {p.latency_p99_ms:>7.1f} {p.latency_max_ms:>7.1f} "
            f"{cpu_ss:>7.2f} {us_msg:>7.0f} {p.generator_cpu_s / p.seconds:>7.2f}  {tail}")


def ratio(vc: Result, mq: Result) -> str:
    a, b = vc.rep, mq.rep
    rate = a.msgs_per_s / b.msgs_per_s if b.msgs_per_s else math.nan
    cpu_a = vc.server_cpu_s / max(a.messages_acked, 1) * 1e6
    cpu_b = mq.server_cpu_s / max(b.messages_acked, 1) * 1e6
    return (f"  {a.devices:,} devices: vitalcore ack rate / mosquitto routing rate = "
            f"{rate:.3f}; CPU per message {cpu_a:.0f} µs vs {cpu_b:.0f} µs "
            f"({cpu_a / cpu_b:.1f}x)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0, help="load duration per run")
    ap.add_argument("--window", type=int, default=64, help="messages in flight per device")
    ap.add_argument("--ramp", action="store_true", help="double devices up to --max-devices")
    ap.add_argument("--max-devices", type=int, default=4000)
    ap.add_argument("--p99-ms", type=float, default=250.0, help="sustained if p99 below")
    ap.add_argument("--subscriber", type=int, help=argparse.SUPPRESS)  # child process
    a = ap.parse_args(argv)
    if a.subscriber is not None:
        return subscriber_main(a.subscriber)
    if not (1 <= a.devices <= 20_000 and 1 <= a.max_devices <= 20_000
            and 0 < a.seconds <= 600):
        ap.error("devices and --max-devices in 1..20000, --seconds in (0, 600]")
    if not os.path.exists(MOSQUITTO):
        ap.error(f"{MOSQUITTO} not found (apt install mosquitto)")
    steps = [a.devices]
    while a.ramp and steps[-1] < a.max_devices:
        steps.append(min(steps[-1] * 2, a.max_devices))

    from vitalcore.server import Accounts
    from vitalcore.sim.ward import provision_ward

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        t0 = time.monotonic()
        accounts = Accounts(log2_n=10)
        creds = provision_ward(max(steps) + WARMUP_DEVICES, accounts)
        accounts.save(work / "accounts.json")
        print(f"# {os.cpu_count()} CPUs, load generator in this process on the same cores; "
              f"{len(creds):,} accounts provisioned in {time.monotonic() - t0:.1f} s; "
              f"{a.seconds:g} s per run, window {a.window}, sustained = all acked, no "
              f"skipped tick, p99 < {a.p99_ms:g} ms", flush=True)
        print(HEAD, flush=True)
        results: list[tuple[Result, Result | None]] = []
        best: dict[str, int] = {"vitalcore": 0, "mosquitto": 0}
        alive = {"vitalcore": True, "mosquitto": True}
        for n in steps:
            vc = mq = None
            if alive["vitalcore"]:
                vc = run_vitalcore(n, a.seconds, a.window, creds, work / "accounts.json", work)
                print(row(vc), flush=True)
            if alive["mosquitto"]:
                mq = run_mosquitto(n, a.seconds, a.window, creds, work)
                print(row(mq), flush=True)
            for r in (vc, mq):
                if r is not None:
                    if r.sustained(a.p99_ms):
                        best[r.target] = max(best[r.target], n)
                    else:
                        alive[r.target] = False
            if vc is not None and mq is not None:
                results.append((vc, mq))
            if not any(alive.values()):
                break
        print("ratios (same offered load):")
        for vc, mq in results:
            print(ratio(vc, mq))
        for name, n in best.items():
            label = f"{n:,} devices ({4 * n:,} msgs/s)" if n else "none of the steps"
            print(f"highest sustained load, {name}: {label}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
