"""Interop with real MQTT implementations over TCP on 127.0.0.1.

- gmqtt (a client library with its own encoders and parser) connects to a tiny broker
  built on our parser and encoders: our parser must decode everything gmqtt writes
  (CONNECT 3.1.1/5, SUBSCRIBE, PUBLISH QoS 0/1/2, PUBREL, PUBACK, PUBREC, PUBCOMP,
  DISCONNECT) and gmqtt must accept everything we write (CONNACK, SUBACK, PUBACK,
  PUBREC, PUBCOMP, PUBLISH QoS 0/1/2, PUBREL): both QoS 2 flows complete.
- mosquitto_pub / mosquitto_sub (Debian ``mosquitto-clients``) against the same tiny
  broker, and our client-role codec against the real ``mosquitto`` broker; skipped
  with a reason when the programs are absent.

Every run is bounded by a timeout; servers listen on 127.0.0.1 port 0 only.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest
import uvloop
from mqtt_helpers import CODECS

from vitalcore.mqtt import packets as P

TIMEOUT = 10.0
UP_TOPIC = "vc/v1/dev/000012ab/up"
CMD_TOPIC = "vc/v1/dev/000012ab/cmd"
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class TinyBroker(asyncio.Protocol):
    """A single-client broker on our codec: acknowledges everything, and after a
    SUBSCRIBE publishes one message per QoS (0, 1, 2) on ``CMD_TOPIC``."""

    def __init__(self, codec, v5_connack_props: bool = True) -> None:
        self.codec = codec
        self.parser = codec.MqttParser(role="server")
        self.received: list[P.Packet] = []
        self.raw = bytearray()
        self.errors: list[Exception] = []
        self.v5_props = v5_connack_props
        self.closed = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        self.raw += data
        try:
            packets = self.parser.feed(data)
        except Exception as e:  # recorded for the assertion, connection closed
            self.errors.append(e)
            self.transport.close()
            return
        for p in packets:
            self.received.append(p)
            self.handle(p)

    def send(self, packet: P.Packet) -> None:
        self.transport.write(self.codec.encode(packet, self.parser.protocol_level))

    def handle(self, p: P.Packet) -> None:
        c, lvl = self.codec, self.parser.protocol_level
        if isinstance(p, P.Connect):
            props = None
            if lvl == 5 and self.v5_props:
                props = P.Properties(receive_maximum=10, topic_alias_maximum=0,
                                     maximum_packet_size=1 << 20, retain_available=1,
                                     shared_subscription_available=1,
                                     assigned_client_identifier=None,
                                     user_properties=[("broker", "vitalcore-test")])
            self.send(P.ConnAck(False, 0, props))
        elif isinstance(p, P.Subscribe):
            self.send(P.SubAck(p.packet_id, [s.qos for s in p.subscriptions]))
            for qos in (0, 1, 2):
                self.transport.write(c.encode_publish(
                    CMD_TOPIC, f"cmd-qos{qos}".encode(), qos, packet_id=100 + qos if qos else 0,
                    protocol_level=lvl))
        elif isinstance(p, P.Publish):
            if p.qos == 1:
                self.transport.write(c.encode_puback(p.packet_id, protocol_level=lvl))
            elif p.qos == 2:
                self.transport.write(c.encode_pubrec(p.packet_id, protocol_level=lvl))
        elif isinstance(p, P.PubRel):
            self.transport.write(c.encode_pubcomp(p.packet_id, protocol_level=lvl))
        elif isinstance(p, P.PubRec):
            self.transport.write(c.encode_pubrel(p.packet_id, protocol_level=lvl))
        elif isinstance(p, P.PingReq):
            self.send(P.PingResp())
        elif isinstance(p, P.Unsubscribe):
            self.send(P.UnsubAck(p.packet_id, [0] * len(p.topic_filters) if lvl == 5 else []))
        elif isinstance(p, P.Disconnect):
            self.transport.close()

    def kinds(self) -> list[str]:
        return [type(p).__name__ for p in self.received]


async def _wait_for(cond, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _run(loop_name: str, coro_fn):
    loop = LOOPS[loop_name]()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro_fn(), TIMEOUT * 2))
    finally:
        loop.close()


# ---------------------------------------------------------------------------- gmqtt
@pytest.mark.parametrize("loop_name", sorted(LOOPS))
@pytest.mark.parametrize("level", [4, 5])
def test_gmqtt_client_against_our_codec(codec, level, loop_name):
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv50, MQTTv311

    async def main():
        loop = asyncio.get_running_loop()
        brokers: list[TinyBroker] = []
        server = await loop.create_server(
            lambda: brokers.append(TinyBroker(codec)) or brokers[-1], "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        got: list[tuple[str, bytes, int]] = []

        def on_message(client, topic, payload, qos, properties):
            got.append((topic, payload, qos))
            return 0

        client = gmqtt.Client("dev-000012ab")
        client.on_message = on_message
        try:
            await client.connect("127.0.0.1", port, keepalive=30,
                                 version=MQTTv50 if level == 5 else MQTTv311)
            b = brokers[0]
            client.subscribe(CMD_TOPIC, qos=2)
            for qos in (0, 1, 2):
                client.publish(UP_TOPIC, bytes([qos]) * 300, qos=qos)
            await _wait_for(lambda: len(got) == 3, "gmqtt to receive our 3 PUBLISHes")
            await _wait_for(lambda: client._persistent_storage.is_empty,
                            "gmqtt's QoS 1/2 publishes to be acknowledged")
            await _wait_for(lambda: "PubComp" in b.kinds() and "PubRel" in b.kinds(),
                            "both QoS 2 flows")
            await client.disconnect()
            await asyncio.wait_for(b.closed.wait(), TIMEOUT)
        finally:
            server.close()
            await server.wait_closed()
        return brokers[0], got

    b, got = _run(loop_name, main)
    assert not b.errors, b.errors
    connect = b.received[0]
    assert isinstance(connect, P.Connect)
    assert (connect.protocol_level, connect.client_id, connect.keep_alive) == (level, "dev-000012ab", 30)
    subs = [p for p in b.received if isinstance(p, P.Subscribe)]
    assert [s.topic_filter for s in subs[0].subscriptions] == [CMD_TOPIC]
    assert subs[0].subscriptions[0].qos == 2
    pubs = [p for p in b.received if isinstance(p, P.Publish)]
    assert [(p.topic, p.payload, p.qos) for p in pubs] == [
        (UP_TOPIC, bytes([q]) * 300, q) for q in (0, 1, 2)]
    assert all(p.packet_id for p in pubs[1:])
    # gmqtt acknowledged our QoS 1 and QoS 2 PUBLISHes and completed our QoS 2 flow
    assert [p.packet_id for p in b.received if isinstance(p, P.PubAck)] == [101]
    assert [p.packet_id for p in b.received if isinstance(p, P.PubRec)] == [102]
    assert [p.packet_id for p in b.received if isinstance(p, P.PubComp)] == [102]
    # gmqtt accepted our PUBREC (it answered with PUBREL)
    assert [p.packet_id for p in b.received if isinstance(p, P.PubRel)] == [pubs[2].packet_id]
    assert isinstance(b.received[-1], P.Disconnect)
    assert sorted(got) == [(CMD_TOPIC, f"cmd-qos{q}".encode(), q) for q in (0, 1, 2)]
    # the other implementation decodes the recorded byte stream identically
    for other in CODECS.values():
        assert other.MqttParser().feed(bytes(b.raw)) == b.received


# ------------------------------------------------------------------------ mosquitto
def _need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} not installed (Debian: apt-get install mosquitto-clients "
                    "mosquitto)")
    return path


async def _serve(codec):
    brokers: list[TinyBroker] = []
    server = await asyncio.get_running_loop().create_server(
        lambda: brokers.append(TinyBroker(codec)) or brokers[-1], "127.0.0.1", 0)
    return server, brokers, server.sockets[0].getsockname()[1]


async def _exec(*args: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out, err


@pytest.mark.parametrize("version, level", [("mqttv311", 4), ("mqttv5", 5)])
def test_mosquitto_pub_qos2_against_our_codec(codec, version, level):
    pub = _need("mosquitto_pub")

    async def main():
        server, brokers, port = await _serve(codec)
        try:
            rc, out, err = await _exec(pub, "-h", "127.0.0.1", "-p", str(port), "-V", version,
                                       "-i", "dev-7", "-q", "2", "-t", UP_TOPIC, "-m", "hello",
                                       "-D", "publish", "user-property", "k", "v"
                                       ) if level == 5 else await _exec(
                pub, "-h", "127.0.0.1", "-p", str(port), "-V", version, "-i", "dev-7",
                "-q", "2", "-t", UP_TOPIC, "-m", "hello")
        finally:
            server.close()
            await server.wait_closed()
        return rc, err, brokers[0]

    rc, err, b = asyncio.run(main())
    assert rc == 0, err  # mosquitto_pub exits 0 only after PUBREC -> PUBREL -> PUBCOMP
    assert not b.errors
    assert b.kinds() == ["Connect", "Publish", "PubRel", "Disconnect"]
    assert b.received[0].protocol_level == level and b.received[0].client_id == "dev-7"
    pub_pkt = b.received[1]
    assert (pub_pkt.topic, pub_pkt.payload, pub_pkt.qos) == (UP_TOPIC, b"hello", 2)
    if level == 5:
        assert pub_pkt.properties.user_properties == [("k", "v")]


@pytest.mark.parametrize("version, level", [("mqttv311", 4), ("mqttv5", 5)])
def test_mosquitto_sub_receives_our_publishes(codec, version, level):
    sub = _need("mosquitto_sub")

    async def main():
        server, brokers, port = await _serve(codec)
        try:
            result = await _exec(sub, "-h", "127.0.0.1", "-p", str(port), "-V", version,
                                 "-q", "2", "-t", "vc/v1/dev/+/cmd", "-C", "3", "-v")
            await asyncio.wait_for(brokers[0].closed.wait(), TIMEOUT)
        finally:
            server.close()
            await server.wait_closed()
        return result, brokers[0]

    (rc, out, err), b = asyncio.run(main())
    assert rc == 0, err
    assert not b.errors
    assert out.decode().splitlines() == [f"{CMD_TOPIC} cmd-qos{q}" for q in (0, 1, 2)]
    assert b.received[1] == P.Subscribe(
        b.received[1].packet_id, [P.Subscription("vc/v1/dev/+/cmd", 2)], b.received[1].properties)
    assert [type(p).__name__ for p in b.received if not isinstance(p, P.Disconnect)][2:] in (
        ["PubAck", "PubRec", "PubComp"], ["PubRec", "PubAck", "PubComp"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mosquitto_broker(tmp_path):
    """A real mosquitto broker on 127.0.0.1 (anonymous, no persistence)."""
    exe = _need("mosquitto")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not start: {proc.stderr.read().decode()}")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=TIMEOUT)


@pytest.mark.parametrize("level", [4, 5])
def test_our_client_codec_against_mosquitto_broker(codec, level, mosquitto_broker):
    """Our encoders as a client, our client-role parser decoding a real broker."""
    port = mosquitto_broker

    def exchange(sock, parser, data: bytes, want: int) -> list[P.Packet]:
        sock.sendall(data)
        got: list[P.Packet] = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < want:
            assert time.monotonic() < deadline, f"timed out, got {got}"
            chunk = sock.recv(65536)
            assert chunk, f"broker closed the connection after {got}"
            got += parser.feed(chunk)
        return got

    props = P.Properties(session_expiry_interval=0, receive_maximum=50) if level == 5 else None
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        parser = codec.MqttParser(role="client", protocol_level=level)
        (connack,) = exchange(sock, parser, codec.encode(
            P.Connect(level, "vc-test", True, 30, properties=props), level), 1)
        assert isinstance(connack, P.ConnAck) and connack.reason_code == 0
        sub = P.Subscribe(1, [P.Subscription("vc/v1/dev/+/up", 2)])
        (suback,) = exchange(sock, parser, codec.encode(sub, level), 1)
        assert suback == P.SubAck(1, [2])
        # QoS 2 publish to ourselves: PUBREC; after our PUBREL, PUBCOMP and the
        # broker's PUBLISH (mosquitto forwards an inbound QoS 2 message on PUBREL)
        payload = bytes(range(256)) * 2
        pub = codec.encode_publish(UP_TOPIC, payload, 2, packet_id=7, protocol_level=level)
        assert exchange(sock, parser, pub, 1) == [P.PubRec(7)]
        got = exchange(sock, parser, codec.encode_pubrel(7, protocol_level=level), 2)
        incoming = next(p for p in got if isinstance(p, P.Publish))
        assert (incoming.topic, incoming.payload, incoming.qos) == (UP_TOPIC, payload, 2)
        assert P.PubComp(7) in got
        got = exchange(sock, parser, codec.encode_pubrec(incoming.packet_id,
                                                         protocol_level=level), 1)
        assert got == [P.PubRel(incoming.packet_id)]
        sock.sendall(codec.encode_pubcomp(incoming.packet_id, protocol_level=level))
        (pong,) = exchange(sock, parser, codec.encode(P.PingReq(), level), 1)
        assert pong == P.PingResp()
        sock.sendall(codec.encode(P.Disconnect(), level))
