"""Broker-side MQTT sessions: subscriptions, the bounded outbound queue, QoS 1/2 in flight.

A :class:`Session` outlives its network connection when it is persistent (MQTT 5
Session Expiry Interval > 0, or MQTT 3.1.1 Clean Session = 0): it keeps the
subscriptions, the messages queued for the client, the outbound messages in flight
and the packet ids of inbound QoS 2 messages awaiting PUBREL.

Slow-consumer policy (per session, bounds ``max_queued`` messages and ``max_queued_bytes``
payload bytes): when a message does not fit, a QoS 0 message is dropped (the new one if
it is QoS 0, else the oldest queued QoS 0 one); if there is none to drop, the new
message is dropped, counted as ``quota_drops``, and a connected client is disconnected
(MQTT 5 reason 0x97 Quota exceeded) so that it reconnects and drains its session.

Scope re-check: the subscriptions of a principal with a dynamic scope (a clinical user,
:class:`~vitalcore.clinical.ClinicalScope`) are checked again when messages reach them,
at most once per topic every :data:`SCOPE_RECHECK_S` seconds (each re-check is an
audited decision). A subscription no longer allowed (the patient left the nurse's ward,
the grant expired or was revoked, the user was disabled) is removed, counted as
``acl_revoked_subscriptions`` and logged; the message is not delivered through it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import TYPE_CHECKING

import msgspec

from ..mqtt import Properties, encode_publish, encode_pubrel
from ..mqtt.topics import split_shared, topic_matches
from .auth import Principal, may_subscribe

if TYPE_CHECKING:
    from .broker import Broker
    from .client import Client

__all__ = ["Message", "Delivery", "Session", "SubOptions", "SCOPE_RECHECK_S"]

#: Seconds a dynamic-scope decision about one topic of one session is reused (see the
#: module docstring): the longest a subscription outlives its permission.
SCOPE_RECHECK_S = 30.0
_MAX_SCOPE_TOPICS = 4096


class Message:
    """An application message being routed (immutable once created).

    ``props`` holds the MQTT 5 properties forwarded to subscribers (payload format,
    content type, response topic, correlation data, user properties); the expiry is
    kept as a deadline and re-expressed as a remaining interval when sent.
    """

    __slots__ = ("topic", "payload", "qos", "retain", "props", "origin", "expires_at")

    def __init__(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                 props: Properties | None = None, origin: Hashable = None,
                 expires_at: float | None = None) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.props = props
        self.origin = origin  # session key of the publisher (No Local), None for the server
        self.expires_at = expires_at

    @classmethod
    def from_publish(cls, topic: str, payload: bytes, qos: int, retain: bool,
                     props: Properties | None, origin: Hashable) -> Message:
        if props is None:
            return cls(topic, payload, qos, retain, None, origin)
        fwd = Properties(
            payload_format_indicator=props.payload_format_indicator,
            content_type=props.content_type, response_topic=props.response_topic,
            correlation_data=props.correlation_data, user_properties=props.user_properties,
        )
        if fwd == _EMPTY_PROPS:
            fwd = None
        expiry = props.message_expiry_interval
        expires_at = None if expiry is None else time.monotonic() + expiry
        return cls(topic, payload, qos, retain, fwd, origin, expires_at)


_EMPTY_PROPS = Properties()


class SubOptions:
    """Options of one subscription of a session."""

    __slots__ = ("qos", "no_local", "retain_as_published", "sub_id")

    def __init__(self, qos: int, no_local: bool = False, retain_as_published: bool = False,
                 sub_id: int | None = None) -> None:
        self.qos = qos
        self.no_local = no_local
        self.retain_as_published = retain_as_published
        self.sub_id = sub_id

    @property
    def plain(self) -> bool:
        return not (self.no_local or self.retain_as_published or self.sub_id)


class Delivery:
    """A message on its way to one session: the granted QoS and the flags it goes with."""

    __slots__ = ("msg", "qos", "retain", "sub_ids", "state")

    def __init__(self, msg: Message, qos: int, retain: bool, sub_ids: tuple[int, ...] = ()
                 ) -> None:
        self.msg = msg
        self.qos = qos
        self.retain = retain
        self.sub_ids = sub_ids
        self.state = 0  # in flight: 0 = PUBLISH sent, 1 = PUBREL sent (QoS 2)


class Session:
    """State of one client id of one principal (see the module docstring)."""

    def __init__(self, broker: Broker, key: tuple[str, str], expiry_s: int) -> None:
        self.broker = broker
        self.key = key
        self.client_id = key[1]
        self.expiry_s = expiry_s
        self.client: Client | None = None
        self.subscriptions: dict[str, SubOptions] = {}
        self.queue: deque[Delivery] = deque()
        self.queued_bytes = 0
        self.inflight: OrderedDict[int, Delivery] = OrderedDict()
        self.inbound_qos2: set[int] = set()
        self._next_pid = 1
        self.expiry_handle = None
        self.will_handle = None
        self.pending_will = None  # (principal, will Message) while a Will Delay runs
        self.ended = False
        self.scoped: Principal | None = None  # a principal with a dynamic scope
        self._scope_until: dict[str, float] = {}  # topic -> monotonic end of its decision

    def __hash__(self) -> int:  # subscription-tree key: identity
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"<Session {self.key[0]}/{self.client_id} queued={len(self.queue)}>"

    # -- routing ----------------------------------------------------------------------
    def deliver(self, msg: Message, qos: int, *, shared: bool = False) -> None:
        """Deliver ``msg`` under a matching subscription with maximum QoS ``qos``."""
        if self.scoped is not None and not self._in_scope(msg.topic):
            return
        retain = False
        sub_ids: tuple[int, ...] = ()
        if not shared and not all(o.plain for o in self.subscriptions.values()):
            opts = [o for f, o in self.subscriptions.items()
                    if not f.startswith("$share/") and topic_matches(f, msg.topic)]
            if opts and all(o.no_local for o in opts) and msg.origin == self.key:
                return
            retain = msg.retain and any(o.retain_as_published for o in opts)
            sub_ids = tuple(o.sub_id for o in opts if o.sub_id)
        self.push(Delivery(msg, min(qos, msg.qos), retain, sub_ids))

    def _in_scope(self, topic: str) -> bool:
        """Whether a subscription of this session still may receive ``topic``; those that
        may not are removed (see the module docstring)."""
        now = time.monotonic()
        until = self._scope_until.get(topic)
        if until is not None and until > now:
            return True
        kept = False
        for flt in [f for f in self.subscriptions if topic_matches(split_shared(f)[1], topic)]:
            if may_subscribe(self.scoped, flt):
                kept = True
            else:
                self.revoke(flt)
        if kept:
            if len(self._scope_until) >= _MAX_SCOPE_TOPICS:
                self._scope_until.clear()
            self._scope_until[topic] = now + SCOPE_RECHECK_S
        return kept

    def revoke(self, flt: str) -> None:
        """Remove subscription ``flt`` because its principal may no longer hold it."""
        if self.subscriptions.pop(flt, None) is None:
            return
        b = self.broker
        b.tree.remove(flt, self)
        b.count("acl_revoked_subscriptions")
        b.log_event(logging.WARNING, "acl_revoke", "%r: subscription %r is no longer in "
                    "scope; removed", self, flt)

    def push(self, d: Delivery) -> None:
        """Send ``d`` now if the client can take it, else queue it (slow-consumer policy)."""
        client = self.client
        if (client is not None and not self.queue and client.can_send
                and (d.qos == 0 or len(self.inflight) < client.send_quota)):
            self._send(client, d)
            return
        self._enqueue(d)

    def _enqueue(self, d: Delivery) -> None:
        b = self.broker
        size = len(d.msg.payload)
        lim = b.limits
        if len(self.queue) >= lim.max_queued or self.queued_bytes + size > lim.max_queued_bytes:
            if d.qos == 0:
                b.count("dropped_qos0")
                return
            victim = next((q for q in self.queue if q.qos == 0), None)
            if victim is None:
                b.count("quota_drops")
                if self.client is not None:
                    self.client.quota_exceeded()
                return
            self.queue.remove(victim)
            self.queued_bytes -= len(victim.msg.payload)
            b.count("dropped_qos0")
        self.queue.append(d)
        self.queued_bytes += size

    def pump(self) -> None:
        """Send queued messages while the client takes them (writable, quota left)."""
        client = self.client
        queue = self.queue
        while queue and client is not None and client.can_send:
            d = queue[0]
            if d.qos and len(self.inflight) >= client.send_quota:
                return
            queue.popleft()
            self.queued_bytes -= len(d.msg.payload)
            self._send(client, d)
            client = self.client  # a send may have closed the connection

    def _send(self, client: Client, d: Delivery, dup: bool = False, pid: int = 0) -> None:
        msg = d.msg
        props = msg.props
        level = client.level
        if level == 5:
            if d.sub_ids or msg.expires_at is not None:
                props = Properties() if props is None else msgspec.structs.replace(props)
                if d.sub_ids:
                    props.subscription_identifiers = list(d.sub_ids)
                if msg.expires_at is not None:
                    left = msg.expires_at - time.monotonic()
                    if left <= 0:
                        self.broker.count("expired_messages")
                        return
                    props.message_expiry_interval = max(1, int(left + 0.5))
        else:
            props = None
        if d.qos and not pid:
            pid = self._alloc_pid()
        data = encode_publish(msg.topic, msg.payload, d.qos, d.retain, dup, pid, props,
                              protocol_level=level)
        if len(data) > client.max_send_packet:
            self.broker.count("dropped_too_large_for_client")
            return
        if d.qos:
            self.inflight[pid] = d
        self.broker.count("messages_out")
        client.write(data)

    def _alloc_pid(self) -> int:
        pid = self._next_pid
        while pid in self.inflight:
            pid = pid % 65535 + 1
        self._next_pid = pid % 65535 + 1
        return pid

    # -- acknowledgements from the client ---------------------------------------------
    def acked(self, pid: int, qos: int) -> bool:
        """PUBACK (qos 1) or PUBCOMP (qos 2, after PUBREL) for ``pid``; False if unknown."""
        d = self.inflight.get(pid)
        if d is None or d.qos != qos or (qos == 2 and d.state != 1):
            return False
        del self.inflight[pid]
        self.pump()
        return True

    def received(self, pid: int, reason: int) -> bool:
        """PUBREC for ``pid``: move to PUBREL (or drop on a failure reason)."""
        d = self.inflight.get(pid)
        if d is None or d.qos != 2:
            return False
        if reason >= 0x80:
            del self.inflight[pid]
            self.pump()
        else:
            d.state = 1
        return True

    def resume(self, client: Client) -> None:
        """A client (re)attached: resend what is in flight (DUP), then drain the queue."""
        self.client = client
        principal = getattr(client, "principal", None)
        self.scoped = principal if principal is not None and principal.scope is not None \
            else None
        self._scope_until.clear()
        for pid, d in list(self.inflight.items()):
            if d.state == 1:
                client.write(encode_pubrel(pid, protocol_level=client.level))
            else:
                self._send(client, d, dup=True, pid=pid)
        self.pump()

    # -- subscriptions ----------------------------------------------------------------
    def clear(self) -> None:
        """End of the session: drop subscriptions and everything queued."""
        self.ended = True
        self.broker.tree.remove_key(self)
        self.subscriptions.clear()
        dropped = len(self.queue) + len(self.inflight)
        if dropped:
            self.broker.count("dropped_session_end", dropped)
        self.queue.clear()
        self.queued_bytes = 0
        self.inflight.clear()
        self.inbound_qos2.clear()
        self._scope_until.clear()
