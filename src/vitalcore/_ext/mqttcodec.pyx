# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""MQTT 3.1.1 / 5.0 packet codec: an incremental parser and the encoders, no I/O.

:class:`MqttParser` is a state machine (``PS_FIRST`` -> ``PS_LENGTH`` -> [``PS_BODY``])
over whatever chunks the transport feeds it. A packet whose body lies inside one chunk
is decoded in place from the caller's buffer; only a packet that straddles chunks is
collected into one private buffer (grown to at most that packet's size), so each byte
is copied at most once and no caller buffer is kept after :meth:`MqttParser.feed`
returns (a reused ``bytearray`` from ``BufferedProtocol`` is safe to pass).

The pure-Python twin ``vitalcore.mqtt._refcodec`` defines the behaviour; the tests
require identical packets, bytes and reason codes from both.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.exc cimport PyErr_Clear
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from cpython.unicode cimport PyUnicode_Check
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcmp, memcpy

cdef extern from "Python.h":
    # Declared without an exception clause: NULL is handled here to raise our errors.
    PyObject* PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size)

from vitalcore.errors import UsageError
from vitalcore.mqtt import packets as _P
from vitalcore.mqtt.errors import MqttProtocolError

__all__ = [
    "MqttParser",
    "encode",
    "encode_publish",
    "encode_puback",
    "encode_pubrec",
    "encode_pubrel",
    "encode_pubcomp",
]

# ---------------------------------------------------------------------------- constants
DEF MAX_RL = 268435455

cdef enum:
    T_CONNECT = 1
    T_CONNACK = 2
    T_PUBLISH = 3
    T_PUBACK = 4
    T_PUBREC = 5
    T_PUBREL = 6
    T_PUBCOMP = 7
    T_SUBSCRIBE = 8
    T_SUBACK = 9
    T_UNSUBSCRIBE = 10
    T_UNSUBACK = 11
    T_PINGREQ = 12
    T_PINGRESP = 13
    T_DISCONNECT = 14
    T_AUTH = 15
    T_WILL = 0          # pseudo type of the Will Properties

cdef enum:
    RC_MALFORMED = 0x81
    RC_PROTOCOL = 0x82
    RC_VERSION = 0x84
    RC_FILTER = 0x8F
    RC_NAME = 0x90
    RC_TOO_LARGE = 0x95

cdef enum:
    PT_BYTE = 1
    PT_TWO = 2
    PT_FOUR = 3
    PT_VARINT = 4
    PT_UTF8 = 5
    PT_BINARY = 6
    PT_PAIR = 7

# Packet types each role receives, as bit masks over the type number.
cdef unsigned int _RECEIVES[2]
_RECEIVES[0] = ((1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7)
                          | (1 << 8) | (1 << 10) | (1 << 12) | (1 << 14) | (1 << 15))
_RECEIVES[1] = ((1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7)
                          | (1 << 9) | (1 << 11) | (1 << 13) | (1 << 14) | (1 << 15))

# Property tables indexed by identifier, filled from packets.PROPERTIES (the one
# source of the spec table).
cdef unsigned char _PROP_TYPE[64]
cdef unsigned int _PROP_ALLOWED[64]
cdef unsigned char _PROP_BOOL[64]
cdef unsigned char _PROP_NONZERO[64]
cdef list _PROP_NAME = [None] * 64
cdef list _PROP_WHAT = [b""] * 64        # the names as bytes, for error messages
cdef list _PROP_ORDER = []          # (pid, name, type, allowed mask) in identifier order
cdef unsigned int _REASONS[16][8]   # allowed MQTT 5 reason codes: 256-bit set per type
cdef unsigned int _SUBACK_V3[8]


cdef inline void _bit_set(unsigned int* s, int v) noexcept:
    s[v >> 5] |= 1u << (v & 31)


cdef inline bint _bit_has(const unsigned int* s, int v) noexcept:
    return (s[v >> 5] >> (v & 31)) & 1


def _init_tables():
    cdef int pid, t, rc
    cdef unsigned int mask
    for pid in range(64):
        _PROP_TYPE[pid] = 0
        _PROP_ALLOWED[pid] = 0
        _PROP_BOOL[pid] = pid in _P.BOOL_PROPERTIES
        _PROP_NONZERO[pid] = pid in _P.NONZERO_PROPERTIES
    for pid, (name, ptyp, allowed) in sorted(_P.PROPERTIES.items()):
        mask = 0
        for t in allowed:
            mask |= 1u << t
        _PROP_TYPE[pid] = int(ptyp)
        _PROP_ALLOWED[pid] = mask
        _PROP_NAME[pid] = name
        _PROP_WHAT[pid] = name.encode("ascii")
        _PROP_ORDER.append((pid, name, int(ptyp), mask))
    for t in range(16):
        for rc in range(8):
            _REASONS[t][rc] = 0
    for t, codes in _P.REASON_CODES.items():
        for rc in codes:
            _bit_set(_REASONS[t], rc)
    for rc in range(8):
        _SUBACK_V3[rc] = 0
    for rc in _P.SUBACK_V3_RETURN_CODES:
        _bit_set(_SUBACK_V3, rc)


_init_tables()

cdef object _Properties = _P.Properties
cdef object _Connect = _P.Connect
cdef object _ConnAck = _P.ConnAck
cdef object _Publish = _P.Publish
cdef object _Will = _P.Will
cdef object _Subscription = _P.Subscription
cdef object _Subscribe = _P.Subscribe
cdef object _SubAck = _P.SubAck
cdef object _Unsubscribe = _P.Unsubscribe
cdef object _UnsubAck = _P.UnsubAck
cdef object _Disconnect = _P.Disconnect
cdef object _Auth = _P.Auth
cdef object _PINGREQ = _P.PingReq()
cdef object _PINGRESP = _P.PingResp()
cdef tuple _ACK_CLASSES = (None, None, None, None, _P.PubAck, _P.PubRec, _P.PubRel, _P.PubComp)
cdef tuple _PACKET_CLASSES = (
    _P.Connect, _P.ConnAck, _P.Publish, _P.PubAck, _P.PubRec, _P.PubRel, _P.PubComp,
    _P.Subscribe, _P.SubAck, _P.Unsubscribe, _P.UnsubAck, _P.PingReq, _P.PingResp,
    _P.Disconnect, _P.Auth,
)
cdef tuple _TYPE_NAMES = tuple(
    ["Will"] + [_P.PacketType(t).name for t in range(1, 16)]
)
cdef frozenset _CONNACK_V3 = _P.CONNACK_V3_RETURN_CODES


# ----------------------------------------------------------------------- error raising
# Out of line: the parse paths only test a condition and call one of these.
cdef int _fail(int code, str message) except -1:
    raise MqttProtocolError(code, message)


cdef int _short(const char* what) except -1:
    raise MqttProtocolError(
        RC_MALFORMED, f"{what.decode('ascii')} runs past the end of the packet")


cdef int _usage(str message) except -1:
    raise UsageError(message)


# ------------------------------------------------------------------------- body reads
cdef inline int _u8(Cursor* c, const char* what) except -1:
    if c.p >= c.end:
        return _short(what)
    cdef int v = c.p[0]
    c.p += 1
    return v


cdef inline int _u16(Cursor* c, const char* what) except -1:
    if c.end - c.p < 2:
        return _short(what)
    cdef int v = (c.p[0] << 8) | c.p[1]
    c.p += 2
    return v


cdef inline long long _u32(Cursor* c, const char* what) except -1:
    if c.end - c.p < 4:
        return _short(what)
    cdef long long v = (<long long>c.p[0] << 24) | (c.p[1] << 16) | (c.p[2] << 8) | c.p[3]
    c.p += 4
    return v


cdef int _varint(Cursor* c, const char* what) except -1:
    cdef int value = 0, i, b
    for i in range(4):
        b = _u8(c, what)
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if b == 0 and i > 0:
                _fail(RC_MALFORMED,
                      f"{what.decode('ascii')}: variable byte integer not minimally encoded")
            return value
    return _fail(RC_MALFORMED,
                 f"{what.decode('ascii')}: variable byte integer longer than 4 bytes")


cdef inline const unsigned char* _take(Cursor* c, Py_ssize_t n, const char* what) except NULL:
    if c.end - c.p < n:
        _short(what)
    c.p += n
    return c.p - n


cdef str _utf8(const unsigned char* s, Py_ssize_t n, const char* what):
    """Decode an MQTT UTF-8 string: valid UTF-8 (no surrogates) without U+0000 (§1.5.4)."""
    if memchr(s, 0, n) != NULL:
        _fail(RC_MALFORMED, f"{what.decode('ascii')}: U+0000 in a UTF-8 string")
    cdef PyObject* r = PyUnicode_DecodeUTF8(<const char*>s, n, NULL)
    if r == NULL:
        PyErr_Clear()
        _fail(RC_MALFORMED, f"{what.decode('ascii')}: invalid UTF-8")
    cdef str o = <str>r
    Py_DECREF(o)    # <str> cast took a new reference: hand the one of the call to ``o``
    return o


cdef inline str _string(Cursor* c, const char* what):
    cdef int n = _u16(c, what)
    return _utf8(_take(c, n, what), n, what)


cdef inline bytes _binary(Cursor* c, const char* what):
    cdef int n = _u16(c, what)
    return PyBytes_FromStringAndSize(<const char*>_take(c, n, what), n)


cdef inline int _packet_id(Cursor* c) except -1:
    cdef int pid = _u16(c, b"packet identifier")
    if pid == 0:
        _fail(RC_PROTOCOL, "packet identifier 0")
    return pid


cdef int _reason(Cursor* c, int t) except -1:
    cdef int rc = _u8(c, b"reason code")
    if not _bit_has(_REASONS[t], rc):
        _fail(RC_PROTOCOL, f"reason code 0x{rc:02X} not allowed in {_TYPE_NAMES[t]}")
    return rc


cdef int _done(Cursor* c, int t) except -1:
    if c.p != c.end:
        _fail(RC_MALFORMED,
              f"{c.end - c.p} unexpected bytes at the end of {_TYPE_NAMES[t]}")
    return 0


cdef object _properties(Cursor* c, int ptype):
    """Property Length and properties (§2.2.2); ``None`` when there are none."""
    cdef int n = _varint(c, b"property length")
    if n > c.end - c.p:
        _fail(RC_MALFORMED, "properties run past the end of the packet")
    if n == 0:
        return None
    cdef Cursor s
    s.p = c.p
    s.end = c.p + n
    c.p += n
    cdef dict d = {}
    cdef unsigned long long seen = 0
    cdef int pid, typ
    cdef long long iv
    cdef object v, name
    cdef const char* what
    while s.p < s.end:
        pid = _varint(&s, b"property identifier")
        if pid >= 64 or _PROP_TYPE[pid] == 0:
            _fail(RC_MALFORMED, f"unknown property identifier 0x{pid:02X}")
        name = _PROP_NAME[pid]
        if not (_PROP_ALLOWED[pid] >> ptype) & 1:
            _fail(RC_PROTOCOL, f"property {name} not allowed in {_TYPE_NAMES[ptype]}")
        typ = _PROP_TYPE[pid]
        what = <bytes>_PROP_WHAT[pid]
        iv = -1
        if typ == PT_BYTE:
            iv = _u8(&s, what)
        elif typ == PT_TWO:
            iv = _u16(&s, what)
        elif typ == PT_FOUR:
            iv = _u32(&s, what)
        elif typ == PT_VARINT:
            iv = _varint(&s, what)
        elif typ == PT_UTF8:
            v = _string(&s, what)
        elif typ == PT_BINARY:
            v = _binary(&s, what)
        else:
            v = (_string(&s, what), _string(&s, what))
        if iv >= 0:
            if _PROP_BOOL[pid] and iv > 1:
                _fail(RC_PROTOCOL, f"property {name} must be 0 or 1, got {iv}")
            if _PROP_NONZERO[pid] and iv == 0:
                _fail(RC_PROTOCOL, f"property {name} must not be 0")
            v = iv
        if pid == 0x26 or (pid == 0x0B and ptype == T_PUBLISH):
            if seen & (1ULL << pid):
                (<list>d[name]).append(v)
            else:
                d[name] = [v]
        elif seen & (1ULL << pid):
            _fail(RC_PROTOCOL, f"property {name} included more than once")
        else:
            d[name] = [v] if pid == 0x0B else v
        seen |= 1ULL << pid
    return _Properties(**d)


cdef int _filter_check(const unsigned char* s, Py_ssize_t n, bint shared_ok) except -1:
    """Validate a Topic Filter (§4.7.1, §4.8.2); return 1 for a shared subscription."""
    cdef Py_ssize_t i, start = 0
    cdef bint shared = False
    cdef const unsigned char* slash
    if n == 0:
        _fail(RC_FILTER, "empty topic filter")
    if shared_ok and n >= 7 and memcmp(s, b"$share/", 7) == 0:
        slash = <const unsigned char*>memchr(s + 7, b'/', n - 7)
        if slash == NULL or slash == s + 7:
            _fail(RC_FILTER, "shared subscription without share name and filter")
        for i in range(7, slash - s):
            if s[i] == b'+' or s[i] == b'#':
                _fail(RC_FILTER, "wildcard in share name")
        start = slash - s + 1
        shared = True
        if start == n:
            _fail(RC_FILTER, "empty topic filter")
    for i in range(start, n):
        if s[i] == b'#':
            if (i != start and s[i - 1] != b'/') or i != n - 1:
                _fail(RC_FILTER, "'#' must be a whole level and the last one")
        elif s[i] == b'+':
            if (i != start and s[i - 1] != b'/') or (i != n - 1 and s[i + 1] != b'/'):
                _fail(RC_FILTER, "'+' must be a whole level")
    return shared


# ----------------------------------------------------------------------------- parser
cdef class MqttParser:
    """Incremental MQTT 3.1.1 / 5.0 packet decoder with strict validation, no I/O.

    Parameters
    ----------
    max_packet_size : int
        Largest accepted packet in bytes, fixed header included (the meaning of MQTT 5's
        Maximum Packet Size, so the value announced in CONNECT/CONNACK can be passed
        as is). A packet announcing more fails with reason code 0x95 as soon as its
        Remaining Length is complete, before any of its body is buffered.
    role : {"server", "client"}
        Which side's packets are decoded: "server" decodes client-to-server packets
        (CONNECT first, then PUBLISH, SUBSCRIBE, ...), "client" the other direction.
    protocol_level : int, optional
        4 (MQTT 3.1.1) or 5 (MQTT 5.0). A server-role parser learns it from CONNECT;
        setting it beforehand means the CONNECT was already seen. A client-role parser
        must be given it (the client chose it) before the first ``feed``.

    Notes
    -----
    Any violation raises :class:`~vitalcore.mqtt.MqttProtocolError`; the packets decoded
    from the same ``feed`` call before the fault are on its ``packets`` attribute. MQTT
    requires closing the connection after such a fault, so the parser then refuses
    further input (:class:`~vitalcore.errors.UsageError`).
    """

    def __cinit__(self):
        self._body = NULL
        self._state = PS_FIRST

    def __init__(self, max_packet_size=MAX_RL, role="server", protocol_level=None):
        if role == "server":
            self._role = ROLE_SERVER
        elif role == "client":
            self._role = ROLE_CLIENT
        else:
            raise UsageError(f"role must be 'server' or 'client', got {role!r}")
        self.max_packet_size = max_packet_size
        self._level = 0
        if protocol_level is not None:
            self.protocol_level = protocol_level

    def __dealloc__(self):
        free(self._body)

    @property
    def role(self):
        """``"server"`` or ``"client"``."""
        return "server" if self._role == ROLE_SERVER else "client"

    @property
    def max_packet_size(self):
        """Largest accepted packet in bytes, fixed header included (settable)."""
        return self._max

    @max_packet_size.setter
    def max_packet_size(self, value):
        if type(value) is not int or value < 2:
            raise UsageError(f"max_packet_size must be an int >= 2, got {value!r}")
        self._max = min(value, MAX_RL + 5)  # the largest possible packet

    @property
    def protocol_level(self):
        """0 until known, then 4 (MQTT 3.1.1) or 5 (MQTT 5.0)."""
        return self._level

    @protocol_level.setter
    def protocol_level(self, value):
        if value != 4 and value != 5:
            raise UsageError(f"protocol_level must be 4 (MQTT 3.1.1) or 5 (MQTT 5), got {value!r}")
        self._level = value

    @property
    def failed(self):
        """True after a protocol error: the connection must be closed."""
        return self._state == PS_FAILED

    @property
    def pending_bytes(self):
        """Bytes held of a packet not yet complete (0 after a protocol error)."""
        if self._state == PS_LENGTH:
            return 1 + self._rl_bytes
        if self._state == PS_BODY:
            return 1 + self._rl_bytes + self._body_len
        return 0

    def feed(self, data):
        """Decode every packet completed by ``data``; return them in wire order.

        Parameters
        ----------
        data : buffer
            Any C-contiguous buffer (bytes, bytearray, memoryview), of any size from
            one byte up. It is not referenced after the call returns.

        Returns
        -------
        list
            Packet objects of :mod:`vitalcore.mqtt.packets` (possibly empty).

        Raises
        ------
        MqttProtocolError
            The bytes break the protocol; ``err.packets`` holds the packets decoded
            before the fault.
        UsageError
            The parser failed earlier, or a client-role parser has no protocol_level.
        """
        cdef Py_buffer view
        cdef list out = []
        if self._state == PS_FAILED:
            raise UsageError("the parser failed on bad input; MQTT requires closing the connection")
        if self._role == ROLE_CLIENT and self._level == 0:
            raise UsageError("set protocol_level before feeding a client-role parser")
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._feed(<const unsigned char*>view.buf, view.len, out)
        except BaseException as e:
            self._state = PS_FAILED
            if isinstance(e, MqttProtocolError):
                (<object>e).packets = out
            raise
        finally:
            PyBuffer_Release(&view)
        return out

    cdef int _feed(self, const unsigned char* p, Py_ssize_t n, list out) except -1:
        cdef const unsigned char* end = p + n
        cdef Py_ssize_t take
        while p < end:
            if self._state == PS_FIRST:
                self._check_first(p[0])
                self._first = p[0]
                self._rl = 0
                self._rl_bytes = 0
                self._state = PS_LENGTH
                p += 1
            elif self._state == PS_LENGTH:
                if self._length_byte(p[0]):
                    p += 1
                    if self._rl <= end - p:     # whole body in this chunk: decode in place
                        self._state = PS_FIRST
                        out.append(self._packet(self._first, p, self._rl))
                        p += self._rl
                    else:
                        self._state = PS_BODY
                        self._body_len = 0
                else:
                    p += 1
            else:
                take = min(self._rl - self._body_len, end - p)
                self._collect(p, take)
                p += take
                if self._body_len == self._rl:
                    self._state = PS_FIRST
                    out.append(self._packet(self._first, self._body, self._rl))
                    if self._body_cap > 65536:      # do not pin a large buffer per connection
                        free(self._body)
                        self._body = NULL
                        self._body_cap = 0
        return 0

    cdef int _collect(self, const unsigned char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t need = self._body_len + n, cap
        cdef unsigned char* nb
        if need > self._body_cap:
            # grow geometrically, never beyond this packet: memory follows the bytes
            # that actually arrived, not the size a peer announced
            cap = max(need, min(2 * self._body_cap, self._rl), 256)
            cap = min(cap, self._rl)
            nb = <unsigned char*>realloc(self._body, cap)
            if nb == NULL:
                raise MemoryError()
            self._body = nb
            self._body_cap = cap
        memcpy(self._body + self._body_len, p, n)
        self._body_len = need
        return 0

    cdef int _check_first(self, unsigned char first) except -1:
        cdef int t = first >> 4, flags = first & 0x0F
        if t == 0 or (t == T_AUTH and self._level == 4):
            _fail(RC_MALFORMED, f"reserved packet type {t}")
        if t == T_PUBLISH:
            if flags & 0x06 == 0x06:
                _fail(RC_MALFORMED, "PUBLISH with QoS 3")
            if flags & 0x08 and not flags & 0x06:
                _fail(RC_MALFORMED, "PUBLISH with DUP set on QoS 0")
        elif flags != (2 if t == T_PUBREL or t == T_SUBSCRIBE or t == T_UNSUBSCRIBE else 0):
            _fail(RC_MALFORMED, f"reserved flags 0x{flags:X} in {_TYPE_NAMES[t]}")
        if not (_RECEIVES[self._role] >> t) & 1:
            _fail(RC_PROTOCOL, f"a {self.role} does not receive {_TYPE_NAMES[t]}")
        if self._role == ROLE_SERVER:
            if self._level == 0 and t != T_CONNECT:
                _fail(RC_PROTOCOL, f"{_TYPE_NAMES[t]} before CONNECT")
            if self._level != 0 and t == T_CONNECT:
                _fail(RC_PROTOCOL, "second CONNECT")
        return 0

    cdef int _length_byte(self, unsigned char b) except -1:
        """Add one Remaining Length byte (§2.1.4); 1 when the length is complete."""
        self._rl |= <Py_ssize_t>(b & 0x7F) << (7 * self._rl_bytes)
        self._rl_bytes += 1
        if b & 0x80:
            if self._rl_bytes == 4:
                _fail(RC_MALFORMED, "remaining length longer than 4 bytes")
            return 0
        if b == 0 and self._rl_bytes > 1:
            _fail(RC_MALFORMED, "remaining length not minimally encoded")
        if 1 + self._rl_bytes + self._rl > self._max:
            _fail(RC_TOO_LARGE, f"packet of {1 + self._rl_bytes + self._rl} bytes exceeds "
                                f"the limit of {self._max}")
        return 1

    cdef object _packet(self, unsigned char first, const unsigned char* p, Py_ssize_t n):
        cdef Cursor c
        cdef int t = first >> 4, pid, rc = 0
        cdef object props = None
        c.p = p
        c.end = p + n
        if t == T_PUBLISH:
            return self._publish(first, &c)
        if T_PUBACK <= t <= T_PUBCOMP:
            pid = _packet_id(&c)
            if self._level == 5 and c.p < c.end:
                rc = _reason(&c, t)
                if c.p < c.end:
                    props = _properties(&c, t)
            _done(&c, t)
            return _ACK_CLASSES[t](pid, rc, props)
        if t == T_PINGREQ or t == T_PINGRESP:
            _done(&c, t)
            return _PINGREQ if t == T_PINGREQ else _PINGRESP
        if t == T_DISCONNECT or t == T_AUTH:
            if self._level == 5 and c.p < c.end:
                rc = _reason(&c, t)
                if t == T_AUTH or c.p < c.end:  # AUTH: reason code and properties, or nothing
                    props = _properties(&c, t)
            _done(&c, t)
            return (_Disconnect if t == T_DISCONNECT else _Auth)(rc, props)
        if t == T_CONNECT:
            return self._connect(&c)
        if t == T_CONNACK:
            return self._connack(&c)
        if t == T_SUBSCRIBE or t == T_UNSUBSCRIBE:
            return self._subscribe(t, &c)
        return self._suback(t, &c)

    cdef str _topic_name(self, const unsigned char* s, Py_ssize_t n):
        """Topic Name of a PUBLISH, reusing the previous str when the bytes repeat."""
        cdef bytes raw = self._topic_raw
        if (raw is not None and PyBytes_GET_SIZE(raw) == n
                and memcmp(PyBytes_AS_STRING(raw), s, n) == 0):
            return self._topic
        cdef str topic = _utf8(s, n, b"topic name")
        if memchr(s, b'+', n) != NULL or memchr(s, b'#', n) != NULL:
            _fail(RC_NAME, f"wildcard in topic name {topic!r}")
        if n:
            self._topic_raw = PyBytes_FromStringAndSize(<const char*>s, n)
            self._topic = topic
        return topic

    cdef object _publish(self, unsigned char first, Cursor* c):
        cdef int qos = (first >> 1) & 3, pid = 0
        cdef int tlen = _u16(c, b"topic name")
        cdef str topic = self._topic_name(_take(c, tlen, b"topic name"), tlen)
        cdef object props = None
        cdef bint retain = first & 1, dup = first & 8
        if qos:
            pid = _packet_id(c)
        if self._level == 5:
            props = _properties(c, T_PUBLISH)
        if tlen == 0 and (props is None or props.topic_alias is None):
            _fail(RC_PROTOCOL, "empty topic name without topic alias")
        cdef bytes payload = PyBytes_FromStringAndSize(<const char*>c.p, c.end - c.p)
        return _Publish(topic, payload, qos, retain, dup, pid, props)

    cdef object _connect(self, Cursor* c):
        cdef str name = _string(c, b"protocol name")
        cdef int level = _u8(c, b"protocol level")
        if name != "MQTT" or (level != 4 and level != 5):
            _fail(RC_VERSION, f"unsupported protocol {name!r} level {level}")
        cdef bint v5 = level == 5
        cdef int flags = _u8(c, b"connect flags")
        if flags & 0x01:
            _fail(RC_MALFORMED, "reserved connect flag set")
        cdef bint has_will = flags & 0x04, will_retain = flags & 0x20
        cdef bint has_password = flags & 0x40, has_user = flags & 0x80
        cdef int will_qos = (flags >> 3) & 3
        if will_qos == 3:
            _fail(RC_MALFORMED, "Will QoS 3")
        if not has_will and (will_qos or will_retain):
            _fail(RC_MALFORMED, "Will QoS or Will Retain set without Will Flag")
        if not v5 and has_password and not has_user:
            _fail(RC_MALFORMED, "password flag without user name flag (MQTT 3.1.1)")
        cdef int keep_alive = _u16(c, b"keep alive")
        cdef object props = _properties(c, T_CONNECT) if v5 else None
        cdef str client_id = _string(c, b"client identifier")
        cdef object will = None, wprops = None, username = None, password = None
        cdef str wtopic
        if has_will:
            if v5:
                wprops = _properties(c, T_WILL)
            wtopic = _string(c, b"will topic")
            if not wtopic:
                _fail(RC_NAME, "will topic: empty topic name")
            if "+" in wtopic or "#" in wtopic:
                _fail(RC_NAME, f"will topic: wildcard in topic name {wtopic!r}")
            will = _Will(wtopic, _binary(c, b"will payload"), will_qos, will_retain, wprops)
        if has_user:
            username = _string(c, b"user name")
        if has_password:
            password = _binary(c, b"password")
        _done(c, T_CONNECT)
        self._level = level
        return _Connect(level, client_id, <bint>(flags & 0x02), keep_alive, username,
                        password, will, props)

    cdef object _connack(self, Cursor* c):
        cdef bint v5 = self._level == 5
        cdef int flags = _u8(c, b"connack flags"), rc
        if flags & 0xFE:
            _fail(RC_MALFORMED, "reserved connack flags set")
        if v5:
            rc = _reason(c, T_CONNACK)
        else:
            rc = _u8(c, b"return code")
            if rc not in _CONNACK_V3:
                _fail(RC_PROTOCOL, f"CONNACK return code {rc} unknown in MQTT 3.1.1")
        if rc and flags:
            _fail(RC_PROTOCOL, "session present set on a refused connection")
        cdef object props = _properties(c, T_CONNACK) if v5 else None
        _done(c, T_CONNACK)
        return _ConnAck(<bint>flags, rc, props)

    cdef object _subscribe(self, int t, Cursor* c):
        cdef bint v5 = self._level == 5, shared
        cdef int pid = _packet_id(c), n, opts, qos, rh
        cdef object props = _properties(c, t) if v5 else None
        cdef list items = []
        cdef const unsigned char* s
        cdef str flt
        while c.p < c.end:
            n = _u16(c, b"topic filter")
            s = _take(c, n, b"topic filter")
            flt = _utf8(s, n, b"topic filter")
            shared = _filter_check(s, n, v5)
            if t == T_UNSUBSCRIBE:
                items.append(flt)
                continue
            opts = _u8(c, b"subscription options")
            if opts & (0xC0 if v5 else 0xFC):
                _fail(RC_MALFORMED, f"reserved subscription option bits in 0x{opts:02X}")
            qos = opts & 3
            rh = (opts >> 4) & 3
            if qos == 3:
                _fail(RC_MALFORMED, "subscription QoS 3")
            if rh == 3:
                _fail(RC_MALFORMED, "retain handling 3")
            if opts & 4 and shared:
                _fail(RC_PROTOCOL, "No Local on a shared subscription")
            items.append(_Subscription(flt, qos, <bint>(opts & 4), <bint>(opts & 8), rh))
        if not items:
            _fail(RC_PROTOCOL, f"{_TYPE_NAMES[t]} without topic filter")
        return (_Subscribe if t == T_SUBSCRIBE else _Unsubscribe)(pid, items, props)

    cdef object _suback(self, int t, Cursor* c):
        cdef bint v5 = self._level == 5
        cdef int pid = _packet_id(c), rc
        cdef object props = _properties(c, t) if v5 else None
        cdef list codes = []
        cdef const unsigned int* allowed = _SUBACK_V3
        if v5:
            allowed = &_REASONS[t][0]
        if t == T_SUBACK or v5:
            while c.p < c.end:
                rc = _u8(c, b"reason code")
                if not _bit_has(allowed, rc):
                    _fail(RC_PROTOCOL, f"reason code 0x{rc:02X} not allowed in {_TYPE_NAMES[t]}")
                codes.append(rc)
            if not codes:
                _fail(RC_PROTOCOL, f"{_TYPE_NAMES[t]} without reason code")
        _done(c, t)
        return (_SubAck if t == T_SUBACK else _UnsubAck)(pid, codes, props)


# --------------------------------------------------------------------------- encoding
cdef inline int _varint_size(Py_ssize_t n) noexcept:
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


cdef inline unsigned char* _put_varint(unsigned char* o, Py_ssize_t n) noexcept:
    while True:
        if n < 128:
            o[0] = <unsigned char>n
            return o + 1
        o[0] = <unsigned char>((n & 0x7F) | 0x80)
        n >>= 7
        o += 1


cdef int _wb_reserve(WBuf* w, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef unsigned char* nd
    if w.len + extra > w.cap:
        cap = max(2 * w.cap, w.len + extra, 64)
        nd = <unsigned char*>realloc(w.data, cap)
        if nd == NULL:
            raise MemoryError()
        w.data = nd
        w.cap = cap
    return 0


cdef inline int _wb_raw(WBuf* w, const void* p, Py_ssize_t n) except -1:
    _wb_reserve(w, n)
    memcpy(w.data + w.len, p, n)
    w.len += n
    return 0


cdef int _wb_uint(WBuf* w, unsigned long v, int size) except -1:
    _wb_reserve(w, size)
    cdef int i
    for i in range(size):
        w.data[w.len + i] = (v >> (8 * (size - 1 - i))) & 0xFF
    w.len += size
    return 0


cdef int _wb_varint(WBuf* w, Py_ssize_t v) except -1:
    _wb_reserve(w, 4)
    w.len = _put_varint(w.data + w.len, v) - w.data
    return 0


cdef int _wb_binary(WBuf* w, object b, str what) except -1:
    cdef Py_buffer view
    PyObject_GetBuffer(b, &view, PyBUF_SIMPLE)
    try:
        if view.len > 0xFFFF:
            _usage(f"length of {what} must be an int in 0..65535, got {view.len}")
        _wb_uint(w, view.len, 2)
        _wb_raw(w, view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return 0


cdef const char* _utf8_of(object s, Py_ssize_t* n, str what) except NULL:
    """UTF-8 bytes of ``s`` (cached inside the str: no copy for repeated topics)."""
    if not PyUnicode_Check(s):
        _usage(f"{what} must be a str, got {type(s).__name__}")
    cdef const char* u = PyUnicode_AsUTF8AndSize(s, n)
    if u == NULL:
        PyErr_Clear()
        _usage(f"{what} is not encodable as UTF-8 (lone surrogate)")
    return u


cdef int _wb_string(WBuf* w, object s, str what) except -1:
    cdef Py_ssize_t n
    cdef const char* u = _utf8_of(s, &n, what)
    if memchr(u, 0, n) != NULL:
        _usage(f"{what} contains U+0000")
    if n > 0xFFFF:
        _usage(f"length of {what} must be an int in 0..65535, got {n}")
    _wb_uint(w, n, 2)
    _wb_raw(w, u, n)
    return 0


cdef int _check_level(object level) except -1:
    if level != 4 and level != 5:
        _usage(f"protocol_level must be 4 or 5, got {level!r}")
    return level == 5


cdef int _check_u16(object v, str what) except -1:
    if not isinstance(v, int) or not 0 <= v <= 0xFFFF:
        _usage(f"{what} must be an int in 0..65535, got {v!r}")
    return v


cdef int _check_packet_id(object pid) except -1:
    if not isinstance(pid, int) or not 1 <= pid <= 0xFFFF:
        _usage(f"packet_id must be in 1..65535, got {pid!r}")
    return pid


cdef int _check_qos(object qos, str what) except -1:
    if not isinstance(qos, int) or not 0 <= qos <= 2:
        _usage(f"{what} must be 0, 1 or 2, got {qos!r}")
    return qos


cdef int _check_reason(int t, object rc, bint v5) except -1:
    if v5:
        if not isinstance(rc, int) or not 0 <= rc <= 255 or not _bit_has(_REASONS[t], rc):
            _usage(f"reason code {rc!r} not allowed in {_TYPE_NAMES[t]}")
    elif rc != 0:
        _usage(f"{_TYPE_NAMES[t]} has no reason code in MQTT 3.1.1 (got {rc!r})")
    return rc


cdef int _no_v5(bint v5, object props, str what) except -1:
    if not v5 and props is not None:
        _usage(f"{what}: properties need MQTT 5")
    return 0


cdef object _INT_MAX = {PT_BYTE: 0xFF, PT_TWO: 0xFFFF, PT_FOUR: 0xFFFFFFFF, PT_VARINT: MAX_RL}


cdef int _wb_properties(WBuf* w, object props, int ptype) except -1:
    """Property Length + properties, in identifier order (same bytes as the twin)."""
    if props is None:
        return _wb_varint(w, 0)
    if not isinstance(props, _Properties):
        _usage(f"properties must be a Properties, got {type(props).__name__}")
    cdef WBuf tmp
    cdef int pid, typ
    cdef unsigned int allowed
    tmp.data = NULL
    tmp.len = tmp.cap = 0
    try:
        for pid, name, typ, allowed in _PROP_ORDER:
            value = getattr(props, name)
            if value is None:
                continue
            if not (allowed >> ptype) & 1:
                _usage(f"property {name} not allowed in {_TYPE_NAMES[ptype]}")
            if pid == 0x26 or pid == 0x0B:
                if not isinstance(value, list):
                    _usage(f"property {name} must be a list")
                if pid == 0x0B and ptype == T_SUBSCRIBE and len(value) != 1:
                    _usage("a SUBSCRIBE carries at most one subscription identifier")
                values = value
            else:
                values = (value,)
            for v in values:
                _wb_varint(&tmp, pid)
                if typ <= PT_VARINT:
                    if not isinstance(v, int) or not 0 <= v <= _INT_MAX[typ]:
                        _usage(f"property {name} out of range: {v!r}")
                    if _PROP_BOOL[pid] and v > 1:
                        _usage(f"property {name} must be 0 or 1, got {v}")
                    if _PROP_NONZERO[pid] and v == 0:
                        _usage(f"property {name} must not be 0")
                    if typ == PT_VARINT:
                        _wb_varint(&tmp, v)
                    else:
                        _wb_uint(&tmp, v, 1 if typ == PT_BYTE else 2 if typ == PT_TWO else 4)
                elif typ == PT_UTF8:
                    _wb_string(&tmp, v, name)
                elif typ == PT_BINARY:
                    if not isinstance(v, (bytes, bytearray, memoryview)):
                        _usage(f"property {name} must be bytes")
                    _wb_binary(&tmp, v, name)
                else:
                    if not (isinstance(v, tuple) and len(v) == 2):
                        _usage(f"user property must be a (name, value) tuple, got {v!r}")
                    _wb_string(&tmp, v[0], name)
                    _wb_string(&tmp, v[1], name)
        if tmp.len > MAX_RL:
            _usage("properties too long")
        _wb_varint(w, tmp.len)
        _wb_raw(w, tmp.data, tmp.len)
    finally:
        free(tmp.data)
    return 0


cdef bytes _frame(unsigned char first, WBuf* body):
    if body.len > MAX_RL:
        _usage(f"packet body of {body.len} bytes exceeds {MAX_RL}")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 1 + _varint_size(body.len) + body.len)
    cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
    o[0] = first
    o = _put_varint(o + 1, body.len)
    if body.len:
        memcpy(o, body.data, body.len)
    return out


def encode_publish(topic, payload, qos=0, bint retain=False, bint dup=False, packet_id=0,
                   properties=None, *, protocol_level):
    """Encode a PUBLISH packet (§3.3) into one new ``bytes``.

    Parameters
    ----------
    topic : str
        Topic Name: no wildcard, no U+0000, at most 65535 UTF-8 bytes; ``""`` only in
        MQTT 5 with ``properties.topic_alias``.
    payload : buffer
        Application message, copied once into the packet.
    qos : {0, 1, 2}
    retain, dup : bool
        ``dup`` only with QoS 1 or 2.
    packet_id : int
        1..65535 for QoS 1 and 2; 0 for QoS 0.
    properties : Properties, optional
        MQTT 5 only.
    protocol_level : {4, 5}
        Keyword-only: the connection's MQTT version.

    Returns
    -------
    bytes
        The packet. Without properties exactly one allocation is made.
    """
    cdef bint v5 = _check_level(protocol_level)
    cdef Py_ssize_t tlen, plen, rl, pid_len
    cdef const char* t
    cdef Py_buffer pv
    cdef WBuf pw
    cdef unsigned char* o
    cdef int q = _check_qos(qos, "qos")
    _no_v5(v5, properties, "PUBLISH")
    t = _utf8_of(topic, &tlen, "topic")
    if tlen or not (v5 and properties is not None and properties.topic_alias is not None):
        if tlen == 0:
            _usage("empty topic name")
        if memchr(t, b'+', tlen) != NULL or memchr(t, b'#', tlen) != NULL:
            _usage(f"wildcard in topic name {topic!r}")
        if memchr(t, 0, tlen) != NULL:
            _usage("U+0000 in topic name")
    if tlen > 0xFFFF:
        _usage(f"length of topic must be an int in 0..65535, got {tlen}")
    if q == 0:
        if packet_id or dup:
            _usage("QoS 0 PUBLISH has no packet_id and no DUP")
        pid_len = 0
    else:
        _check_packet_id(packet_id)
        pid_len = 2
    pw.data = NULL
    pw.len = pw.cap = 0
    PyObject_GetBuffer(payload, &pv, PyBUF_SIMPLE)
    try:
        if properties is not None:
            _wb_properties(&pw, properties, T_PUBLISH)
        rl = 2 + tlen + pid_len + (pw.len if properties is not None else v5) + pv.len
        if rl > MAX_RL:
            _usage(f"packet body of {rl} bytes exceeds {MAX_RL}")
        out = PyBytes_FromStringAndSize(NULL, 1 + _varint_size(rl) + rl)
        o = <unsigned char*>PyBytes_AS_STRING(out)
        o[0] = 0x30 | (8 if dup else 0) | (q << 1) | (1 if retain else 0)
        o = _put_varint(o + 1, rl)
        o[0] = tlen >> 8
        o[1] = tlen & 0xFF
        memcpy(o + 2, t, tlen)
        o += 2 + tlen
        if pid_len:
            o[0] = (<int>packet_id) >> 8
            o[1] = (<int>packet_id) & 0xFF
            o += 2
        if properties is not None:
            memcpy(o, pw.data, pw.len)
            o += pw.len
        elif v5:
            o[0] = 0    # Property Length 0
            o += 1
        memcpy(o, pv.buf, pv.len)
        return out
    finally:
        PyBuffer_Release(&pv)
        free(pw.data)


cdef bytes _encode_ack(int t, object packet_id, object reason_code, object properties,
                       object protocol_level):
    cdef bint v5 = _check_level(protocol_level)
    _no_v5(v5, properties, _TYPE_NAMES[t])
    cdef int pid = _check_packet_id(packet_id)
    cdef int rc = _check_reason(t, reason_code, v5)
    cdef unsigned char first = (t << 4) | (2 if t == T_PUBREL else 0)
    cdef unsigned char* o
    cdef bytes out
    cdef WBuf w
    if properties is None:  # short forms of §3.4.2.1: 2 bytes, or 3 with a reason code
        out = PyBytes_FromStringAndSize(NULL, 5 if rc else 4)
        o = <unsigned char*>PyBytes_AS_STRING(out)
        o[0] = first
        o[1] = 3 if rc else 2
        o[2] = pid >> 8
        o[3] = pid & 0xFF
        if rc:
            o[4] = rc
        return out
    w.data = NULL
    w.len = w.cap = 0
    try:
        _wb_uint(&w, pid, 2)
        _wb_uint(&w, rc, 1)
        _wb_properties(&w, properties, t)
        return _frame(first, &w)
    finally:
        free(w.data)


def encode_puback(packet_id, reason_code=0, properties=None, *, protocol_level):
    """Encode a PUBACK (§3.4); reason code and properties only in MQTT 5."""
    return _encode_ack(T_PUBACK, packet_id, reason_code, properties, protocol_level)


def encode_pubrec(packet_id, reason_code=0, properties=None, *, protocol_level):
    """Encode a PUBREC (§3.5); reason code and properties only in MQTT 5."""
    return _encode_ack(T_PUBREC, packet_id, reason_code, properties, protocol_level)


def encode_pubrel(packet_id, reason_code=0, properties=None, *, protocol_level):
    """Encode a PUBREL (§3.6); reason code and properties only in MQTT 5."""
    return _encode_ack(T_PUBREL, packet_id, reason_code, properties, protocol_level)


def encode_pubcomp(packet_id, reason_code=0, properties=None, *, protocol_level):
    """Encode a PUBCOMP (§3.7); reason code and properties only in MQTT 5."""
    return _encode_ack(T_PUBCOMP, packet_id, reason_code, properties, protocol_level)


cdef int _sub_options(object s, bint v5) except -1:
    cdef int opts = _check_qos(s.qos, "subscription qos")
    if v5:
        if s.retain_handling not in (0, 1, 2):
            _usage(f"retain_handling must be 0, 1 or 2, got {s.retain_handling!r}")
        if s.no_local and s.topic_filter.startswith("$share/"):
            _usage("no_local is not allowed on a shared subscription")
        opts |= (4 if s.no_local else 0) | (8 if s.retain_as_published else 0)
        opts |= (<int>s.retain_handling) << 4
    elif s.no_local or s.retain_as_published or s.retain_handling:
        _usage("no_local, retain_as_published, retain_handling need MQTT 5")
    return opts


cdef int _wb_filter(WBuf* w, object flt, bint v5) except -1:
    cdef Py_ssize_t start = w.len + 2
    _wb_string(w, flt, "topic filter")
    try:
        _filter_check(w.data + start, w.len - start, v5)
    except MqttProtocolError as e:
        raise UsageError(e.message) from None
    return 0


cdef int _wb_connect(WBuf* w, object c, int level) except -1:
    if c.protocol_level != level:
        _usage(f"Connect.protocol_level {c.protocol_level} != {level}")
    cdef bint v5 = level == 5
    cdef int flags = 0x02 if c.clean_start else 0
    cdef object will = c.will
    cdef Py_ssize_t n
    if will is not None:
        _no_v5(v5, will.properties, "Will")
        _utf8_of(will.topic, &n, "will topic")
        if n == 0 or "+" in will.topic or "#" in will.topic or "\0" in will.topic:
            _usage(f"will topic: invalid topic name {will.topic!r}")
        flags |= 0x04 | (_check_qos(will.qos, "will qos") << 3) | (0x20 if will.retain else 0)
    if c.username is not None:
        flags |= 0x80
    if c.password is not None:
        if not v5 and c.username is None:
            _usage("MQTT 3.1.1 needs a username to send a password")
        flags |= 0x40
    _wb_string(w, "MQTT", "protocol name")
    _wb_uint(w, level, 1)
    _wb_uint(w, flags, 1)
    _wb_uint(w, _check_u16(c.keep_alive, "keep_alive"), 2)
    if v5:
        _wb_properties(w, c.properties, T_CONNECT)
    _wb_string(w, c.client_id, "client_id")
    if will is not None:
        if v5:
            _wb_properties(w, will.properties, T_WILL)
        _wb_string(w, will.topic, "will topic")
        _wb_binary(w, will.payload, "will payload")
    if c.username is not None:
        _wb_string(w, c.username, "username")
    if c.password is not None:
        _wb_binary(w, c.password, "password")
    return 0


def encode(packet, protocol_level):
    """Encode any packet object of :mod:`vitalcore.mqtt.packets` for ``protocol_level``.

    Parameters
    ----------
    packet : Packet
        A Connect, ConnAck, Publish, ..., Auth instance. Values are validated like the
        parser validates them; a value the peer would reject raises ``UsageError``.
    protocol_level : {4, 5}
        The connection's MQTT version (must equal ``Connect.protocol_level``).

    Returns
    -------
    bytes
    """
    cdef bint v5 = _check_level(protocol_level)
    if not isinstance(packet, _PACKET_CLASSES):
        raise UsageError(f"not an MQTT packet: {packet!r}")
    cdef int t = packet.packet_type, rc = 0
    cdef const unsigned int* allowed
    if t == T_PUBLISH:
        return encode_publish(packet.topic, packet.payload, packet.qos, packet.retain,
                              packet.dup, packet.packet_id, packet.properties,
                              protocol_level=protocol_level)
    if T_PUBACK <= t <= T_PUBCOMP:
        return _encode_ack(t, packet.packet_id, packet.reason_code, packet.properties,
                           protocol_level)
    if t == T_AUTH and not v5:
        raise UsageError("AUTH exists only in MQTT 5")
    _no_v5(v5, getattr(packet, "properties", None), _TYPE_NAMES[t])
    cdef WBuf w
    w.data = NULL
    w.len = w.cap = 0
    try:
        if t == T_CONNECT:
            _wb_connect(&w, packet, protocol_level)
        elif t == T_CONNACK:
            if v5:
                rc = _check_reason(t, packet.reason_code, v5)
            elif packet.reason_code not in _CONNACK_V3:
                _usage(f"CONNACK return code must be 0..5, got {packet.reason_code!r}")
            else:
                rc = packet.reason_code
            if rc and packet.session_present:
                _usage("session_present must be False on a refused connection")
            _wb_uint(&w, 1 if packet.session_present else 0, 1)
            _wb_uint(&w, rc, 1)
            if v5:
                _wb_properties(&w, packet.properties, t)
        elif t == T_SUBSCRIBE or t == T_UNSUBSCRIBE:
            _wb_uint(&w, _check_packet_id(packet.packet_id), 2)
            if v5:
                _wb_properties(&w, packet.properties, t)
            items = packet.subscriptions if t == T_SUBSCRIBE else packet.topic_filters
            if not items:
                _usage(f"{_TYPE_NAMES[t]} needs at least one topic filter")
            for item in items:
                _wb_filter(&w, item.topic_filter if t == T_SUBSCRIBE else item, v5)
                if t == T_SUBSCRIBE:
                    _wb_uint(&w, _sub_options(item, v5), 1)
        elif t == T_SUBACK or t == T_UNSUBACK:
            _wb_uint(&w, _check_packet_id(packet.packet_id), 2)
            if v5:
                _wb_properties(&w, packet.properties, t)
            codes = list(packet.reason_codes)
            if t == T_UNSUBACK and not v5:
                if codes:
                    _usage("UNSUBACK has no reason codes in MQTT 3.1.1")
            else:
                if not codes:
                    _usage(f"{_TYPE_NAMES[t]} needs at least one reason code")
                allowed = &_REASONS[t][0] if v5 else &_SUBACK_V3[0]
                for code in codes:
                    if (not isinstance(code, int) or not 0 <= code <= 255
                            or not _bit_has(allowed, code)):
                        _usage(f"reason code {code!r} not allowed in {_TYPE_NAMES[t]}")
                    _wb_uint(&w, code, 1)
        elif t == T_DISCONNECT or t == T_AUTH:
            rc = _check_reason(t, packet.reason_code, v5)
            if packet.properties is not None or (t == T_AUTH and rc):
                _wb_uint(&w, rc, 1)
                _wb_properties(&w, packet.properties, t)
            elif rc:
                _wb_uint(&w, rc, 1)
        # PINGREQ, PINGRESP: empty body
        return _frame((t << 4) | (2 if t == T_SUBSCRIBE or t == T_UNSUBSCRIBE else 0), &w)
    finally:
        free(w.data)
