"""Ingest benchmark: vitalcore's MQTT server against mosquitto, the same wearable traffic.

Run from the repository root::

    PYTHONPATH=src python benchmarks/bench_ingest.py [--devices 1000] [--seconds 20]
        [--ramp --max-devices 4000] [--p99-ms 250] [--qos 1] [--processes 1]
        [--batch-ticks 1|2|4] [--gc tuned|default|both] [--only vitalcore|mosquitto]
        [--no-subscriber] [--no-alarms]

Load
    ``vitalcore.sim.load.run_load`` (in this process, or split over ``--processes``
    generator processes): one MQTT 5 connection per device, 4 PUBLISHes per second each
    (ECG 250 Hz, red/IR pleth 100 Hz, numerics 1 Hz; ~112.5 samples and ~3.25 frames
    per message), spread over the 250 ms period, at most ``--window`` QoS 1 messages in
    flight per device (a full window skips ticks). Everything on 127.0.0.1; the
    generator shares the machine's cores with the server under test, so every row
    states both CPU figures (server and generator CPU seconds per second of the run).
    With ``--qos 0`` nothing is acknowledged: a PINGREQ per device at the end measures
    when the server has taken every message in (MQTT answers in order), and the rate
    compared is messages taken in (vitalcore; all of them are then found in the store)
    against messages delivered to the subscriber (mosquitto). ``--batch-ticks 4`` sends
    the 4 ticks of one second in ONE PUBLISH (a batching gateway): 1 message/s and still
    13 frames/s per device; every row states messages/s and frames/s apart.

vitalcore
    ``python -m vitalcore serve`` as a subprocess with a fresh ``--data`` directory
    (``sync=group``) and an accounts file provisioned for the devices with scrypt
    ln=10 (the production default is 14: only the connect phase, which is not measured,
    is cheaper). A PUBACK means the message's frames are durable in the WAL. After the
    run the server is stopped with SIGTERM and the store is reopened with
    ``vitalcore.storage.Store`` to count the frames and samples of every device.
    Before each measured run, 20 spare devices send for 3 s (both servers) so that
    one-off start-up costs (numba compilation, first Parquet write) are not measured.
    ``--gc default`` runs the server with ``VITALCORE_GC=default`` (Python's own GC
    schedule instead of :func:`vitalcore.server.ingest.tune_gc`); ``--gc both`` runs
    both, one after the other, for a before/after in the same run. The server runs its
    alarm engine (ECG analysis of every device) unless ``--no-alarms``.

Baseline, same run, same load
    Debian's ``/usr/sbin/mosquitto`` as a subprocess (persistence off, anonymous,
    inflight/queue limits raised so it does not drop) with ONE subscriber on
    ``vc/v1/dev/+/up`` at QoS 1 (gmqtt, in its own process) receiving every message:
    "routing to one subscriber". Its PUBACK means routed, not durable.
    ``--no-subscriber`` runs mosquitto without it: messages are acknowledged and dropped,
    the cost of the MQTT exchange alone (a floor for any broker on this machine).

Figures per run: acknowledged messages/s, samples/s stored (vitalcore) or messages/s
delivered (mosquitto), publish-to-PUBACK p50/p99/max, server CPU seconds per second and
per message (from ``/proc/<pid>/stat`` between the first tick and the drain), and the
kernel (system) share of server and generator CPU together (loopback TCP: each side's
``send`` also runs the other side's receive path). ``--ramp``
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
SAMPLES_PER_TICK = (250 + 100 + 100) / 4  # ECG + red + IR samples per 250 ms tick
WARMUP_DEVICES, WARMUP_S = 20, 3.0
RUN_WARMUP_S = 3.0  #: the measured devices send this long, unmeasured, before the run


# ------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime + stime, stime) of a process (s), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, int(fields[12]) / CLK_TCK


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
    gc: str = ""  #: vitalcore: "tuned" or "default" (VITALCORE_GC)
    rep: object = None
    server_cpu_s: float = math.nan
    server_sys_s: float = math.nan  #: of which system (kernel) time
    delivered: int = -1  #: messages received by the subscriber (mosquitto)
    routed: bool = True  #: mosquitto had its subscriber (False: --no-subscriber)
    frames_stored: int = -1  #: vitalcore
    samples_stored: int = -1
    notes: list[str] = field(default_factory=list)

    def sustained(self, p99_ms: float) -> bool:
        r = self.rep
        return (r is not None and r.connected == r.devices and r.skipped_ticks == 0
                and r.messages_acked == r.messages_sent
                and r.sent_msgs_per_s >= 0.97 * r.offered_msgs_per_s
                and (r.qos == 0 or r.latency_p99_ms < p99_ms))

    def rate(self) -> float:
        """Messages/s: acknowledged (QoS 1); taken in (vitalcore) or delivered (QoS 0)."""
        p = self.rep
        if p.qos == 0 and self.target == "mosquitto" and self.routed:
            return self.delivered / p.seconds
        return p.msgs_per_s


def drive(n: int, port: int, creds: dict[int, str], seconds: float, window: int,
          pid: int, res: Result, sub: Subscriber | None = None, qos: int = 1,
          processes: int = 1, batch_ticks: int = 1) -> None:
    """Warm up, then run the load against ``port``; sample the server's CPU per phase.

    The warm-up (``WARMUP_DEVICES`` spare accounts, not among the first ``n``, for
    ``WARMUP_S``) lets the server compile/load its hot paths (numba, Parquet) before the
    measured run; then the measured devices connect and send ``RUN_WARMUP_S``
    unmeasured (the server allocates each new stream's live window when it first sees
    it: ~1 s of the event loop for 4,000 devices at once); the warm-ups' messages are in
    no figure except the stored frame count.
    """
    import uvloop

    from vitalcore.sim.load import run_load, run_load_processes

    spare = dict(sorted(creds.items())[-WARMUP_DEVICES:])
    warm = uvloop.run(run_load(WARMUP_DEVICES, "127.0.0.1", port, spare, WARMUP_S, qos=qos,
                               batch_ticks=batch_ticks))
    if warm.messages_acked != warm.messages_sent:
        res.notes.append(f"warm-up lost {warm.messages_sent - warm.messages_acked} acks")
    marks: dict[str, tuple[tuple[float, float], int]] = {}

    def on_phase(phase: str) -> None:
        marks[phase] = (cpu_seconds(pid), sub.count() if sub else 0)

    mine = dict(sorted(creds.items())[:n])
    if processes > 1:
        res.rep = run_load_processes(n, "127.0.0.1", port, mine, seconds, processes=processes,
                                     window=window, qos=qos, on_phase=on_phase,
                                     warmup_s=RUN_WARMUP_S, batch_ticks=batch_ticks)
    else:
        res.rep = uvloop.run(run_load(n, "127.0.0.1", port, mine, seconds, window=window,
                                      qos=qos, on_phase=on_phase, warmup_s=RUN_WARMUP_S,
                                      batch_ticks=batch_ticks))
    if "start" in marks and "end" in marks:
        res.server_cpu_s = marks["end"][0][0] - marks["start"][0][0]
        res.server_sys_s = marks["end"][0][1] - marks["start"][0][1]
        res.delivered = marks["end"][1] - marks["start"][1]


def count_stored(data: Path, devices: list[int]) -> tuple[int, int]:
    """Frames (waveform frames + numerics frames) and waveform samples of ``devices`` in
    the store at ``data``.

    The store is opened (recovery: WAL replay) and closed (everything flushed to
    Parquet) with :class:`vitalcore.storage.store.Store`, then its Parquet history is
    scanned once with pyarrow (one ``read_waveforms`` per device takes minutes for
    10,000 devices).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from vitalcore.storage.store import Store

    with Store(data, flush_interval_s=0) as store:
        history = store.history.root
    ids = pa.array(devices, pa.uint64())
    frames = samples = 0
    for table, cols in (("waveforms", ["device_id", "n_samples"]),
                        ("numerics", ["device_id", "seq", "ts_us"])):
        where = history / table
        if not where.exists():
            continue
        t = ds.dataset(where, format="parquet").to_table(
            columns=cols, filter=pc.field("device_id").isin(ids))
        if table == "numerics":  # a row per value: one frame per (device, seq, ts)
            frames += t.group_by(cols).aggregate([]).num_rows
        else:
            frames += t.num_rows
            samples += int(pc.sum(t.column("n_samples")).as_py()) if t.num_rows else 0
    return frames, samples


def run_vitalcore(n: int, seconds: float, window: int, creds: dict[int, str],
                  accounts: Path, work: Path, qos: int = 1, processes: int = 1,
                  batch_ticks: int = 1, gc: str = "tuned", alarms: bool = True,
                  sync: str = "group") -> Result:
    res = Result("vitalcore", n, gc)
    data = work / f"vc-data-{n}"
    port = free_port()
    env = env_with_src()
    if gc == "default":
        env["VITALCORE_GC"] = "default"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalcore", "serve", "--data", str(data), "--accounts",
         str(accounts), "--port", str(port), "--log-level", "WARNING", "--sync", sync,
         *(() if alarms else ("--no-alarms",))], env=env)
    try:
        wait_port(port, proc)
        drive(n, port, creds, seconds, window, proc.pid, res, qos=qos, processes=processes,
              batch_ticks=batch_ticks)
    finally:
        stop(proc)
    if proc.returncode != 0:
        res.notes.append(f"server exit status {proc.returncode}")
    res.frames_stored, res.samples_stored = count_stored(data, sorted(creds)[:n])
    shutil.rmtree(data, ignore_errors=True)
    return res


def run_mosquitto(n: int, seconds: float, window: int, creds: dict[int, str],
                  work: Path, qos: int = 1, processes: int = 1, batch_ticks: int = 1,
                  subscriber: bool = True) -> Result:
    res = Result("mosquitto", n, routed=subscriber)
    if not subscriber:
        res.notes.append("no subscriber: acknowledged and dropped")
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
        sub = Subscriber(port) if subscriber else None
        drive(n, port, creds, seconds, window, proc.pid, res, sub, qos=qos,
              processes=processes, batch_ticks=batch_ticks)
    finally:
        if sub is not None:
            sub.close()
        stop(proc)
    return res


# ------------------------------------------------------------------------ report
HEAD = (f"{'server':<14} {'devices':>7} {'offered/s':>9} {'acked/s':>8} {'frames/s':>8} "
        f"{'acked':>8} {'skipped':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU s/s':>7} "
        f"{'µs/msg':>7} {'gen s/s':>7}  stored or delivered")
HEAD0 = HEAD.replace("acked/s", " in/s  ").replace("   acked ", "   taken ")


def row(r: Result) -> str:
    p = r.rep
    cpu_ss = r.server_cpu_s / p.seconds
    us_msg = r.server_cpu_s / max(p.messages_acked, 1) * 1e6
    per_msg = SAMPLES_PER_TICK * p.batch_ticks
    if r.target == "vitalcore":
        expect = (p.messages_acked + p.warmup_messages) * per_msg
        tail = (f"{p.messages_acked * per_msg / p.seconds:,.0f} samples/s stored "
                f"({r.frames_stored:,} frames, {r.samples_stored:,} samples incl. warm-up "
                f"= {r.samples_stored / expect:.3f} x acked)")
    elif r.routed:
        tail = f"{r.delivered / p.seconds:,.0f} msgs/s delivered ({r.delivered:,})"
    else:
        tail = "nothing delivered (no subscriber)"
    kernel = r.server_sys_s + p.generator_sys_s
    tail += (f"; server+generator {(r.server_cpu_s + p.generator_cpu_s) / p.seconds:.2f} CPU s/s"
             f", of which kernel {kernel / p.seconds:.2f} s/s "
             f"({kernel / max(p.messages_acked, 1) * 1e6:.0f} µs/msg: server "
             f"{r.server_sys_s / p.seconds:.2f}, generator {p.generator_sys_s / p.seconds:.2f})"
             f"; load average {os.getloadavg()[0]:.1f}")
    if p.sent_msgs_per_s < 0.97 * p.offered_msgs_per_s:
        tail += f"; generator sent only {p.sent_msgs_per_s:,.0f} msgs/s"
    if p.connect_failures:
        tail += f"; {p.connect_failures} connect failures"
    if r.notes:
        tail += "; " + "; ".join(r.notes)
    name = f"{r.target} gc={r.gc}" if r.gc else r.target
    return (f"{name:<14} {p.connected:>7,} {p.offered_msgs_per_s:>9,.0f} "
            f"{p.msgs_per_s:>8,.0f} {p.frames_per_s:>8,.0f} {p.messages_acked:>8,} "
            f"{p.skipped_ticks:>7,} "
            f"{p.latency_p50_ms:>7.1f} {p.latency_p99_ms:>7.1f} {p.latency_max_ms:>7.1f} "
            f"{cpu_ss:>7.2f} {us_msg:>7.0f} {p.generator_cpu_s / p.seconds:>7.2f}  {tail}")


def ratio(vc: Result, mq: Result) -> str:
    a, b = vc.rep, mq.rep
    rate = vc.rate() / mq.rate() if mq.rate() else math.nan
    cpu_a = vc.server_cpu_s / max(a.messages_acked, 1) * 1e6
    cpu_b = mq.server_cpu_s / max(b.messages_acked, 1) * 1e6
    if not mq.routed:
        what = "vitalcore rate / mosquitto rate without subscriber (taken in and dropped)"
    elif a.qos:
        what = "vitalcore ack rate / mosquitto routing rate"
    else:
        what = "QoS 0: vitalcore ingest rate / mosquitto rate delivered to its subscriber"
    return (f"  {a.devices:,} devices (vitalcore gc={vc.gc}): {what} = "
            f"{rate:.3f} ({vc.rate():,.0f} vs {mq.rate():,.0f} msgs/s); CPU per message {cpu_a:.0f} µs vs {cpu_b:.0f} µs "
            f"({cpu_a / cpu_b:.1f}x)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0, help="load duration per run")
    ap.add_argument("--window", type=int, default=64, help="messages in flight per device")
    ap.add_argument("--ramp", action="store_true", help="double devices up to --max-devices")
    ap.add_argument("--max-devices", type=int, default=4000)
    ap.add_argument("--p99-ms", type=float, default=250.0, help="sustained if p99 below")
    ap.add_argument("--qos", type=int, default=1, choices=(0, 1), help="QoS of the uplinks")
    ap.add_argument("--processes", type=int, default=1, help="load generator processes")
    ap.add_argument("--only", choices=("vitalcore", "mosquitto"), help="run one server only")
    ap.add_argument("--batch-ticks", type=int, default=1, choices=(1, 2, 4),
                    help="250 ms ticks per PUBLISH (4: one message/s per device)")
    ap.add_argument("--no-alarms", action="store_true",
                    help="serve --no-alarms: ingest and storage only, no alarm engine")
    ap.add_argument("--sync", choices=("group", "always", "none"), default="group",
                    help="vitalcore's WAL policy (serve --sync); 'none' acknowledges before "
                         "fsync and is a diagnosis of the disk's share, not the durable figure")
    ap.add_argument("--gc", choices=("tuned", "default", "both"), default="tuned",
                    help="vitalcore's GC schedule (VITALCORE_GC); both: a run of each")
    ap.add_argument("--no-subscriber", action="store_true",
                    help="mosquitto without its subscriber: it only acknowledges (the cost "
                         "of the MQTT exchange alone on this machine)")
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
        gen = ("in this process" if a.processes == 1 else f"in {a.processes} processes")
        rule = (f"offered rate sent, all acked, no skipped tick, p99 < {a.p99_ms:g} ms"
                if a.qos else "offered rate sent, all taken in (PINGRESP barrier)")
        print(f"# {os.cpu_count()} CPUs, load generator {gen} on the same cores; QoS {a.qos}; "
              f"{a.batch_ticks} tick(s) = {13 * a.batch_ticks / 4:g} frames per message; "
              f"alarm engine {'off' if a.no_alarms else 'on'}; "
              f"{len(creds):,} accounts provisioned in {time.monotonic() - t0:.1f} s; "
              f"{a.seconds:g} s per run, window {a.window}, sustained = {rule}", flush=True)
        print(HEAD if a.qos else HEAD0, flush=True)
        results: list[tuple[Result, Result | None]] = []
        best: dict[str, int] = {"vitalcore": 0, "mosquitto": 0}
        alive = {"vitalcore": a.only != "mosquitto", "mosquitto": a.only != "vitalcore"}
        gcs = ("default", "tuned") if a.gc == "both" else (a.gc,)
        for n in steps:
            vcs, mq = [], None
            if alive["vitalcore"]:
                for gc in gcs:
                    vcs.append(run_vitalcore(n, a.seconds, a.window, creds,
                                             work / "accounts.json", work, a.qos, a.processes,
                                             a.batch_ticks, gc, not a.no_alarms, a.sync))
                    print(row(vcs[-1]), flush=True)
            if alive["mosquitto"]:
                mq = run_mosquitto(n, a.seconds, a.window, creds, work, a.qos, a.processes,
                                   a.batch_ticks, not a.no_subscriber)
                print(row(mq), flush=True)
            if vcs:  # the last one (tuned, unless --gc default) decides the ramp
                if vcs[-1].sustained(a.p99_ms):
                    best["vitalcore"] = max(best["vitalcore"], n)
                else:
                    alive["vitalcore"] = False
            if mq is not None:
                if mq.sustained(a.p99_ms):
                    best["mosquitto"] = max(best["mosquitto"], n)
                else:
                    alive["mosquitto"] = False
            if mq is not None:
                results += [(vc, mq) for vc in vcs]
            if not any(alive.values()):
                break
        print("ratios (same offered load):")
        for vc, mq in results:
            print(ratio(vc, mq))
        for name, n in best.items():
            label = (f"{n:,} devices ({4 * n // a.batch_ticks:,} msgs/s, {13 * n:,} frames/s)"
                     if n else "none of the steps")
            print(f"highest sustained load, {name}: {label}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
