"""Fault-injection harness: a real ``python -m vitalcore serve`` process, real clients.

Shared by the tests of this directory and by ``scripts/faults.py`` (which runs the same
scenarios with bigger counts). Nothing here mocks the system under test:

- :class:`ServerProcess` runs ``python -m vitalcore serve`` on a data directory as a
  subprocess and can ``kill -9`` and restart it on the same directory;
- :class:`MqttDevice` is a gmqtt client (MQTT 5) publishing QoS 1 or QoS 2 messages of
  NUMERICS frames with consecutive sequence numbers; it records the frames of every
  message whose PUBACK (QoS 1) or PUBCOMP after a successful PUBREC (QoS 2) arrived,
  keeps every unacknowledged message and sends it again after a reconnect (store and
  forward, as a wearable does);
- :class:`CoapDevice` POSTs the same kind of messages with aiocoap and records the
  frames of every 2.04 response;
- :class:`Ledger` holds what was sent and acknowledged, keyed by (device, stream, seq),
  and :func:`verify` reads the store back through :class:`~vitalcore.storage.store.Store`
  (history plus WAL replay) and counts acknowledged frames lost and frames stored twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gmqtt
from gmqtt.mqtt.constants import MQTTv50
from gmqtt.storage import PersistentStorage

from vitalcore import codec
from vitalcore.protocol import FrameType
from vitalcore.server import Accounts, device_name
from vitalcore.server.topics import up_topic

logging.getLogger("gmqtt").setLevel(logging.ERROR)  # reconnect chatter during kills

TS0 = 1_764_115_200_000_000  #: device time of sequence number 0 (µs)
STEP_US = 250_000  #: device time between consecutive frames of a device
NUMERICS = int(FrameType.NUMERICS) << 8  #: stream id of the NUMERICS stream (channel 0)
SECRET = "fault-secret"


def secret_of(device_id: int) -> str:
    return f"{SECRET}-{device_id:x}"


def provision(path: Path, device_ids: list[int]) -> None:
    """Write an accounts file for ``device_ids`` (cheap scrypt: tests, not production)."""
    acc = Accounts(log2_n=10)
    for d in device_ids:
        acc.add_device(d, secret_of(d))
    acc.save(str(path))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame(device_id: int, seq: int, ts_us: int | None = None) -> bytes:
    """One NUMERICS frame (HR 60-99 bpm, no alarm) at device time ``ts_us`` (default by seq)."""
    ts = TS0 + seq * STEP_US if ts_us is None else ts_us
    return codec.encode_numerics(device_id, seq, ts, [(1, float(60 + seq % 40))])


# ------------------------------------------------------------------------------ ledger
@dataclass
class Ledger:
    """Frames sent and acknowledged, as (device, stream, seq) keys."""

    sent: set[tuple[int, int, int]] = field(default_factory=set)
    acked: set[tuple[int, int, int]] = field(default_factory=set)
    ack_times: list[float] = field(default_factory=list)  #: monotonic time of each ack
    refusals: collections.Counter = field(default_factory=collections.Counter)

    def record_ack(self, keys: list[tuple[int, int, int]]) -> None:
        self.acked.update(keys)
        self.ack_times.append(time.monotonic())


@dataclass
class Verdict:
    """What :func:`verify` found."""

    acked: int
    found: int
    lost: list[tuple[int, int, int]]
    duplicated: list[tuple[int, int, int]]
    unknown: int  #: stored frames that were never sent (must be 0)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated and not self.unknown

    def row(self, scenario: str, runs: int) -> str:
        return (f"{scenario:<28} {runs:>5} {self.acked:>12,} {self.found:>12,} "
                f"{len(self.lost):>6} {len(self.duplicated):>6}  "
                f"{'PASS' if self.ok else 'FAIL'}")


TABLE_HEADER = (f"{'scenario':<28} {'runs':>5} {'frames acked':>12} {'frames found':>12} "
                f"{'lost':>6} {'dup':>6}  verdict")


def stored_keys(data_dir: Path, device_ids: list[int]) -> collections.Counter:
    """(device, stream, seq) -> rows stored, read back through a fresh Store."""
    from vitalcore.storage.store import Store

    out: collections.Counter = collections.Counter()
    with Store(data_dir, flush_interval_s=0) as store:
        for d in device_ids:
            seqs = store.read_numerics(d, 0, 2**62).column("seq").to_pylist()
            out.update((d, NUMERICS, s) for s in seqs)
    return out


def verify(ledger: Ledger, data_dir: Path, device_ids: list[int]) -> Verdict:
    """Compare the ledger with the store in ``data_dir`` (no server may hold it open)."""
    stored = stored_keys(data_dir, device_ids)
    lost = sorted(ledger.acked - stored.keys())
    dup = sorted(k for k, n in stored.items() if n > 1)
    unknown = sum(1 for k in stored if k not in ledger.sent)
    return Verdict(len(ledger.acked), sum(1 for k in ledger.acked if k in stored), lost, dup,
                   unknown)


# ------------------------------------------------------------------------------ server
class ServerProcess:
    """``python -m vitalcore serve`` on ``data_dir`` as a subprocess (log in ``log_path``).

    ``env`` adds environment variables (for example the WAL's slow-storage test hook).
    ``flush_interval_s`` runs ``serve_child.py`` instead (same Store, Server and CoAP
    endpoint, but the store flushes to Parquet that often; no alarm engine).
    """

    def __init__(self, data_dir: Path, accounts: Path, *, port: int | None = None,
                 coap_port: int | None = None, sync: str = "group", alarms: bool = False,
                 env: dict[str, str] | None = None, log_path: Path | None = None,
                 flush_interval_s: float | None = None) -> None:
        self.data_dir, self.accounts = Path(data_dir), Path(accounts)
        self.port = port or free_port()
        self.coap_port = coap_port
        self.sync, self.alarms = sync, alarms
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **(env or {}))
        self.log_path = log_path or self.data_dir.parent / f"{self.data_dir.name}-serve.log"
        self.flush_interval_s = flush_interval_s
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until the MQTT port (and the CoAP endpoint) accept."""
        if self.flush_interval_s is not None:
            args = [sys.executable, str(Path(__file__).with_name("serve_child.py")),
                    str(self.data_dir), str(self.accounts), str(self.port),
                    "-" if self.coap_port is None else str(self.coap_port),
                    str(self.flush_interval_s), self.sync]
        else:
            args = [sys.executable, "-m", "vitalcore", "serve", "--data", str(self.data_dir),
                    "--accounts", str(self.accounts), "--port", str(self.port),
                    "--sync", self.sync, "--log-level", "INFO"]
            if self.coap_port is not None:
                args += ["--coap-port", str(self.coap_port)]
            if not self.alarms:
                args.append("--no-alarms")
        header = f"---- start {self.starts}\n"
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            offset = log.tell()
            log.write(header.encode())
            log.flush()
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=log)
        self.starts += 1
        deadline = time.monotonic() + timeout
        marker = ("CoAP endpoint listening" if self.coap_port is not None
                  else "MQTT server listening")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if marker.encode() in f.read():
                    return
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"server did not start in {timeout} s: {self.tail()}")
            time.sleep(0.05)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""


# ------------------------------------------------------------------------------ devices
class _Outbox(PersistentStorage):
    """gmqtt's in-flight store, telling the device which message was acknowledged.

    gmqtt calls ``push_message`` for each QoS > 0 PUBLISH and again with the PUBREL when
    a successful PUBREC arrives; ``remove_message_by_mid`` on PUBACK, on PUBCOMP and on a
    refused PUBREC (>= 0x80). A QoS 2 message counts as acknowledged only if its PUBREL
    was stored before (PUBREC success, then PUBCOMP). ``clear`` runs when the server did
    not keep the session: gmqtt forgets the in-flight messages, the device resends them.
    """

    def __init__(self, device: MqttDevice) -> None:
        super().__init__()
        self.device = device
        self.staged: int | None = None  # message number of the PUBLISH being written
        self.mids: dict[int, int] = {}  # packet id -> message number
        self.released: set[int] = set()  # packet ids whose PUBREC succeeded

    def push_message(self, mid, raw_package) -> None:
        if mid in self.mids:
            if raw_package[0] & 0xF0 == 0x60:  # PUBREL replaces the PUBLISH
                self.released.add(mid)
        elif self.staged is not None:
            self.mids[mid] = self.staged
            self.staged = None
        super().push_message(mid, raw_package)

    def remove_message_by_mid(self, mid) -> None:
        super().remove_message_by_mid(mid)
        number = self.mids.pop(mid, None)
        released = mid in self.released
        self.released.discard(mid)
        if number is not None:
            if self.device.qos == 1 or released:
                self.device.acked(number)
            else:
                self.device.refused(number, "pubrec-refused")

    def clear(self) -> None:
        numbers = list(self.mids.values())
        self.mids.clear()
        self.released.clear()
        super().clear()
        self.device.requeue(numbers)


class MqttDevice:
    """A gmqtt device publishing ``frames_per_message`` NUMERICS frames per message.

    ``ts_of(seq)`` gives each frame's device time (default: :data:`STEP_US` per frame);
    the clock-jump scenario replaces it. At most ``window`` messages are unacknowledged;
    unacknowledged messages are resent after a reconnect, oldest first.
    """

    def __init__(self, device_id: int, port: int, ledger: Ledger, *, qos: int = 1,
                 frames_per_message: int = 4, window: int = 8,
                 ts_of: Callable[[int], int] | None = None, keepalive: int = 30,
                 reconnect_delay_s: float = 0.3) -> None:
        self.device_id, self.port, self.ledger, self.qos = device_id, port, ledger, qos
        self.frames_per_message, self.window = frames_per_message, window
        self.ts_of = ts_of or (lambda seq: TS0 + seq * STEP_US)
        self.next_seq = 0
        self.messages: dict[int, tuple[bytes, list[tuple[int, int, int]]]] = {}
        self.unsent: collections.deque[int] = collections.deque()  # message numbers
        self.in_flight: set[int] = set()
        self._numbers = 0
        self.connects = 0
        self.disconnects = 0
        self._outbox = _Outbox(self)
        self.client = gmqtt.Client(f"fault-{device_name(device_id)}", clean_session=True,
                                   persistent_storage=self._outbox, session_expiry_interval=0)
        self.client.set_auth_credentials(device_name(device_id), secret_of(device_id))
        self.client.set_config({"reconnect_retries": -1, "reconnect_delay": reconnect_delay_s})
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.keepalive = keepalive
        self._topic = up_topic(device_id)

    # gmqtt callbacks
    def _on_connect(self, client, flags, rc, properties) -> None:
        self.connects += 1
        self.pump()

    def _on_disconnect(self, client, packet, exc=None) -> None:
        self.disconnects += 1

    # outbox callbacks
    def acked(self, number: int) -> None:
        self.in_flight.discard(number)
        entry = self.messages.pop(number, None)
        if entry is not None:
            self.ledger.record_ack(entry[1])
        self.pump()

    def refused(self, number: int, why: str) -> None:
        self.ledger.refusals[why] += 1
        self.requeue([number])

    def requeue(self, numbers: list[int]) -> None:
        for n in sorted(numbers, reverse=True):
            if n in self.messages:
                self.in_flight.discard(n)
                self.unsent.appendleft(n)

    @property
    def online(self) -> bool:
        try:
            return self.client.is_connected
        except AttributeError:
            return False

    @property
    def pending(self) -> int:
        """Messages not acknowledged yet."""
        return len(self.messages)

    async def connect(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await asyncio.wait_for(self.client.connect("127.0.0.1", self.port,
                                                           version=MQTTv50,
                                                           keepalive=self.keepalive), 10)
                return
            except (OSError, TimeoutError, gmqtt.mqtt.handler.MQTTConnectError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def produce(self) -> None:
        """Make the next message (frames_per_message new frames) and send it if possible."""
        frames, keys = [], []
        for _ in range(self.frames_per_message):
            seq = self.next_seq
            self.next_seq += 1
            frames.append(frame(self.device_id, seq, self.ts_of(seq)))
            keys.append((self.device_id, NUMERICS, seq))
        self.ledger.sent.update(keys)
        number = self._numbers
        self._numbers += 1
        self.messages[number] = (b"".join(frames), keys)
        self.unsent.append(number)
        self.pump()

    def pump(self) -> None:
        while self.unsent and len(self.in_flight) < self.window and self.online:
            number = self.unsent.popleft()
            if number not in self.messages:
                continue
            self._outbox.staged = number
            try:
                self.client.publish(self._topic, self.messages[number][0], qos=self.qos)
            except Exception:  # the transport died under us: keep it for the reconnect
                self._outbox.staged = None
                self.unsent.appendleft(number)
                return
            if self._outbox.staged is not None:  # not stored by gmqtt: never sent
                self._outbox.staged = None
                self.unsent.appendleft(number)
                return
            self.in_flight.add(number)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(), 5)


class CoapDevice:
    """Posts one message at a time to the CoAP endpoint; frames count as acknowledged
    on 2.04. A timeout or error response sends the same message again."""

    def __init__(self, device_id: int, port: int, ledger: Ledger, *,
                 frames_per_message: int = 4, timeout_s: float = 2.0) -> None:
        self.device_id, self.port, self.ledger = device_id, port, ledger
        self.frames_per_message, self.timeout_s = frames_per_message, timeout_s
        self.next_seq = 0
        self.ctx = None
        self.current: tuple[bytes, list[tuple[int, int, int]]] | None = None

    @property
    def pending(self) -> int:
        return self.current is not None

    async def start(self) -> None:
        import aiocoap

        self.ctx = await aiocoap.Context.create_client_context()

    async def step(self) -> bool:
        """Send the current (or a new) message once; True if it was confirmed."""
        import aiocoap

        if self.current is None:
            frames, keys = [], []
            for _ in range(self.frames_per_message):
                frames.append(frame(self.device_id, self.next_seq))
                keys.append((self.device_id, NUMERICS, self.next_seq))
                self.next_seq += 1
            self.ledger.sent.update(keys)
            self.current = (b"".join(frames), keys)
        name = device_name(self.device_id)
        uri = f"coap://127.0.0.1:{self.port}/vc/v1/up?d={name}&k={secret_of(self.device_id)}"
        req = aiocoap.Message(code=aiocoap.Code.POST, uri=uri, payload=self.current[0])
        req.opt.content_format = 42
        try:
            resp = await asyncio.wait_for(self.ctx.request(req).response, self.timeout_s)
        except Exception as exc:  # timeout, refused: the server may be down
            self.ledger.refusals[f"coap-{type(exc).__name__}"] += 1
            return False
        if resp.code == aiocoap.Code.CHANGED:
            self.ledger.record_ack(self.current[1])
            self.current = None
            return True
        self.ledger.refusals[f"coap-{resp.code}"] += 1
        return False

    async def close(self) -> None:
        if self.ctx is not None:
            with contextlib.suppress(Exception):
                await self.ctx.shutdown()


async def produce_for(devices: list[MqttDevice], seconds: float, period_s: float,
                      stop: asyncio.Event | None = None) -> int:
    """Every ``period_s``, each device produces one message, unless its window and queue
    hold 4 windows of unacknowledged messages: the device is then pushed back and skips
    the message. Returns the messages skipped."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    skipped = 0
    while loop.time() < end and not (stop and stop.is_set()):
        for d in devices:
            if d.pending < 4 * d.window:
                d.produce()
            else:
                skipped += 1
                d.pump()
        await asyncio.sleep(period_s)
    return skipped


async def coap_loop(devices: list[CoapDevice], stop: asyncio.Event, period_s: float) -> None:
    async def one(d: CoapDevice) -> None:
        while not stop.is_set():
            ok = await d.step()
            await asyncio.sleep(period_s if ok else 0.2)

    await asyncio.gather(*(one(d) for d in devices))


async def drain(devices: list, timeout_s: float, coap: list[CoapDevice] = ()) -> bool:
    """Wait until no device has an unacknowledged message (CoAP devices retry theirs)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for d in devices:
            d.pump()
        for c in coap:
            if c.pending:
                await c.step()
        if not any(d.pending for d in devices) and not any(c.pending for c in coap):
            return True
        await asyncio.sleep(0.05)
    return False


def report(name: str, result) -> str:
    """The table row and the figures of a scenario, for assertion messages and -s runs."""
    text = f"{TABLE_HEADER}\n{result.verdict.row(name, result.runs)}\n{result.figures}"
    print(text)
    return text
