"""Scale-out: consume device uplinks from an external MQTT broker cluster (docs/scale-out.md).

Devices publish to a broker cluster (mosquitto, EMQX, VerneMQ...) on the same topics as
with the embedded broker (docs/protocol.md §12.1). Each vitalcore node subscribes to
``$share/<group>/vc/v1/dev/+/up`` and ``$share/<group>/vc/v1/dev/+/up/json`` at QoS 1
over MQTT 5 (gmqtt), so the broker splits the uplink messages between the nodes of the
group, and acknowledges a message to the broker only once its frames are durable in
this node's :class:`~vitalcore.storage.store.Store`.

- :class:`UpstreamConfig`: where and how to connect (URL, share group, client id,
  credentials, TLS, session expiry, receive maximum, reconnect backoff).
- :class:`UpstreamConsumer`: the consumer: ``await start()``, ``await stop()``,
  ``await leave()`` (scaling down), ``stats()``; reconnects with exponential backoff,
  keeps a persistent session.
- :func:`parse_upstream_url`, :func:`shared_filters`, :func:`node_client_id`,
  :func:`read_secret`: configuration helpers used by ``python -m vitalcore serve``.
- :func:`read_across`, :func:`dedup_rows`: a query over several nodes' stores that
  keeps one row per frame, (device, stream, seq, ts) being the frame's identity.

Acknowledgement: gmqtt with ``optimistic_acknowledgement=False`` sends the PUBACK of a
QoS 1 message when the ``on_message`` coroutine returns (its value is the reason
code). Our coroutine feeds the payload into the store and returns only once the commit
holding it is durable (commits are coalesced per event-loop iteration by
:class:`~vitalcore.server.ingest.CommitBatcher`) and every message received before it
on the same connection is released too, so PUBACKs keep the order of the PUBLISHes
(MQTT 5 §4.6). One gmqtt client serves one network connection: an acknowledgement whose
connection is gone is dropped (counted ``acks_dropped``), never sent on a later
connection where the broker may have reused the packet id for another message. The
broker redelivers the unacknowledged message to this node's session after the
reconnect; the store recognises the frames as duplicates and the PUBACK follows
once the original commit is durable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import secrets
import ssl
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import gmqtt
from gmqtt.mqtt.constants import MQTTCommands, MQTTv50
from gmqtt.mqtt.handler import MQTTConnectError

from ..errors import BackPressureError, ConfigError, StorageError, UsageError
from .ingest import CommitBatcher
from .topics import uplink_kind

if TYPE_CHECKING:
    import pyarrow as pa

    from ..storage.store import Store

__all__ = [
    "PASSWORD_ENV",
    "USER_ENV",
    "DEDUP_KEYS",
    "UpstreamConfig",
    "UpstreamConsumer",
    "parse_upstream_url",
    "shared_filters",
    "node_client_id",
    "read_secret",
    "read_across",
    "dedup_rows",
]

log = logging.getLogger("vitalcore.server.upstream")

#: Environment variable holding the upstream broker password (when no file is given).
PASSWORD_ENV = "VITALCORE_UPSTREAM_PASSWORD"
#: Environment variable holding the upstream broker user name (when none is given).
USER_ENV = "VITALCORE_UPSTREAM_USER"

_UPLINK_FILTERS = ("vc/v1/dev/+/up", "vc/v1/dev/+/up/json")
_GROUP_RE = re.compile(r"^[^/+#\s]{1,64}$")
_CLIENT_ID_RE = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
_CLIENT_ID_FILE = "upstream-client-id"
# CONNACK / SUBACK reason codes that retrying cannot fix (MQTT 5 §3.2.2.2, §3.9.3):
# malformed/protocol error, unsupported version, bad client id, bad user name or
# password, not authorized, banned, bad auth method, topic filter invalid, QoS 1 not
# granted (0x9B, our code for a SUBACK granting QoS 0), shared subscriptions not supported.
_PERMANENT = frozenset({0x81, 0x82, 0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C, 0x8F, 0x9B, 0x9E})


# -- configuration --------------------------------------------------------------------
def parse_upstream_url(url: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]``.

    Ports default to 1883 / 8883. A URL with a user name or password is refused: put
    credentials in the environment or a file (:func:`read_secret`), never on a command
    line where ``ps`` shows them.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid upstream URL {url!r}: {exc}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"upstream URL must start with mqtt:// or mqtts://, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("credentials in the upstream URL are refused: use "
                          f"${USER_ENV} / ${PASSWORD_ENV} or a password file")
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"upstream URL must be mqtt[s]://HOST[:PORT], got {url!r}")
    tls = parts.scheme == "mqtts"
    return parts.hostname, port or (8883 if tls else 1883), tls


def shared_filters(group: str) -> tuple[str, ...]:
    """The shared-subscription filters of share group ``group`` (binary and JSON uplinks)."""
    if not isinstance(group, str) or not _GROUP_RE.match(group):
        raise ConfigError(f"share group must be 1-64 characters without '/', '+', '#' or "
                          f"white space, got {group!r}")
    return tuple(f"$share/{group}/{f}" for f in _UPLINK_FILTERS)


def node_client_id(data_dir: str | os.PathLike[str], group: str) -> str:
    """The node's stable MQTT client id, kept in ``<data_dir>/upstream-client-id``.

    Created on first use as ``vc-<group>-<16 random hex digits>``. The broker keeps this
    node's session (and the messages in flight to it) under that id, and those messages
    belong with this data directory, so the id lives in it: a node restarted on the same
    directory resumes its session; two nodes can never share one by accident.
    """
    shared_filters(group)  # validates the group
    path = Path(data_dir) / _CLIENT_ID_FILE
    try:
        cid = path.read_text().strip()
    except FileNotFoundError:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        cid = f"vc-{group}-{secrets.token_hex(8)}"[:64]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(cid + "\n")
        os.replace(tmp, path)
        return cid
    if not _CLIENT_ID_RE.match(cid):
        raise ConfigError(f"{path} holds an invalid client id {cid!r}")
    return cid


def read_secret(path: str | os.PathLike[str] | None = None, env: str = PASSWORD_ENV,
                environ: dict[str, str] | None = None) -> str | None:
    """The upstream password: first line of ``path`` if given, else ``$env``, else None.

    A password file readable by group or others is refused (ConfigError): it must be
    mode 0600 or 0400, like ``accounts.json``.
    """
    if path is not None:
        st = os.stat(path)
        if st.st_mode & 0o077:
            raise ConfigError(f"password file {path} is readable by others "
                              f"(mode {st.st_mode & 0o777:o}); chmod 600 it")
        with open(path, encoding="utf-8") as f:
            secret = f.readline().rstrip("\r\n")
        if not secret:
            raise ConfigError(f"password file {path} is empty")
        return secret
    value = (os.environ if environ is None else environ).get(env)
    return value or None


@dataclass(frozen=True)
class UpstreamConfig:
    """How a node connects to the upstream broker.

    Parameters
    ----------
    host, port : str, int
        The broker (or the cluster's load balancer).
    share_group : str
        Share group name: nodes of one group split the uplinks between them.
    client_id : str
        Stable per node (see :func:`node_client_id`); the persistent session's key.
    tls : bool
        MQTT over TLS, verifying the broker's certificate and host name against
        ``ca_file`` (or the system's CAs when None).
    ca_file, cert_file, key_file : str, optional
        CA bundle; client certificate and key for brokers that authenticate nodes by
        certificate.
    username, password : str, optional
        Upstream credentials (never logged; ``password`` is left out of ``repr``).
    session_expiry_s : int
        Session Expiry Interval asked of the broker (s). The broker keeps the session,
        its subscriptions and the messages in flight or queued for this node that long
        after the node disappears; a node that comes back within it loses nothing.
    receive_maximum : int
        Messages the broker may have in flight to this node before its PUBACKs
        (MQTT 5 Receive Maximum). Bounds the memory used while the store pushes back.
    keepalive_s : int
        MQTT keep-alive (s).
    connect_timeout_s : float
        Bound on TCP + TLS + CONNACK + SUBACK of one connection attempt (s).
    reconnect_min_s, reconnect_max_s : float
        Exponential backoff between attempts (doubling, ±20 % jitter), reset after a
        connection that lasted ``stable_after_s``.
    backpressure_poll_s : float
        While the store pushes back, feeding is retried this often (s); nothing is
        acknowledged meanwhile, so the broker stops after ``receive_maximum`` messages.
    """

    host: str
    port: int
    share_group: str
    client_id: str
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 1024
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    stable_after_s: float = 10.0
    backpressure_poll_s: float = 0.05

    def __post_init__(self) -> None:
        shared_filters(self.share_group)
        if not _CLIENT_ID_RE.match(self.client_id or ""):
            raise ConfigError(f"client id must be 1-64 of [0-9A-Za-z_.-], got {self.client_id!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port must be 1..65535, got {self.port!r}")
        if not 0 < self.session_expiry_s <= 0xFFFFFFFF:
            raise ConfigError("session_expiry_s must be > 0: a node needs a persistent "
                              f"session to get its in-flight messages back, got {self.session_expiry_s!r}")
        if not 1 <= self.receive_maximum <= 65535:
            raise ConfigError(f"receive_maximum must be 1..65535, got {self.receive_maximum!r}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ConfigError("need 0 < reconnect_min_s <= reconnect_max_s")
        if self.password is not None and self.username is None:
            raise ConfigError("an upstream password needs a user name")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("a client certificate needs both cert_file and key_file")
        if not self.tls and (self.ca_file or self.cert_file):
            raise ConfigError("CA / client certificate given for a plain mqtt:// upstream")

    @classmethod
    def from_url(cls, url: str, share_group: str, client_id: str, **kw: Any) -> UpstreamConfig:
        """Build from ``mqtt[s]://HOST[:PORT]`` (see :func:`parse_upstream_url`)."""
        host, port, tls = parse_upstream_url(url)
        return cls(host, port, share_group, client_id, tls=tls, **kw)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client-side TLS context (None for plain MQTT)."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


# -- one connection ---------------------------------------------------------------------
class _Client(gmqtt.Client):
    """A gmqtt client used for exactly one network connection.

    gmqtt reconnects on its own, within the same client, with a fixed delay; its
    ``reconnect`` (the callback its handler calls on connection loss and on a refused
    CONNACK) only reports the loss here, and :class:`UpstreamConsumer` reconnects with
    a new client and backoff. PUBACKs for a connection that is closed are dropped:
    written on a later connection they could acknowledge another message that the
    broker sent under the same packet id.
    """

    def __init__(self, *args: Any, on_lost: Callable[[], None],
                 counters: Counter[str], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._vc_on_lost = on_lost
        self._vc_counters = counters

    async def reconnect(self, delay: bool = False) -> None:
        self._vc_on_lost()

    def _send_command_with_mid(self, cmd: int, mid: int, dup: bool, reason_code: int = 0) -> None:
        conn = self._connection
        if cmd == MQTTCommands.PUBACK:
            if conn is None or conn.is_closing():
                self._vc_counters["acks_dropped"] += 1
                return
            self._vc_counters["acks_sent"] += 1
        super()._send_command_with_mid(cmd, mid, dup, reason_code=reason_code)


# gmqtt methods overridden above (checked at import: a gmqtt without them would
# reconnect behind our back, or send acknowledgements on a later connection).
for _name in ("reconnect", "_send_command_with_mid"):
    if not callable(getattr(gmqtt.Client, _name, None)):
        raise ImportError(f"gmqtt {gmqtt.__version__} has no Client.{_name}: "
                          "vitalcore.server.upstream was written against gmqtt 0.6-0.8")


class _Link:
    """State of one connection: its client and its deliveries in arrival order."""

    __slots__ = ("client", "gen", "fifo", "lost", "subacks", "session_present", "since", "up")

    def __init__(self, gen: int) -> None:
        self.client: _Client | None = None
        self.gen = gen
        self.fifo: deque[_Delivery] = deque()
        self.lost = asyncio.Event()
        self.subacks: dict[int, asyncio.Future] = {}
        self.session_present = False
        self.since = time.monotonic()
        self.up = False  # connected and subscribed


class _Delivery:
    """One received message: released (its PUBACK may go) once durable and first in line."""

    __slots__ = ("link", "future", "durable")

    def __init__(self, link: _Link | None, future: asyncio.Future) -> None:
        self.link = link
        self.future = future
        self.durable = False


# -- the consumer -----------------------------------------------------------------------
class UpstreamConsumer:
    """Consumes device uplinks from an upstream broker's share group into ``store``.

    Parameters
    ----------
    store : Store
        This node's store (feed / feed_json / commit / durable are used). The consumer
        does not close it.
    config : UpstreamConfig
    stats_interval_s : float
        Log the counters at INFO this often (s); 0 = never.

    Notes
    -----
    Exactly-once within this node: a message is acknowledged to the broker only after
    its frames are durable; a redelivered message (same session after a reconnect or a
    restart on the same data directory) has frames the store already holds and drops as
    duplicates. What the broker does with a member that disappears decides the rest:
    see docs/scale-out.md (mosquitto 2.0 keeps routing the dead member's share to its
    session and redelivers to it when it returns; nothing goes to another member).

    Counters (:meth:`stats`): ``connects``, ``connect_failures``, ``connections_lost``,
    ``sessions_resumed``, ``sessions_new``, ``messages``, ``messages_json``,
    ``messages_qos0``, ``redelivered`` (DUP set), ``frames`` (accepted by the decoder;
    duplicates are dropped later, at commit, see ``Store.stats()``),
    ``messages_without_frames``, ``foreign_topics``, ``acks_sent``, ``acks_dropped``,
    ``not_fed_stopping``, ``backpressure_waits``, ``commit_retries``, ``storage_errors``,
    plus current ``connected``, ``in_flight``, ``backlog``.
    """

    def __init__(self, store: Store, config: UpstreamConfig, *,
                 stats_interval_s: float = 60.0) -> None:
        self.store = store
        self.config = config
        self.stats_interval_s = stats_interval_s
        self.filters = shared_filters(config.share_group)
        self.counters: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batcher: CommitBatcher | None = None
        self._link: _Link | None = None
        self._gen = 0
        self._backlog: deque[tuple[_Delivery, int, bool, bytes]] = deque()
        self._backlog_task: asyncio.Task | None = None
        self._task: asyncio.Task | None = None
        self._stats_task: asyncio.Task | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._releasing = 0  # deliveries released whose handler has not returned yet
        self._end_session = False  # DISCONNECT with Session Expiry 0 (leave())
        self._connected_once = asyncio.Event()
        self.error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start connecting (in the background; see :meth:`wait_connected`)."""
        if self._task is not None:
            raise UsageError("upstream consumer already started")
        self._loop = asyncio.get_running_loop()
        self._batcher = CommitBatcher(self.store, self._loop, self._on_durable,
                                      lambda entries, exc: self._fatal(exc))
        self._task = self._loop.create_task(self._supervise(), name="vitalcore-upstream")
        if self.stats_interval_s > 0:
            self._stats_task = self._loop.create_task(self._log_stats())

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the first connection is up and subscribed (or raise its failure)."""
        waiter = asyncio.ensure_future(self._connected_once.wait())
        done, _ = await asyncio.wait({waiter, self._task}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if self.error is not None:
                raise self.error
            if self._task.done():
                self._task.result()  # raises what ended the consumer
                raise UsageError("upstream consumer stopped before connecting")
            raise TimeoutError("upstream broker not connected in time")

    async def wait_closed(self) -> None:
        """Wait until the consumer ends: after :meth:`stop`, or on a permanent failure
        (refused credentials or subscription, storage failure), which is raised here."""
        if self._task is not None:
            await asyncio.shield(self._task)
        if self.error is not None:
            raise self.error

    async def stop(self, timeout: float = 10.0) -> None:
        """Acknowledge what is durable, then DISCONNECT (the session stays at the broker).

        Messages received but not durable yet are committed and acknowledged first;
        those arriving meanwhile are not fed (the broker redelivers them to this
        session next time).
        """
        if self._task is None or self._stopping and self._task.done():
            return
        self._stopping = True
        self._wake.set()
        deadline = time.monotonic() + timeout
        link = self._link
        if link is not None and self.connected and self.error is None:
            try:  # commit what was fed, let the released handlers write their PUBACKs
                await asyncio.wait_for(self._batcher.drain(), timeout)
                while self._releasing and time.monotonic() < deadline:
                    await asyncio.sleep(0)
                for _ in range(3):  # the tasks' done callbacks (gmqtt's PUBACK) run next
                    await asyncio.sleep(0)
            except Exception as exc:  # StorageError: reported by _fatal
                log.error("upstream stop: final commit failed: %s", exc)
        if link is not None:
            link.lost.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task),
                                   max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            log.error("upstream consumer did not stop within %.1f s", timeout)
            self._task.cancel()
        except Exception:  # reported through self.error / wait_closed
            pass
        for task in (self._stats_task, self._backlog_task):
            if task is not None:
                task.cancel()
        log.info("upstream consumer stopped: %s", self._format_stats())

    async def leave(self, quiet_s: float = 1.0, timeout: float = 30.0) -> bool:
        """Leave the share group for good (scaling down), then :meth:`stop`.

        A node that only stops keeps its session at the broker, and mosquitto 2.0 goes on
        routing its share of every device to that session until it expires
        (docs/scale-out.md). ``leave`` unsubscribes, consumes what the broker still sends
        until nothing has arrived for ``quiet_s`` seconds and nothing is in flight
        (at most ``timeout`` s), then DISCONNECTs with Session Expiry 0, which ends the
        session. Returns whether the quiet period was reached; if not, what the broker
        still held for this node is lost with the session (logged).
        """
        link = self._link
        if not self.connected or link is None or link.client is None:
            raise UsageError("not connected: cannot leave the share group (the session "
                             "stays at the broker until it expires)")
        link.client.unsubscribe(list(self.filters))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen, quiet_since = self.counters["messages"], loop.time()
        quiet = False
        while loop.time() < deadline and self.connected:
            await asyncio.sleep(min(0.05, quiet_s))
            if self.counters["messages"] != seen or link.fifo or self._backlog:
                seen, quiet_since = self.counters["messages"], loop.time()
            elif loop.time() - quiet_since >= quiet_s:
                quiet = True
                break
        if not quiet:
            log.warning("upstream: leaving the share group before the broker went quiet; "
                        "what it still held for %r is lost", self.config.client_id)
        self._end_session = True
        await self.stop(timeout=max(1.0, deadline - loop.time()))
        return quiet

    @property
    def connected(self) -> bool:
        """Whether a connection is up and subscribed now."""
        link = self._link
        return link is not None and link.up and not link.lost.is_set()

    def stats(self) -> dict[str, int]:
        """Counters (see the class notes) and current ``connected``, ``in_flight``,
        ``backlog``."""
        link = self._link
        retries = self._batcher.backpressure_retries if self._batcher is not None else 0
        return {**self.counters, "commit_retries": retries, "connected": int(self.connected),
                "in_flight": len(link.fifo) if link is not None else 0,
                "backlog": len(self._backlog)}

    def _format_stats(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.stats().items()))

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval_s)
            log.info("upstream stats: %s", self._format_stats())

    # -- connecting -------------------------------------------------------------------------
    async def _supervise(self) -> None:
        cfg = self.config
        delay = cfg.reconnect_min_s
        try:
            while not self._stopping:
                self._gen += 1
                link = _Link(self._gen)
                self._link = link
                try:
                    await asyncio.wait_for(self._connect(link), cfg.connect_timeout_s)
                except _Refused as exc:
                    await self._teardown(link)
                    if exc.code in _PERMANENT:
                        self.error = ConfigError(f"upstream broker refused this node: {exc}")
                        log.error("%s; not retrying", self.error)
                        return
                    self._attempt_failed(exc, delay)
                except (OSError, TimeoutError) as exc:
                    await self._teardown(link)
                    self._attempt_failed(exc, delay)
                else:
                    self.counters["connects"] += 1
                    link.up = True
                    self._connected_once.set()
                    await link.lost.wait()
                    lived = time.monotonic() - link.since
                    if not self._stopping:
                        self.counters["connections_lost"] += 1
                        log.warning("upstream connection to %s:%d lost after %.1f s; "
                                    "%d message(s) not yet acknowledged will be redelivered",
                                    cfg.host, cfg.port, lived, len(link.fifo))
                    await self._teardown(link)
                    if lived >= cfg.stable_after_s:
                        delay = cfg.reconnect_min_s
                    if self._stopping:
                        return
                    self._attempt_failed(None, delay)
                await self._backoff(delay)
                delay = min(delay * 2, cfg.reconnect_max_s)
        finally:
            if self._link is not None and self._link.client is not None:
                await self._teardown(self._link)
            self._link = None

    def _attempt_failed(self, exc: BaseException | None, delay: float) -> None:
        if exc is not None and not self._stopping:
            self.counters["connect_failures"] += 1
            log.warning("upstream broker %s:%d: connection attempt failed (%s: %s); "
                        "retrying in ~%.1f s", self.config.host, self.config.port,
                        type(exc).__name__, exc, delay)

    async def _backoff(self, delay: float) -> None:
        self._wake.clear()
        jittered = delay * random.uniform(0.8, 1.2)
        try:
            await asyncio.wait_for(self._wake.wait(), jittered)
        except TimeoutError:
            pass

    async def _connect(self, link: _Link) -> None:
        cfg = self.config
        client = _Client(cfg.client_id, clean_session=False, optimistic_acknowledgement=False,
                         on_lost=link.lost.set, counters=self.counters,
                         session_expiry_interval=cfg.session_expiry_s,
                         receive_maximum=cfg.receive_maximum,
                         logger=logging.getLogger("vitalcore.server.upstream.gmqtt"))
        link.client = client
        if cfg.username is not None:
            client.set_auth_credentials(cfg.username, cfg.password)
        client.on_message = self._message_handler(link)
        client.on_subscribe = self._suback_handler(link)
        client.on_connect = self._connack_handler(link)
        try:
            await client.connect(cfg.host, cfg.port, ssl=cfg.ssl_context() or False,
                                 keepalive=cfg.keepalive_s, version=MQTTv50)
        except MQTTConnectError as exc:
            raise _Refused(getattr(exc, "_code", 0x80), f"CONNACK {exc}") from None
        if link.lost.is_set():
            raise ConnectionError("connection closed right after CONNACK")
        subs = [gmqtt.Subscription(f, qos=1) for f in self.filters]
        mid = client.subscribe(subs)
        fut = link.subacks.setdefault(mid, self._loop.create_future())
        lost = asyncio.ensure_future(link.lost.wait())
        try:
            await asyncio.wait({fut, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not fut.done():
            raise ConnectionError("connection lost before SUBACK")
        codes = fut.result()
        for flt, code in zip(self.filters, codes, strict=False):
            if code != 1:
                raise _Refused(code if code >= 0x80 else 0x9B,
                               f"SUBSCRIBE {flt!r} answered {code:#04x} (need QoS 1)")
        log.info("upstream: connected to %s:%d as %r (%s), subscribed to %s at QoS 1",
                 cfg.host, cfg.port, cfg.client_id,
                 "session resumed" if link.session_present else "new session",
                 ", ".join(self.filters))

    def _connack_handler(self, link: _Link) -> Callable[..., None]:
        def on_connect(client: Any, flags: int, rc: int, properties: dict) -> None:
            link.session_present = bool(flags)
            if flags:
                self.counters["sessions_resumed"] += 1
            else:
                self.counters["sessions_new"] += 1
                if self.counters["connects"]:
                    log.warning("upstream: the broker had no session for %r (expired, or "
                                "the broker restarted without persistence): messages it "
                                "held for this node are gone from the broker",
                                self.config.client_id)
            granted = client.session_expiry_interval  # the CONNACK's value, else ours
            if granted < self.config.session_expiry_s:
                log.warning("upstream: the broker caps the session expiry at %d s "
                            "(asked %d s)", granted, self.config.session_expiry_s)
        return on_connect

    def _suback_handler(self, link: _Link) -> Callable[..., None]:
        def on_subscribe(client: Any, mid: int, qos: tuple[int, ...], properties: dict) -> None:
            fut = link.subacks.setdefault(mid, self._loop.create_future())
            if not fut.done():
                fut.set_result(tuple(qos))
        return on_subscribe

    async def _teardown(self, link: _Link) -> None:
        """Close the connection (DISCONNECT, session kept) and release its deliveries."""
        link.lost.set()
        client, link.client = link.client, None
        if client is not None and client._connection is not None:
            if not client._connection.is_closing():
                # DISCONNECT 0x00: the broker keeps the session (no will), unless leaving
                props = {"session_expiry_interval": 0} if self._end_session else {}
                try:
                    await asyncio.wait_for(client.disconnect(**props), 0.5)
                except Exception as exc:  # a half-open socket: aborted below
                    log.debug("upstream disconnect: %s", exc)
            _abort(client)
        # Nothing of this connection can be acknowledged any more: let its handlers end
        # (their PUBACKs are dropped by _Client); the broker redelivers to the session.
        while link.fifo:
            self._settle(link.fifo.popleft())
        self._backlog = deque(b for b in self._backlog if b[0].link is not link)

    # -- ingest -------------------------------------------------------------------------------
    def _message_handler(self, link: _Link) -> Callable[..., Any]:
        async def on_message(client: Any, topic: str, payload: bytes, qos: int,
                             properties: dict) -> int:
            return await self._ingest(link, topic, payload, qos, properties)
        return on_message

    async def _ingest(self, link: _Link, topic: str, payload: bytes, qos: int,
                      properties: dict) -> int:
        """Feed one message; return its PUBACK reason code once it may be acknowledged."""
        future = self._loop.create_future()
        self._take(_Delivery(link if qos else None, future), link, topic, payload, qos,
                   properties)
        try:
            return await future
        finally:
            if future.done() and not future.cancelled():
                self._releasing -= 1

    def _take(self, d: _Delivery, link: _Link, topic: str, payload: bytes, qos: int,
              properties: dict) -> None:
        if qos:
            link.fifo.append(d)
        if link.lost.is_set() or self._stopping:
            # not fed: the broker redelivers it to this session (its PUBACK is dropped)
            self.counters["not_fed_stopping"] += 1
            if not qos:
                self._settle(d)
            return
        self.counters["messages"] += 1
        if properties.get("dup"):
            self.counters["redelivered"] += 1
        if not qos:
            self.counters["messages_qos0"] += 1
        kind = uplink_kind(topic)
        if kind is None:
            self.counters["foreign_topics"] += 1
            self._release(d)
            return
        device, is_json = kind
        if is_json:
            self.counters["messages_json"] += 1
        if self._backlog or not self._feed(d, device, is_json, payload):
            self._backlog.append((d, device, is_json, payload))
            if self._backlog_task is None or self._backlog_task.done():
                self._backlog_task = self._loop.create_task(self._drain_backlog())

    def _feed(self, d: _Delivery, device: int, is_json: bool, payload: bytes) -> bool:
        """Feed one message; False if the store pushes back (nothing taken)."""
        try:
            n = (self.store.feed_json if is_json else self.store.feed)(payload, device)
        except BackPressureError:
            self.counters["backpressure_waits"] += 1
            return False
        except Exception as exc:  # StorageError (store closed / failed) or a bug
            self._fatal(exc)
            return True
        self.counters["frames"] += n
        if n == 0:
            self.counters["messages_without_frames"] += 1
        self._batcher.add(d)
        return True

    async def _drain_backlog(self) -> None:
        while self._backlog:
            d, device, is_json, payload = self._backlog[0]
            if d.link is not None and d.link.lost.is_set():
                self._backlog.popleft()
                continue
            if not self._feed(d, device, is_json, payload):
                await asyncio.sleep(self.config.backpressure_poll_s)
                continue
            self._backlog.popleft()

    def _on_durable(self, entries: list[_Delivery]) -> None:
        for d in entries:
            self._release(d)

    def _release(self, d: _Delivery) -> None:
        d.durable = True
        link = d.link
        if link is None:
            self._settle(d)
            return
        fifo = link.fifo
        while fifo and fifo[0].durable:  # PUBACKs leave in the order the PUBLISHes came
            self._settle(fifo.popleft())

    def _settle(self, d: _Delivery) -> None:
        """Let the handler of ``d`` return (gmqtt then sends its PUBACK if still connected)."""
        if not d.future.done():
            d.future.set_result(0)
            self._releasing += 1

    def _fatal(self, exc: BaseException) -> None:
        """The store cannot make anything durable: stop consuming, acknowledge nothing."""
        self.counters["storage_errors"] += 1
        if self.error is None:
            self.error = StorageError(f"store failed, upstream consumer stopped: {exc}")
            log.critical("%s; messages in flight stay with this node's session at the "
                         "broker until it is restarted", self.error)
        self._stopping = True
        self._wake.set()
        link = self._link
        if link is not None:
            if link.client is not None:
                _abort(link.client)  # at once: no PUBACK may leave after this
            link.lost.set()


def _abort(client: _Client) -> None:
    """Close the client's transport now (gmqtt has no public abort)."""
    conn = client._connection
    transport = getattr(conn, "_transport", None)
    if transport is not None and not transport.is_closing():
        transport.abort()


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- reading across nodes -------------------------------------------------------------------
#: Columns identifying one stored row of each table: a frame is (device, stream, seq,
#: device time); numerics rows add the code, accessory rows (no seq) their kind and serial.
DEDUP_KEYS: dict[str, tuple[str, ...]] = {
    "waveforms": ("device_id", "frame_type", "channel", "seq", "ts_us"),
    "numerics": ("device_id", "seq", "ts_us", "code"),
    "status": ("device_id", "seq", "ts_us"),
    "accessories": ("device_id", "ts_us", "kind", "serial"),
    "acks": ("device_id", "seq", "ts_us"),
}

_READERS = {
    "waveforms": "read_waveforms",
    "numerics": "read_numerics",
    "status": "read_status",
    "accessories": "read_accessories",
    "acks": "read_acks",
}


def dedup_rows(table: str, parts: Sequence[pa.Table]) -> pa.Table:
    """Concatenate ``parts`` (rows of one stored ``table``) keeping one row per key.

    The key is :data:`DEDUP_KEYS` ``[table]``. Rows are returned sorted by ``ts_us``
    (then by the rest of the key); of equal keys the first in ``parts`` order is kept.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        keys = DEDUP_KEYS[table]
    except KeyError:
        raise UsageError(f"unknown table {table!r}; one of {sorted(DEDUP_KEYS)}") from None
    if not parts:
        raise UsageError("dedup_rows needs at least one table")
    t = pa.concat_tables(parts)
    if t.num_rows == 0:
        return t
    idx = pa.array(range(t.num_rows), pa.int64())
    first = (t.select(list(keys)).append_column("_i", idx)
             .group_by(list(keys), use_threads=False).aggregate([("_i", "min")]))
    keep = t.take(first.column("_i_min"))
    order = ["ts_us"] + [k for k in keys if k != "ts_us"]
    return keep.take(pc.sort_indices(keep, sort_keys=[(k, "ascending") for k in order]))


def read_across(stores: Iterable[Store], table: str, device_id: int, t0_us: int, t1_us: int,
                **kw: Any) -> pa.Table:
    """Rows of ``table`` for ``device_id`` in [t0_us, t1_us) from every node's store, each
    frame once.

    In scale-out mode a device's messages are split between the nodes of the share
    group, and one message can reach two nodes (a device that republishes after losing
    its broker connection publishes a new message; a broker may redeliver a dead
    member's messages to another member). Each store drops duplicates it has seen
    itself; this drops those stored by different nodes (:func:`dedup_rows`).

    ``table`` is one of ``waveforms``, ``numerics``, ``status``, ``accessories``,
    ``acks``; ``kw`` goes to the store's reader (``frame_type``/``channel`` for
    waveforms, ``codes`` for numerics).
    """
    try:
        reader = _READERS[table]
    except KeyError:
        raise UsageError(f"unknown table {table!r}; one of {sorted(_READERS)}") from None
    parts = [getattr(s, reader)(device_id, t0_us, t1_us, **kw) for s in stores]
    return dedup_rows(table, parts)
