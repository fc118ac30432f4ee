"""Per-connection MQTT state machine of the broker (no sockets: a :class:`Link`).

Packets decoded by the connection's parser enter an inbox that is processed in order.
Processing stops (and the link stops reading) while the CONNECT's password check runs,
while the store pushes back on an uplink, and while too many inbound QoS 1/2 messages
await their acknowledgement; the packet that could not be taken is retried later,
never dropped.

Acknowledgements of inbound QoS 1/2 messages leave in the order the messages arrived
(MQTT §4.6): each gets a slot in a FIFO, filled at once for messages routed only, and
when its commit is durable for device uplinks.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import BackPressureError, StorageError
from ..mqtt import (
    ConnAck,
    Connect,
    Disconnect,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    encode,
    encode_puback,
    encode_pubcomp,
    encode_pubrec,
    encode_pubrel,
)
from ..mqtt.packets import REASON_CODES, PacketType
from .auth import Principal, may_publish, may_subscribe
from .broker import NEVER_EXPIRES
from .session import Message, SubOptions
from .topics import up_topic, uplink_kind

if TYPE_CHECKING:
    from .broker import Broker
    from .session import Session

__all__ = ["Link", "Client"]

log = logging.getLogger("vitalcore.server")

_CONNECTING, _CONNECTED = 0, 1
_PINGRESP = b"\xd0\x00"
_DISCONNECT_CODES = REASON_CODES[PacketType.DISCONNECT]
_CONNACK_CODES = REASON_CODES[PacketType.CONNACK]
#: MQTT 5 CONNACK reason -> MQTT 3.1.1 return code (3.1.1 §3.2.2.3).
_V3_RETURN = {0x84: 1, 0x85: 2, 0x88: 3, 0x89: 3, 0x86: 4, 0x87: 5, 0x9F: 5, 0x8C: 5}


class Link(Protocol):
    """What the broker needs from a network connection."""

    peer: str  #: source address, for rate limiting and logs
    #: common name of the verified TLS client certificate; None without one
    cert_name: str | None

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def go_direct(self) -> bool:
        """Write through the broker's send thread from now on; False if not possible."""
        ...


class _Ack:
    """One acknowledgement slot: its bytes, and whether it may be sent yet."""

    __slots__ = ("data", "qos2_pid", "ready")

    def __init__(self, data: bytes, qos2_pid: int, ready: bool) -> None:
        self.data = data
        self.qos2_pid = qos2_pid  # a PUBREC: the id then awaits PUBREL in the session
        self.ready = ready


class _Fault:
    __slots__ = ("reason", "message")

    def __init__(self, reason: int, message: str) -> None:
        self.reason = reason
        self.message = message


class Client:
    """One network connection speaking MQTT to the broker."""

    def __init__(self, broker: Broker, link: Link) -> None:
        self.broker = broker
        self.link = link
        self.peer = link.peer
        self.level = 0
        self.state = _CONNECTING
        broker.pending_connects += 1
        self.principal: Principal | None = None
        self.uplink: str | None = None  # a device's own binary uplink topic: ACL fast path
        self._routed: tuple[int, bool] = (-1, False)  # (tree version, uplink has subscribers)
        self.session: Session | None = None
        self.client_id = ""
        self.will: Message | None = None
        self.will_delay = 0
        self.keep_alive = 0
        self.last_rx = time.monotonic()
        self.inbox: deque = deque()
        self.blocked: str | None = None
        self.acks: deque[_Ack] = deque()
        self.aliases: dict[int, str] = {}
        self.send_quota = broker.limits.max_inflight
        self.max_send_packet = 268_435_460
        self.write_paused = False
        self.closed = False
        self._gone = False
        self._bp_since: float | None = None
        self._tokens = float(broker.limits.publish_burst)  # PUBLISH token bucket
        self._refill_at = self.last_rx
        self._timer = broker.loop.call_later(broker.limits.connect_timeout_s, self._connect_timeout)
        self._task: Any = None

    def __repr__(self) -> str:
        return f"<Client {self.client_id or '?'} from {self.peer}>"

    @property
    def can_send(self) -> bool:
        return self.state == _CONNECTED and not self.write_paused and not self.closed

    # -- input ------------------------------------------------------------------------
    def packets_received(self, packets: list) -> None:
        """Packets decoded from the link, in order."""
        if self.closed:
            return
        self.last_rx = time.monotonic()
        inbox = self.inbox
        if inbox or self.blocked is not None:
            inbox.extend(packets)
            self._drain()
            return
        dispatch = self._dispatch
        for i, p in enumerate(packets):  # nothing waiting: no round trip through the inbox
            if not dispatch(p):
                inbox.extend(packets[i:])
                return
            if self.blocked is not None or self.closed:
                if not self.closed:
                    inbox.extend(packets[i + 1:])
                return

    def protocol_fault(self, reason: int, message: str, level: int, abort: bool = False) -> None:
        """The parser failed: act on what came before, then close (``abort``: now)."""
        if self.level == 0:
            self.level = level
        if abort or (not self.inbox and self.blocked is None):
            self._fault(reason, message, abort)
        else:
            self.inbox.append(_Fault(reason, message))

    def _drain(self) -> None:
        inbox = self.inbox
        while inbox and self.blocked is None and not self.closed:
            p = inbox.popleft()
            if not self._dispatch(p):
                inbox.appendleft(p)
                return

    def _block(self, reason: str) -> None:
        self.blocked = reason
        self.link.pause_reading()

    def _unblock(self) -> None:
        self.blocked = None
        if not self.closed:
            self.link.resume_reading()
            self._drain()

    def pause(self) -> None:
        """Stop reading for good (server shutdown)."""
        self.blocked = "shutdown"
        self.link.pause_reading()

    def _dispatch(self, p: Any) -> bool:
        t = type(p)
        if t is Publish:
            return self._on_publish(p)
        if t is PubAck:
            self._on_acked(p.packet_id, 1)
        elif t is PubRec:
            self._on_pubrec(p)
        elif t is PubRel:
            self._on_pubrel(p)
        elif t is PubComp:
            self._on_acked(p.packet_id, 2)
        elif t is Subscribe:
            self._on_subscribe(p)
        elif t is Unsubscribe:
            self._on_unsubscribe(p)
        elif t is Connect:
            self._on_connect(p)
        elif t is Disconnect:
            self._on_disconnect(p)
        elif t is _Fault:
            self._fault(p.reason, p.message)
        elif p.packet_type == PacketType.PINGREQ:
            self.write(_PINGRESP)
        else:  # AUTH: enhanced authentication is not offered
            self._fault(0x82, "AUTH without an authentication method")
        return True

    # -- CONNECT ----------------------------------------------------------------------
    def _on_connect(self, p: Connect) -> None:
        b = self.broker
        self.level = p.protocol_level
        props = p.properties
        if self.level == 5 and props is not None and props.authentication_method:
            self.refuse(0x8C, "enhanced authentication is not supported")
            return
        cid = p.client_id
        assigned = None
        if not cid:
            if self.level == 4 and not p.clean_start:
                self.refuse(0x85, "empty client id with a persistent session")
                return
            cid = assigned = "vc-" + secrets.token_hex(8)
        elif len(cid) > b.limits.max_client_id_length:
            self.refuse(0x85, "client id too long")
            return
        cert = self.link.cert_name
        if cert is not None and cert != (p.username or ""):
            b.count("cert_user_mismatch")  # the user name is not logged: it may be a secret
            self.refuse(0x87, f"client certificate for {cert!r} used with another user name")
            return
        principal = b.accounts.cached(p.username or "", p.password)
        if principal is not None:  # verified recently: no check, no limit
            self._connected(p, cid, assigned, principal)
            return
        self._block("auth")
        self._task = b.loop.create_task(self._authenticate(p, cid, assigned))

    async def _authenticate(self, p: Connect, cid: str, assigned: str | None) -> None:
        b = self.broker
        try:
            async with b.limiter.attempt(self.peer) as attempt:
                if not attempt.admitted:
                    b.count("auth_rate_limited")
                    self.refuse(0x9F, "too many failed logins from this address")
                    return
                async with b.auth_slots:
                    if self.closed:
                        return
                    principal = b.accounts.cached(p.username or "", p.password)
                    if principal is None:
                        principal = await attempt.check(b.loop.run_in_executor(
                            None, b.accounts.check, p.username, p.password
                        ))
        except Exception:  # a bug in the check: refuse this client, keep serving
            log.exception("password check failed")
            self.refuse(0x80, "internal error during authentication")
            return
        if self.closed:
            return
        if principal is None:
            b.count("auth_failures")
            # Name only existing accounts: a password typed into the user-name field, or a
            # scanned patient id, must never reach the log (docs/security.md).
            known = bool(p.username) and p.username in b.accounts
            who = f"user {p.username!r}" if known else "a user name that is no account"
            self.refuse(0x86, f"bad user name or password ({who})")
            return
        self._connected(p, cid, assigned, principal)
        if not self.closed:
            self._unblock()

    def _connected(self, p: Connect, cid: str, assigned: str | None, principal: Principal
                   ) -> None:
        b = self.broker
        lim = b.limits
        will = p.will
        if will is not None and not may_publish(principal, will.topic):
            b.count("acl_denied_will")
            self.refuse(0x87, f"will topic {will.topic!r} not allowed")
            return
        if will is not None and will.retain and not principal.is_device:
            b.count("retain_refused_cmd")  # a user's will is a command: never retained
            self.refuse(0x9A, "commands are never retained")
            return
        props = p.properties
        if self.level == 5:
            asked = props.session_expiry_interval if props is not None else None
            asked = asked or 0
        else:
            asked = 0 if p.clean_start else NEVER_EXPIRES
        expiry = min(asked, lim.max_session_expiry_s)
        if props is not None:
            if props.receive_maximum:
                self.send_quota = min(lim.max_inflight, props.receive_maximum)
            if props.maximum_packet_size:
                self.max_send_packet = props.maximum_packet_size
        self.principal = principal
        self.uplink = up_topic(principal.device_id) if principal.is_device else None
        self.client_id = cid
        session, present = b.attach(self, principal, cid, p.clean_start, expiry)
        self.session = session
        self.state = _CONNECTED
        b.pending_connects -= 1
        ack_props = None
        if self.level == 5:
            ack_props = Properties(
                receive_maximum=lim.receive_maximum, maximum_packet_size=lim.max_packet_size,
                topic_alias_maximum=lim.topic_alias_maximum, retain_available=1,
                wildcard_subscription_available=1, subscription_identifier_available=1,
                shared_subscription_available=1, assigned_client_identifier=assigned,
                session_expiry_interval=expiry if self.level == 5 and expiry != asked else None,
            )
        self.write(encode(ConnAck(present, 0, ack_props), self.level))
        b.count("connections_accepted")
        if principal.is_device and b.sender is not None and self.link.go_direct():
            b.count("send_thread_connections")
        if will is not None:
            self.will = Message.from_publish(will.topic, will.payload, will.qos, will.retain,
                                             will.properties, session.key)
            wp = will.properties
            self.will_delay = (wp.will_delay_interval or 0) if wp is not None else 0
        self.keep_alive = p.keep_alive
        self._timer.cancel()
        if p.keep_alive:
            self._timer = b.loop.call_later(1.5 * p.keep_alive, self._keepalive_check)
        session.resume(self)

    def refuse(self, reason: int, why: str) -> None:
        """Answer the CONNECT with a failure CONNACK (MQTT 5 reason / 3.1.1 code), close."""
        b = self.broker
        b.count(f"connack_refused_0x{reason:02X}")
        b.log_event(logging.WARNING, f"refuse{reason}", "refused connection from %s: %s",
                    self.peer, why)
        if self.level == 5:
            code = reason if reason in _CONNACK_CODES else 0x80
            self.write(encode(ConnAck(False, code), 5))
        elif self.level == 4:
            self.write(encode(ConnAck(False, _V3_RETURN.get(reason, 5)), 4))
        self.close(None)

    def _connect_timeout(self) -> None:
        if self.state == _CONNECTING and not self.closed and self.blocked != "auth":
            self.broker.count("connect_timeouts")
            self.close(None)

    def _keepalive_check(self) -> None:
        if self.closed:
            return
        limit = 1.5 * self.keep_alive
        idle = time.monotonic() - self.last_rx
        if idle >= limit:
            self.broker.count("keepalive_timeouts")
            self.broker.log_event(logging.INFO, "keepalive", "keep-alive timeout: %r", self)
            self.close(0x8D)
        else:
            self._timer = self.broker.loop.call_later(limit - idle, self._keepalive_check)

    # -- PUBLISH in -------------------------------------------------------------------
    def _on_publish(self, p: Publish) -> bool:
        if self._tokens < 1.0 and not self._refill():
            return False
        self._tokens -= 1.0
        b = self.broker
        topic = p.topic
        props = p.properties
        if self.level == 5 and props is not None and props.topic_alias is not None:
            alias = props.topic_alias
            if alias > b.limits.topic_alias_maximum:
                self._fault(0x94, f"topic alias {alias} above the maximum")
                return True
            if topic:
                self.aliases[alias] = topic
            else:
                topic = self.aliases.get(alias)
                if topic is None:
                    self._fault(0x82, f"topic alias {alias} was never set")
                    return True
        qos, pid = p.qos, p.packet_id
        session = self.session
        if qos == 2 and (pid in session.inbound_qos2
                         or any(a.qos2_pid == pid for a in self.acks)):
            b.count("duplicate_qos2")  # already taken: (re)acknowledge, don't store twice
            if pid in session.inbound_qos2:
                self.write(encode_pubrec(pid, protocol_level=self.level))
            return True
        if qos and len(self.acks) >= b.limits.receive_maximum:
            if self.level == 5:
                self._fault(0x93, "receive maximum exceeded")
                return True
            self._block("acks")
            return False
        if topic == self.uplink:  # what may_publish and uplink_kind would find, cheaper
            return self._ingest(p, topic, self.principal.device_id, False)
        if not may_publish(self.principal, topic):
            b.count("acl_denied_publish")
            b.log_event(logging.WARNING, "acl_pub", "%r may not publish to %r", self, topic)
            if qos:  # MQTT 5: 0x87; MQTT 3.1.1: positive ack, message dropped (§3.3.5)
                self._ack(qos, pid, 0x87 if self.level == 5 else 0, True)
            return True
        up = uplink_kind(topic)
        if up is not None and self.principal.is_device:
            return self._ingest(p, topic, up[0], up[1])
        if p.retain:  # a user publishes only commands: a retained one would be replayed to
            b.count("retain_refused_cmd")  # the device at each reconnect, out of scope
            b.log_event(logging.WARNING, "retain_cmd", "%r: retained command to %r refused",
                        self, topic)
            if qos:  # MQTT 5: 0x87 (0x9A is no PUBACK code); 3.1.1: positive ack, dropped
                self._ack(qos, pid, 0x87 if self.level == 5 else 0, True)
            return True
        b.count("messages_in")
        b.route(Message.from_publish(topic, p.payload, qos, p.retain, props, session.key))
        if qos:
            self._ack(qos, pid, 0, True)
        return True

    def _ingest(self, p: Publish, topic: str, device: int, is_json: bool) -> bool:
        b = self.broker
        try:
            feed = b.sink.feed_json if is_json else b.sink.feed
            accepted = feed(p.payload, device)
        except BackPressureError:
            return self._backpressure()
        except StorageError as exc:
            b.count("storage_errors")
            log.error("store refuses uplink of %r: %s", self, exc)
            self.close(0x80)
            return True
        self._bp_since = None
        counters = b.counters
        counters["uplink_messages"] += 1
        counters["uplink_frames"] += accepted
        if not accepted:
            counters["uplink_messages_without_frames"] += 1
        ack = self._ack(p.qos, p.packet_id, 0, False) if p.qos else None
        msg = None
        if topic == self.uplink:
            version = b.tree.version
            if self._routed[0] != version:
                self._routed = (version, b.has_subscribers(topic))
            routed = self._routed[1]
        else:
            routed = b.has_subscribers(topic)
        if p.retain or routed:
            msg = Message.from_publish(topic, p.payload, p.qos, p.retain, p.properties,
                                       self.session.key)
        b.batcher.add((self, ack, msg), len(p.payload))
        return True

    def _refill(self) -> bool:
        """The PUBLISH token bucket ran dry: refill it for the time passed; if still
        empty, stop reading until the next token (Limits.publish_rate) and say False."""
        b = self.broker
        lim = b.limits
        now = time.monotonic()
        self._tokens = min(float(lim.publish_burst),
                           self._tokens + (now - self._refill_at) * lim.publish_rate)
        self._refill_at = now
        if self._tokens >= 1.0:
            return True
        b.count("publish_rate_pauses")
        b.log_event(logging.WARNING, "rate", "%r publishes faster than %g msgs/s: throttled",
                    self, lim.publish_rate)
        self._block("rate")
        b.loop.call_later((1.0 - self._tokens) / lim.publish_rate, self._unblock_if, "rate")
        return False

    def _backpressure(self) -> bool:
        b = self.broker
        now = time.monotonic()
        if self._bp_since is None:
            self._bp_since = now
            b.count("backpressure_pauses")
        elif now - self._bp_since > b.limits.backpressure_timeout_s:
            b.count("backpressure_timeouts")
            self.close(0x89)  # Server busy; nothing of it was acknowledged
            return True
        self._block("backpressure")
        b.loop.call_later(b.limits.backpressure_poll_s, self._unblock_if, "backpressure")
        return False

    def _unblock_if(self, reason: str) -> None:
        if self.blocked == reason:
            self._unblock()

    def _ack(self, qos: int, pid: int, reason: int, ready: bool) -> _Ack:
        if qos == 1:
            a = _Ack(encode_puback(pid, reason, protocol_level=self.level), 0, ready)
        else:
            data = encode_pubrec(pid, reason, protocol_level=self.level)
            a = _Ack(data, pid if reason < 0x80 else 0, ready)
        self.acks.append(a)
        if ready:
            self.flush_acks()
        return a

    def flush_acks(self) -> None:
        """Send the acknowledgements that are ready, in arrival order."""
        if self.closed:
            return
        acks = self.acks
        out = []
        while acks and acks[0].ready:
            a = acks.popleft()
            if a.qos2_pid:
                self.session.inbound_qos2.add(a.qos2_pid)
            out.append(a.data)
        if out:  # one write (one system call) for every acknowledgement ready now
            self.write(out[0] if len(out) == 1 else b"".join(out))
        if self.blocked == "acks" and len(acks) <= self.broker.limits.receive_maximum // 2:
            self._unblock()

    def _on_pubrel(self, p: PubRel) -> None:
        s = self.session
        if p.packet_id in s.inbound_qos2:
            s.inbound_qos2.discard(p.packet_id)
            self.write(encode_pubcomp(p.packet_id, protocol_level=self.level))
        else:
            self.broker.count("unknown_packet_ids")
            reason = 0x92 if self.level == 5 else 0
            self.write(encode_pubcomp(p.packet_id, reason, protocol_level=self.level))

    # -- PUBLISH out acknowledgements -------------------------------------------------
    def _on_acked(self, pid: int, qos: int) -> None:
        if not self.session.acked(pid, qos):
            self.broker.count("unknown_packet_ids")

    def _on_pubrec(self, p: PubRec) -> None:
        if self.session.received(p.packet_id, p.reason_code):
            if p.reason_code < 0x80:
                self.write(encode_pubrel(p.packet_id, protocol_level=self.level))
        else:
            self.broker.count("unknown_packet_ids")
            reason = 0x92 if self.level == 5 else 0
            self.write(encode_pubrel(p.packet_id, reason, protocol_level=self.level))

    # -- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------
    def _on_subscribe(self, p: Subscribe) -> None:
        b, s = self.broker, self.session
        props = p.properties
        sub_id = None
        if props is not None and props.subscription_identifiers:
            sub_id = props.subscription_identifiers[0]
        codes, fresh = [], []
        for sub in p.subscriptions:
            flt = sub.topic_filter
            if not may_subscribe(self.principal, flt):
                b.count("acl_denied_subscribe")
                b.log_event(logging.WARNING, "acl_sub", "%r may not subscribe to %r", self, flt)
                codes.append(0x87 if self.level == 5 else 0x80)
                continue
            existed = flt in s.subscriptions
            s.subscriptions[flt] = SubOptions(sub.qos, sub.no_local, sub.retain_as_published,
                                              sub_id)
            b.tree.add(flt, s, sub.qos)
            b.count("subscriptions_added")
            codes.append(sub.qos)
            if not flt.startswith("$share/") and (
                sub.retain_handling == 0 or (sub.retain_handling == 1 and not existed)
            ):
                fresh.append((flt, sub.qos))
        self.write(encode(SubAck(p.packet_id, codes), self.level))
        for flt, qos in fresh:
            b.deliver_retained(s, flt, qos, sub_id)

    def _on_unsubscribe(self, p: Unsubscribe) -> None:
        b, s = self.broker, self.session
        codes = []
        for flt in p.topic_filters:
            existed = s.subscriptions.pop(flt, None) is not None
            b.tree.remove(flt, s)
            codes.append(0x00 if existed else 0x11)
        self.write(encode(UnsubAck(p.packet_id, codes if self.level == 5 else []), self.level))

    # -- DISCONNECT -------------------------------------------------------------------
    def _on_disconnect(self, p: Disconnect) -> None:
        if self.level != 5 or p.reason_code != 0x04:  # 0x04: disconnect with Will Message
            self.will = None
        props = p.properties
        if props is not None and props.session_expiry_interval is not None:
            if self.session.expiry_s == 0 and props.session_expiry_interval:
                self._fault(0x82, "session expiry set on DISCONNECT after 0 at CONNECT")
                return
            self.session.expiry_s = min(props.session_expiry_interval,
                                        self.broker.limits.max_session_expiry_s)
        self.broker.count("disconnects_normal")
        self.close(None)

    # -- output and closing -----------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.closed:
            self.link.write(data)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.session is not None and self.session.client is self:
            self.session.pump()

    def quota_exceeded(self) -> None:
        """The session's queue is full of QoS 1/2: disconnect (slow-consumer policy)."""
        self.broker.count("slow_consumer_disconnects")
        self.broker.log_event(logging.WARNING, "slow", "slow consumer disconnected: %r", self)
        self.close(0x97)

    def _fault(self, reason: int, message: str, abort: bool = False) -> None:
        b = self.broker
        b.count("protocol_errors")
        b.count(f"protocol_error_0x{reason:02X}")
        b.log_event(logging.INFO, f"fault{reason}", "protocol error 0x%02X from %s: %s",
                    reason, self.peer, message)
        if self.state == _CONNECTING:
            if reason == 0x84:  # unknown protocol level: 3.1.1 CONNACK 0x01 (§3.1.2.2)
                self.level = 4
            self.refuse(reason, message) if self.level else self.close(None, abort)
        else:
            self.close(reason, abort)

    def close(self, reason: int | None, abort: bool = False) -> None:
        """Close the connection, sending an MQTT 5 DISCONNECT with ``reason`` if allowed."""
        if self.closed:
            return
        if (reason is not None and self.level == 5 and self.state == _CONNECTED
                and reason in _DISCONNECT_CODES):
            self.link.write(encode(Disconnect(reason), 5))
        self.closed = True
        if abort:
            self.link.abort()
        else:
            self.link.close()
            self.broker.loop.call_later(self.broker.limits.close_timeout_s, self.link.abort)
        self.connection_lost()

    def connection_lost(self) -> None:
        """The link is gone (or closing): detach the session, publish the Will."""
        if self._gone:
            return
        self._gone = True
        self.closed = True
        b = self.broker
        self._timer.cancel()
        b.clients.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.state != _CONNECTED:
            b.pending_connects -= 1
            return
        b.count("connections_closed")
        s = self.session
        if s.client is self:
            s.client = None
            b.detached(s, self.principal, self.will, self.will_delay)
