"""``python -m vitalcore run``: the quick start, a live ward over real MQTT.

One process, one event loop: the embedded server (:class:`vitalcore.server.Server`
with a :class:`~vitalcore.storage.store.Store` in ``--data`` or a temporary
directory) on 127.0.0.1, accounts created for the simulated ward (random secrets,
generated now, hashed into the data directory's ``accounts.json``; the plain ones in
``sim-devices.json``, mode 0600), and the ward's wearables connecting over MQTT with
gmqtt. Every 5 s a status line; after ``--bp-after`` seconds a ward-wide "measure BP
now" (one START_NIBP COMMAND per device through
:class:`~vitalcore.server.commands.CommandCenter`), whose results (NIBP numerics as
stored, against each device's true pressure, or the device's refusal) are printed as
they arrive. An :class:`~vitalcore.alarms.AlarmEngine` watches the store (its log in
``alarms/`` of the data directory, events published on ``vc/v1/alarms/<ward>/...``) and
every alarm raised, latched or ended is printed. Ctrl-C or ``--duration`` ends it: devices drain and disconnect, the
server acknowledges what is durable, the store flushes, a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import protocol as P
from ..alarms import AlarmEngine, AlarmEvent, AlarmLog, AlarmPublisher, EventKind
from ..errors import UsageError
from ..server import Accounts, Server
from ..server.auth import SCRYPT_LOG2_N
from ..server.commands import CommandCenter, CommandResult, CommandStatus
from .ward import Ward, provision_ward, save_credentials, setup_logging

__all__ = ["main", "run_job", "RunSummary", "BpResult"]

log = logging.getLogger("vitalcore.sim")

ACCOUNTS_FILE = "accounts.json"
CREDENTIALS_FILE = "sim-devices.json"
BP_COMMAND_ID = 1000  #: command id of the first ward-wide BP command (then +1 each)
BP_TIMEOUT_S = 300.0  #: a measurement not finished by then is reported TIMEOUT
WARD = "demo-ward"  #: the simulated ward's alarm topic level (vc/v1/alarms/demo-ward/#)
_SHOWN = (EventKind.RAISED, EventKind.LATCHED, EventKind.ESCALATED, EventKind.ENDED)


@dataclass
class BpResult:
    """One device's answer to the ward-wide BP command."""

    device_id: int
    true_sys: float
    true_dia: float
    sys: float = float("nan")  #: as stored (NIBP_SYS numerics), mmHg
    dia: float = float("nan")
    map: float = float("nan")
    seconds: float = float("nan")  #: from the command to the result in the live buffers
    failed: str = ""  #: why there is no result ("" when there is one)

    @property
    def ok(self) -> bool:
        return not self.failed and np.isfinite(self.sys)


@dataclass
class RunSummary:
    """What :func:`run_job` measured (also printed)."""

    data_dir: str
    port: int
    seconds: float
    devices: dict[int, object] = field(default_factory=dict)  # id -> ScenarioWearable
    ward: dict = field(default_factory=dict)  # WardCounters.as_dict() at the end
    server: dict = field(default_factory=dict)  # Server.stats() before stopping
    store: dict = field(default_factory=dict)  # Store.stats() after closing
    bp: dict[int, BpResult] = field(default_factory=dict)
    latency_p50_ms: float = float("nan")
    latency_p99_ms: float = float("nan")
    link_drops: list[tuple[float, float]] = field(default_factory=list)
    alarms: list[tuple[str, str, int]] = field(default_factory=list)  # (kind, code, device)


def _now_us() -> int:
    return time.time_ns() // 1000


class _BpRound:
    """A ward-wide START_NIBP and the watch for its results."""

    def __init__(self, center: CommandCenter, ward: Ward, store,
                 out: Callable[[str], None]) -> None:
        self.center, self.ward, self.store, self.out = center, ward, store, out
        self.results: dict[int, BpResult] = {}
        self.commands: dict[int, CommandResult] = {}
        self.t_sent_us = 0
        self.t_sent = 0.0

    def send(self) -> None:
        self.t_sent_us, self.t_sent = _now_us(), time.monotonic()
        for w in self.ward.wearables:
            self.results[w.device_id] = BpResult(w.device_id, w.nibp_sys, w.nibp_dia)
        rnd = self.center.start(list(self.results), P.CommandKind.START_NIBP,
                                timeout_s=BP_TIMEOUT_S)
        self.commands = {r.device_id: r for r in rnd.results}
        ids = [r.command_id for r in rnd.results]
        self.out(f"measure BP now: START_NIBP (commands {min(ids)}..{max(ids)}) sent to "
                 f"{len(self.results)} devices")

    @property
    def pending(self) -> list[int]:
        return [d for d, r in self.results.items() if not r.failed and not np.isfinite(r.sys)]

    def poll(self, give_up: bool = False) -> None:
        """Pick up results that reached the store (printed once each)."""
        for dev in self.pending:
            nibp = self.store.buffers.latest(dev).get(P.NumericCode.NIBP_SYS)
            r = self.results[dev]
            if nibp is not None and nibp.ts_us >= self.t_sent_us - 1_000_000:
                rows = self.store.read_numerics(dev, self.t_sent_us - 1_000_000,
                                                _now_us() + 1_000_000).to_pydict()
                got = {c: v for c, v in zip(rows["code"], rows["value"], strict=True)}
                r.sys = float(got.get(P.NumericCode.NIBP_SYS, float("nan")))
                r.dia = float(got.get(P.NumericCode.NIBP_DIA, float("nan")))
                r.map = float(got.get(P.NumericCode.NIBP_MAP, float("nan")))
                r.seconds = time.monotonic() - self.t_sent
                self.out(f"  BP {dev:016x}: {r.sys:5.1f}/{r.dia:5.1f} mmHg (MAP {r.map:5.1f}); "
                         f"true {r.true_sys:.0f}/{r.true_dia:.0f}; error {r.sys - r.true_sys:+.1f}/"
                         f"{r.dia - r.true_dia:+.1f} mmHg; {r.seconds:.1f} s after the command")
                continue
            failed = self._refused(dev)
            if failed or give_up:
                r.failed = failed or "no result before shutdown"
                self.out(f"  BP {dev:016x}: no measurement ({r.failed})")

    def _refused(self, dev: int) -> str:
        """Why the command ended without a measurement ("" while none is known)."""
        c = self.commands[dev]
        if not c.done or c.status is CommandStatus.COMPLETED:
            return ""
        why = f"command {c.status.value}"
        if c.status is CommandStatus.FAILED:
            why += f", device reason code {c.detail}"
        return why + (f" ({c.note})" if c.note else "")


def _status_line(server: Server, store, ward: Ward, prev: dict, latencies: list[float]) -> str:
    st = server.stats()
    ss = store.stats()
    now = time.monotonic()
    rate = (st.get("uplink_messages", 0) - prev.get("msgs", 0)) / max(now - prev.get("t", now - 1), 1e-3)
    prev.update(msgs=st.get("uplink_messages", 0), t=now)
    rejects = sum(ss["decoder"]["rejected"].values())
    online = sum(d.online for d in ward.devices)
    lat = (f"p50 {np.percentile(latencies, 50) * 1e3:.1f} ms, p99 "
           f"{np.percentile(latencies, 99) * 1e3:.1f} ms" if latencies else "no acks")
    return (f"[{time.strftime('%H:%M:%S')}] online {online}/{len(ward.wearables)}, "
            f"{rate:.0f} msg/s, frames stored {ss['frames']:,}, rejects {rejects}, "
            f"duplicates {ss['duplicates']}, WAL durable LSN {store.wal.durable_lsn:,}, "
            f"publish->ack {lat}")


def _alarms(server: Server, store, root: Path, summary: RunSummary,
            out: Callable[[str], None]) -> AlarmEngine:
    """The alarm engine on ``store``: logged, published on MQTT, printed."""
    loop = asyncio.get_running_loop()
    engine = AlarmEngine(alarm_log=AlarmLog(root / "alarms"))
    engine.add_listener(AlarmPublisher(server.broker.publish, lambda device_id: WARD))

    def show(ev: AlarmEvent) -> None:  # engine thread: hop to the loop
        if ev.kind in _SHOWN:
            loop.call_soon_threadsafe(_show_alarm, ev, summary, out)

    engine.add_listener(show)
    server.broker.add_presence_listener(engine.device_presence)
    engine.attach(store)
    return engine


def _show_alarm(ev: AlarmEvent, summary: RunSummary, out: Callable[[str], None]) -> None:
    a = ev.alarm
    summary.alarms.append((str(ev.kind), a.code, a.device_id))
    out(f"[{time.strftime('%H:%M:%S')}] alarm {ev.kind}: {a.priority.name.lower()} {a.code} "
        f"device {a.device_id:016x}: {a.message}")


async def _start_server(store, accounts: Accounts, port: int, out) -> Server:
    server = Server(store, accounts, host="127.0.0.1", port=port)
    try:
        await server.start()
    except OSError as exc:
        if port == 0:
            raise
        out(f"port {port} unavailable ({exc.strerror}); using a free port")
        server = Server(store, accounts, host="127.0.0.1", port=0)
        await server.start()
    return server


async def run_job(devices: int = 12, data_dir: str | None = None, *,
                  duration_s: float | None = None, bp_after_s: float = 20.0, port: int = 1883,
                  status_every_s: float = 5.0, seed: int = 0, nibp_deflate_mmhg_s: float = 3.0,
                  log2_n: int = SCRYPT_LOG2_N, stop: asyncio.Event | None = None,
                  stop_when_bp_done: bool = False,
                  out: Callable[[str], None] = print, **ward_options) -> RunSummary:
    """Run the quick-start job in the running loop (see the module docstring).

    Parameters
    ----------
    devices : int
        Simulated wearables.
    data_dir : str, optional
        Store directory (kept); default a temporary directory, removed at the end.
    duration_s : float, optional
        Stop after this many seconds (default: when ``stop`` is set).
    bp_after_s : float
        Seconds until the ward-wide BP command (negative: never).
    port : int
        MQTT port on 127.0.0.1 (0 or a busy port: a free one).
    status_every_s : float
        Status line period, s.
    seed : int
        Seed of the ward's truths.
    nibp_deflate_mmhg_s : float
        Cuff deflation rate, mmHg/s (3: a measurement takes ~35 s).
    log2_n : int
        scrypt cost of the accounts created (tests lower it).
    stop : asyncio.Event, optional
        Set to end the run.
    stop_when_bp_done : bool
        End the run once every device answered the BP command (scripted runs, tests).
    out : callable
        Where lines go (default print).
    **ward_options
        Passed to :class:`~vitalcore.sim.ward.Ward` (link_drop_at_s, leads_off_s, ...).
    """
    from ..storage.store import Store  # heavy (pyarrow): only when the job runs

    if devices < 1:
        raise UsageError(f"devices must be >= 1, got {devices!r}")
    tmp = None
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="vitalcore-run-")
        data_dir = tmp
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    acc_path = root / ACCOUNTS_FILE
    accounts = (Accounts.load(acc_path, log2_n=log2_n) if acc_path.exists()
                else Accounts(log2_n=log2_n))
    creds = provision_ward(devices, accounts)
    accounts.save(acc_path)
    save_credentials(root / CREDENTIALS_FILE, creds)
    stop = stop or asyncio.Event()
    t_start = time.monotonic()
    store = Store(root / "store")
    bp: _BpRound | None = None
    center: CommandCenter | None = None
    engine: AlarmEngine | None = None
    latencies_all: list[float] = []
    try:
        server = await _start_server(store, accounts, port, out)
        ward_options.setdefault("link_drop_at_s", 30.0)
        ward = Ward(creds, "127.0.0.1", server.port, seed=seed,
                    nibp_deflate_mmhg_s=nibp_deflate_mmhg_s, **ward_options)
        summary = RunSummary(str(root), server.port or 0, 0.0,
                             devices={w.device_id: w for w in ward.wearables})
        engine = _alarms(server, store, root, summary, out)
        out(f"vitalcore: MQTT server on 127.0.0.1:{server.port}, store in {root / 'store'}; "
            f"{devices} simulated wearables (accounts in {acc_path}, device secrets in "
            f"{root / CREDENTIALS_FILE}); alarms on vc/v1/alarms/{WARD}/#, logged in "
            f"{root / 'alarms'}")
        if ward.scenarios:
            names = [w.device_id for w in ward.wearables]
            at, dur = ward.link_drop
            scen = [f"{names[0]:016x} loses its link at {at:.0f} s for {dur:.0f} s"]
            if len(names) > 1:
                lo = ward.wearables[1].leads_off_s
                scen.append(f"{names[1]:016x} leads off {lo[0]:.0f}-{lo[1]:.0f} s")
            if len(names) > 2:
                scen.append(f"{names[2]:016x} battery draining 60 %/h")
            if len(names) > 3:
                scen.append(f"{names[3]:016x} lead wire reaching its 4,380 h limit")
            out("scenarios: " + "; ".join(scen))
        try:
            await ward.start()
            prev: dict = {"t": time.monotonic(), "msgs": 0}
            next_status = time.monotonic() + status_every_s
            deadline = None if duration_s is None else t_start + duration_s
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                if bp is None and 0 <= bp_after_s <= time.monotonic() - t_start:
                    assert server.broker is not None
                    center = CommandCenter(server.broker, store, default_timeout_s=BP_TIMEOUT_S,
                                           first_command_id=BP_COMMAND_ID)
                    bp = _BpRound(center, ward, store, out)
                    bp.send()
                if bp is not None:
                    bp.poll()
                    if stop_when_bp_done and not bp.pending:
                        break
                if time.monotonic() >= next_status:
                    lat = ward.take_latencies()
                    latencies_all.extend(lat)
                    out(_status_line(server, store, ward, prev, lat))
                    next_status += status_every_s
        finally:
            out("stopping: devices drain and disconnect, the server acknowledges what is "
                "durable, the store flushes")
            await ward.stop()
            if bp is not None:
                bp.poll(give_up=True)
            if center is not None:
                center.close()
            latencies_all.extend(ward.take_latencies())
            summary.server = server.stats()
            await server.stop()
    finally:
        if engine is not None:
            engine.close()
        store.close()
    summary.store = store.stats()
    summary.ward = ward.counters(latencies_all).as_dict()
    summary.latency_p50_ms = summary.ward["latency_p50_ms"]
    summary.latency_p99_ms = summary.ward["latency_p99_ms"]
    summary.link_drops = list(ward.link_drop_times)
    summary.seconds = time.monotonic() - t_start
    if bp is not None:
        summary.bp = bp.results
    _print_summary(summary, out)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        out(f"(temporary data directory {tmp} removed; use --data DIR to keep it)")
    return summary


def _print_summary(s: RunSummary, out: Callable[[str], None]) -> None:
    w, st = s.ward, s.store
    rejects = sum(st["decoder"]["rejected"].values())
    out(f"\nsummary after {s.seconds:.1f} s: {w['devices']} devices, "
        f"{w['messages_sent']:,} messages sent, {w['messages_acked']:,} acknowledged, "
        f"{w['frames_sent']:,} frames sent, {st['frames']:,} frames stored, "
        f"{st['duplicates']} duplicates dropped, {rejects} rejects")
    out(f"  reconnects {w['reconnects']}, link drops {w['link_drops']}, frames held while "
        f"offline {w['backlogged_frames']:,} (dropped {w['backlog_dropped_frames']}), "
        f"commands answered {w['commands_answered']}, connect failures {w['connect_failures']}, "
        f"device errors {w['device_errors']}")
    out(f"  publish->PUBACK latency p50 {s.latency_p50_ms:.1f} ms, p99 {s.latency_p99_ms:.1f} ms "
        f"over {w['latency_samples']:,} messages")
    raised = sorted({code for kind, code, _ in s.alarms if kind == EventKind.RAISED})
    out(f"  alarms raised: {sum(k == EventKind.RAISED for k, _, _ in s.alarms)}"
        + (f" ({', '.join(raised)})" if raised else ""))
    if s.bp:
        ok = [r for r in s.bp.values() if r.ok]
        if ok:
            err = np.array([max(abs(r.sys - r.true_sys), abs(r.dia - r.true_dia)) for r in ok])
            out(f"  BP: {len(ok)}/{len(s.bp)} measured, largest error {err.max():.1f} mmHg, "
                f"median {np.median(err):.1f} mmHg")
        else:
            out(f"  BP: 0/{len(s.bp)} measured")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vitalcore run",
                                 description=__doc__.split("\n")[0].strip("`: "))
    ap.add_argument("--devices", type=int, default=12, help="simulated wearables (default 12)")
    ap.add_argument("--data", default=None,
                    help="data directory, kept (default: a temporary one, removed at the end)")
    ap.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    ap.add_argument("--port", type=int, default=1883, help="MQTT port on 127.0.0.1 (default 1883)")
    ap.add_argument("--bp-after", type=float, default=20.0,
                    help="seconds until the ward-wide BP command (default 20, negative: never)")
    ap.add_argument("--link-drop-at", type=float, default=30.0,
                    help="seconds until the first device loses its link (default 30)")
    ap.add_argument("--no-scenarios", action="store_true",
                    help="no link drop, leads-off, battery or accessory scenarios")
    ap.add_argument("--nibp-deflate", type=float, default=3.0,
                    help="cuff deflation rate, mmHg/s (default 3: ~35 s per measurement)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-level", default="WARNING")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m vitalcore run``; returns the exit status."""
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)

    async def job() -> RunSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_job(args.devices, args.data, duration_s=args.duration,
                             bp_after_s=args.bp_after, port=args.port, seed=args.seed,
                             nibp_deflate_mmhg_s=args.nibp_deflate,
                             stop=stop, scenarios=not args.no_scenarios,
                             link_drop_at_s=args.link_drop_at)

    try:
        summary = _run(job())
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lost = summary.ward["messages_sent"] - summary.ward["messages_acked"]
    return 0 if lost == 0 and summary.ward["device_errors"] == 0 else 1


def _run(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
