"""Device connections write through the send thread (vitalcore.server.sendq): acks in
order, users stay on the transport, a device that does not read costs only itself."""

from __future__ import annotations

import asyncio
import socket

from helpers import (
    DEV,
    DEV2,
    DEV2_NAME,
    DEV_NAME,
    SECRET,
    SECRET2,
    RawClient,
    numerics,
    serving,
    subscribe,
    wait_for,
)

from vitalcore.mqtt import Connect, PubAck, Publish, encode
from vitalcore.server import Limits, up_topic


async def publish_many(c: RawClient, device: int, n: int, first_pid: int = 1) -> list[int]:
    """Publish ``n`` QoS 1 uplinks at once; the packet ids of the PUBACKs, in order."""
    for i in range(n):
        c.send(Publish(up_topic(device), numerics(first_pid + i, device), qos=1,
                       packet_id=first_pid + i))
    got = []
    for _ in range(n):
        p = await c.recv()
        assert isinstance(p, PubAck) and p.reason_code == 0
        got.append(p.packet_id)
    return got


def test_device_connections_write_through_the_send_thread(run, tmp_path):
    async def main():
        async with serving(tmp_path) as srv:
            v5, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5)
            v4, _ = await RawClient.connect(srv.port, DEV2_NAME, SECRET2, 4)
            assert srv.stats()["send_thread_connections"] == 2
            assert await publish_many(v5, DEV, 50) == list(range(1, 51))
            assert await publish_many(v4, DEV2, 50) == list(range(1, 51))
            viewer, _ = await RawClient.connect(srv.port, "viewer", "viewer-pw", 5)
            assert await subscribe(viewer, up_topic(DEV)) == [1]
            stats = srv.stats()
            assert stats["send_thread_connections"] == 2  # users keep the transport
            assert stats["send_thread_attached"] == 2
            # the 100 PUBACKs (4 bytes each); the CONNACKs went before, on the transport
            await wait_for(lambda: srv.stats()["send_thread_bytes"] == 400)
            assert srv.store.stats()["frames"] == 100
            for c in (v5, v4, viewer):
                c.close()
            await wait_for(lambda: srv.stats()["send_thread_closed"] == 2)

    run(main())


def test_without_the_send_thread_everything_still_works(run, tmp_path):
    async def main():
        async with serving(tmp_path, limits=Limits(send_thread=False)) as srv:
            c, _ = await RawClient.connect(srv.port, DEV_NAME, SECRET, 5)
            assert await publish_many(c, DEV, 20) == list(range(1, 21))
            assert not any(k.startswith("send_thread") for k in srv.stats())
            c.close()

    run(main())


def test_a_device_that_does_not_read_is_closed_and_others_go_on(run, tmp_path):
    """A device floods PINGREQs and never reads the PINGRESPs: once the kernel's buffers
    and ``send_max_pending`` bytes are full, its connection is closed; another device
    publishes meanwhile and loses nothing."""
    async def main():
        async with serving(tmp_path, limits=Limits(send_max_pending=4096)) as srv:
            good, _ = await RawClient.connect(srv.port, DEV2_NAME, SECRET2, 5)
            loop = asyncio.get_running_loop()
            sock = socket.socket()  # read by no one but this test
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", srv.port))
            connect = Connect(5, "", True, 0, DEV_NAME, SECRET.encode(), None, None)
            await loop.sock_sendall(sock, encode(connect, 5))
            assert (await loop.sock_recv(sock, 64))[0] == 0x20  # CONNACK
            # the server's kernel buffer for this socket would grow to 4 MB: keep it small
            server_side, = (c.link.transport.get_extra_info("socket") for c in srv.broker.clients
                            if c.principal is not None and c.principal.device_id == DEV)
            server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            # PINGREQ x 100,000: 200 kB of PINGRESP back, never read
            await loop.sock_sendall(sock, b"\xc0\x00" * 100_000)
            await wait_for(lambda: srv.stats().get("send_thread_broken", 0) == 1)
            await wait_for(lambda: srv.stats().get("send_thread_aborts", 0) == 1)
            assert await publish_many(good, DEV2, 30) == list(range(1, 31))
            received = 0
            try:  # what the kernel had taken, then the end: EOF or a reset (an abort)
                while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), 10):
                    received += len(chunk)
            except ConnectionResetError:
                pass
            assert received < 200_000
            assert srv.store.stats()["frames"] == 30
            good.close()
            sock.close()

    run(main())
