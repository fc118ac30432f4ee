"""Hostile and unlucky clients cost only themselves: malformed and oversize packets,
keep-alive timeouts, CONNECT floods, PUBLISH floods, slow consumers; plus the TLS
listener."""

from __future__ import annotations

import asyncio
import datetime
import math
import ssl
import time

import gmqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import (
    DEV,
    DEV2,
    DEV2_NAME,
    DEV_NAME,
    SECRET,
    SECRET2,
    RawClient,
    command,
    numerics,
    serving,
    subscribe,
    wait_for,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore.mqtt import Connect, Disconnect, PubAck, Publish, Will, encode
from vitalcore.server import Limits, cmd_topic, up_topic


async def publish_ok(c: RawClient, pid: int, seq: int | None = None) -> float:
    """Publish one QoS 1 uplink and wait for its PUBACK; the round trip in s."""
    t0 = time.monotonic()
    c.send(Publish(up_topic(DEV), numerics(pid if seq is None else seq), qos=1, packet_id=pid))
    p = await c.recv()
    assert isinstance(p, PubAck) and p.packet_id == pid and p.reason_code == 0
    return time.monotonic() - t0


def test_keepalive_timeout_disconnects_and_fires_will(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            w, _ = await RawClient.connect(srv.port, "viewer", "viewer-pw", 5, keep_alive=0)
            await subscribe(w, cmd_topic(DEV) + "/#")
            will = Will(up_topic(DEV), numerics(77), qos=0)
            t0 = time.monotonic()
            c, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, keep_alive=1, will=will)
            got = await c.closed_by_server(timeout=4)
            assert [p.reason_code for p in got] == [0x8D]
            assert 1.4 <= time.monotonic() - t0 < 3.0
            assert srv.stats()["keepalive_timeouts"] == 1
            assert srv.stats()["wills_published"] == 1
            # a client that pings stays connected past 1.5x its keep-alive
            c, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4, keep_alive=1)
            for _ in range(4):
                await asyncio.sleep(0.5)
                c.send_raw(b"\xc0\x00")
                assert (await c.recv()).packet_type == 13  # PINGRESP
            c.close()
            w.close()

    run(main())


def test_oversize_packet_disconnects_only_that_client(run, tmp_path):
    async def main():
        async with serving(tmp_path, limits=Limits(max_packet_size=1024)) as srv:
            good, ack = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5)
            assert ack.properties.maximum_packet_size == 1024
            for level in (5, 4):
                bad, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, level, f"b{level}")
                # announce 1 MB; send only the header: the server must not wait for the body
                bad.send_raw(b"\x32\x80\x80\x40")
                got = await bad.closed_by_server()
                assert [p.reason_code for p in got] == ([0x95] if level == 5 else [])
            assert srv.stats()["protocol_error_0x95"] == 2
            assert await publish_ok(good, 1) < 2
            assert srv.store.stats()["frames"] == 1
            good.close()

    run(main())


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(junk=st.binary(min_size=1, max_size=200), after_connect=st.booleans())
def test_random_bytes_cost_only_that_connection(run, tmp_path_factory, junk, after_connect):
    """Random bytes (hypothesis) on a raw socket, before or after a valid CONNECT: the
    broker never fails, the connection ends when its peer does, and another device keeps
    publishing with acknowledgements."""
    tmp = tmp_path_factory.mktemp("fuzz")

    async def main():
        async with serving(tmp) as srv:
            good, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "good")
            await publish_ok(good, 1)
            bad = await RawClient.open(srv.port, 4)
            if after_connect:
                bad.send(Connect(4, "bad", True, 0, DEV_NAME, SECRET.encode()))
                assert (await bad.recv()).reason_code == 0
            bad.send_raw(junk)
            await publish_ok(good, 2)
            bad.writer.write_eof()
            await bad.closed_by_server(timeout=3)
            await wait_for(lambda: len(srv.broker.clients) == 1)
            await publish_ok(good, 3)
            assert srv.store.stats()["frames"] == 3
            good.close()

    run(main())


def test_malformed_packet_is_counted_and_disconnected(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            good, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4, "good")
            cases = ((5, b"\x00\x00", 0x81), (4, b"\xf0\x00", 0x81), (5, b"\x62\x00", 0x81),
                     (4, b"\x30\x01\x00", 0x81))
            for i, (level, junk, reason) in enumerate(cases):
                bad, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, level, "bad")
                bad.send(Publish(up_topic(DEV), numerics(100 + i), qos=1, packet_id=1))
                bad.send_raw(junk)  # after a good PUBLISH in the same stream
                got = await bad.closed_by_server()
                # the PUBLISH before the fault is stored (its PUBACK may not make it out)
                disc = [p.reason_code for p in got if isinstance(p, Disconnect)]
                assert disc == ([reason] if level == 5 else [])
                await publish_ok(good, i + 1)
            # before CONNECT: a v3 CONNACK 0x01 for an unknown protocol level, else a close
            bad = await RawClient.open(srv.port, 4)
            bad.send_raw(b"\x10\x0a\x00\x04MQTT\x07\x02\x00\x00\x00\x00")
            assert [p.reason_code for p in await bad.closed_by_server()] == [1]
            assert srv.stats()["protocol_error_0x81"] == 4
            assert srv.stats()["protocol_error_0x84"] == 1
            assert srv.store.stats()["frames"] == 8
            good.close()

    run(main())


def test_connect_flood_does_not_starve_connected_device(run, tmp_path):
    """1000 CONNECTs with a wrong password (50 at a time) while a device publishes QoS 1:
    its acknowledgements keep coming; after the burst the address is rate limited."""

    async def main():
        async with serving(tmp_path) as srv:
            dev, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "steady")
            connect = encode(Connect(4, "", True, 0, DEV_NAME, b"guess"), 4)
            codes: list[int] = []

            async def attempt():
                r, w = await asyncio.open_connection("127.0.0.1", srv.port)
                w.write(connect)
                data = await asyncio.wait_for(r.read(16), 5)
                codes.append(data[3] if len(data) >= 4 else -1)
                w.close()

            async def flood():
                for _ in range(20):
                    await asyncio.gather(*(attempt() for _ in range(50)))

            t_flood = time.monotonic()
            task = asyncio.create_task(flood())
            rtts = []
            pid = 0
            while not task.done():
                pid += 1
                rtts.append(await publish_ok(dev, pid))
                await asyncio.sleep(0.005)
            await task
            t_flood = time.monotonic() - t_flood
            assert len(codes) == 1000 and set(codes) == {4, 5}  # bad password, not authorized
            st = srv.stats()
            # burst 20, plus the bucket's refill (1 token/s) while the flood lasted
            assert 20 <= st["auth_failures"] <= 20 + math.ceil(t_flood), t_flood
            assert st["auth_failures"] + st["auth_rate_limited"] == 1000
            assert pid >= 3 and max(rtts) < 1.0, (pid, max(rtts))
            await publish_ok(dev, pid + 1)  # the rate limit does not touch connected clients
            dev.close()

    run(main())


def test_publish_flood_is_throttled_not_cut_off(run, tmp_path):
    """450 QoS 0 uplinks at once against publish_rate 200/s, burst 50: the flooder is
    slowed to the rate (>= 2 s for the 400 beyond the burst), loses nothing and stays
    connected; another device's acknowledgements keep coming meanwhile."""

    async def main():
        async with serving(tmp_path, limits=Limits(publish_rate=200.0, publish_burst=50)) as srv:
            flood, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5, "flood")
            other, _ = await RawClient.connect(srv.port, DEV2_NAME, SECRET2, 5, "steady")
            n = 450
            t0 = time.monotonic()
            flood.send_raw(b"".join(encode(Publish(up_topic(DEV), numerics(i)), 5)
                                    for i in range(1, n + 1)) + b"\xc0\x00")  # + PINGREQ
            pong = asyncio.create_task(flood.recv(timeout=30))
            rtts, pid = [], 0
            while not pong.done():
                pid += 1
                t = time.monotonic()
                other.send(Publish(up_topic(DEV2), numerics(pid, DEV2), qos=1, packet_id=pid))
                ack = await other.recv()
                assert isinstance(ack, PubAck) and ack.packet_id == pid
                rtts.append(time.monotonic() - t)
                await asyncio.sleep(0.05)
            assert (await pong).packet_type == 13  # PINGRESP: every PUBLISH before it taken
            took = time.monotonic() - t0
            assert took >= (n - 50) / 200.0 - 0.05, took
            st = srv.stats()
            assert st["publish_rate_pauses"] >= 1
            assert st["uplink_frames"] == n + pid  # nothing of the flood lost
            assert pid >= 10 and max(rtts) < 1.0, (pid, max(rtts))
            flood.send(Publish(up_topic(DEV), numerics(n + 1), qos=1, packet_id=1))
            ack = await flood.recv()  # still connected
            assert isinstance(ack, PubAck) and ack.reason_code == 0
            flood.close()
            other.close()

    run(main())


def test_slow_consumer_qos0_dropped_then_disconnected(run, tmp_path):
    async def main():
        limits = Limits(max_queued=10, max_inflight=2)
        async with serving(tmp_path, limits=limits) as srv:
            slow_id = "slow"
            slow, _ = await RawClient.connect(srv.port, "viewer", "viewer-pw", 5, slow_id)
            await subscribe(slow, cmd_topic(DEV), qos=1)
            b = srv.broker
            for i in range(3):  # 2 in flight (never acknowledged), the 3rd queued
                b.publish(cmd_topic(DEV), command(i), qos=1)
            for i in range(9):  # QoS 0 behind it fills the queue (10)
                b.publish(cmd_topic(DEV), command(10 + i), qos=0)
            assert len(b.sessions[("viewer", slow_id)].queue) == 10
            b.publish(cmd_topic(DEV), command(50), qos=0)  # queue full: new QoS 0 dropped
            assert b.counters["dropped_qos0"] == 1
            for i in range(9):  # each QoS 1 evicts the oldest queued QoS 0
                b.publish(cmd_topic(DEV), command(100 + i), qos=1)
            assert b.counters["dropped_qos0"] == 10 and "slow_consumer_disconnects" not in b.counters
            b.publish(cmd_topic(DEV), command(200), qos=1)  # nothing left to evict
            got = await slow.closed_by_server()
            assert got[-1].packet_type == 14 and got[-1].reason_code == 0x97
            assert [p.payload for p in got[:2]] == [command(0), command(1)]
            assert b.counters["slow_consumer_disconnects"] == 1 and b.counters["quota_drops"] == 1

    run(main())


def _self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_listener(run, tmp_path):
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)

    async def main():
        async with serving(tmp_path, tls_port=0, ssl_context=server_ctx) as srv:
            c = gmqtt.Client("tls-dev")
            c.set_auth_credentials(DEV_NAME, SECRET)
            await c.connect("localhost", srv.tls_port, ssl=client_ctx, version=5)
            c.publish(up_topic(DEV), numerics(1), qos=1)
            await wait_for(lambda: srv.store.stats()["frames"] == 1)
            await asyncio.wait_for(c._persistent_storage.wait_empty(), 5)
            await c.disconnect()
            # plain MQTT on the TLS port fails the handshake and costs nothing else
            r, w = await asyncio.open_connection("127.0.0.1", srv.tls_port)
            w.write(encode(Connect(4, "x", True, 0, DEV_NAME, SECRET.encode()), 4))
            assert await asyncio.wait_for(r.read(100), 5) == b""
            w.close()
            plain, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 4)
            await publish_ok(plain, 1, seq=2)
            plain.send(Disconnect())
            assert srv.store.stats()["frames"] == 2

    run(main())
