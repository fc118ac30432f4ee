"""The load generator: many devices at the real per-device rate, without gmqtt.

This is a traffic generator for benchmarks of the server, not a mock of anything under
test: it speaks plain MQTT 5 over TCP with vitalcore's own packet encoders (the server's
codec is tested for interoperability with gmqtt elsewhere) because gmqtt is too heavy
for thousands of devices: 300 gmqtt devices of :mod:`vitalcore.sim.ward` at 4 messages/s
took ~220 µs of CPU per message (frame generation included), a quarter of a core, so
about 1,000 devices per process at most; here a message costs 35-80 µs (one socket
write per message dominates): 1,000 devices (4,000 messages/s) took 2.1 s of CPU over
15 s, measured on the 2-core CI machine with uvloop.

Each device has its own connection and credentials (the ACL allows a device to publish
only on its own topic) and sends, like :class:`~vitalcore.sim.mqtt_device.MqttDevice`,
one QoS 1 PUBLISH per 250 ms holding that tick's frames: ECG lead II at 250 Hz
(62/63 samples alternately, timestamps exact to the sample), red and IR pleth at
100 Hz, numerics at 1 Hz: 4 messages/s, ~3.2 frames per message. The frames are encoded
once as templates; per message the generator copies the template and patches device
id, sequence number and timestamp of each frame and its CRC-32C. Devices are spread
evenly over the 250 ms period. A device whose acknowledgements do not keep up
(``window`` messages in flight) skips ticks, counted as ``skipped_ticks``: a
non-zero count means the server (or the generator) did not sustain the offered rate.

``python -m vitalcore.sim.load --devices N --port P --accounts sim-devices.json
--duration S`` prints a :class:`LoadReport`.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import struct
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from .. import codec
from .. import protocol as P
from ..errors import UsageError
from ..mqtt import MQTT_5, ConnAck, Connect, MqttParser, PubAck, encode, encode_publish
from ..server.topics import device_name, up_topic

__all__ = ["LoadReport", "run_load", "tick_templates", "main"]

TICK_US = 250_000
_RETRYABLE = frozenset({0x89, 0x97, 0x9F})  # server busy, quota exceeded, rate exceeded
ECG_FS, PLETH_FS = 250, 100
_ID = struct.Struct("<Q")
_SEQ_TS = struct.Struct("<Iq")
_CRC = struct.Struct("<I")


@dataclass
class LoadReport:
    """What :func:`run_load` offered and what the server acknowledged."""

    devices: int = 0
    connected: int = 0
    connect_failures: int = 0
    seconds: float = 0.0
    offered_msgs_per_s: float = 0.0  #: devices x 4
    messages_sent: int = 0
    messages_acked: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    skipped_ticks: int = 0
    msgs_per_s: float = 0.0  #: acknowledged messages per second of the run
    latency_p50_ms: float = float("nan")
    latency_p99_ms: float = float("nan")
    latency_max_ms: float = float("nan")
    generator_cpu_s: float = 0.0

    def line(self) -> str:
        return (f"{self.connected}/{self.devices} devices, {self.seconds:.1f} s: "
                f"{self.messages_acked:,}/{self.messages_sent:,} messages acknowledged "
                f"({self.msgs_per_s:,.0f}/s of {self.offered_msgs_per_s:,.0f}/s offered, "
                f"{self.frames_sent:,} frames, {self.bytes_sent / 1e6:.1f} MB), skipped ticks "
                f"{self.skipped_ticks:,}, publish->ack p50 {self.latency_p50_ms:.1f} ms p99 "
                f"{self.latency_p99_ms:.1f} ms, generator CPU {self.generator_cpu_s:.1f} s")


def tick_templates() -> list[tuple[bytes, list[int]]]:
    """The 4 tick messages of one second (device id 1, seq 0, ts 0 placeholders).

    Returns ``(message, frame offsets)`` for ticks k = 0..3; tick 0 also holds numerics.
    """
    t = np.arange(ECG_FS) / ECG_FS
    ecg = (np.exp(-((t - 0.3) / 0.012) ** 2) * 480).astype(np.int16)  # 1.2 mV R waves
    tp = np.arange(PLETH_FS) / PLETH_FS
    ir = (20000 + 600 * np.sin(2 * np.pi * 1.2 * tp)).astype(np.int16)
    red = (14000 + 300 * np.sin(2 * np.pi * 1.2 * tp)).astype(np.int16)
    out = []
    for k in range(4):
        e0, e1 = (k * ECG_FS) // 4, ((k + 1) * ECG_FS) // 4
        p0, p1 = k * PLETH_FS // 4, (k + 1) * PLETH_FS // 4
        ts0 = P.TS_MIN_US
        frames = [
            codec.encode_waveform(P.FrameType.ECG, 1, 0, ts0, P.EcgLead.II, ecg[e0:e1], ECG_FS, 2.5),
            codec.encode_waveform(P.FrameType.PLETH, 1, 0, ts0, P.PlethChannel.RED, red[p0:p1],
                                  PLETH_FS, 1.0),
            codec.encode_waveform(P.FrameType.PLETH, 1, 0, ts0, P.PlethChannel.IR, ir[p0:p1],
                                  PLETH_FS, 1.0),
        ]
        if k == 0:
            frames.append(codec.encode_numerics(1, 0, ts0, [(P.NumericCode.HR, 72.0),
                                                             (P.NumericCode.SPO2, 97.0)]))
        offsets = np.cumsum([0] + [len(f) for f in frames[:-1]]).tolist()
        out.append((b"".join(frames), offsets))
    return out


class _Device(asyncio.Protocol):
    """One device's connection: CONNECT, then templated PUBLISHes, PUBACKs counted."""

    def __init__(self, device_id: int, secret: str, window: int) -> None:
        self.device_id = device_id
        self.name = device_name(device_id)
        self.secret = secret
        self.window = window
        self.topic = up_topic(device_id)
        self.parser = MqttParser(role="client", protocol_level=MQTT_5)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future = asyncio.get_running_loop().create_future()
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.acked = 0
        self.next_pid = 1
        self.tick = 0
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(encode(Connect(MQTT_5, f"load-{self.name}", True, 0, self.name,
                                       self.secret.encode()), MQTT_5))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        for p in self.parser.feed(data):
            if isinstance(p, PubAck):
                t0 = self.sent.pop(p.packet_id, None)
                if t0 is not None:
                    self.acked += 1
                    self.latencies.append(now - t0)
            elif isinstance(p, ConnAck) and not self.connack.done():
                self.connack.set_result(p.reason_code)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.connack.done():
            self.connack.set_result(-1)

    def send_tick(self, templates, t0_us: int) -> tuple[int, int] | None:
        """Send the next tick; None if the window is full (tick skipped)."""
        if self.closed or len(self.sent) >= self.window:
            self.tick += 1
            return None
        k = self.tick % 4
        msg, offsets = templates[k]
        buf = bytearray(msg)
        second = self.tick // 4
        ecg_first = second * ECG_FS + (k * ECG_FS) // 4  # index of the first ECG sample
        for i, off in enumerate(offsets):
            if i == 0:
                seq, ts = self.tick, t0_us + ecg_first * 1_000_000 // ECG_FS
            elif i < 3:
                seq, ts = self.tick, t0_us + self.tick * TICK_US
            else:
                seq, ts = second, t0_us + self.tick * TICK_US
            _ID.pack_into(buf, off + 8, self.device_id)
            _SEQ_TS.pack_into(buf, off + 16, seq, ts)
            end = offsets[i + 1] if i + 1 < len(offsets) else len(buf)
            _CRC.pack_into(buf, end - 4, codec.crc32c(memoryview(buf)[off:end - 4]))
        pid = self.next_pid
        self.next_pid = pid % 65535 + 1
        self.sent[pid] = time.perf_counter()
        self.transport.write(encode_publish(self.topic, buf, 1, packet_id=pid,
                                            protocol_level=MQTT_5))
        self.tick += 1
        return len(offsets), len(buf)


async def run_load(n: int, host: str, port: int, credentials: Mapping[int, str],
                   duration_s: float, *, window: int = 64, connect_concurrency: int = 16,
                   connect_retries: int = 20,
                   on_phase: Callable[[str], None] | None = None) -> LoadReport:
    """Connect ``n`` devices and offer 4 messages/s each for ``duration_s`` seconds.

    ``credentials`` maps device id -> secret (the first ``n`` ids are used). Returns
    the report once the last acknowledgements arrived (or 5 s after the end).

    All connections come from one address, and the server's failed-login limiter
    (docs/server.md, "Authentication": burst 20, each password check in progress holds
    a token) refuses CONNECTs beyond ~20 concurrent checks with 0x9F/0x89: connects run
    ``connect_concurrency`` at a time and a refused one is retried after a pause.

    ``on_phase`` (optional) is called with ``"start"`` once every device is connected,
    just before the first tick, and with ``"end"`` once the acknowledgements drained
    (benchmarks sample the server's CPU there).
    """
    ids = sorted(credentials)[:n]
    if len(ids) < n or n < 1 or duration_s <= 0:
        raise UsageError(f"need 1 <= n <= {len(credentials)} devices and duration_s > 0")
    loop = asyncio.get_running_loop()
    rep = LoadReport(devices=n, offered_msgs_per_s=4.0 * n)
    templates = tick_templates()
    devices: list[_Device] = []
    gate = asyncio.Semaphore(connect_concurrency)

    async def connect(dev: int) -> None:
        for attempt in range(connect_retries + 1):
            async with gate:
                try:
                    _, proto = await loop.create_connection(
                        lambda: _Device(dev, credentials[dev], window), host, port)
                    code = await asyncio.wait_for(proto.connack, 30)
                except (OSError, TimeoutError):
                    code = -1
            if code == 0:
                devices.append(proto)
                return
            if code == -1 or code not in _RETRYABLE:
                break
            proto.transport.close()
            await asyncio.sleep(1.0 + attempt)  # the server's login limiter refills at 1/s
        rep.connect_failures += 1

    await asyncio.gather(*(connect(d) for d in ids))
    rep.connected = len(devices)
    if not devices:
        return rep
    if on_phase is not None:
        on_phase("start")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0_us = time.time_ns() // 1000
    t0_us -= t0_us % TICK_US
    start = loop.time()
    slots = 50  # 5 ms apart
    per_slot = [devices[i::slots] for i in range(slots)]
    step = 0
    while loop.time() - start < duration_s:
        for d in per_slot[step % slots]:
            r = d.send_tick(templates, t0_us)
            if r is None:
                rep.skipped_ticks += 1
            else:
                rep.messages_sent += 1
                rep.frames_sent += r[0]
                rep.bytes_sent += r[1]
        step += 1
        delay = start + step * (TICK_US / 1e6 / slots) - loop.time()
        await asyncio.sleep(max(delay, 0))
    deadline = loop.time() + 5
    while any(d.sent for d in devices) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    rep.seconds = loop.time() - start
    if on_phase is not None:
        on_phase("end")
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    rep.generator_cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    lat = np.concatenate([np.asarray(d.latencies) for d in devices]) * 1e3
    rep.messages_acked = sum(d.acked for d in devices)
    rep.msgs_per_s = rep.messages_acked / rep.seconds
    if lat.size:
        rep.latency_p50_ms, rep.latency_p99_ms = (float(v) for v in np.percentile(lat, [50, 99]))
        rep.latency_max_ms = float(lat.max())
    for d in devices:
        if d.transport is not None:
            d.transport.write(b"\xe0\x00")  # DISCONNECT, normal
            d.transport.close()
    return rep


def main(argv: list[str] | None = None) -> int:
    """``python -m vitalcore.sim.load``: print a LoadReport (exit 1 if anything was lost)."""
    from .ward import load_credentials

    ap = argparse.ArgumentParser(prog="python -m vitalcore.sim.load",
                                 description="offer N devices' real traffic to an MQTT server")
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--accounts", required=True, help="device credentials (sim-devices.json)")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--window", type=int, default=64, help="messages in flight per device")
    a = ap.parse_args(argv)
    try:
        creds = load_credentials(a.accounts)
        coro = run_load(a.devices, a.host, a.port, creds, a.duration, window=a.window)
        try:
            import uvloop
            rep = uvloop.run(coro)
        except ImportError:
            rep = asyncio.run(coro)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(rep.line())
    print(asdict(rep))
    return 0 if rep.messages_acked == rep.messages_sent and not rep.connect_failures else 1


if __name__ == "__main__":
    sys.exit(main())
