"""The fault scenarios, parameterised by size: the tests run them small, scripts/faults.py big.

Each ``run_*`` function takes a scratch directory and counts, runs the scenario against
a real ``python -m vitalcore serve`` subprocess with real MQTT/CoAP clients, and returns
a :class:`Result` (the :class:`~faults_harness.Verdict` plus figures the scenario measured).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from faults_harness import (
    STEP_US,
    TS0,
    CoapDevice,
    Ledger,
    MqttDevice,
    ServerProcess,
    Verdict,
    coap_loop,
    drain,
    free_port,
    produce_for,
    provision,
    secret_of,
    verify,
)


@dataclass
class Result:
    verdict: Verdict
    runs: int
    figures: dict = field(default_factory=dict)
    log: str = ""


def _ids(n: int, base: int = 0xFA0000) -> list[int]:
    return [base + i for i in range(n)]


async def _devices(port: int, ledger: Ledger, ids: list[int], qos_of, **kw) -> list[MqttDevice]:
    devices = [MqttDevice(d, port, ledger, qos=qos_of(i), **kw) for i, d in enumerate(ids)]
    for d in devices:
        await d.connect()
    return devices


async def run_kill9(root: Path, cycles: int, *, seed: int = 9, n_mqtt: int = 8, n_coap: int = 2,
                    period_s: float = 0.02, up_s: tuple[float, float] = (0.5, 2.5),
                    sync: str = "group", flush_interval_s: float | None = None,
                    kill_in_flush: bool = False) -> Result:
    """kill -9 of the server under load ``cycles`` times, restarting on the same data dir.

    Half the MQTT devices publish QoS 1, half QoS 2; CoAP devices POST confirmable
    requests. Each cycle lets the load run for a random time in ``up_s`` (seconds after
    the restart completed), then SIGKILLs the server and starts it again at once.
    ``flush_interval_s`` runs the server with a store that flushes to Parquet that often
    (``serve_child.py``), so that kills land in flushes, checkpoints and WAL truncations;
    ``kill_in_flush`` then waits, after the random delay, for a flush's temporary file to
    appear (Parquet or checkpoint) and kills at that moment (5 s at most).
    """
    rng = random.Random(seed)
    ids = _ids(n_mqtt + n_coap)
    provision(root / "accounts.json", ids)
    server = ServerProcess(root / "data", root / "accounts.json",
                           coap_port=free_port(socket.SOCK_DGRAM) if n_coap else None, sync=sync,
                           flush_interval_s=flush_interval_s)
    await asyncio.to_thread(server.start)
    ledger = Ledger()
    mqtt = await _devices(server.port, ledger, ids[:n_mqtt], lambda i: 1 + i % 2)
    coap = [CoapDevice(d, server.coap_port, ledger) for d in ids[n_mqtt:]]
    for c in coap:
        await c.start()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(produce_for(mqtt, 1e9, period_s, stop)),
             asyncio.create_task(coap_loop(coap, stop, period_s))]
    acked_at_kill = []
    in_flush = 0
    t0 = time.monotonic()
    try:
        for _ in range(cycles):
            await asyncio.sleep(rng.uniform(*up_s))
            if kill_in_flush:
                in_flush += await asyncio.to_thread(_wait_for_temporary, root / "data", 5.0)
            acked_at_kill.append(len(ledger.acked))
            server.kill9()
            await asyncio.to_thread(server.start)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
        drained = await drain(mqtt, 60, coap)
    finally:
        stop.set()
        for d in mqtt:
            await d.close()
        for c in coap:
            await c.close()
        status = await asyncio.to_thread(server.stop)
    verdict = verify(ledger, root / "data", ids)
    log_text = server.tail(2_000_000)
    return Result(verdict, cycles, {
        "parquet_files": len(list((root / "data" / "history").rglob("*.parquet"))),
        "kills_during_a_flush": in_flush,
        "torn_wal_tails_cut": log_text.count("torn block"),
        "restarts_that_removed_parquet_beyond_checkpoint": log_text.count("Parquet file(s)"),
        "restarts_that_replayed_wal": log_text.count("replayed"),
        "drained": drained, "exit_status": status, "seconds": round(time.monotonic() - t0, 1),
        "reconnects": sum(d.connects - 1 for d in mqtt),
        "acked_before_each_kill": acked_at_kill, "refusals": dict(ledger.refusals),
    }, server.tail(20000))


def _wait_for_temporary(data: Path, timeout_s: float) -> bool:
    """Poll until a flush's temporary file exists under ``data`` (True) or time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for _, _, names in os.walk(data):
            if any(n.endswith(".tmp") for n in names):
                return True
        time.sleep(0.0005)
    return False


# ------------------------------------------------------------------ disk full / read-only
def mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``path``; the reason it cannot be done, or None."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(path)], capture_output=True, text=True)
    return None if r.returncode == 0 else f"mount -t tmpfs not permitted: {r.stderr.strip()}"


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True,
                   capture_output=True)


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


async def _acks_stall(ledger: Ledger, quiet_s: float, limit_s: float) -> float:
    """Wait until no acknowledgement arrived for ``quiet_s`` (or ``limit_s`` passed)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        last = ledger.ack_times[-1] if ledger.ack_times else t0
        if time.monotonic() - last > quiet_s:
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


async def run_disk_full(root: Path, *, n_mqtt: int = 6, frames_per_message: int = 8,
                        size: str = "256k", period_s: float = 0.01,
                        stall_limit_s: float = 60.0, recover_s: float = 20.0) -> Result | str:
    """Disk full: the data dir is on a tmpfs of ``size`` that fills up under load.

    The server must stop acknowledging (nothing that is not durable is acked), stay up,
    and resume on its own once the tmpfs is grown to 64 MiB. Returns the reason as a
    string if a tmpfs cannot be mounted here.
    """
    disk = root / "disk"
    why = mount_tmpfs(disk, size)
    if why:
        return why
    try:
        ids = _ids(n_mqtt, 0xFB0000)
        provision(root / "accounts.json", ids)
        server = ServerProcess(disk / "data", root / "accounts.json", log_path=root / "serve.log",
                               alarms=True)
        await asyncio.to_thread(server.start)
        ledger = Ledger()
        devices = await _devices(server.port, ledger, ids, lambda i: 1 + i % 2,
                                 frames_per_message=frames_per_message)
        stop = asyncio.Event()
        load = asyncio.create_task(produce_for(devices, 1e9, period_s, stop))
        figures: dict = {}
        try:
            figures["seconds_until_acks_stopped"] = round(
                await _acks_stall(ledger, 3.0, stall_limit_s), 1)
            figures["acked_before_fault_cleared"] = acked_stalled = len(ledger.acked)
            figures["server_alive_during_fault"] = server.proc.poll() is None
            await asyncio.sleep(2.0)
            figures["acked_while_faulty"] = len(ledger.acked) - acked_stalled
            remount(disk, "size=64m")
            figures["acks_resumed_after_s"] = await _acks_resume(ledger, acked_stalled,
                                                                 recover_s)
            await asyncio.sleep(7.0)  # the alarm engine checks the storage every 5 s
            stop.set()
            await load
            figures["drained"] = await drain(devices, 60)
        finally:
            stop.set()
            for d in devices:
                await d.close()
            figures["exit_status"] = await asyncio.to_thread(server.stop)
        figures["disconnects"] = sum(d.disconnects for d in devices)
        log_text = server.tail(200_000)
        figures["log_names_cause"] = "ENOSPC" in log_text
        figures["wal_reopens"] = log_text.count("write-ahead log reopened")
        figures["storage_alarms"] = _alarm_kinds(disk / "data" / "alarms", "storage.failed")
        return Result(verify(ledger, disk / "data", ids), 1, figures, log_text)
    finally:
        umount(disk)


async def _acks_resume(ledger: Ledger, before: int, limit_s: float) -> float | None:
    """Seconds until 100 more frames were acknowledged; None if not within ``limit_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if len(ledger.acked) > before + 100:
            return round(time.monotonic() - t0, 1)
        await asyncio.sleep(0.1)
    return None


def _sh(*args: str) -> str:
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


def mount_ext4(image: Path, path: Path, size_mb: int = 64) -> str | None:
    """Make and loop-mount an ext4 image with ``errors=remount-ro``; reason if impossible."""
    if os.geteuid() != 0:
        return "loop-mounting an ext4 image needs root"
    if not shutil.which("mkfs.ext4"):
        return "mkfs.ext4 not installed"
    path.mkdir(parents=True, exist_ok=True)
    try:
        if not image.exists():
            with open(image, "wb") as f:
                f.truncate(size_mb << 20)
            _sh("mkfs.ext4", "-q", "-F", str(image))
        _sh("mount", "-o", "loop,errors=remount-ro", str(image), str(path))
    except RuntimeError as exc:
        return f"cannot loop-mount ext4 here: {exc}"
    return None


def ext4_error_trigger(path: Path) -> Path:
    """The sysfs file that makes the ext4 file system at ``path`` hit an error (and, with
    errors=remount-ro, turn read-only under the open files, as on a failing disk)."""
    source = _sh("findmnt", "-n", "-o", "SOURCE", str(path))
    return Path("/sys/fs/ext4") / Path(source).name / "trigger_fs_error"


async def run_disk_readonly(root: Path, *, n_mqtt: int = 6, period_s: float = 0.02,
                            stall_limit_s: float = 20.0, recover_s: float = 30.0
                            ) -> Result | str:
    """Read-only disk: the ext4 file system of the data dir turns read-only under load
    (``trigger_fs_error`` with ``errors=remount-ro``, what the kernel does on I/O errors).

    The server must stop acknowledging and stay up while the disk is read-only, refuse to
    start on a read-only data dir with a clear error, and after the operator's repair
    (server stopped, ``e2fsck``, mounted read-write again) restart with every acknowledged
    frame and accept the devices' retransmissions.
    """
    disk, image = root / "disk", root / "ext4.img"
    why = mount_ext4(image, disk)
    if why:
        return why
    mounted = True
    try:
        trigger = ext4_error_trigger(disk)
        if not trigger.exists():
            return f"{trigger} missing: kernel without ext4 error injection"
        ids = _ids(n_mqtt, 0xFC0000)
        provision(root / "accounts.json", ids)
        server = ServerProcess(disk / "data", root / "accounts.json", log_path=root / "serve.log")
        await asyncio.to_thread(server.start)
        ledger = Ledger()
        devices = await _devices(server.port, ledger, ids, lambda i: 1 + i % 2)
        stop = asyncio.Event()
        load = asyncio.create_task(produce_for(devices, 1e9, period_s, stop))
        figures: dict = {}
        try:
            await asyncio.sleep(2.0)
            trigger.write_text("vitalcore fault test\n")
            figures["seconds_until_acks_stopped"] = round(
                await _acks_stall(ledger, 2.0, stall_limit_s), 1)
            figures["acked_before_fault_cleared"] = acked_stalled = len(ledger.acked)
            await asyncio.sleep(2.0)
            figures["acked_while_faulty"] = len(ledger.acked) - acked_stalled
            figures["server_alive_during_fault"] = server.proc.poll() is None
            figures["exit_status_on_readonly"] = await asyncio.to_thread(server.stop)
            log_text = server.tail(200_000)
            figures["log_names_cause"] = "EROFS" in log_text
            # a restart on the read-only disk must fail loudly, not serve
            try:
                await asyncio.to_thread(server.start, 30.0)
                figures["refused_start_on_readonly"] = False
            except RuntimeError as exc:
                figures["refused_start_on_readonly"] = "Read-only file system" in str(exc)
            # the operator's repair
            _sh("umount", str(disk))
            mounted = False
            subprocess.run(["e2fsck", "-fy", str(image)], capture_output=True)
            why = mount_ext4(image, disk)
            if why:
                raise RuntimeError(why)
            mounted = True
            await asyncio.to_thread(server.start)
            figures["acks_resumed_after_s"] = await _acks_resume(ledger, acked_stalled,
                                                                 recover_s)
            await asyncio.sleep(1.0)
            stop.set()
            await load
            figures["drained"] = await drain(devices, 60)
        finally:
            stop.set()
            for d in devices:
                await d.close()
            figures["exit_status"] = await asyncio.to_thread(server.stop)
        figures["disconnects"] = sum(d.disconnects for d in devices)
        return Result(verify(ledger, disk / "data", ids), 1, figures, server.tail(200_000))
    finally:
        if mounted:
            umount(disk)


# ------------------------------------------------------------------ slow storage
async def run_slow_storage(root: Path, *, seconds: float = 20.0, bytes_per_s: int = 5_000,
                           n_mqtt: int = 6, period_s: float = 0.01) -> Result:
    """The WAL writes at ``bytes_per_s`` (test hook VITALCORE_WAL_TEST_BYTES_PER_S) while
    the devices offer more: acknowledgements slow to the disk's pace, the devices' windows
    fill (they are pushed back and skip messages), the server's memory stays flat, and
    nothing acknowledged is lost."""
    ids = _ids(n_mqtt, 0xFD0000)
    provision(root / "accounts.json", ids)
    server = ServerProcess(root / "data", root / "accounts.json",
                           env={"VITALCORE_WAL_TEST_BYTES_PER_S": str(bytes_per_s)})
    await asyncio.to_thread(server.start)
    ledger = Ledger()
    devices = await _devices(server.port, ledger, ids, lambda i: 1 + i % 2,
                             frames_per_message=8)
    rss: list[int] = []
    t0 = time.monotonic()
    try:
        load = asyncio.create_task(produce_for(devices, seconds, period_s))
        while not load.done():
            rss.append(server.rss_bytes())
            await asyncio.sleep(0.5)
        skipped = await load
        elapsed = time.monotonic() - t0
        acked_during_load = len(ledger.acked)
        drained = await drain(devices, 60)
        wal_written = _wal_bytes(root / "data")
    finally:
        for d in devices:
            await d.close()
        status = await asyncio.to_thread(server.stop)
    offered = len(ledger.sent) + skipped * 8
    warm = rss[len(rss) // 4:] or rss
    figures = {
        "frames_offered_per_s": round(offered / elapsed), "skipped_messages": skipped,
        "frames_acked_per_s": round(acked_during_load / elapsed),
        "wal_bytes_per_s": round(wal_written / elapsed) if wal_written else None,
        "rss_mb_min_max_after_warmup": (round(min(warm) / 2**20, 1), round(max(warm) / 2**20, 1)),
        "rss_growth_after_warmup": round(max(warm) / min(warm) - 1, 3),
        "drained": drained, "exit_status": status,
    }
    return Result(verify(ledger, root / "data", ids), 1, figures, server.tail(20000))


def _wal_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in (data / "wal").glob("wal-*.seg"))


# ------------------------------------------------------------------ network drops, storm
async def run_reconnect_storm(root: Path, *, n_devices: int = 2000, period_s: float = 2.0,
                              down_s: float = 1.0, n_lost: int = 2) -> Result:
    """``n_devices`` gmqtt devices reach the server through a TCP relay
    (:class:`vitalcore.sim.link.LinkProxy`); the relay aborts every connection at once
    (no FIN, no DISCONNECT), refuses connections for ``down_s`` and comes back: every
    device reconnects at once. ``n_lost`` more devices use a second relay that is cut at
    the same moment and never comes back (the control group).

    The server (alarm engine on) must take the storm, raise ``device.offline`` for the
    lost devices (after the 15 s reconnect grace) and for no other device, and lose no
    acknowledged frame.
    """
    from vitalcore.sim.link import LinkProxy

    ids = _ids(n_devices + n_lost, 0xFE0000)
    provision(root / "accounts.json", ids)
    server = ServerProcess(root / "data", root / "accounts.json", alarms=True)
    await asyncio.to_thread(server.start)
    proxy, dead_end = LinkProxy("127.0.0.1", server.port), LinkProxy("127.0.0.1", server.port)
    await proxy.start()
    await dead_end.start()
    ledger = Ledger()
    devices = [MqttDevice(d, proxy.port if i < n_devices else dead_end.port, ledger,
                          qos=1 + i % 2, window=4, keepalive=60)
               for i, d in enumerate(ids)]
    storm, lost = devices[:n_devices], devices[n_devices:]
    figures: dict = {}
    t0 = time.monotonic()
    stop = asyncio.Event()
    try:
        # devices send from their first CONNACK on: one connected but silent for 30 s
        # would rightly be reported offline ("no data")
        load = asyncio.create_task(_staggered(devices, period_s, stop))
        for i in range(0, len(devices), 16):  # a fleet powering up in waves of 16
            await asyncio.gather(*(d.connect(120) for d in devices[i:i + 16]))
        figures["connect_s"] = round(time.monotonic() - t0, 1)
        await asyncio.sleep(3.0)
        before = sum(d.connects for d in storm)
        await dead_end.cut()
        await proxy.cut()
        t_cut = time.monotonic()
        await asyncio.sleep(down_s)
        await proxy.restore()
        t_up = time.monotonic()
        while sum(d.connects for d in storm) < before + n_devices:
            if time.monotonic() - t_up > 120:
                break
            await asyncio.sleep(0.1)
        figures["all_reconnected_after_s"] = round(time.monotonic() - t_up, 1)
        figures["reconnected"] = sum(d.connects for d in storm) - before
        # past the reconnect grace (15 s) plus the engine's check period
        await asyncio.sleep(max(0.0, 20.0 - (time.monotonic() - t_cut)))
        figures["online_at_end"] = sum(d.online for d in storm)
        figures["server_alive"] = server.proc.poll() is None
        figures["server_rss_mb"] = round(server.rss_bytes() / 2**20, 1)
        stop.set()
        await load
        figures["drained"] = await drain(storm, 120)
    finally:
        stop.set()
        for i in range(0, len(devices), 256):
            await asyncio.gather(*(d.close() for d in devices[i:i + 256]))
        await proxy.close()
        await dead_end.close()
        figures["exit_status"] = await asyncio.to_thread(server.stop)
    offline = _offline_alarms(root / "data" / "alarms")
    figures["offline_alarm_devices"] = len(offline)
    figures["offline_alarms_exactly_the_lost_devices"] = offline == {d.device_id for d in lost}
    figures["seconds"] = round(time.monotonic() - t0, 1)
    return Result(verify(ledger, root / "data", ids), 1, figures, server.tail(20000))


async def _staggered(devices: list[MqttDevice], period_s: float, stop: asyncio.Event) -> int:
    """Each device produces one message per ``period_s``, spread over the period."""
    step = period_s / len(devices)
    i = 0
    skipped = 0
    while not stop.is_set():
        d = devices[i % len(devices)]
        if d.pending < 4 * d.window:
            d.produce()
        else:
            skipped += 1
        i += 1
        if i % 16 == 0:
            await asyncio.sleep(16 * step)
    return skipped


def _alarm_kinds(path: Path, code: str) -> list[str]:
    """The kinds (raised, ended, ...) of the events of alarm ``code``, in log order."""
    from vitalcore.alarms.log import AlarmLog

    alarm_log = AlarmLog(path)
    try:
        table = alarm_log.read(0, 2**62)
    finally:
        alarm_log.close()
    return [k for c, k in zip(table.column("code").to_pylist(), table.column("kind").to_pylist(),
                              strict=True) if c == code]


def _offline_alarms(path: Path) -> set[int]:
    """Devices with a ``device.offline`` event in the alarm log at ``path``."""
    from vitalcore.alarms.log import AlarmLog

    alarm_log = AlarmLog(path)
    try:
        table = alarm_log.read(0, 2**62)
    finally:
        alarm_log.close()
    return {d for d, code, kind in zip(table.column("device_id").to_pylist(),
                                       table.column("code").to_pylist(),
                                       table.column("kind").to_pylist(), strict=True)
            if code == "device.offline" and kind == "raised"}


# ------------------------------------------------------------------ clock jumps
HOUR_US = 3_600_000_000
JUMPS_US = (0, -HOUR_US, +24 * HOUR_US, -10 * 60_000_000)  #: device clock offset per phase


def jumping_clock(phase_frames: int):
    """``ts_of(seq)`` of a device whose clock steps by :data:`JUMPS_US` every
    ``phase_frames`` frames (back 1 h, forward 1 day, back 10 min) while seq goes on."""
    def ts_of(seq: int) -> int:
        return TS0 + seq * STEP_US + JUMPS_US[min(seq // phase_frames, len(JUMPS_US) - 1)]

    return ts_of


async def run_clock_jumps(root: Path, *, n_mqtt: int = 6, seconds: float = 8.0,
                          period_s: float = 0.02, server_jumps_s: tuple = (-3600.0, 86400.0)
                          ) -> Result:
    """Device clocks and the server's wall clock jump while frames flow.

    Half the devices step their clocks (:func:`jumping_clock`); the server (in this
    process, so that its clock can be changed) sees ``time.time``/``time.time_ns`` step
    by each of ``server_jumps_s`` in turn. Every acknowledged frame must be stored once,
    with the device time it was sent with, and the sequence checks must count no
    duplicate, late frame or restart (sequence numbers never went back). The figures
    also list the devices whose live ``StreamBuffers.latest()`` value is not their newest
    frame's (the stale-latest finding of docs/reliability.md).
    """
    from unittest import mock

    from vitalcore.server import Accounts, Server
    from vitalcore.storage.store import Store

    ids = _ids(n_mqtt, 0xF10000)
    acc = Accounts(log2_n=10)
    for d in ids:
        acc.add_device(d, secret_of(d))
    real_time, real_time_ns = time.time, time.time_ns
    offset = [0.0]
    ledger = Ledger()
    phase_frames = int(seconds / period_s) // len(JUMPS_US) * 4
    ts_of = {d: jumping_clock(phase_frames) if i % 2 == 0 else None for i, d in enumerate(ids)}
    with mock.patch("time.time", lambda: real_time() + offset[0]), \
            mock.patch("time.time_ns", lambda: real_time_ns() + int(offset[0] * 1e9)):
        store = Store(root / "data", flush_interval_s=1.0)
        server = Server(store, acc, port=0)
        await server.start()
        try:
            devices = [MqttDevice(d, server.port, ledger, qos=1 + i % 2, ts_of=ts_of[d])
                       for i, d in enumerate(ids)]
            for d in devices:
                await d.connect()
            load = asyncio.create_task(produce_for(devices, seconds, period_s))
            for jump in server_jumps_s:
                await asyncio.sleep(seconds / (len(server_jumps_s) + 1))
                offset[0] += jump
            await load
            drained = await drain(devices, 30)
            for d in devices:
                await d.close()
            stale = _stale_latest(store, devices)
        finally:
            await server.stop()
            stats = store.stats()
            store.close()
    figures = {
        "drained": drained, "store_flushes": stats["flushes"],
        "duplicates": stats["duplicates"], "late": stats["late"],
        "restarts": stats["restarts"], "gaps": stats["gaps"],
        "devices_whose_live_latest_is_not_their_newest_frame": stale,
    }
    verdict = verify(ledger, root / "data", ids)
    figures["device_times_kept"] = _device_times_match(root / "data", ids, ts_of)
    return Result(verdict, 1, figures)


def _stale_latest(store, devices: list[MqttDevice]) -> list[str]:
    """Devices whose live ``latest()`` HR is not the one of their newest frame."""
    out = []
    for d in devices:
        newest = d.next_seq - 1
        latest = store.buffers.latest(d.device_id).get(1)
        if latest is None or latest.ts_us != d.ts_of(newest):
            out.append(f"{d.device_id:x}")
    return out


def _device_times_match(data: Path, ids: list[int], ts_of: dict) -> bool:
    """Every stored frame carries the device time it was sent with."""
    from vitalcore.storage.store import Store

    with Store(data, flush_interval_s=0) as store:
        for d in ids:
            t = store.read_numerics(d, 0, 2**62)
            f = ts_of[d] or (lambda s: TS0 + s * STEP_US)
            if any(ts != f(s) for s, ts in zip(t.column("seq").to_pylist(),
                                                t.column("ts_us").to_pylist(), strict=True)):
                return False
    return True
