"""Pure-Python reference twin of the MQTT packet codec (``vitalcore._ext.mqttcodec``).

Slow and simple on purpose: it is the executable form of ``docs/mqtt-codec.md``. The
tests run every parser and encoder test against both implementations and require
identical packets, bytes and reason codes. Runtime code never falls back to it.

Check order, shared by both implementations so that an input fails the same way
whatever its fragmentation: (1) the first byte as soon as it arrives (type, flags,
direction, CONNECT first); (2) each Remaining Length byte (at most 4, minimal
encoding); (3) the announced packet size against ``max_packet_size``; (4) the body.
"""

from __future__ import annotations

from ..errors import UsageError
from . import packets as P
from .errors import MqttProtocolError
from .topics import topic_filter_error, topic_name_error

__all__ = [
    "MqttParser",
    "encode",
    "encode_publish",
    "encode_puback",
    "encode_pubrec",
    "encode_pubrel",
    "encode_pubcomp",
]

T = P.PacketType
MALFORMED, PROTOCOL_ERROR, UNSUPPORTED_VERSION = 0x81, 0x82, 0x84
FILTER_INVALID, NAME_INVALID, TOO_LARGE = 0x8F, 0x90, 0x95

#: Packet types each role receives (server: from clients; client: from servers).
RECEIVES = {
    "server": frozenset({1, 3, 4, 5, 6, 7, 8, 10, 12, 14, 15}),
    "client": frozenset({2, 3, 4, 5, 6, 7, 9, 11, 13, 14, 15}),
}
_FIXED_FLAGS: dict[int, int] = {T.PUBREL: 2, T.SUBSCRIBE: 2, T.UNSUBSCRIBE: 2}
_ACK_CLASSES: dict[int, type[P.PubAck | P.PubRec | P.PubRel | P.PubComp]] = {
    T.PUBACK: P.PubAck,
    T.PUBREC: P.PubRec,
    T.PUBREL: P.PubRel,
    T.PUBCOMP: P.PubComp,
}


def _err(code: int, message: str) -> MqttProtocolError:
    return MqttProtocolError(code, message)


# ------------------------------------------------------------------------------ decoding
class _Reader:
    """Cursor over one packet body; every read past the end is a Malformed Packet."""

    def __init__(self, data: bytes, level: int) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.level = level

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.end - self.pos:
            raise _err(MALFORMED, f"{what} runs past the end of the packet")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")

    def varint(self, what: str) -> int:
        value = 0
        for i in range(4):
            b = self.u8(what)
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise _err(MALFORMED, f"{what}: variable byte integer not minimally encoded")
                return value
        raise _err(MALFORMED, f"{what}: variable byte integer longer than 4 bytes")

    def binary(self, what: str) -> bytes:
        return self.take(self.u16(what), what)

    def string(self, what: str) -> str:
        raw = self.binary(what)
        if b"\0" in raw:
            raise _err(MALFORMED, f"{what}: U+0000 in a UTF-8 string")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _err(MALFORMED, f"{what}: invalid UTF-8") from None

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise _err(MALFORMED, f"{self.end - self.pos} unexpected bytes at the end of {what}")

    def packet_id(self) -> int:
        pid = self.u16("packet identifier")
        if pid == 0:
            raise _err(PROTOCOL_ERROR, "packet identifier 0")
        return pid

    def reason(self, ptype: int) -> int:
        rc = self.u8("reason code")
        if rc not in P.REASON_CODES[ptype]:
            raise _err(PROTOCOL_ERROR, f"reason code 0x{rc:02X} not allowed in {T(ptype).name}")
        return rc

    def properties(self, ptype: int) -> P.Properties | None:
        """Read a Property Length and the properties that follow (§2.2.2)."""
        n = self.varint("property length")
        if n > self.end - self.pos:
            raise _err(MALFORMED, "properties run past the end of the packet")
        if n == 0:
            return None
        sub = _Reader(self.take(n, "properties"), self.level)
        where = "Will" if ptype == P.WILL_PROPERTIES else T(ptype).name
        values: dict[str, object] = {}
        while sub.remaining():
            pid = sub.varint("property identifier")
            spec = P.PROPERTIES.get(pid)
            if spec is None:
                raise _err(MALFORMED, f"unknown property identifier 0x{pid:02X}")
            name, ptyp, allowed = spec
            if ptype not in allowed:
                raise _err(PROTOCOL_ERROR, f"property {name} not allowed in {where}")
            value = sub.value(ptyp, name)
            if pid in P.BOOL_PROPERTIES and value not in (0, 1):
                raise _err(PROTOCOL_ERROR, f"property {name} must be 0 or 1, got {value}")
            if pid in P.NONZERO_PROPERTIES and value == 0:
                raise _err(PROTOCOL_ERROR, f"property {name} must not be 0")
            if pid == 0x26 or (pid == 0x0B and ptype == T.PUBLISH):
                values.setdefault(name, []).append(value)  # type: ignore[attr-defined]
            elif name in values:
                raise _err(PROTOCOL_ERROR, f"property {name} included more than once")
            else:
                values[name] = [value] if pid == 0x0B else value
        return P.Properties(**values)  # type: ignore[arg-type]

    def value(self, ptyp: P.PropType, name: str) -> object:
        if ptyp == P.PropType.BYTE:
            return self.u8(name)
        if ptyp == P.PropType.TWO_BYTE:
            return self.u16(name)
        if ptyp == P.PropType.FOUR_BYTE:
            return self.u32(name)
        if ptyp == P.PropType.VARINT:
            return self.varint(name)
        if ptyp == P.PropType.UTF8:
            return self.string(name)
        if ptyp == P.PropType.BINARY:
            return self.binary(name)
        return (self.string(name), self.string(name))


class MqttParser:
    """Incremental MQTT 3.1.1 / 5.0 packet decoder (reference implementation).

    See :class:`vitalcore.mqtt.MqttParser` for the documented contract.
    """

    def __init__(
        self,
        max_packet_size: int = P.MAX_REMAINING_LENGTH,
        role: str = "server",
        protocol_level: int | None = None,
    ) -> None:
        if role not in RECEIVES:
            raise UsageError(f"role must be 'server' or 'client', got {role!r}")
        self._role = role
        self.max_packet_size = max_packet_size
        self._level = 0
        if protocol_level is not None:
            self.protocol_level = protocol_level
        self._buf = bytearray()
        self._failed = False
        self._checked_first = False

    @property
    def role(self) -> str:
        return self._role

    @property
    def max_packet_size(self) -> int:
        return self._max

    @max_packet_size.setter
    def max_packet_size(self, value: int) -> None:
        if type(value) is not int or value < 2:
            raise UsageError(f"max_packet_size must be an int >= 2, got {value!r}")
        self._max = min(value, P.MAX_REMAINING_LENGTH + 5)  # the largest possible packet

    @property
    def protocol_level(self) -> int:
        return self._level

    @protocol_level.setter
    def protocol_level(self, value: int) -> None:
        if value not in (P.MQTT_3_1_1, P.MQTT_5):
            raise UsageError(f"protocol_level must be 4 (MQTT 3.1.1) or 5 (MQTT 5), got {value!r}")
        self._level = value

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data) -> list[P.Packet]:  # noqa: ANN001 - any buffer
        if self._failed:
            raise UsageError("the parser failed on bad input; MQTT requires closing the connection")
        if self._role == "client" and not self._level:
            raise UsageError("set protocol_level before feeding a client-role parser")
        self._buf += memoryview(data).cast("B")
        out: list[P.Packet] = []
        try:
            while (pkt := self._next()) is not None:
                out.append(pkt)
        except MqttProtocolError as e:
            self._failed = True
            self._buf.clear()  # a failed parser holds nothing (as the Cython parser)
            e.packets = out
            raise
        return out

    def _next(self) -> P.Packet | None:
        buf = self._buf
        if not buf:
            return None
        if not self._checked_first:
            self._check_first(buf[0])
            self._checked_first = True
        rl = 0
        i = 1
        while True:
            if i >= len(buf):
                return None
            b = buf[i]
            rl |= (b & 0x7F) << (7 * (i - 1))
            if not b & 0x80:
                if b == 0 and i > 1:
                    raise _err(MALFORMED, "remaining length not minimally encoded")
                break
            if i == 4:
                raise _err(MALFORMED, "remaining length longer than 4 bytes")
            i += 1
        total = i + 1 + rl
        if total > self._max:
            raise _err(TOO_LARGE, f"packet of {total} bytes exceeds the limit of {self._max}")
        if len(buf) < total:
            return None
        first = buf[0]
        body = bytes(buf[i + 1 : total])
        del buf[:total]
        self._checked_first = False
        return self._packet(first, body)

    def _check_first(self, first: int) -> None:
        t, flags = first >> 4, first & 0x0F
        if t == 0 or (t == T.AUTH and self._level == P.MQTT_3_1_1):
            raise _err(MALFORMED, f"reserved packet type {t}")
        if t == T.PUBLISH:
            if flags & 0x06 == 0x06:
                raise _err(MALFORMED, "PUBLISH with QoS 3")
            if flags & 0x08 and not flags & 0x06:
                raise _err(MALFORMED, "PUBLISH with DUP set on QoS 0")
        elif flags != _FIXED_FLAGS.get(t, 0):
            raise _err(MALFORMED, f"reserved flags 0x{flags:X} in {T(t).name}")
        if t not in RECEIVES[self._role]:
            raise _err(PROTOCOL_ERROR, f"a {self._role} does not receive {T(t).name}")
        if self._role == "server":
            if not self._level and t != T.CONNECT:
                raise _err(PROTOCOL_ERROR, f"{T(t).name} before CONNECT")
            if self._level and t == T.CONNECT:
                raise _err(PROTOCOL_ERROR, "second CONNECT")

    def _packet(self, first: int, body: bytes) -> P.Packet:
        t = first >> 4
        if t == T.CONNECT:
            return self._connect(body)
        r = _Reader(body, self._level)
        v5 = self._level == P.MQTT_5
        if t == T.PUBLISH:
            return self._publish(first, r, v5)
        if t in _ACK_CLASSES:
            pid = r.packet_id()
            rc, props = 0, None
            if v5 and r.remaining():
                rc = r.reason(t)
                if r.remaining():
                    props = r.properties(t)
            r.done(T(t).name)
            return _ACK_CLASSES[t](pid, rc, props)
        if t in (T.PINGREQ, T.PINGRESP):
            r.done(T(t).name)
            return P.PingReq() if t == T.PINGREQ else P.PingResp()
        if t in (T.DISCONNECT, T.AUTH):
            rc, props = 0, None
            if v5 and r.remaining():
                rc = r.reason(t)
                if t == T.AUTH or r.remaining():  # AUTH: reason code and properties, or nothing
                    props = r.properties(t)
            r.done(T(t).name)
            return P.Disconnect(rc, props) if t == T.DISCONNECT else P.Auth(rc, props)
        if t == T.CONNACK:
            return self._connack(r, v5)
        if t in (T.SUBSCRIBE, T.UNSUBSCRIBE):
            return self._subscribe(t, r, v5)
        return self._suback(t, r, v5)  # SUBACK, UNSUBACK

    def _connect(self, body: bytes) -> P.Connect:
        r = _Reader(body, 0)
        name = r.string("protocol name")
        level = r.u8("protocol level")
        if name != "MQTT" or level not in (P.MQTT_3_1_1, P.MQTT_5):
            raise _err(UNSUPPORTED_VERSION, f"unsupported protocol {name!r} level {level}")
        r.level = level
        v5 = level == P.MQTT_5
        flags = r.u8("connect flags")
        if flags & 0x01:
            raise _err(MALFORMED, "reserved connect flag set")
        has_will, will_qos, will_retain = flags & 0x04, (flags >> 3) & 3, bool(flags & 0x20)
        has_password, has_user = flags & 0x40, flags & 0x80
        if will_qos == 3:
            raise _err(MALFORMED, "Will QoS 3")
        if not has_will and (will_qos or will_retain):
            raise _err(MALFORMED, "Will QoS or Will Retain set without Will Flag")
        if not v5 and has_password and not has_user:
            raise _err(MALFORMED, "password flag without user name flag (MQTT 3.1.1)")
        keep_alive = r.u16("keep alive")
        props = r.properties(T.CONNECT) if v5 else None
        client_id = r.string("client identifier")
        will = None
        if has_will:
            wprops = r.properties(P.WILL_PROPERTIES) if v5 else None
            wtopic = r.string("will topic")
            if err := topic_name_error(wtopic):
                raise _err(NAME_INVALID, f"will topic: {err}")
            will = P.Will(wtopic, r.binary("will payload"), will_qos, will_retain, wprops)
        username = r.string("user name") if has_user else None
        password = r.binary("password") if has_password else None
        r.done("CONNECT")
        self._level = level
        return P.Connect(
            level, client_id, bool(flags & 0x02), keep_alive, username, password, will, props
        )

    def _connack(self, r: _Reader, v5: bool) -> P.ConnAck:
        flags = r.u8("connack flags")
        if flags & 0xFE:
            raise _err(MALFORMED, "reserved connack flags set")
        if v5:
            rc = r.reason(T.CONNACK)
        else:
            rc = r.u8("return code")
            if rc not in P.CONNACK_V3_RETURN_CODES:
                raise _err(PROTOCOL_ERROR, f"CONNACK return code {rc} unknown in MQTT 3.1.1")
        if rc and flags:
            raise _err(PROTOCOL_ERROR, "session present set on a refused connection")
        props = r.properties(T.CONNACK) if v5 else None
        r.done("CONNACK")
        return P.ConnAck(bool(flags), rc, props)

    def _publish(self, first: int, r: _Reader, v5: bool) -> P.Publish:
        qos = (first >> 1) & 3
        topic = r.string("topic name")
        if "+" in topic or "#" in topic:
            raise _err(NAME_INVALID, f"wildcard in topic name {topic!r}")
        pid = r.packet_id() if qos else 0
        props = r.properties(T.PUBLISH) if v5 else None
        if not topic and (props is None or props.topic_alias is None):
            raise _err(PROTOCOL_ERROR, "empty topic name without topic alias")
        payload = r.take(r.remaining(), "payload")
        return P.Publish(topic, payload, qos, bool(first & 1), bool(first & 8), pid, props)

    def _subscribe(self, t: int, r: _Reader, v5: bool) -> P.Subscribe | P.Unsubscribe:
        pid = r.packet_id()
        props = r.properties(t) if v5 else None
        items: list = []
        while r.remaining():
            flt = r.string("topic filter")
            if err := topic_filter_error(flt, shared=v5):
                raise _err(FILTER_INVALID, err)
            if t == T.UNSUBSCRIBE:
                items.append(flt)
                continue
            opts = r.u8("subscription options")
            if opts & (0xC0 if v5 else 0xFC):
                raise _err(MALFORMED, f"reserved subscription option bits in 0x{opts:02X}")
            qos, retain_handling = opts & 3, (opts >> 4) & 3
            if qos == 3:
                raise _err(MALFORMED, "subscription QoS 3")
            if retain_handling == 3:
                raise _err(MALFORMED, "retain handling 3")
            no_local = bool(opts & 4)
            if no_local and flt.startswith("$share/") and v5:
                raise _err(PROTOCOL_ERROR, "No Local on a shared subscription")
            items.append(P.Subscription(flt, qos, no_local, bool(opts & 8), retain_handling))
        if not items:
            raise _err(PROTOCOL_ERROR, f"{T(t).name} without topic filter")
        if t == T.SUBSCRIBE:
            return P.Subscribe(pid, items, props)
        return P.Unsubscribe(pid, items, props)

    def _suback(self, t: int, r: _Reader, v5: bool) -> P.SubAck | P.UnsubAck:
        pid = r.packet_id()
        props = r.properties(t) if v5 else None
        codes = []
        if t == T.SUBACK or v5:
            allowed = P.REASON_CODES[t] if v5 else P.SUBACK_V3_RETURN_CODES
            while r.remaining():
                rc = r.u8("reason code")
                if rc not in allowed:
                    raise _err(PROTOCOL_ERROR, f"reason code 0x{rc:02X} not allowed in {T(t).name}")
                codes.append(rc)
            if not codes:
                raise _err(PROTOCOL_ERROR, f"{T(t).name} without reason code")
        r.done(T(t).name)
        return P.SubAck(pid, codes, props) if t == T.SUBACK else P.UnsubAck(pid, codes, props)


# ------------------------------------------------------------------------------ encoding
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _u16(n: int, what: str) -> bytes:
    if not isinstance(n, int) or not 0 <= n <= 0xFFFF:
        raise UsageError(f"{what} must be an int in 0..65535, got {n!r}")
    return n.to_bytes(2, "big")


def _binary(b: bytes | bytearray | memoryview, what: str) -> bytes:
    b = bytes(b)
    return _u16(len(b), f"length of {what}") + b


def _string(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise UsageError(f"{what} must be a str, got {type(s).__name__}")
    if "\0" in s:
        raise UsageError(f"{what} contains U+0000")
    try:
        raw = s.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not encodable as UTF-8 (lone surrogate)") from None
    return _binary(raw, what)


def _packet_id(pid: int) -> bytes:
    if not isinstance(pid, int) or not 1 <= pid <= 0xFFFF:
        raise UsageError(f"packet_id must be in 1..65535, got {pid!r}")
    return pid.to_bytes(2, "big")


def _qos(qos: int, what: str = "qos") -> int:
    if qos not in (0, 1, 2):
        raise UsageError(f"{what} must be 0, 1 or 2, got {qos!r}")
    return qos


def _level(level: int) -> bool:
    if level not in (P.MQTT_3_1_1, P.MQTT_5):
        raise UsageError(f"protocol_level must be 4 or 5, got {level!r}")
    return level == P.MQTT_5


def _no_v5(v5: bool, props: P.Properties | None, what: str) -> None:
    if not v5 and props is not None:
        raise UsageError(f"{what}: properties need MQTT 5")


def _reason(ptype: int, rc: int, v5: bool) -> int:
    if v5:
        if rc not in P.REASON_CODES[ptype]:
            raise UsageError(f"reason code {rc!r} not allowed in {T(ptype).name}")
    elif rc != 0:
        raise UsageError(f"{T(ptype).name} has no reason code in MQTT 3.1.1 (got {rc!r})")
    return rc


def _properties(props: P.Properties | None, ptype: int) -> bytes:
    """Property Length + properties, in identifier order."""
    if props is None:
        return b"\x00"
    if not isinstance(props, P.Properties):
        raise UsageError(f"properties must be a Properties, got {type(props).__name__}")
    where = "Will" if ptype == P.WILL_PROPERTIES else T(ptype).name
    out = bytearray()
    for pid, (name, ptyp, allowed) in P.PROPERTIES.items():
        value = getattr(props, name)
        if value is None:
            continue
        if ptype not in allowed:
            raise UsageError(f"property {name} not allowed in {where}")
        if pid == 0x26 or pid == 0x0B:
            if not isinstance(value, list):
                raise UsageError(f"property {name} must be a list")
            if pid == 0x0B and ptype == T.SUBSCRIBE and len(value) != 1:
                raise UsageError("a SUBSCRIBE carries at most one subscription identifier")
            values = value
        else:
            values = [value]
        for v in values:
            out += _varint(pid) + _prop_value(pid, name, ptyp, v)
    if len(out) > P.MAX_VARINT:
        raise UsageError("properties too long")
    return _varint(len(out)) + bytes(out)


_INT_RANGE = {
    P.PropType.BYTE: 0xFF,
    P.PropType.TWO_BYTE: 0xFFFF,
    P.PropType.FOUR_BYTE: 0xFFFFFFFF,
    P.PropType.VARINT: P.MAX_VARINT,
}


def _prop_value(pid: int, name: str, ptyp: P.PropType, v: object) -> bytes:
    if ptyp in _INT_RANGE:
        if not isinstance(v, int) or not 0 <= v <= _INT_RANGE[ptyp]:
            raise UsageError(f"property {name} out of range: {v!r}")
        if pid in P.BOOL_PROPERTIES and v > 1:
            raise UsageError(f"property {name} must be 0 or 1, got {v}")
        if pid in P.NONZERO_PROPERTIES and v == 0:
            raise UsageError(f"property {name} must not be 0")
        if ptyp == P.PropType.VARINT:
            return _varint(v)
        return v.to_bytes({P.PropType.BYTE: 1, P.PropType.TWO_BYTE: 2}.get(ptyp, 4), "big")
    if ptyp == P.PropType.UTF8:
        return _string(v, name)  # type: ignore[arg-type]
    if ptyp == P.PropType.BINARY:
        if not isinstance(v, bytes | bytearray | memoryview):
            raise UsageError(f"property {name} must be bytes")
        return _binary(v, name)
    if not (isinstance(v, tuple) and len(v) == 2):
        raise UsageError(f"user property must be a (name, value) tuple, got {v!r}")
    return _string(v[0], name) + _string(v[1], name)


def _frame(first: int, body: bytes) -> bytes:
    if len(body) > P.MAX_REMAINING_LENGTH:
        raise UsageError(f"packet body of {len(body)} bytes exceeds {P.MAX_REMAINING_LENGTH}")
    return bytes([first]) + _varint(len(body)) + body


def encode_publish(
    topic: str,
    payload: bytes | bytearray | memoryview,
    qos: int = 0,
    retain: bool = False,
    dup: bool = False,
    packet_id: int = 0,
    properties: P.Properties | None = None,
    *,
    protocol_level: int,
) -> bytes:
    """Encode a PUBLISH; see :func:`vitalcore.mqtt.encode_publish`."""
    v5 = _level(protocol_level)
    _no_v5(v5, properties, "PUBLISH")
    _qos(qos)
    alias = v5 and properties is not None and properties.topic_alias is not None
    if not (topic == "" and alias):
        if err := topic_name_error(topic):
            raise UsageError(err)
    if qos == 0 and (packet_id or dup):
        raise UsageError("QoS 0 PUBLISH has no packet_id and no DUP")
    body = _string(topic, "topic")
    if qos:
        body += _packet_id(packet_id)
    if v5:
        body += _properties(properties, T.PUBLISH)
    first = 0x30 | (8 if dup else 0) | qos << 1 | (1 if retain else 0)
    return _frame(first, body + bytes(payload))


def _encode_ack(
    ptype: int,
    packet_id: int,
    reason_code: int,
    properties: P.Properties | None,
    protocol_level: int,
) -> bytes:
    v5 = _level(protocol_level)
    _no_v5(v5, properties, T(ptype).name)
    body = _packet_id(packet_id)
    _reason(ptype, reason_code, v5)
    if properties is not None:
        body += bytes([reason_code]) + _properties(properties, ptype)
    elif reason_code:
        body += bytes([reason_code])
    return _frame(ptype << 4 | _FIXED_FLAGS.get(ptype, 0), body)


def encode_puback(
    packet_id: int,
    reason_code: int = 0,
    properties: P.Properties | None = None,
    *,
    protocol_level: int,
) -> bytes:
    """Encode a PUBACK; see :func:`vitalcore.mqtt.encode_puback`."""
    return _encode_ack(T.PUBACK, packet_id, reason_code, properties, protocol_level)


def encode_pubrec(
    packet_id: int,
    reason_code: int = 0,
    properties: P.Properties | None = None,
    *,
    protocol_level: int,
) -> bytes:
    """Encode a PUBREC."""
    return _encode_ack(T.PUBREC, packet_id, reason_code, properties, protocol_level)


def encode_pubrel(
    packet_id: int,
    reason_code: int = 0,
    properties: P.Properties | None = None,
    *,
    protocol_level: int,
) -> bytes:
    """Encode a PUBREL."""
    return _encode_ack(T.PUBREL, packet_id, reason_code, properties, protocol_level)


def encode_pubcomp(
    packet_id: int,
    reason_code: int = 0,
    properties: P.Properties | None = None,
    *,
    protocol_level: int,
) -> bytes:
    """Encode a PUBCOMP."""
    return _encode_ack(T.PUBCOMP, packet_id, reason_code, properties, protocol_level)


def encode(packet: P.Packet, protocol_level: int) -> bytes:
    """Encode any packet; see :func:`vitalcore.mqtt.encode`."""
    v5 = _level(protocol_level)
    if not isinstance(packet, P.Packet):  # type: ignore[arg-type]
        raise UsageError(f"not an MQTT packet: {packet!r}")
    t = packet.packet_type
    if isinstance(packet, P.Publish):
        p = packet
        return encode_publish(
            p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id, p.properties,
            protocol_level=protocol_level,
        )
    if isinstance(packet, P.PubAck | P.PubRec | P.PubRel | P.PubComp):
        return _encode_ack(t, packet.packet_id, packet.reason_code, packet.properties,
                           protocol_level)
    if t == T.AUTH and not v5:
        raise UsageError("AUTH exists only in MQTT 5")
    _no_v5(v5, getattr(packet, "properties", None), T(t).name)
    if isinstance(packet, P.Connect):
        body = _connect_body(packet, protocol_level)
    elif isinstance(packet, P.ConnAck):
        body = _connack_body(packet, v5)
    elif isinstance(packet, P.Subscribe | P.Unsubscribe):
        body = _packet_id(packet.packet_id)
        if v5:
            body += _properties(packet.properties, t)
        pairs: list[tuple[str, P.Subscription | None]]
        if isinstance(packet, P.Subscribe):
            pairs = [(s.topic_filter, s) for s in packet.subscriptions]
        else:
            pairs = [(f, None) for f in packet.topic_filters]
        if not pairs:
            raise UsageError(f"{T(t).name} needs at least one topic filter")
        for flt, sub in pairs:
            body += _string(flt, "topic filter")
            if err := topic_filter_error(flt, v5):
                raise UsageError(err)
            if sub is not None:
                body += bytes([_sub_options(sub, v5)])
    elif isinstance(packet, P.SubAck | P.UnsubAck):
        body = _packet_id(packet.packet_id)
        if v5:
            body += _properties(packet.properties, t)
        codes = list(packet.reason_codes)
        if t == T.UNSUBACK and not v5:
            if codes:
                raise UsageError("UNSUBACK has no reason codes in MQTT 3.1.1")
        else:
            if not codes:
                raise UsageError(f"{T(t).name} needs at least one reason code")
            allowed = P.REASON_CODES[t] if v5 else P.SUBACK_V3_RETURN_CODES
            for rc in codes:
                if rc not in allowed:
                    raise UsageError(f"reason code {rc!r} not allowed in {T(t).name}")
            body += bytes(codes)
    elif isinstance(packet, P.Disconnect | P.Auth):
        rc = _reason(t, packet.reason_code, v5)
        if packet.properties is not None or (t == T.AUTH and rc):
            body = bytes([rc]) + _properties(packet.properties, t)
        else:
            body = bytes([rc]) if rc else b""
    else:  # PINGREQ, PINGRESP
        body = b""
    return _frame(t << 4 | _FIXED_FLAGS.get(t, 0), body)


def _connack_body(packet: P.ConnAck, v5: bool) -> bytes:
    rc = packet.reason_code
    if v5:
        _reason(T.CONNACK, rc, v5)
    elif rc not in P.CONNACK_V3_RETURN_CODES:
        raise UsageError(f"CONNACK return code must be 0..5, got {rc!r}")
    if rc and packet.session_present:
        raise UsageError("session_present must be False on a refused connection")
    body = bytes([1 if packet.session_present else 0, rc])
    if v5:
        body += _properties(packet.properties, T.CONNACK)
    return body


def _sub_options(s: P.Subscription, v5: bool) -> int:
    opts = _qos(s.qos, "subscription qos")
    if v5:
        if s.retain_handling not in (0, 1, 2):
            raise UsageError(f"retain_handling must be 0, 1 or 2, got {s.retain_handling!r}")
        if s.no_local and s.topic_filter.startswith("$share/"):
            raise UsageError("no_local is not allowed on a shared subscription")
        opts |= (4 if s.no_local else 0) | (8 if s.retain_as_published else 0)
        opts |= s.retain_handling << 4
    elif s.no_local or s.retain_as_published or s.retain_handling:
        raise UsageError("no_local, retain_as_published, retain_handling need MQTT 5")
    return opts


def _connect_body(c: P.Connect, protocol_level: int) -> bytes:
    if c.protocol_level != protocol_level:
        raise UsageError(f"Connect.protocol_level {c.protocol_level} != {protocol_level}")
    v5 = protocol_level == P.MQTT_5
    flags = 0x02 if c.clean_start else 0
    w = c.will
    if w is not None:
        _no_v5(v5, w.properties, "Will")
        if err := topic_name_error(w.topic):
            raise UsageError(f"will topic: {err}")
        flags |= 0x04 | _qos(w.qos, "will qos") << 3 | (0x20 if w.retain else 0)
    if c.username is not None:
        flags |= 0x80
    if c.password is not None:
        if not v5 and c.username is None:
            raise UsageError("MQTT 3.1.1 needs a username to send a password")
        flags |= 0x40
    body = _string("MQTT", "protocol name") + bytes([protocol_level, flags])
    body += _u16(c.keep_alive, "keep_alive")
    if v5:
        body += _properties(c.properties, T.CONNECT)
    body += _string(c.client_id, "client_id")
    if w is not None:
        if v5:
            body += _properties(w.properties, P.WILL_PROPERTIES)
        body += _string(w.topic, "will topic") + _binary(w.payload, "will payload")
    if c.username is not None:
        body += _string(c.username, "username")
    if c.password is not None:
        body += _binary(c.password, "password")
    return body
