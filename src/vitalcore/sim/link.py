"""A cuttable network link for the link-drop scenario: a TCP relay on 127.0.0.1.

A device that should lose its radio link connects to a :class:`LinkProxy` instead of
the broker. :meth:`LinkProxy.cut` aborts every relayed connection in both directions
(no DISCONNECT, no FIN from the device: the broker sees a network loss and publishes
the device's Will, the client sees its socket die) and stops listening, so reconnect
attempts are refused; :meth:`LinkProxy.restore` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..errors import UsageError

__all__ = ["LinkProxy"]


class LinkProxy:
    """Relay ``127.0.0.1:<port>`` to ``target_host:target_port`` until cut.

    Parameters
    ----------
    target_host, target_port : str, int
        The broker.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> int:
        """Listen (on a free port the first time, the same port after a cut)."""
        if self._server is not None:
            raise UsageError("link already up")
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    restore = start

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_w))
        pumps = [asyncio.create_task(self._pump(reader, up_w)),
                 asyncio.create_task(self._pump(up_r, writer))]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in pumps:
                t.cancel()
                self._tasks.discard(t)
            for w in (writer, up_w):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

    async def cut(self) -> None:
        """Abort every relayed connection and refuse new ones until :meth:`restore`."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        self.cuts += 1
        await asyncio.sleep(0)

    async def close(self) -> None:
        await self.cut()
        for t in list(self._tasks):
            t.cancel()
