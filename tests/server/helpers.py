"""Shared helpers of the server tests: accounts, frames, a raw MQTT client on our codec."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from vitalcore import codec
from vitalcore.mqtt import Connect, MqttParser, Properties, SubAck, Subscribe, Subscription, encode
from vitalcore.server import Accounts, Limits, Server, device_name

TS = 1_764_115_200_000_000
DEV = 0x12AB
DEV2 = 0x77
DEV_NAME = device_name(DEV)
DEV2_NAME = device_name(DEV2)
SECRET = "dev-secret"
SECRET2 = "dev2-secret"
TIMEOUT = 5.0


def make_store(root: os.PathLike, **kw):
    """A real :class:`vitalcore.storage.store.Store` in ``root`` (no flusher thread)."""
    from vitalcore.storage.store import Store

    kw.setdefault("flush_interval_s", 0)
    return Store(root, **kw)


def accounts() -> Accounts:
    """Two devices, a ward viewer of DEV, an integrator of every uplink, an operator."""
    acc = Accounts(log2_n=10)  # cheap hashes for tests; the default cost is 2**14
    acc.add_device(DEV, SECRET)
    acc.add_device(DEV2, SECRET2)
    acc.add_user("viewer", "viewer-pw", role="viewer", devices=[DEV])
    acc.add_user("integrator", "integrator-pw", role="viewer", grants=["vc/v1/dev/+/up"])
    acc.add_user("operator", "operator-pw", role="operator", devices=[DEV, DEV2])
    return acc


def command(seq: int, device: int = DEV) -> bytes:
    """A START_NIBP COMMAND frame for ``device``."""
    return codec.encode_command(device, seq, TS, 100 + seq, 1, 0)


async def wait_for(cond, timeout: float = 5.0) -> None:
    """Poll ``cond()`` until true (AssertionError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def subscribe(c: RawClient, *filters: str, qos: int = 1, pid: int = 1, **opts) -> list[int]:
    """SUBSCRIBE and return the SUBACK's reason codes."""
    c.send(Subscribe(pid, [Subscription(f, qos, **opts) for f in filters]))
    ack = await c.recv()
    assert isinstance(ack, SubAck) and ack.packet_id == pid
    return ack.reason_codes


def numerics(seq: int, device: int = DEV, hr: float = 72.0) -> bytes:
    return codec.encode_numerics(device, seq, TS + seq * 1000, [(1, hr)])


@contextlib.asynccontextmanager
async def serving(tmp_path, store=None, limits: Limits | None = None, **kw):
    """A started Server on a free port with a real Store (closed afterwards)."""
    own = store is None
    if own:
        store = make_store(tmp_path / "store", sync=kw.pop("sync", "group"))
    server = Server(store, kw.pop("accounts", None) or accounts(), port=0, limits=limits, **kw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        if own:
            store.close()


class RawClient:
    """A minimal MQTT client on our client-role codec, for exact assertions."""

    def __init__(self, reader, writer, level: int) -> None:
        self.reader, self.writer, self.level = reader, writer, level
        self.parser = MqttParser(role="client", protocol_level=level)
        self.packets: list = []

    @classmethod
    async def open(cls, port: int, level: int = 5) -> RawClient:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w, level)

    @classmethod
    async def connect(cls, port: int, username: str | None, password: str | None,
                      level: int = 5, client_id: str = "", clean: bool = True,
                      keep_alive: int = 0, will=None, props: Properties | None = None):
        """Connect; returns (client, CONNACK)."""
        c = await cls.open(port, level)
        c.send(Connect(level, client_id, clean, keep_alive, username,
                       None if password is None else password.encode(), will, props))
        return c, await c.recv()

    def send(self, packet) -> None:
        self.writer.write(encode(packet, self.level))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self, timeout: float = TIMEOUT):
        """Next packet; None at EOF."""
        while not self.packets:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.packets.extend(self.parser.feed(data))
        return self.packets.pop(0)

    async def closed_by_server(self, timeout: float = TIMEOUT) -> list:
        """Read until EOF; the packets received before it."""
        out = []
        while True:
            p = await self.recv(timeout)
            if p is None:
                return out
            out.append(p)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()
