"""CoAP uplink endpoint for low-power devices (docs/protocol.md §12.2, docs/server.md).

:class:`CoapEndpoint` serves ``POST /vc/v1/up`` (binary frames) and ``POST /vc/v1/up/json``
(JSON form) on UDP with aiocoap. Each request authenticates with the device id and secret
in its URI query (``?d=<16 hex>&k=<secret>``), is fed into the store, and is answered
2.04 Changed only once its frames are durable. The 2.04 body carries the COMMAND frames
queued for the device with :meth:`CoapEndpoint.queue_command` (delivered on the next
uplink, since a sleeping device cannot be reached otherwise).

The secret travels in the clear on plain UDP: run this only over DTLS, OSCORE or a
private APN/VPN in production (this module itself has no transport security).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from typing import Any

import aiocoap
import aiocoap.resource
import numpy as np
from aiocoap import Code, Message

from ..codec import FrameDecoder
from ..errors import BackPressureError, UsageError
from ..protocol import REJECT_REASONS, FrameType
from .auth import Accounts, LoginLimiter, Principal
from .topics import parse_device_name

__all__ = ["CoapEndpoint", "UPLINK_PATH", "UPLINK_JSON_PATH"]

log = logging.getLogger("vitalcore.server.coap")

UPLINK_PATH = ("vc", "v1", "up")
UPLINK_JSON_PATH = ("vc", "v1", "up", "json")
_OCTET_STREAM = 42
_JSON = 50


class _Committer:
    """At most one ``store.commit()`` per event-loop iteration; waiters learn durability.

    Unlike :class:`~vitalcore.server.ingest.CommitBatcher`, a commit that adds nothing
    waits for the WAL's last appended LSN, so it stays correct when another component
    (the MQTT broker) commits the same store's frames first.
    """

    def __init__(self, store: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self._waiters: list[asyncio.Future] = []
        self._scheduled: asyncio.Handle | None = None
        self.commits = 0

    def wait(self) -> asyncio.Future:
        """A future done (None) when everything fed so far is durable, or failed."""
        fut = self.loop.create_future()
        self._waiters.append(fut)
        if self._scheduled is None:
            self._scheduled = self.loop.call_soon(self._commit)
        return fut

    def _commit(self) -> None:
        self._scheduled = None
        waiters, self._waiters = self._waiters, []
        try:
            lsn = self.store.commit()
        except Exception as exc:  # BackPressureError (batch kept), StorageError
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.commits += 1
        task = self.loop.create_task(self.store.durable(lsn))

        def settle(t: asyncio.Task) -> None:
            exc = None if t.cancelled() else t.exception()
            for fut in waiters:
                if fut.done():
                    continue
                if t.cancelled():
                    fut.cancel()
                elif exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(None)

        task.add_done_callback(settle)


class _Uplink(aiocoap.resource.Resource):
    def __init__(self, endpoint: CoapEndpoint, json: bool) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.json = json

    async def render_post(self, request: Message) -> Message:
        return await self.endpoint._handle(request, self.json)


def _reply(code: Code, text: str = "", **kw: Any) -> Message:
    return Message(code=code, payload=text.encode(), **kw)


class CoapEndpoint:
    """CoAP (RFC 7252) uplink endpoint feeding ``store``.

    Parameters
    ----------
    store : Store
        A :class:`~vitalcore.storage.store.Store` (not closed by the endpoint).
    accounts : Accounts
        Device accounts; only device accounts can post.
    host, port : str, int
        UDP address to bind (default loopback, 5683).
    max_body : int
        Largest accepted request body in bytes (4.13 above it).
    max_queued : int
        Commands kept per device awaiting its next uplink (UsageError beyond).
    max_response : int
        Bytes of queued COMMAND frames put into one 2.04 body (at least one frame);
        the rest waits for the next uplink. The default keeps the response in one
        datagram.
    limiter : LoginLimiter, optional
        Failed-login rate limit per remote address (4.29 while exhausted); default a
        :class:`~vitalcore.server.auth.LoginLimiter` with its defaults (burst 20, 1/s),
        as the MQTT broker has.
    """

    def __init__(self, store: Any, accounts: Accounts, host: str = "127.0.0.1",
                 port: int = 5683, *, max_body: int = 65536, max_queued: int = 16,
                 max_response: int = 1024, limiter: LoginLimiter | None = None) -> None:
        if max_body < 1 or max_queued < 1 or max_response < 1:
            raise UsageError("max_body, max_queued and max_response must be >= 1")
        self.store = store
        self.accounts = accounts
        self.host = host
        self.port = port
        self.max_body = max_body
        self.max_queued = max_queued
        self.max_response = max_response
        self.limiter = limiter if limiter is not None else LoginLimiter()
        self.counters: Counter[str] = Counter()
        self._queues: dict[int, deque[bytes]] = {}
        self._context: aiocoap.Context | None = None
        self._committer: _Committer | None = None
        self._auth_slots = asyncio.Semaphore(4)

    async def start(self) -> None:
        """Bind the UDP port and serve."""
        if self._context is not None:
            raise UsageError("CoAP endpoint already started")
        site = aiocoap.resource.Site()
        site.add_resource(UPLINK_PATH, _Uplink(self, json=False))
        site.add_resource(UPLINK_JSON_PATH, _Uplink(self, json=True))
        self._committer = _Committer(self.store, asyncio.get_running_loop())
        self._context = await aiocoap.Context.create_server_context(
            site, bind=(self.host, self.port), transports=["udp6"]
        )
        log.info("CoAP endpoint listening on %s udp port %d", self.host, self.port)

    async def stop(self) -> None:
        """Stop serving (queued commands are kept in memory until the object goes)."""
        if self._context is not None:
            await self._context.shutdown()
            self._context = None
            log.info("CoAP endpoint stopped: %s", dict(self.counters))

    # -- commands ---------------------------------------------------------------------
    def queue_command(self, device_id: int, frame: bytes) -> None:
        """Queue one binary COMMAND frame for ``device_id``'s next 2.04 response.

        Raises UsageError if ``frame`` is not exactly one valid COMMAND frame of that
        device, or if the device's queue holds ``max_queued`` commands already.
        """
        frame = bytes(frame)
        batch = FrameDecoder(keep_rejects=0).decode(frame, device_id)
        if batch.n_frames != 1 or batch.rejects.any() or frame[4] != FrameType.COMMAND:
            raise UsageError(f"not one valid COMMAND frame of device {device_id:#x}")
        q = self._queues.setdefault(device_id, deque())
        if len(q) >= self.max_queued:
            raise UsageError(f"{len(q)} commands already queued for device {device_id:#x}")
        q.append(frame)

    def queued(self, device_id: int) -> int:
        """Commands waiting for ``device_id``'s next uplink."""
        return len(self._queues.get(device_id, ()))

    def _take_commands(self, device_id: int) -> bytes:
        q = self._queues.get(device_id)
        out = bytearray()
        while q and (not out or len(out) + len(q[0]) <= self.max_response):
            out += q.popleft()
        if q is not None and not q:
            del self._queues[device_id]
        return bytes(out)

    # -- requests ---------------------------------------------------------------------
    async def _authenticate(self, request: Message) -> Principal | Message:
        query: dict[str, str] = {}
        for item in request.opt.uri_query:
            key, _, value = item.partition("=")
            query[key] = value
        device = parse_device_name(query.get("d", ""))
        secret = query.get("k", "")
        if device is None or not secret:
            self.counters["auth_failed"] += 1
            return _reply(Code.UNAUTHORIZED, "need ?d=<16 lower-case hex>&k=<secret>")
        name = query["d"]
        principal = self.accounts.cached(name, secret.encode())
        if principal is None:
            async with self.limiter.attempt(str(request.remote.hostinfo)) as attempt:
                if not attempt.admitted:
                    self.counters["auth_rate_limited"] += 1
                    return _reply(Code.TOO_MANY_REQUESTS, "too many failed logins", max_age=60)
                async with self._auth_slots:
                    loop = asyncio.get_running_loop()
                    principal = await attempt.check(
                        loop.run_in_executor(None, self.accounts.check, name, secret))
        if principal is None or principal.device_id != device:
            self.counters["auth_failed"] += 1
            return _reply(Code.UNAUTHORIZED, "bad device id or secret")
        return principal

    async def _handle(self, request: Message, json: bool) -> Message:
        self.counters["requests"] += 1
        if len(request.payload) > self.max_body:
            self.counters["too_large"] += 1
            return _reply(Code.REQUEST_ENTITY_TOO_LARGE, f"body over {self.max_body} bytes",
                          size1=self.max_body)
        expected = _JSON if json else _OCTET_STREAM
        if request.opt.content_format not in (None, expected):
            self.counters["bad_request"] += 1
            return _reply(Code.UNSUPPORTED_CONTENT_FORMAT, f"Content-Format must be {expected}")
        auth = await self._authenticate(request)
        if isinstance(auth, Message):
            return auth
        device = auth.device_id
        if not request.payload:
            self.counters["bad_request"] += 1
            return _reply(Code.BAD_REQUEST, "empty body")
        before = np.array(self.store.decoder.reject_counts, copy=True)
        try:
            if json:
                accepted = self.store.feed_json(request.payload, device)
            else:
                accepted = self.store.feed(request.payload, device)
        except BackPressureError:
            self.counters["back_pressure"] += 1
            return _reply(Code.SERVICE_UNAVAILABLE, "storage busy, retry", max_age=1)
        rejects = np.asarray(self.store.decoder.reject_counts) - before
        if not accepted:
            self.counters["bad_request"] += 1
            reasons = ", ".join(f"{REJECT_REASONS[i]}={int(n)}" for i, n in enumerate(rejects)
                                if n) or "no frames"
            return _reply(Code.BAD_REQUEST, f"rejected: {reasons}")
        if rejects.any():
            self.counters["partly_rejected"] += 1
        assert self._committer is not None
        try:
            await self._committer.wait()
        except BackPressureError:
            # The frames are fed and will go into a later commit; the device retries and
            # its retransmission is recognised as a duplicate by sequence number.
            self.counters["back_pressure"] += 1
            return _reply(Code.SERVICE_UNAVAILABLE, "storage busy, retry", max_age=1)
        except Exception as exc:  # StorageError: never confirm what is not durable
            log.error("CoAP uplink of %s not durable: %s", auth.name, exc)
            self.counters["storage_failed"] += 1
            return _reply(Code.INTERNAL_SERVER_ERROR, "storage failed")
        self.counters["stored"] += 1
        return Message(code=Code.CHANGED, payload=self._take_commands(device),
                       content_format=_OCTET_STREAM)

    def stats(self) -> dict[str, int]:
        """Request counters: requests, stored, auth_failed, bad_request, too_large, ..."""
        return dict(self.counters)
