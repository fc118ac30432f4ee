"""A virtual wearable speaking MQTT through gmqtt (a real client library), in asyncio.

:class:`MqttDevice` connects with its device credentials (user name = 16-hex device id,
password = its secret; MQTT 5, session expiry 1 h so commands queued while it is
offline reach it later), publishes every 250 ms tick's frames back to back as one
QoS 1 PUBLISH on ``vc/v1/dev/<id>/up``, subscribes to ``vc/v1/dev/<id>/cmd`` and feeds
COMMAND frames to its :class:`~vitalcore.sim.wearable.ScenarioWearable`.

Store and forward: a message leaves the device's outbox only when its PUBACK arrives.
While the link is down, ticks go on producing frames (device time keeps running); they
wait in a bounded backlog (``backlog_bytes``, oldest dropped and counted beyond it) and
are sent after the reconnect with their original sequence numbers and timestamps,
before any newer frame, in messages of at most ``max_message_bytes``. Messages in
flight at the drop are retransmitted by gmqtt if the server kept the session, or
re-published by the device if it did not (gmqtt then reports them dropped through
:meth:`PersistentStorage.clear`). The server drops duplicates by sequence number.

Latency: each PUBLISH is timed from the moment it is written to the PUBACK
(retransmissions excluded); :meth:`MqttDevice.take_latencies` hands the samples over.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import gmqtt
from gmqtt.mqtt.constants import MQTTv50
from gmqtt.storage import PersistentStorage

from ..codec import FrameDecoder
from ..server.topics import cmd_topic, device_name, up_topic
from .wearable import ScenarioWearable

__all__ = ["MqttDevice", "DeviceCounters", "TICK_S"]

log = logging.getLogger("vitalcore.sim")

TICK_S = 0.25  #: one message per tick of device time


@dataclass
class DeviceCounters:
    """What one simulated device did (monotonic counts)."""

    messages_sent: int = 0  #: PUBLISH packets written (first transmissions)
    messages_acked: int = 0  #: PUBACKs received
    frames_sent: int = 0  #: frames in first transmissions
    republished: int = 0  #: messages sent again because the server lost the session
    backlogged_frames: int = 0  #: frames produced while offline (sent later)
    backlog_dropped_frames: int = 0  #: frames dropped because the backlog bound was hit
    connects: int = 0  #: successful CONNACKs
    reconnects: int = 0  #: CONNACKs after the first
    link_drops: int = 0  #: connections lost without our DISCONNECT
    commands: int = 0  #: COMMAND frames received (duplicates included)
    commands_answered: int = 0  #: commands acknowledged (first delivery of each id)
    bad_commands: int = 0  #: payloads on the cmd topic the decoder rejected


class _Outbox(PersistentStorage):
    """gmqtt's in-flight store, keeping each payload and its send time for the device."""

    def __init__(self, on_ack: Callable[[bytes, float | None], None],
                 on_lost: Callable[[list[bytes]], None]) -> None:
        super().__init__()
        self.staged: bytes | None = None  # payload of the PUBLISH being written now
        self._sent: dict[int, tuple[bytes, float | None]] = {}
        self._on_ack, self._on_lost = on_ack, on_lost

    def push_message(self, mid: int, raw_package: bytes) -> None:
        if mid not in self._sent and self.staged is not None:
            self._sent[mid] = (self.staged, time.perf_counter())
            self.staged = None
        super().push_message(mid, raw_package)

    def remove_message_by_mid(self, mid: int) -> None:
        entry = self._sent.pop(mid, None)
        super().remove_message_by_mid(mid)
        if entry is not None:
            payload, t0 = entry
            self._on_ack(payload, None if t0 is None else time.perf_counter() - t0)

    def mark_retransmitted(self) -> None:
        """Exclude what is in flight now from latency (it waited for a reconnect)."""
        self._sent = {mid: (p, None) for mid, (p, _) in self._sent.items()}

    def clear(self) -> None:  # the server had no session: gmqtt forgets the in-flight ones
        lost = [p for p, _ in self._sent.values()]
        self._sent.clear()
        super().clear()
        if lost:
            self._on_lost(lost)

    @property
    def in_flight(self) -> int:
        return len(self._sent)


class MqttDevice:
    """One simulated wearable on MQTT (see the module docstring).

    Parameters
    ----------
    wearable : ScenarioWearable
        Frame source and ground truth; its ``start_us`` should be the wall-clock time
        of :meth:`run` (the device timestamps frames with it).
    secret : str
        The device's MQTT password.
    host, port : str, int
        Broker address.
    max_in_flight : int
        Unacknowledged PUBLISH packets allowed (below the server's Receive Maximum).
    max_message_bytes : int
        Largest payload built when sending the backlog.
    backlog_bytes : int
        Bound on frames kept while offline (oldest dropped beyond it, counted).
    reconnect_delay_s : float
        Delay between reconnect attempts.
    """

    def __init__(self, wearable: ScenarioWearable, secret: str, host: str, port: int, *,
                 max_in_flight: int = 64, max_message_bytes: int = 64 * 1024,
                 backlog_bytes: int = 32 << 20, reconnect_delay_s: float = 1.0) -> None:
        self.wearable = wearable
        self.device_id = wearable.device_id
        self.name = device_name(self.device_id)
        self.host, self.port = host, port
        self.max_in_flight = max_in_flight
        self.max_message_bytes = max_message_bytes
        self.backlog_bytes = backlog_bytes
        self.counters = DeviceCounters()
        self._up = up_topic(self.device_id)
        self._latencies: list[float] = []
        self._backlog: collections.deque[bytes] = collections.deque()  # frames, in order
        self._backlog_size = 0
        self._decoder = FrameDecoder(keep_rejects=8)
        self._seen_commands: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._outbox = _Outbox(self._acked, self._lost)
        self._closing = False
        self._ever_connected = False
        self.client = gmqtt.Client(f"sim-{self.name}", clean_session=True,
                                   persistent_storage=self._outbox,
                                   session_expiry_interval=3600)
        self.client.set_auth_credentials(self.name, secret)
        self.client.set_config({"reconnect_retries": -1, "reconnect_delay": reconnect_delay_s})
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    # -- state ----------------------------------------------------------------------------
    @property
    def online(self) -> bool:
        """Connected with a CONNACK and the transport open."""
        try:
            return self.client.is_connected
        except AttributeError:  # never connected
            return False

    @property
    def in_flight(self) -> int:
        return self._outbox.in_flight

    @property
    def backlog_frames(self) -> int:
        return len(self._backlog)

    def take_latencies(self) -> list[float]:
        """Publish-to-PUBACK latencies (s) measured since the last call."""
        out, self._latencies = self._latencies, []
        return out

    # -- gmqtt callbacks ----------------------------------------------------------------------
    def _on_connect(self, client, flags, rc, properties) -> None:
        c = self.counters
        c.connects += 1
        if self._ever_connected:
            c.reconnects += 1
            self._outbox.mark_retransmitted()
        self._ever_connected = True
        client.subscribe(cmd_topic(self.device_id), qos=1)

    def _on_disconnect(self, client, packet, exc=None) -> None:
        if not self._closing:
            self.counters.link_drops += 1

    def _on_message(self, client, topic, payload, qos, properties) -> int:
        self.handle_command_payload(payload)
        return 0  # PUBACK reason: success (a bad command is counted, not refused)

    def handle_command_payload(self, payload: bytes) -> int:
        """Decode a cmd-topic payload and pass its COMMAND frames to the wearable.

        Frames for another device, damaged or non-COMMAND frames are counted in
        ``bad_commands``; a command id seen before (a QoS 1 redelivery) is not executed
        again. Returns the commands executed.
        """
        self.counters.commands += 1
        batch = self._decoder.decode(payload, self.device_id)
        cmds = batch.tables["commands"]
        if batch.rejects.any() or len(cmds["command_id"]) != batch.n_frames or not batch.n_frames:
            self.counters.bad_commands += 1
        done = 0
        for cid, kind, arg in zip(cmds["command_id"].tolist(), cmds["kind"].tolist(),
                                  cmds["arg"].tolist(), strict=True):
            if cid in self._seen_commands:  # a QoS 1 redelivery: answered already
                continue
            self._seen_commands[cid] = None
            if len(self._seen_commands) > 1024:
                self._seen_commands.popitem(last=False)
            self.wearable.command(cid, kind, arg)
            self.counters.commands_answered += 1
            done += 1
        return done

    def _acked(self, payload: bytes, latency: float | None) -> None:
        self.counters.messages_acked += 1
        if latency is not None:
            self._latencies.append(latency)

    def _lost(self, payloads: list[bytes]) -> None:
        # the server lost the session: send them again, before anything newer
        self.counters.republished += len(payloads)
        for p in reversed(payloads):
            self._backlog.appendleft(p)
            self._backlog_size += len(p)

    # -- sending ------------------------------------------------------------------------------
    def _publish(self, payload: bytes, n_frames: int) -> None:
        self._outbox.staged = payload
        self.client.publish(self._up, payload, qos=1)
        self._outbox.staged = None
        self.counters.messages_sent += 1
        self.counters.frames_sent += n_frames

    def _keep(self, frames: list[bytes]) -> None:
        self._backlog.extend(frames)
        self._backlog_size += sum(map(len, frames))
        self.counters.backlogged_frames += len(frames)
        while self._backlog_size > self.backlog_bytes:
            self._backlog_size -= len(self._backlog.popleft())
            self.counters.backlog_dropped_frames += 1

    def _send_backlog(self) -> None:
        """Send backlog frames while the in-flight window has room."""
        while self._backlog and self.in_flight < self.max_in_flight and self.online:
            parts, size = [], 0
            while self._backlog and size + len(self._backlog[0]) <= self.max_message_bytes:
                f = self._backlog.popleft()
                parts.append(f)
                size += len(f)
            if not parts:  # a single entry above the bound (a lost message): send it alone
                parts.append(self._backlog.popleft())
                size = len(parts[0])
            self._backlog_size -= size
            self._publish(b"".join(parts), len(parts))

    def _emit(self, frames: list[bytes]) -> None:
        if self._backlog or not self.online or self.in_flight >= self.max_in_flight:
            self._keep(frames)
            self._send_backlog()
        elif frames:
            self._publish(b"".join(frames), len(frames))

    # -- lifecycle ------------------------------------------------------------------------------
    async def connect(self, timeout: float = 10.0) -> None:
        """First connection (raises what gmqtt raises on refusal, or TimeoutError)."""
        await asyncio.wait_for(self.client.connect(self.host, self.port, version=MQTTv50,
                                                   keepalive=30), timeout)

    async def run(self, stop: asyncio.Event, drain_timeout_s: float = 5.0) -> None:
        """Produce and send ticks in real time until ``stop`` is set, then drain and close.

        Device time follows the wall clock: the tick ``[t, t + 250 ms)`` is sent when the
        wall clock passes its end; a late loop sends the missed ticks at once (each as
        its own message). After ``stop``, the backlog and in-flight messages get up to
        ``drain_timeout_s`` to be acknowledged before the DISCONNECT.
        """
        loop = asyncio.get_running_loop()
        w = self.wearable
        t0 = loop.time() - (time.time() - w.start_us / 1e6)  # loop time of start_us

        def tick_end() -> float:
            return t0 + (w.now_us - w.start_us) / 1e6 + TICK_S

        try:
            while not stop.is_set():
                delay = tick_end() - loop.time()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
                while loop.time() >= tick_end():
                    self._emit(w.next_tick())
                self._send_backlog()
            await self.drain(drain_timeout_s)
        finally:
            await self.close()

    async def drain(self, timeout: float) -> bool:
        """Wait until backlog and in-flight are empty (True) or ``timeout`` s pass."""
        deadline = time.monotonic() + timeout
        while self._backlog or self.in_flight:
            if time.monotonic() > deadline:
                return False
            self._send_backlog()
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        """DISCONNECT (idempotent)."""
        if self._closing:
            return
        self._closing = True
        try:
            await self.client.disconnect()
        except Exception as exc:  # the link may be down: nothing to say goodbye to
            log.debug("device %s: disconnect failed: %s", self.name, exc)

