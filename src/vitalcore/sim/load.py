"""The load generator: many devices at the real per-device rate, without gmqtt.

This is a traffic generator for benchmarks of the server, not a mock of anything under
test: it speaks plain MQTT 5 over TCP with vitalcore's own packet encoders (the server's
codec is tested for interoperability with gmqtt elsewhere) because gmqtt is too heavy
for thousands of devices (~220 µs of CPU per message in :mod:`vitalcore.sim.ward`).

Each device has its own connection and credentials (the ACL allows a device to publish
only on its own topic) and sends, like :class:`~vitalcore.sim.mqtt_device.MqttDevice`,
one PUBLISH (QoS 1 by default, or 0) per 250 ms holding that tick's frames: ECG lead II
at 250 Hz (62/63 samples alternately, timestamps exact to the sample), red and IR pleth
at 100 Hz, numerics at 1 Hz: 4 messages/s, ~3.2 frames per message. Devices are spread
evenly over the 250 ms period in 50 slots, 5 ms apart.

``batch_ticks`` (1, 2 or 4) puts that many consecutive ticks' frames in ONE PUBLISH, as a
BLE or NB-IoT gateway that batches would: with 4, a device sends one message per second
holding its 13 frames of that second (the same frames, sequence numbers and timestamps
as 4 separate messages), i.e. 1 message/s and 13 frames/s per device, devices spread
over the 1 s period in 50 slots 20 ms apart. Figures must say which variant they are:
the report gives messages/s and frames/s separately.

Cost. The generator shares the cores with the server under test, so it is built to be
cheap (:class:`_Fleet`): the PUBLISH packets of every device are encoded once per tick
kind (device id, topic and frame bytes fixed); per slot and tick, one numpy copy of
the slot's packets gets the tick's sequence numbers, timestamps and packet id patched in
as columns, and each frame's CRC-32C from the CRC of the tick's zero-id frame XOR a
per-device constant (CRC-32C is affine: equal-length inputs that differ only in the
device id bytes differ in CRC by the CRC of that difference). What is left per message
is one ``transport.write`` of a slice; PUBACKs are recognised from their 4 bytes without
the parser when nothing is buffered. ``processes > 1`` splits the devices over that many
generator processes (one event loop each).

A device whose acknowledgements do not keep up (``window`` messages in flight) skips
ticks, counted as ``skipped_ticks``: a non-zero count means the server (or the
generator) did not sustain the offered rate. With QoS 0 there are no acknowledgements:
at the end every device sends PINGREQ and waits for PINGRESP, which the server answers
only after every PUBLISH before it (MQTT processes a connection's packets in order), so
``msgs_per_s`` is the rate at which the server took the messages in.

``python -m vitalcore.sim.load --devices N --port P --accounts sim-devices.json
--duration S [--qos 0|1] [--processes K]`` prints a :class:`LoadReport`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import codec
from .. import protocol as P
from ..dsp.simulate import simulate_ecg
from ..errors import UsageError
from ..mqtt import MQTT_5, ConnAck, Connect, MqttParser, PingResp, PubAck, encode, encode_publish
from ..server.topics import device_name, up_topic

__all__ = ["LoadReport", "Interval", "run_load", "run_load_processes", "tick_templates",
           "message_templates", "BATCH_TICKS", "main"]

TICK_US = 250_000
TICKS_PER_S = 4
BATCH_TICKS = (1, 2, 4)  #: allowed ticks per PUBLISH
SLOTS = 50  #: sending slots per 250 ms period (5 ms apart)
_RETRYABLE = frozenset({0x89, 0x97, 0x9F})  # server busy, quota exceeded, rate exceeded
ECG_FS, PLETH_FS = 250, 100
FRAMES_PER_S = 13  #: per device: 4 ECG, 8 pleth (red, IR), 1 numerics
_ID = struct.Struct("<Q")
_SEQ_TS = struct.Struct("<Iq")
_CRC = struct.Struct("<I")
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"


@dataclass
class LoadReport:
    """What :func:`run_load` offered and what the server acknowledged (or took in, QoS 0)."""

    devices: int = 0
    connected: int = 0
    connect_failures: int = 0
    qos: int = 1
    processes: int = 1
    batch_ticks: int = 1  #: ticks (250 ms of frames) per PUBLISH: 1, 2 or 4
    seconds: float = 0.0
    offered_msgs_per_s: float = 0.0  #: devices x 4 / batch_ticks
    offered_frames_per_s: float = 0.0  #: devices x 13 (whatever the batching)
    messages_sent: int = 0
    messages_acked: int = 0  #: QoS 0: messages before a PINGRESP (taken in by the server)
    frames_sent: int = 0
    bytes_sent: int = 0
    skipped_ticks: int = 0
    msgs_per_s: float = 0.0  #: acknowledged (taken in) messages per second of the run
    frames_per_s: float = 0.0  #: frames of those messages per second of the run
    sent_msgs_per_s: float = 0.0  #: messages sent per second of the sending phase
    latency_p50_ms: float = float("nan")
    latency_p99_ms: float = float("nan")
    latency_max_ms: float = float("nan")
    generator_cpu_s: float = 0.0  #: CPU of the generator process(es) from first tick to end
    generator_sys_s: float = 0.0  #: of which system (kernel) time
    warmup_messages: int = 0  #: acknowledged (QoS 0: sent) in the unmeasured warm-up
    latencies_ms: np.ndarray | None = field(default=None, repr=False)

    def line(self) -> str:
        what = "acknowledged" if self.qos else "taken in (QoS 0, PINGRESP barrier)"
        return (f"{self.connected}/{self.devices} devices, {self.seconds:.1f} s: "
                f"{self.messages_acked:,}/{self.messages_sent:,} messages {what} "
                f"({self.msgs_per_s:,.0f}/s, {self.frames_per_s:,.0f} frames/s, "
                f"{self.batch_ticks} tick(s) per message; {self.sent_msgs_per_s:,.0f}/s sent of "
                f"{self.offered_msgs_per_s:,.0f}/s offered, "
                f"{self.frames_sent:,} frames, {self.bytes_sent / 1e6:.1f} MB), skipped ticks "
                f"{self.skipped_ticks:,}, publish->ack p50 {self.latency_p50_ms:.1f} ms p99 "
                f"{self.latency_p99_ms:.1f} ms, generator CPU {self.generator_cpu_s:.1f} s "
                f"({self.generator_cpu_s / max(self.seconds, 1e-9):.2f} s/s, "
                f"{self.processes} process(es))")

    def summary(self) -> dict:
        """The report as a dict, without the latency array."""
        d = asdict(self)
        d.pop("latencies_ms")
        return d


def tick_templates() -> list[tuple[bytes, list[int]]]:
    """The 4 tick messages of one second (device id 1, seq 0, ts 0 placeholders).

    Returns ``(message, frame offsets)`` for ticks k = 0..3; tick 0 also holds numerics.
    """
    # one beat of simulated lead II at 60 bpm (P, QRS with a 1.2 mV R wave, T, 20 µV of
    # noise), the same every second: usable ECG for the server's analysis (a bare
    # Gaussian R wave on a flat line held its minimum for 50 ms, which the quality check
    # rightly calls clipped: "no usable ECG" for every device of a load test)
    ecg_mv, _ = simulate_ecg(1.0, ECG_FS, 60.0, seed=7, hrv=0.0, wander_mv=0.0)
    ecg = np.round(ecg_mv * 1000.0 / 2.5).astype(np.int16)  # 2.5 µV per count
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


def message_templates(batch_ticks: int = 1) -> list[tuple[bytes, list[int], list[tuple[int, int]]]]:
    """The messages of one second when each holds ``batch_ticks`` consecutive ticks.

    Returns ``4 // batch_ticks`` entries ``(message, frame offsets, frame specs)``; the
    spec of a frame is ``(tick within the message, frame index in its tick)``, the
    arguments of its sequence number and timestamp (see :func:`tick_templates`).
    """
    if batch_ticks not in BATCH_TICKS:
        raise UsageError(f"batch_ticks must be one of {BATCH_TICKS}, got {batch_ticks!r}")
    ticks = tick_templates()
    out = []
    for m in range(TICKS_PER_S // batch_ticks):
        parts, offsets, specs = [], [], []
        at = 0
        for sub in range(batch_ticks):
            msg, offs = ticks[m * batch_ticks + sub]
            offsets += [at + o for o in offs]
            specs += [(sub, j) for j in range(len(offs))]
            parts.append(msg)
            at += len(msg)
        out.append((b"".join(parts), offsets, specs))
    return out


def _tick_fields(tick: int, frame: int, t0_us: int) -> tuple[int, int]:
    """(seq, ts_us) of frame ``frame`` (0 ECG, 1-2 pleth, 3 numerics) of tick ``tick``."""
    k, second = tick % 4, tick // 4
    if frame == 0:  # timestamp of the first ECG sample, exact to the sample
        return tick, t0_us + (second * ECG_FS + (k * ECG_FS) // 4) * 1_000_000 // ECG_FS
    if frame < 3:
        return tick, t0_us + tick * TICK_US
    return second, t0_us + tick * TICK_US


def _frame_ends(msg: bytes, offsets: Sequence[int]) -> list[int]:
    return [*offsets[1:], len(msg)]


class _Device(asyncio.Protocol):
    """One device's connection: CONNECT, then PUBLISHes; PUBACKs (or PINGRESP) counted."""

    def __init__(self, device_id: int, secret: str, window: int) -> None:
        self.device_id = device_id
        self.name = device_name(device_id)
        self.secret = secret
        self.window = window
        self.topic = up_topic(device_id)
        self.parser = MqttParser(role="client", protocol_level=MQTT_5)
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future = loop.create_future()
        self.pong: asyncio.Future = loop.create_future()
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
        # fast path: whole 4-byte PUBACKs (reason 0, no properties), nothing buffered
        if (len(data) & 3) == 0 and data[0] == 0x40 and data[1] == 2 and (
                not self.parser.pending_bytes) and data[0::4] == b"\x40" * (len(data) >> 2) \
                and data[1::4] == b"\x02" * (len(data) >> 2):
            sent = self.sent
            for i in range(0, len(data), 4):
                t0 = sent.pop(data[i + 2] << 8 | data[i + 3], None)
                if t0:  # 0.0: a warm-up message acknowledged in the measured run
                    self.acked += 1
                    self.latencies.append(now - t0)
            return
        for p in self.parser.feed(data):
            t = type(p)
            if t is PubAck:
                t0 = self.sent.pop(p.packet_id, None)
                if t0:
                    self.acked += 1
                    self.latencies.append(now - t0)
            elif t is PingResp:
                if not self.pong.done():
                    self.pong.set_result(now)
            elif t is ConnAck and not self.connack.done():
                self.connack.set_result(p.reason_code)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.connack.done():
            self.connack.set_result(-1)
        if not self.pong.done():
            self.pong.set_result(None)

    def send_tick(self, templates, t0_us: int) -> tuple[int, int] | None:
        """Send the next tick (one device, the plain way); None if the window is full.

        The reference of what :class:`_Fleet` sends for many devices at once.
        """
        if self.closed or len(self.sent) >= self.window:
            self.tick += 1
            return None
        msg, offsets = templates[self.tick % 4]
        buf = bytearray(msg)
        for i, (off, end) in enumerate(zip(offsets, _frame_ends(msg, offsets), strict=True)):
            _ID.pack_into(buf, off + 8, self.device_id)
            _SEQ_TS.pack_into(buf, off + 16, *_tick_fields(self.tick, i, t0_us))
            _CRC.pack_into(buf, end - 4, codec.crc32c(memoryview(buf)[off:end - 4]))
        pid = self.next_pid
        self.next_pid = pid % 65535 + 1
        self.sent[pid] = time.perf_counter()
        self.transport.write(encode_publish(self.topic, buf, 1, packet_id=pid,
                                            protocol_level=MQTT_5))
        self.tick += 1
        return len(offsets), len(buf)


class _Kind:
    """The packets of one tick kind (k = 0..3) for a group of devices, as one array."""

    def __init__(self, devices: Sequence[_Device], msg: bytes, offsets: Sequence[int],
                 specs: Sequence[tuple[int, int]], batch_ticks: int, qos: int) -> None:
        ends = _frame_ends(msg, offsets)
        self.specs = list(specs)
        self.batch_ticks = batch_ticks
        self.n_frames = len(offsets)
        self.payload_len = len(msg)
        packets = []
        for d in devices:
            buf = bytearray(msg)
            for off in offsets:
                _ID.pack_into(buf, off + 8, d.device_id)
                _SEQ_TS.pack_into(buf, off + 16, 0, 0)
            packets.append(encode_publish(d.topic, buf, qos, packet_id=1 if qos else 0,
                                          protocol_level=MQTT_5))
        self.size = len(packets[0])
        if any(len(x) != self.size for x in packets):
            raise AssertionError("packets of one tick kind differ in length")
        pay = self.size - len(msg)  # payload offset in the packet
        self.pid_at = pay - 3 if qos else -1  # packet id, then property length 0
        if qos and packets[0][self.pid_at:pay] != b"\x00\x01\x00":
            raise AssertionError("unexpected PUBLISH layout")
        self.base = np.frombuffer(b"".join(packets), np.uint8).reshape(len(devices), self.size)
        self.seq_at = [pay + off + 16 for off in offsets]
        self.crc_at = [pay + end - 4 for end in ends]
        # zero-id template (for the per-tick CRC) and per-device CRC deltas
        self.zero = bytearray(msg)
        for off in offsets:
            _ID.pack_into(self.zero, off + 8, 0)
        self.spans = list(zip(offsets, ends, strict=True))
        delta = np.empty((len(devices), self.n_frames), np.uint32)
        for j, (off, end) in enumerate(self.spans):
            n = end - 4 - off
            zero_crc = codec.crc32c(bytes(n))
            only_id = bytearray(n)
            for i, d in enumerate(devices):
                _ID.pack_into(only_id, 8, d.device_id)
                delta[i, j] = codec.crc32c(only_id) ^ zero_crc
        self.delta = delta

    def packets(self, message: int, t0_us: int, pid: int) -> bytes:
        """Every device's packet of message ``message`` (its first tick is ``message *
        batch_ticks``), concatenated (``size`` bytes each)."""
        zero = self.zero
        arr = self.base.copy()
        crc = np.empty(self.n_frames, np.uint32)
        first = message * self.batch_ticks
        for j, (off, end) in enumerate(self.spans):
            sub, frame = self.specs[j]
            seq, ts = _tick_fields(first + sub, frame, t0_us)
            _SEQ_TS.pack_into(zero, off + 16, seq, ts)
            crc[j] = codec.crc32c(memoryview(zero)[off:end - 4])
            at = self.seq_at[j]
            arr[:, at:at + 12] = np.frombuffer(zero, np.uint8, 12, off + 16)
        crcs = (self.delta ^ crc).astype("<u4").view(np.uint8)  # (devices, 4 * frames)
        for j, at in enumerate(self.crc_at):
            arr[:, at:at + 4] = crcs[:, 4 * j:4 * j + 4]
        if self.pid_at >= 0:
            arr[:, self.pid_at] = pid >> 8
            arr[:, self.pid_at + 1] = pid & 0xFF
        return arr.tobytes()


class _Fleet:
    """Sends the messages of many devices: devices in ``SLOTS`` slots, one array per slot
    and message kind (see the module docstring)."""

    def __init__(self, devices: Sequence[_Device], qos: int, window: int, t0_us: int,
                 batch_ticks: int = 1) -> None:
        templates = message_templates(batch_ticks)
        self.qos = qos
        self.window = window
        self.t0_us = t0_us
        self.period_s = batch_ticks * TICK_US / 1e6  #: one message per device per period
        self.epoch = 0.0  #: device time t0_us on the sender's loop clock (start_clock)
        self.slots = [list(devices[i::SLOTS]) for i in range(SLOTS)]
        self.kinds = [[_Kind(g, *t, batch_ticks, qos) for t in templates] if g else None
                      for g in self.slots]
        self.sent = self.frames = self.bytes = self.skipped = 0

    def start_clock(self, loop: asyncio.AbstractEventLoop) -> None:
        """Device time starts now: ``t0_us`` is the wall clock rounded down to a tick,
        ``epoch`` the same instant on ``loop``'s clock (step ``k`` is due at ``epoch +
        k`` slots)."""
        now_us = time.time_ns() // 1000
        self.t0_us = now_us - now_us % TICK_US
        self.epoch = loop.time() - (now_us % TICK_US) / 1e6

    def send(self, step: int) -> None:
        """Send slot ``step % SLOTS``'s packets of message ``step // SLOTS``."""
        s, message = step % SLOTS, step // SLOTS
        group = self.slots[s]
        if not group:
            return
        kinds = self.kinds[s]
        kind = kinds[message % len(kinds)]
        pid = message % 65535 + 1  # one message per device per period: unique in a window
        data = memoryview(kind.packets(message, self.t0_us, pid))
        size = kind.size
        now = time.perf_counter()
        qos, window = self.qos, self.window
        pos = 0
        sent = 0
        for d in group:
            if d.closed or (qos and len(d.sent) >= window):
                self.skipped += 1
            else:
                if qos:
                    d.sent[pid] = now
                d.transport.write(data[pos:pos + size])
                sent += 1
            pos += size
        self.sent += sent
        self.frames += sent * kind.n_frames
        self.bytes += sent * kind.payload_len


async def run_load(n: int, host: str, port: int, credentials: Mapping[int, str],
                   duration_s: float, *, window: int = 64, connect_concurrency: int = 16,
                   connect_retries: int = 20, qos: int = 1,
                   on_phase: Callable[[str], None] | None = None,
                   start_at: float | Callable[[], float] | None = None,
                   warmup_s: float = 0.0, batch_ticks: int = 1,
                   on_interval: Callable[[Interval], None] | None = None,
                   interval_s: float = 60.0) -> LoadReport:
    """Connect ``n`` devices and offer their 13 frames/s each for ``duration_s`` seconds.

    ``credentials`` maps device id -> secret (the first ``n`` ids are used). Returns
    the report once the last acknowledgements arrived (or 5 s after the end). ``qos``
    1 (default) or 0 (then a PINGREQ/PINGRESP barrier per device ends the run).
    ``batch_ticks`` ticks per PUBLISH (1: 4 messages/s per device; 4: one message/s
    holding the second's 13 frames, as a batching gateway sends).

    All connections come from one address; the server's failed-login limiter never
    refuses right logins (docs/server.md, "Authentication"). Connects run
    ``connect_concurrency`` at a time and one refused as busy (0x89, 0x97, 0x9F) is
    retried after a pause.

    ``warmup_s`` > 0 sends for that long first, unmeasured, on the same connections
    (the server allocates its per-stream state when it first sees a stream), and the
    devices go on sending, unmeasured, until the measured run starts: they never pause,
    so their clocks stay on the wall clock (a pause of a few seconds made every device's
    clock look that much slow to the server's clock-drift rule, and raised a drift alarm
    for every device). Warm-up messages still in flight at the start are acknowledged
    but neither counted nor timed. ``start_at`` (a ``time.time()`` value, or a callable
    returning one or None for "not yet", polled after the warm-up) delays the measured
    run until then, so that several generator processes start together; without a
    warm-up the devices' clocks start with the measured run. ``on_phase`` (optional) is called with
    ``"connected"`` once every device is connected, ``"ready"`` after the warm-up,
    ``"start"`` just before the first measured tick, and ``"end"`` once the
    acknowledgements drained (benchmarks sample the server's CPU there).

    ``on_interval`` (optional, for long runs such as ``scripts/soak.py``) is called every
    ``interval_s`` seconds of the measured run with an :class:`Interval`; the latencies
    it carries are then dropped (a soak cannot keep every latency of an hour), so the
    report's percentiles cover only what came after the last interval.
    """
    ids = sorted(credentials)[:n]
    if len(ids) < n or n < 1 or duration_s <= 0:
        raise UsageError(f"need 1 <= n <= {len(credentials)} devices and duration_s > 0")
    if qos not in (0, 1):
        raise UsageError(f"qos must be 0 or 1, got {qos!r}")
    if batch_ticks not in BATCH_TICKS:
        raise UsageError(f"batch_ticks must be one of {BATCH_TICKS}, got {batch_ticks!r}")
    loop = asyncio.get_running_loop()
    rep = LoadReport(devices=n, qos=qos, batch_ticks=batch_ticks,
                     offered_msgs_per_s=TICKS_PER_S / batch_ticks * n,
                     offered_frames_per_s=FRAMES_PER_S * n)
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
            await asyncio.sleep(1.0 + attempt)  # back off: the server is busy
        rep.connect_failures += 1

    await asyncio.gather(*(connect(d) for d in ids))
    rep.connected = len(devices)
    if not devices:
        return rep
    devices.sort(key=lambda d: d.device_id)
    fleet = _Fleet(devices, qos, window, 0, batch_ticks)
    fleet.start_clock(loop)
    if on_phase is not None:
        on_phase("connected")
    step = 0
    warm = warmup_s > 0
    if warm:  # same devices, same streams: the server meets them before the run
        step = await _send_for(fleet, loop, step, warmup_s)
    if on_phase is not None:
        on_phase("ready")
    if start_at is not None:
        at = start_at() if callable(start_at) else start_at
        while at is None:  # the other generator processes are not ready yet
            if warm:
                step = await _send_for(fleet, loop, step, 0.05)
            else:
                await asyncio.sleep(0.05)
            at = start_at()
        if warm:
            step = await _send_for(fleet, loop, step, at - time.time())
        else:
            await asyncio.sleep(max(0.0, at - time.time()))
    if warm:  # warm-up messages in flight: acknowledged later, not counted, not timed
        rep.warmup_messages = sum(d.acked + len(d.sent) for d in devices) if qos \
            else fleet.sent
        for d in devices:
            d.sent = dict.fromkeys(d.sent, 0.0)
            d.latencies.clear()
            d.acked = 0
        fleet.sent = fleet.frames = fleet.bytes = fleet.skipped = 0
    else:  # no tick sent yet: the devices' clocks start now
        fleet.start_clock(loop)
    if on_phase is not None:
        on_phase("start")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    start = loop.time()
    if on_interval is None:
        await _send_for(fleet, loop, step, duration_s)
    else:
        if not interval_s > 0:
            raise UsageError(f"interval_s must be > 0, got {interval_s!r}")
        left = duration_s
        while left > 0:
            chunk = min(interval_s, left)
            step = await _send_for(fleet, loop, step, chunk)
            left -= chunk
            on_interval(_interval(fleet, devices, loop.time() - start))
    rep.sent_msgs_per_s = fleet.sent / (loop.time() - start)
    deadline = loop.time() + 5
    if qos:
        while any(d.sent for d in devices) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        rep.messages_acked = sum(d.acked for d in devices)
    else:
        for d in devices:
            if not d.closed:
                d.transport.write(_PINGREQ)
        try:
            pongs = await asyncio.wait_for(asyncio.gather(*(d.pong for d in devices)),
                                           max(0.1, deadline - loop.time()))
        except TimeoutError:
            pongs = [None]
        rep.messages_acked = fleet.sent if all(p is not None for p in pongs) else 0
    rep.seconds = loop.time() - start
    if on_phase is not None:
        on_phase("end")
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    rep.generator_sys_s = r1.ru_stime - r0.ru_stime
    rep.generator_cpu_s = (r1.ru_utime - r0.ru_utime) + rep.generator_sys_s
    rep.messages_sent, rep.frames_sent = fleet.sent, fleet.frames
    rep.bytes_sent, rep.skipped_ticks = fleet.bytes, fleet.skipped
    rep.msgs_per_s = rep.messages_acked / rep.seconds
    rep.frames_per_s = rep.msgs_per_s * rep.frames_sent / max(rep.messages_sent, 1)
    if qos:
        lat = np.concatenate([np.asarray(d.latencies) for d in devices]) * 1e3
        _set_latency(rep, lat)
    for d in devices:
        if not d.closed:
            d.transport.write(_DISCONNECT)  # normal
            d.transport.close()
    return rep


async def _send_for(fleet: _Fleet, loop: asyncio.AbstractEventLoop, step: int,
                    seconds: float) -> int:
    """Send the slots (``SLOTS`` per period) due in the next ``seconds``, each at its
    time; return the next step.

    Step ``k`` is due at ``fleet.epoch + k * slot`` (loop time; ``epoch`` is the device
    time ``t0_us`` on the loop's clock). A slot that is late (the generator was starved
    of CPU) is sent as soon as it can be: device time (the messages' timestamps) stays
    on the wall clock, as a real device's does, instead of falling behind at every stall.
    """
    slot_s = fleet.period_s / SLOTS
    until = loop.time() + seconds
    while fleet.epoch + step * slot_s < until:
        fleet.send(step)
        step += 1
        await asyncio.sleep(max(fleet.epoch + step * slot_s - loop.time(), 0))
    return step


@dataclass
class Interval:
    """Cumulative counts of a measured run so far, and the latencies since the last one."""

    elapsed_s: float  #: since the start of the measured run
    messages_sent: int
    messages_acked: int  #: QoS 1; 0 with QoS 0
    frames_sent: int
    frames_acked: int  #: frames of the acknowledged messages (QoS 1)
    in_flight: int  #: messages sent and not yet acknowledged
    skipped_ticks: int
    latencies_ms: np.ndarray  #: float32, publish-to-PUBACK of the messages acked since


def _interval(fleet: _Fleet, devices: Sequence[_Device], elapsed_s: float) -> Interval:
    acked = sum(d.acked for d in devices)
    frames_per_msg = fleet.frames / max(fleet.sent, 1)
    lat = np.fromiter((x for d in devices for x in d.latencies), np.float64)
    for d in devices:
        d.latencies.clear()
    return Interval(elapsed_s, fleet.sent, acked, fleet.frames, round(acked * frames_per_msg),
                    sum(len(d.sent) for d in devices), fleet.skipped,
                    (lat * 1e3).astype(np.float32))


def _set_latency(rep: LoadReport, lat: np.ndarray) -> None:
    rep.latencies_ms = lat
    if lat.size:
        rep.latency_p50_ms, rep.latency_p99_ms = (float(v) for v in np.percentile(lat, [50, 99]))
        rep.latency_max_ms = float(lat.max())


def _child(conn, n: int, host: str, port: int, credentials: dict[int, str],
           duration_s: float, kw: dict) -> None:
    """A generator process: connect (and warm up), report "ready", wait for the start
    time, run."""
    def on_phase(phase: str) -> None:
        if phase == "ready":
            conn.send(("ready", None))

    async def go() -> LoadReport:
        return await run_load(n, host, port, credentials, duration_s, on_phase=on_phase,
                              start_at=lambda: conn.recv() if conn.poll() else None, **kw)

    try:
        import uvloop
        rep = uvloop.run(go())
    except ImportError:
        rep = asyncio.run(go())
    conn.send(("done", rep))
    conn.close()


def run_load_processes(n: int, host: str, port: int, credentials: Mapping[int, str],
                       duration_s: float, *, processes: int = 2,
                       on_phase: Callable[[str], None] | None = None,
                       **kw) -> LoadReport:
    """:func:`run_load` split over ``processes`` generator processes (blocking call).

    Devices are dealt out in turn; every process connects its devices (and warms up),
    then all start their measured run at the same wall-clock time. The report adds up the processes'
    counts and CPU; the latency percentiles are over every message. ``on_phase`` gets
    ``"start"`` just before the common start time and ``"end"`` once every process
    finished (keyword arguments as :func:`run_load`).
    """
    ids = sorted(credentials)[:n]
    if len(ids) < n or not 1 <= processes <= n:
        raise UsageError(f"need 1 <= processes <= n <= {len(credentials)}")
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for i in range(processes):
        mine = {d: credentials[d] for d in ids[i::processes]}
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(child, len(mine), host, port, mine,
                                                duration_s, kw), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        for pipe in pipes:
            if not pipe.poll(600) or pipe.recv()[0] != "ready":
                raise RuntimeError("a generator process did not connect its devices")
        start_at = time.time() + 0.5
        for pipe in pipes:
            pipe.send(start_at)
        time.sleep(max(0.0, start_at - time.time()))
        if on_phase is not None:
            on_phase("start")
        reps = []
        for pipe in pipes:
            if not pipe.poll(duration_s + 120):
                raise RuntimeError("a generator process did not finish")
            reps.append(pipe.recv()[1])
        if on_phase is not None:
            on_phase("end")
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    out = LoadReport(devices=n, qos=reps[0].qos, processes=processes,
                     batch_ticks=reps[0].batch_ticks,
                     offered_msgs_per_s=sum(r.offered_msgs_per_s for r in reps),
                     offered_frames_per_s=sum(r.offered_frames_per_s for r in reps))
    for r in reps:
        for name in ("connected", "connect_failures", "messages_sent", "messages_acked",
                     "frames_sent", "bytes_sent", "skipped_ticks", "generator_cpu_s",
                     "generator_sys_s", "warmup_messages"):
            setattr(out, name, getattr(out, name) + getattr(r, name))
    out.seconds = max(r.seconds for r in reps)
    out.sent_msgs_per_s = sum(r.sent_msgs_per_s for r in reps)
    out.msgs_per_s = out.messages_acked / out.seconds if out.seconds else 0.0
    out.frames_per_s = out.msgs_per_s * out.frames_sent / max(out.messages_sent, 1)
    if out.qos:
        _set_latency(out, np.concatenate([r.latencies_ms for r in reps
                                          if r.latencies_ms is not None]))
    return out


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
    ap.add_argument("--qos", type=int, default=1, choices=(0, 1))
    ap.add_argument("--processes", type=int, default=1, help="generator processes")
    ap.add_argument("--batch-ticks", type=int, default=1, choices=BATCH_TICKS,
                    help="250 ms ticks per PUBLISH (4: one message/s per device)")
    a = ap.parse_args(argv)
    try:
        creds = load_credentials(a.accounts)
        if a.processes > 1:
            rep = run_load_processes(a.devices, a.host, a.port, creds, a.duration,
                                     processes=a.processes, window=a.window, qos=a.qos,
                                     batch_ticks=a.batch_ticks)
        else:
            coro = run_load(a.devices, a.host, a.port, creds, a.duration, window=a.window,
                            qos=a.qos, batch_ticks=a.batch_ticks)
            try:
                import uvloop
                rep = uvloop.run(coro)
            except ImportError:
                rep = asyncio.run(coro)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(rep.line())
    print(rep.summary())
    return 0 if rep.messages_acked == rep.messages_sent and not rep.connect_failures else 1


if __name__ == "__main__":
    sys.exit(main())
