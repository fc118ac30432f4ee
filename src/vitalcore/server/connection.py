"""The thin asyncio transport of the MQTT broker: bytes in, parser, broker; bytes out.

:class:`MqttConnection` owns the :class:`~vitalcore.mqtt.MqttParser` of one TCP (or TLS)
connection, feeds it every chunk the transport delivers and hands the decoded packets
to its :class:`~vitalcore.server.client.Client`. Flow control both ways: the client
pauses reading (password check, store back-pressure, too many unacknowledged uplinks)
and the transport's ``pause_writing``/``resume_writing`` stop and restart the dequeuing
of messages to this client. A packet announced larger than the limit aborts the
connection before its body is read.

On a TLS listener whose context verifies client certificates, the certificate's subject
common name is the connection's ``cert_name``: the client must then log in as that
user name, with its password (docs/server.md, "Authentication").

A device connection's writes can go through the broker's :class:`~vitalcore.server.sendq.
SendThread` (:meth:`MqttConnection.go_direct`): from then on every byte to that client is
queued there and sent by the writer thread, without the GIL and off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..mqtt import MqttParser, MqttProtocolError

if TYPE_CHECKING:
    from .broker import Broker
    from .client import Client

__all__ = ["MqttConnection"]


class MqttConnection(asyncio.Protocol):
    """asyncio protocol of one MQTT client connection (also the client's ``Link``)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.parser = MqttParser(max_packet_size=broker.limits.max_packet_size, role="server")
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.peer = "?"
        self.cert_name: str | None = None
        self._reading = True
        self._fd = -1  # the send thread's descriptor of this socket, once direct

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        cert = transport.get_extra_info("peercert")  # TLS: verified by the context
        if cert:
            self.cert_name = next((v for rdn in cert.get("subject", ()) for k, v in rdn
                                   if k == "commonName"), "")
        self.client = self.broker.connection_made(self)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or client.closed:
            return
        try:
            packets = self.parser.feed(data)
        except MqttProtocolError as exc:
            client.packets_received(exc.packets)
            # 0x95: the announced size is over the limit: do not read the body
            client.protocol_fault(exc.reason_code, exc.message, self.parser.protocol_level,
                                  abort=exc.reason_code == 0x95)
            return
        if packets:
            client.packets_received(packets)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._detach(False)
        if self.client is not None:
            self.client.connection_lost()

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause_writing()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume_writing()

    # -- Link -------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._fd >= 0:
            if not self.broker.sender.send(self._fd, data):  # the peer does not read
                self.broker.count("send_thread_aborts")
                self.abort()
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def go_direct(self) -> bool:
        """Send every later write through the broker's send thread (plain TCP only, and
        only while nothing waits in the transport's buffer, so that no byte overtakes
        another). False if it stays on the transport."""
        sender, t = self.broker.sender, self.transport
        if (sender is None or self._fd >= 0 or t is None or t.is_closing()
                or t.get_write_buffer_size() or t.get_extra_info("ssl_object") is not None):
            return False
        sock = t.get_extra_info("socket")
        if sock is None:
            return False
        self._fd = sender.attach(sock.fileno())
        return self._fd >= 0

    def _detach(self, abort: bool) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self.broker.sender.detach(fd, abort)

    def close(self) -> None:
        self._detach(False)  # the queued bytes still leave, then the socket closes
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._detach(True)
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if self._reading and self.transport is not None and not self.transport.is_closing():
            self._reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._reading and self.transport is not None and not self.transport.is_closing():
            self._reading = True
            self.transport.resume_reading()
