"""The MQTT broker state machine: sessions, routing, retained messages, wills, ingest.

No sockets here: a network connection is a :class:`~vitalcore.server.client.Link`
(written by :mod:`vitalcore.server.connection`) and the per-connection protocol state
lives in :class:`~vitalcore.server.client.Client`. The broker holds what is shared:
accounts and the failed-login limiter, sessions by (principal, client id), the
subscription tree, retained messages, the commit batcher of the uplink ingest, limits
and counters. Everything runs on one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BackPressureError, UsageError
from ..mqtt import SubscriptionTree
from ..mqtt.topics import topic_matches, topic_name_error
from .auth import Accounts, LoginLimiter, Principal
from .ingest import CommitBatcher, IngestSink, tune_gc
from .sendq import SendThread
from .session import Delivery, Message, Session
from .topics import uplink_kind

if TYPE_CHECKING:
    from .client import Client, Link

__all__ = ["Limits", "Broker", "NEVER_EXPIRES"]

log = logging.getLogger("vitalcore.server")

NEVER_EXPIRES = 0xFFFFFFFF  #: MQTT 5 Session Expiry Interval meaning "never"


@dataclass(frozen=True)
class Limits:
    """Bounds the broker enforces (sizes in bytes, times in seconds).

    Attributes
    ----------
    max_packet_size : int
        Largest MQTT packet accepted (announced in the MQTT 5 CONNACK); a client that
        announces a larger one is disconnected (0x95) before its body is read.
    receive_maximum : int
        Inbound QoS 1/2 messages per client awaiting their acknowledgement (announced to
        MQTT 5 clients, which get 0x93 beyond it; MQTT 3.1.1 clients are paused).
    max_inflight : int
        Outbound QoS 1/2 messages in flight per client (also capped by the client's own
        Receive Maximum).
    max_queued, max_queued_bytes : int
        Per-session outbound queue bound (messages, payload bytes): see the slow-consumer
        policy in :mod:`vitalcore.server.session`.
    topic_alias_maximum : int
        Inbound topic aliases per MQTT 5 connection.
    max_session_expiry_s : int
        Cap on the session expiry a client asks for; also the lifetime of an MQTT 3.1.1
        persistent (Clean Session = 0) session.
    connect_timeout_s : float
        Time from TCP accept to a complete CONNECT.
    max_connections, max_pending_connects : int
        Open connections in total, and those that have not completed CONNECT.
    backpressure_poll_s, backpressure_timeout_s : float
        While the store pushes back, a device's next uplink is retried this often, and
        the device is disconnected (0x89, nothing acknowledged) after this long. A
        commit the store refuses (its WAL queue is full) is retried this often too.
    commit_interval_s : float
        Uplinks are committed to the store this long after the first one of a batch
        (adds at most this much to the publish-to-PUBACK latency; fewer, larger commits
        cost the event loop less).
    commit_max_messages : int
        A batch reaching this many uplinks is committed at once.
    max_retained : int
        Retained messages kept (new topics beyond it are not retained, counted).
    max_client_id_length : int
        Longest client identifier accepted.
    auth_concurrency : int
        Password checks (scrypt) running at once in executor threads.
    close_timeout_s : float
        A closing connection whose peer does not read is aborted after this.
    send_thread : bool
        Device connections (plain TCP) write through the send thread
        (:mod:`vitalcore.server.sendq`) instead of the event loop.
    send_max_pending : int
        Bytes the send thread holds for a device that does not read before it closes
        the connection (the kernel's socket buffer comes on top).
    publish_rate, publish_burst : float, int
        PUBLISH packets per second one connection may send on average, and in a burst
        (a token bucket). A faster client is throttled, not cut off: its connection stops
        reading until the bucket has a token again, so TCP slows it down and nothing it
        sent is lost; other connections are not affected (counter
        ``publish_rate_pauses``). A wearable sends a few messages per second; the burst
        covers a store-and-forward backlog sent after a reconnect.
    """

    max_packet_size: int = 256 * 1024
    receive_maximum: int = 256
    max_inflight: int = 64
    max_queued: int = 1000
    max_queued_bytes: int = 8 << 20
    topic_alias_maximum: int = 32
    max_session_expiry_s: int = 7 * 86400
    connect_timeout_s: float = 10.0
    max_connections: int = 10_000
    max_pending_connects: int = 512
    backpressure_poll_s: float = 0.05
    backpressure_timeout_s: float = 30.0
    commit_interval_s: float = 0.02
    commit_max_messages: int = 2048
    max_retained: int = 10_000
    max_client_id_length: int = 256
    auth_concurrency: int = 2
    close_timeout_s: float = 2.0
    send_thread: bool = True
    send_max_pending: int = 1 << 20
    publish_rate: float = 1000.0
    publish_burst: int = 10_000

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, bool) and not value > 0:
                raise UsageError(f"limit {name} must be > 0, got {value!r}")
        if not 1 <= self.receive_maximum <= 65535 or not 1 <= self.max_inflight <= 65535:
            raise UsageError("receive_maximum and max_inflight must be in 1..65535")
        if self.topic_alias_maximum > 65535 or self.max_packet_size > 268_435_460:
            raise UsageError("topic_alias_maximum <= 65535 and max_packet_size <= 268435460")


class Broker:
    """Shared state and policy of the MQTT server (see the module docstring).

    Must be created on the event loop it will run on.

    Parameters
    ----------
    sink : IngestSink
        Where devices' uplink messages go (a :class:`~vitalcore.storage.store.Store`).
    accounts : Accounts
        Device and user accounts.
    limits : Limits, optional
    limiter : LoginLimiter, optional
        Failed-login rate limiter per source address.
    """

    def __init__(self, sink: IngestSink, accounts: Accounts, *, limits: Limits | None = None,
                 limiter: LoginLimiter | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.sink = sink
        self.accounts = accounts
        self.limits = limits or Limits()
        self.limiter = limiter or LoginLimiter()
        self.tree = SubscriptionTree()
        self.sessions: dict[tuple[str, str], Session] = {}
        self.clients: set[Client] = set()
        self.pending_connects = 0
        self.retained: dict[str, Message] = {}
        self.counters: Counter[str] = Counter()
        self._presence: list[Callable[[int, bool], None]] = []
        lim = self.limits
        self.batcher = CommitBatcher(sink, self.loop, self._durable, self._commit_failed,
                                     retry_s=lim.backpressure_poll_s,
                                     max_entries=lim.commit_max_messages,
                                     interval_s=lim.commit_interval_s)
        self.sender = (SendThread(lim.send_max_pending, lim.close_timeout_s)
                       if lim.send_thread else None)
        self.gc = tune_gc()  # start-up is over: freeze it, collect less often (measured)
        self.auth_slots = asyncio.Semaphore(self.limits.auth_concurrency)
        self.closing = False
        self._rr: dict[tuple[str, str], int] = {}
        self._log_budget: dict[str, list] = {}

    # -- counters and logs ------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def stats(self) -> dict[str, Any]:
        """Counters plus current sizes (connections, sessions, retained, subscriptions)."""
        out: dict[str, Any] = dict(self.counters)
        out.update(
            connections=len(self.clients), sessions=len(self.sessions),
            retained=len(self.retained), subscriptions=len(self.tree),
            queued=sum(len(s.queue) for s in self.sessions.values()),
            commits_pending=self.batcher.pending,
            commit_backpressure_retries=self.batcher.backpressure_retries,
        )
        out.update(self.gc.as_dict())
        if self.sender is not None:
            out.update({f"send_thread_{k}": v for k, v in self.sender.stats().items()})
        return out

    def log_event(self, level: int, kind: str, msg: str, *args: Any) -> None:
        """Log, at most 20 lines per ``kind`` per minute (floods stay visible, not loud)."""
        now = time.monotonic()
        budget = self._log_budget.get(kind)
        if budget is None or now - budget[0] > 60.0:
            if budget is not None and budget[2]:
                log.warning("%s: %d similar messages suppressed", kind, budget[2])
            budget = self._log_budget[kind] = [now, 0, 0]
        if budget[1] < 20:
            budget[1] += 1
            log.log(level, msg, *args)
        else:
            budget[2] += 1

    # -- connections and sessions -----------------------------------------------------
    def connection_made(self, link: Link) -> Client | None:
        """A new network connection; its :class:`Client`, or None if refused (aborted)."""
        from .client import Client

        lim = self.limits
        if (self.closing or len(self.clients) >= lim.max_connections
                or self.pending_connects >= lim.max_pending_connects):
            self.count("connections_refused")
            self.log_event(logging.WARNING, "refused", "refusing connection from %s: %s",
                           link.peer, "shutting down" if self.closing else "too many")
            link.abort()
            return None
        self.count("connections_opened")
        client = Client(self, link)
        self.clients.add(client)
        return client

    def add_presence_listener(self, callback: Callable[[int, bool], None]) -> None:
        """Call ``callback(device_id, online)`` when a device's connection is established
        (after CONNACK's session lookup) and when it ends (normally, by keep-alive
        timeout, takeover or a lost link). Runs on the event loop; must be quick
        (e.g. :meth:`vitalcore.alarms.AlarmEngine.device_connected`). Exceptions are
        logged and counted (``presence_listener_errors``)."""
        self._presence.append(callback)

    def _tell_presence(self, principal: Principal, online: bool) -> None:
        if not principal.device_id:
            return
        for callback in self._presence:
            try:
                callback(principal.device_id, online)
            except Exception:  # noqa: BLE001 - a listener must not break the broker
                self.count("presence_listener_errors")
                log.exception("presence listener failed")

    def attach(self, client: Client, principal: Principal, client_id: str, clean_start: bool,
               expiry_s: int) -> tuple[Session, bool]:
        """Find or create the session of (principal, client id); take it over if it is
        connected. Returns ``(session, session_present)``."""
        key = (principal.name, client_id)
        old = self.sessions.get(key)
        if old is not None and old.client is not None:
            self.count("takeovers")
            old.client.close(0x8E)  # Session taken over
            old = self.sessions.get(key)
        if old is not None:
            if old.expiry_handle is not None:
                old.expiry_handle.cancel()
                old.expiry_handle = None
            if clean_start:
                self.end_session(old)
                old = None
            elif old.will_handle is not None:  # resumed before the Will Delay: no Will
                old.will_handle.cancel()
                old.will_handle = old.pending_will = None
        self._tell_presence(principal, True)
        if old is None:
            session = self.sessions[key] = Session(self, key, expiry_s)
            return session, False
        old.expiry_s = expiry_s
        return old, True

    def detached(self, session: Session, principal: Principal, will: Message | None,
                 will_delay: int) -> None:
        """The connection of ``session`` ended; ``will`` unless it closed normally."""
        self._tell_presence(principal, False)
        if will is not None:
            if will_delay and session.expiry_s:
                session.pending_will = (principal, will)
                session.will_handle = self.loop.call_later(
                    min(will_delay, session.expiry_s), self._delayed_will, session
                )
            else:
                self.publish_will(will, principal)
        if session.expiry_s == 0:
            self.end_session(session)
        elif session.expiry_s < NEVER_EXPIRES:
            session.expiry_handle = self.loop.call_later(session.expiry_s, self._expire, session)

    def _delayed_will(self, session: Session) -> None:
        principal, will = session.pending_will
        session.will_handle = session.pending_will = None
        self.publish_will(will, principal)

    def _expire(self, session: Session) -> None:
        session.expiry_handle = None
        if session.client is None:
            self.count("sessions_expired")
            self.end_session(session)

    def end_session(self, session: Session) -> None:
        """Discard a session (its pending delayed Will is published now, §3.1.2.5)."""
        if session.will_handle is not None:
            session.will_handle.cancel()
            self._delayed_will(session)
        if session.expiry_handle is not None:
            session.expiry_handle.cancel()
            session.expiry_handle = None
        session.clear()
        if self.sessions.get(session.key) is session:
            del self.sessions[session.key]

    # -- routing ----------------------------------------------------------------------
    def has_subscribers(self, topic: str) -> bool:
        return self.tree.has_match(topic)

    def route(self, msg: Message) -> None:
        """Store/clear it as retained if flagged, and deliver it to every subscription."""
        topic = msg.topic
        if msg.retain:
            if not msg.payload:
                self.retained.pop(topic, None)
            elif topic in self.retained or len(self.retained) < self.limits.max_retained:
                self.retained[topic] = msg
            else:
                self.count("retained_refused")
        tree = self.tree
        for session, qos in tree.match(topic).items():
            session.deliver(msg, qos)
        for group_key, members in tree.match_shared(topic).items():
            keys = list(members)
            n = len(keys)
            start = self._rr.get(group_key, 0)
            pick = start % n
            for i in range(n):  # round robin, preferring connected members
                if keys[(start + i) % n].client is not None:
                    pick = (start + i) % n
                    break
            self._rr[group_key] = pick + 1
            chosen = keys[pick]
            chosen.deliver(msg, members[chosen], shared=True)

    def deliver_retained(self, session: Session, flt: str, qos: int, sub_id: int | None) -> None:
        """Send the retained messages matching a new subscription (retain flag set)."""
        ids = (sub_id,) if sub_id else ()
        for topic, msg in list(self.retained.items()):
            if topic_matches(flt, topic):
                if msg.expires_at is not None and msg.expires_at <= time.monotonic():
                    del self.retained[topic]
                    continue
                session.push(Delivery(msg, min(qos, msg.qos), True, ids))

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish a message from the server itself (e.g. a COMMAND frame to a device)."""
        if err := topic_name_error(topic):
            raise UsageError(err)
        if qos not in (0, 1, 2):
            raise UsageError(f"qos must be 0, 1 or 2, got {qos!r}")
        self.route(Message(topic, bytes(payload), qos, retain))

    def publish_will(self, will: Message, principal: Principal) -> None:
        """Publish a Will (already authorised at CONNECT): ingest it if it is the
        device's own uplink, and route it."""
        self.count("wills_published")
        up = uplink_kind(will.topic)
        if up is not None and principal.is_device:
            self._ingest_will(will, up[0], up[1], time.monotonic())
        else:
            self.route(will)

    def _ingest_will(self, will: Message, device: int, is_json: bool, since: float) -> None:
        try:
            feed = self.sink.feed_json if is_json else self.sink.feed
            self.count("uplink_frames", feed(will.payload, device))
        except BackPressureError:
            if time.monotonic() - since < self.limits.backpressure_timeout_s:
                self.loop.call_later(self.limits.backpressure_poll_s, self._ingest_will,
                                     will, device, is_json, since)
            else:
                self.count("wills_lost_backpressure")
            return
        except Exception as exc:  # StorageError: the store is failed or closed
            self.count("storage_errors")
            log.error("will of device %016x not stored: %s", device, exc)
            return
        self.batcher.add((None, None, will))

    # -- ingest acknowledgements ------------------------------------------------------
    def _durable(self, entries: list) -> None:
        touched: dict[Client, None] = {}
        for client, ack, msg in entries:
            if ack is not None:
                ack.ready = True
                touched[client] = None
            if msg is not None:
                self.route(msg)
        for client in touched:
            client.flush_acks()

    def _commit_failed(self, entries: list, exc: BaseException) -> None:
        self.count("storage_errors")
        for client in {c for c, _, _ in entries if c is not None}:
            client.close(0x80)  # not acknowledged: the client retransmits elsewhere/later

    # -- shutdown ---------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Stop reading, acknowledge what became durable, DISCONNECT 0x8B, close all."""
        self.closing = True
        for client in list(self.clients):
            client.pause()
        await self.batcher.drain()
        for client in list(self.clients):
            client.will = None  # a server shutdown is not the client's failure
            client.close(0x8B)
        for session in list(self.sessions.values()):
            for h in (session.expiry_handle, session.will_handle):
                if h is not None:
                    h.cancel()
        if self.sender is not None:  # the DISCONNECTs queued above leave first
            await self.loop.run_in_executor(None, self.sender.stop,
                                            self.limits.close_timeout_s + 5.0)
