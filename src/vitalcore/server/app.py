"""The embedded MQTT server: listeners (TCP, optional TLS) around one :class:`Broker`."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from ..errors import UsageError
from .auth import Accounts, LoginLimiter
from .broker import Broker, Limits
from .connection import MqttConnection
from .ingest import IngestSink

__all__ = ["Server"]

log = logging.getLogger("vitalcore.server")


class Server:
    """MQTT 3.1.1/5.0 server ingesting device uplinks into ``store``.

    Parameters
    ----------
    store : IngestSink
        Usually a :class:`~vitalcore.storage.store.Store`; the server does not close it.
    accounts : Accounts
        Device and user accounts (:class:`~vitalcore.server.auth.Accounts`).
    host : str
        Address to listen on (default loopback only).
    port : int
        Plain MQTT port; 0 picks a free port (see :attr:`port` after :meth:`start`);
        ``None`` for no plain listener.
    tls_port : int, optional
        MQTT over TLS port (0 picks one); requires ``ssl_context``.
    ssl_context : ssl.SSLContext, optional
        Server-side TLS context (certificate chain loaded).
    limits : Limits, optional
    limiter : LoginLimiter, optional

    Examples
    --------
    >>> async def main(store, accounts):                          # doctest: +SKIP
    ...     server = Server(store, accounts, port=1883)
    ...     await server.start()
    ...     try:
    ...         await asyncio.Event().wait()
    ...     finally:
    ...         await server.stop()
    """

    def __init__(self, store: IngestSink, accounts: Accounts, host: str = "127.0.0.1",
                 port: int | None = 1883, tls_port: int | None = None,
                 ssl_context: ssl.SSLContext | None = None, *, limits: Limits | None = None,
                 limiter: LoginLimiter | None = None) -> None:
        if tls_port is not None and ssl_context is None:
            raise UsageError("tls_port needs an ssl_context")
        if port is None and tls_port is None:
            raise UsageError("no listener: give port and/or tls_port")
        self.store = store
        self.accounts = accounts
        self.host = host
        self._port = port
        self._tls_port = tls_port
        self.ssl_context = ssl_context
        self.limits = limits or Limits()
        self.limiter = limiter
        self.broker: Broker | None = None
        self._servers: list[asyncio.Server] = []

    @property
    def port(self) -> int | None:
        """The bound plain port (after :meth:`start`)."""
        return self._bound(0, self._port)

    @property
    def tls_port(self) -> int | None:
        """The bound TLS port (after :meth:`start`)."""
        return self._bound(1 if self._port is not None else 0, self._tls_port)

    def _bound(self, i: int, configured: int | None) -> int | None:
        if configured is None or len(self._servers) <= i:
            return configured
        return self._servers[i].sockets[0].getsockname()[1]

    async def start(self) -> None:
        """Create the broker and start listening."""
        if self.broker is not None:
            raise UsageError("server already started")
        self.broker = Broker(self.store, self.accounts, limits=self.limits, limiter=self.limiter)
        loop = asyncio.get_running_loop()

        def factory() -> MqttConnection:
            return MqttConnection(self.broker)

        if self._port is not None:
            self._servers.append(await loop.create_server(factory, self.host, self._port,
                                                          backlog=1024))
        if self._tls_port is not None:
            self._servers.append(await loop.create_server(
                factory, self.host, self._tls_port, ssl=self.ssl_context, backlog=1024,
                ssl_handshake_timeout=self.limits.connect_timeout_s,
            ))
        log.info("MQTT server listening on %s port %s%s (loop %s)", self.host, self.port,
                 f", TLS port {self.tls_port}" if self._tls_port is not None else "",
                 type(loop).__module__)

    async def stop(self) -> None:
        """Stop accepting, acknowledge what is durable, DISCONNECT (0x8B) every client."""
        if self.broker is None:
            return
        for srv in self._servers:
            srv.close()
        await self.broker.shutdown()
        for srv in self._servers:
            await srv.wait_closed()
        self._servers.clear()
        log.info("MQTT server stopped: %s", self.stats())

    def stats(self) -> dict[str, Any]:
        """The broker's counters (see :meth:`Broker.stats`)."""
        return {} if self.broker is None else self.broker.stats()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
